"""Header facts of one DICOM file, grouping into series, and the geometry check before a series is a volume.

Facts are what listing keeps about a file (in the lake's file-facts cache): pseudonyms of the study,
series, patient and accession number (keyed HMACs, so grouping and report pairing work without the
raw identifiers) and the geometry needed to order slices. Nothing in them identifies a patient.

A series is treated as a volume only when every instance is a single frame with a position,
orientation and pixel spacing; then its slices must agree on size, spacing and orientation and lie
evenly along the slice normal, or the series is refused as ``inconsistent_series`` with what differs.
Anything else (radiographs, ultrasound clips, multi-frame objects) is a set of 2D images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from medcurate.hashing import pseudonym

VOLUME_MODALITIES = {"CT", "MR", "PT", "NM"}
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # SC and its multi-frame variants
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
ORIENTATION_TOLERANCE = 1e-3  # direction cosines
SPACING_TOLERANCE = 1e-3  # relative, pixel spacing
SLICE_GAP_TOLERANCE = 0.05  # relative deviation of one gap from the median gap
IN_PLANE_TOLERANCE_MM = 0.5  # slices sheared in-plane (gantry tilt) are not a regular volume


def _floats(value: Any, n: int) -> list[float] | None:
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n and all(np.isfinite(numbers)) else None


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def header_facts(data: bytes, key: str) -> dict[str, Any]:
    """Facts of one file's header (pixels not read); ``{"error": reason}`` when it is not readable DICOM."""
    try:
        ds = pydicom.dcmread(BytesIO(data), stop_before_pixels=True)
    except InvalidDicomError as exc:
        return {"error": f"dicom_unreadable: not a DICOM Part 10 file ({type(exc).__name__})"}
    except Exception as exc:  # pydicom raises many types on truncated or corrupt headers
        return {"error": f"dicom_unreadable: header cannot be parsed ({type(exc).__name__})"}
    meta = getattr(ds, "file_meta", None)
    sop_class = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))

    def hashed(namespace: str, keyword: str) -> str | None:
        value = str(ds.get(keyword, "") or "").strip()
        return pseudonym(key, namespace, value) if value else None

    return {
        "directory": sop_class == MEDIA_DIRECTORY,
        "patient": hashed("patient", "PatientID"),
        "study": hashed("study", "StudyInstanceUID"),
        "series": hashed("series", "SeriesInstanceUID"),
        "accession": hashed("accession", "AccessionNumber"),
        "sop_class": sop_class,
        "modality": str(ds.get("Modality", "") or "").upper() or None,
        "instance": _int(ds.get("InstanceNumber")),
        "frames": _int(ds.get("NumberOfFrames"), 1) or 1,
        "rows": _int(ds.get("Rows")),
        "columns": _int(ds.get("Columns")),
        "position": _floats(ds.get("ImagePositionPatient"), 3),
        "orientation": _floats(ds.get("ImageOrientationPatient"), 6),
        "spacing": _floats(ds.get("PixelSpacing"), 2),
        "transfer_syntax": str(meta.get("TransferSyntaxUID", "")) if meta else "",
        "burned_in": str(ds.get("BurnedInAnnotation", "") or "").upper() or None,
    }


@dataclass(frozen=True)
class Instance:
    """One DICOM file as listed: pseudonymous uri, content hash, and its header facts."""

    uri: str
    sha256: str
    size: int
    facts: dict[str, Any]
    location: Any = None  # files.Location; real path, kept in memory only

    @property
    def sort_key(self) -> tuple:
        return (self.facts.get("instance") is None, self.facts.get("instance") or 0, self.sha256)


@dataclass
class Series:
    patient: str | None
    study: str | None
    series: str | None
    instances: list[Instance] = field(default_factory=list)

    @property
    def modality(self) -> str | None:
        return self.instances[0].facts.get("modality") if self.instances else None

    def is_volume(self) -> bool:
        facts = [i.facts for i in self.instances]
        return (
            len(facts) > 1
            and (self.modality or "") in VOLUME_MODALITIES
            and all(f["frames"] == 1 and f["position"] and f["orientation"] and f["spacing"] for f in facts)
        )


def group_series(instances: Iterable[Instance]) -> list[Series]:
    """Instances grouped by (study, series) pseudonym, in a deterministic order."""
    groups: dict[tuple, Series] = {}
    for inst in instances:
        f = inst.facts
        key = (f.get("patient") or "", f.get("study") or "", f.get("series") or inst.sha256)
        groups.setdefault(key, Series(f.get("patient"), f.get("study"), f.get("series")))
        groups[key].instances.append(inst)
    for series in groups.values():
        series.instances.sort(key=lambda i: i.sort_key)
    return [groups[key] for key in sorted(groups)]


def _normal(orientation: list[float]) -> np.ndarray:
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    return np.cross(row, col)


def volume_order(series: Series) -> tuple[list[Instance], str | None]:
    """The instances sorted along the slice normal, and the reason the volume is inconsistent (or None)."""
    insts = series.instances
    first = insts[0].facts
    for inst in insts[1:]:
        f = inst.facts
        if (f["rows"], f["columns"]) != (first["rows"], first["columns"]):
            return insts, "inconsistent_series: slices differ in size"
        if not np.allclose(f["orientation"], first["orientation"], atol=ORIENTATION_TOLERANCE):
            return insts, "inconsistent_series: slices differ in orientation"
        if not np.allclose(f["spacing"], first["spacing"], rtol=SPACING_TOLERANCE):
            return insts, "inconsistent_series: slices differ in pixel spacing"
    normal = _normal(first["orientation"])
    positions = np.array([i.facts["position"] for i in insts])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    ordered = [insts[i] for i in order]
    gaps = np.diff(along[order])
    if np.any(gaps < 1e-3):
        return ordered, "inconsistent_series: two slices share one position"
    median = float(np.median(gaps))
    if np.any(np.abs(gaps - median) > SLICE_GAP_TOLERANCE * median):
        return ordered, "inconsistent_series: uneven slice spacing (missing or extra slices)"
    in_plane = positions[order] - np.outer(along[order], normal)
    if np.any(np.linalg.norm(in_plane - in_plane[0], axis=1) > IN_PLANE_TOLERANCE_MM):
        return ordered, "inconsistent_series: slices are shifted in-plane (gantry tilt or mixed stacks)"
    return ordered, None


def slice_spacing(ordered: list[Instance]) -> float | None:
    """Distance between consecutive slices along the normal (mm), from the positions."""
    if len(ordered) < 2:
        return None
    normal = _normal(ordered[0].facts["orientation"])
    along = np.array([i.facts["position"] for i in ordered]) @ normal
    return float(np.median(np.diff(along)))


def burned_in_reason(facts: dict[str, Any]) -> str | None:
    """Why pixels of this file may carry burned-in text (names, dates), or None."""
    if facts.get("burned_in") == "YES":
        return "burned_in_annotation: BurnedInAnnotation is YES"
    if (facts.get("modality") or "") in {"US", "SC", "XC", "OT"}:
        return f"burned_in_annotation: modality {facts['modality']} often carries burned-in text"
    sop_class = str(facts.get("sop_class") or "")
    if sop_class == SECONDARY_CAPTURE_PREFIX or sop_class.startswith(SECONDARY_CAPTURE_PREFIX + "."):
        return "burned_in_annotation: secondary capture images often carry burned-in text"
    return None
