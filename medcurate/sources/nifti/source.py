"""The NIfTI source: one input per volume (with its optional label mask), one sample per exported axial slice.

A folder of ``*.nii``/``*.nii.gz`` volumes, each optionally paired with a label volume beside it
(``<stem>_mask``, ``_seg``, ``_label`` or ``_labels``) and label names (``<stem>_labels.json``,
``{"1": "liver lesion"}``). Slices are read lazily in RAS canonical order and exported in the
radiological display convention; the selection (middle, even, all) is extended by each label's
largest axial slice, whose caption is the label's finding rendered through the findings template
(volume in mL, largest axial diameter, slice range, laterality).

Paths and free-text header fields (``descrip``, ``aux_file``, ``intent_name``, ``db_name``) often carry
patient names: uris are keyed pseudonyms (real paths go to the restricted path map), header text is
never copied, and a finished record is scanned for those values and quarantined on a hit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from medcurate.hashing import pseudonym, sha256_json, sha256_stream
from medcurate.schemas.record import ACTIVE, new_record, text_authors
from medcurate.sources.base import INGEST_DETAILS, InputItem, Source
from medcurate.sources.clinical import pseudonymous_uri, require_key
from medcurate.sources.dicom.files import walk
from medcurate.sources.dicom.phi import PhiValues, scan_record
from medcurate.sources.nifti.findings import DEFAULT_TEMPLATE, findings_text, load_findings_template
from medcurate.sources.nifti.masks import LabelFinding, measure_labels
from medcurate.sources.nifti.volume import NiftiError, Volume, render_png, window_for
from medcurate.sources.slices import select_indices, slice_selection
from medcurate.sources.volumes import FORMATS as VOLUME_FORMATS
from medcurate.sources.volumes import encode_volume
from medcurate.sources.windowing import apply_window

PARAMS = {
    "volume",
    "modality",
    "slices",
    "slice_count",
    "window",
    "bit_depth",
    "license",
    "findings_template",
}
SUFFIXES = (".nii.gz", ".nii")
MASK_SUFFIXES = ("_mask", "_seg", "_label", "_labels")
HEADER_TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "db_name")
MODALITY_TOKENS = {"ct": "CT", "mr": "MR", "mri": "MR", "t1": "MR", "t2": "MR", "flair": "MR", "pet": "PT"}


@dataclass(frozen=True)
class VolumeFiles:
    stem: str  # relative path without the NIfTI suffix
    image: str | None  # relative paths
    mask: str | None
    names: str | None


def _stem(rel: str) -> str | None:
    for suffix in SUFFIXES:
        if rel.lower().endswith(suffix):
            return rel[: -len(suffix)]
    return None


def pair_files(rels: list[str]) -> list[VolumeFiles]:
    """Images with their masks and label-name files, by stem; a mask without an image stays alone."""
    images, masks, names = {}, {}, {}
    for rel in rels:
        if rel.endswith("_labels.json"):
            names[rel.removesuffix("_labels.json")] = rel
            continue
        stem = _stem(rel)
        if stem is None:
            continue
        base = next((stem.removesuffix(s) for s in MASK_SUFFIXES if stem.endswith(s)), None)
        if base is not None:
            masks[base] = rel
        else:
            images[stem] = rel
    stems = sorted(set(images) | set(masks))
    return [VolumeFiles(s, images.get(s), masks.get(s), names.get(s)) for s in stems]


def _modality(stem: str, configured: str | None) -> str:
    if configured:
        return configured.upper()
    tokens = PurePosixPath(stem).name.lower().replace("-", "_").split("_")
    return next((MODALITY_TOKENS[t] for t in tokens if t in MODALITY_TOKENS), "OT")


class NiftiSource(Source):
    """NIfTI volumes (and label masks) under a root folder, as 2D axial samples with findings text."""

    kind = "nifti"
    version = "1"
    known_params = frozenset(PARAMS)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.key = require_key(self.kind, self.name, self.ctx)
        self.mode, self.count = slice_selection(self.params, self.kind)
        self.bit_depth = int(self.params.get("bit_depth", 8))
        self.template = load_findings_template(self.params.get("findings_template", DEFAULT_TEMPLATE))
        self.root = Path(self.uri)
        self.volume_format = self.params.get("volume")
        if self.volume_format not in (None, *VOLUME_FORMATS):
            raise ValueError(
                f"nifti source: volume must be one of {VOLUME_FORMATS}, got {self.volume_format!r}"
            )

    # -- listing ---------------------------------------------------------------------------------

    def _uri(self, rel: str) -> str:
        uri = pseudonymous_uri(self.kind, self.name, self.key, rel)
        self.ctx.path_map.remember(uri, str(self.root / rel))
        return uri

    def _hash(self, rel: str) -> tuple[str, int]:
        path = self.root / rel
        stat = path.stat()
        uri = self._uri(rel)
        known = self.ctx.file_facts.get(uri, stat.st_size, stat.st_mtime_ns)
        if known is None:
            with path.open("rb") as stream:
                sha = sha256_stream(stream)
            self.ctx.file_facts.put(uri, stat.st_size, stat.st_mtime_ns, sha, {})
            return sha, stat.st_size
        return known.sha256, stat.st_size

    def list_inputs(self) -> Iterator[InputItem]:
        if not self.root.is_dir():
            raise ValueError(f"nifti source {self.name!r}: {self.root} is not a folder")
        found = list(walk(self.root))
        for f in found:
            if f.error:
                uri = self._uri(f.location.rel)
                yield InputItem(self.name, sha256_json(["problem", uri, f.error]), uri, error=f.error)
        for files in pair_files([f.location.rel for f in found if not f.error]):
            yield self._item(files)

    def _item(self, files: VolumeFiles) -> InputItem:
        main = files.image or files.mask
        uri = self._uri(main)
        hashes = {
            role: self._hash(rel)
            for role, rel in (("image", files.image), ("mask", files.mask), ("names", files.names))
            if rel
        }
        key = sha256_json(["volume", {role: sha for role, (sha, _size) in hashes.items()}])
        error = None if files.image else "mask_without_image: a label volume with no image volume beside it"
        payload = {"files": files, "hashes": hashes}
        sha, size = hashes["image"] if files.image else hashes["mask"]
        return InputItem(self.name, key, uri, sha, size, payload=payload, error=error)

    def details(self, item: InputItem) -> dict[str, Any] | None:
        hashes = item.payload.get("hashes")
        return {f"{role}_sha256": sha for role, (sha, _s) in hashes.items()} if hashes else None

    # -- reading ---------------------------------------------------------------------------------

    def _open(self, rel: str, label: str) -> Volume:
        """Open without letting the real path into an error message (it becomes a quarantine reason)."""
        try:
            volume = Volume.open(self.root / rel)
        except NiftiError as exc:
            raise NiftiError(exc.code, exc.detail.replace(str(self.root / rel), label)) from None
        volume.source = label  # what later read errors name instead of the path
        return volume

    def read(self, item: InputItem) -> list[dict[str, Any]]:
        if item.error:
            return [self.quarantined_record(item, item.error)]
        files: VolumeFiles = item.payload["files"]
        try:
            for role, (sha, _size) in item.payload["hashes"].items():
                rel = getattr(files, role)
                with (self.root / rel).open("rb") as stream:
                    if sha256_stream(stream) != sha:
                        return [
                            self._quarantined(
                                item, "input_changed: a file changed between listing and reading"
                            )
                        ]
            volume = self._open(files.image, "image")
            findings = self._findings(files, volume)
            modality = _modality(files.stem, self.params.get("modality"))
            window = window_for(volume, modality, self.params.get("window"))
            return self._records(item, files, volume, findings, modality, window)
        except NiftiError as exc:
            return [self.quarantined_record(item, f"{exc.code}: {exc.detail}")]
        except OSError as exc:
            return [self.quarantined_record(item, f"input_missing: {type(exc).__name__}")]

    def _findings(self, files: VolumeFiles, volume: Volume) -> list[LabelFinding]:
        if not files.mask:
            return []
        names = {}
        if files.names:
            try:
                names = {int(k): str(v) for k, v in json.loads((self.root / files.names).read_text()).items()}
            except (ValueError, AttributeError) as exc:
                raise NiftiError(
                    "label_names_unreadable", f"label names file: {type(exc).__name__}"
                ) from None
        return measure_labels(self._open(files.mask, "mask"), names, image=volume)

    def _records(
        self,
        item: InputItem,
        files: VolumeFiles,
        volume: Volume,
        findings: list[LabelFinding],
        modality: str,
        window: Any,
    ) -> list[dict[str, Any]]:
        selection = self.mode if self.mode != "even" else f"even:{self.count}"
        chosen: dict[int, list[str]] = {
            k: [selection] for k in select_indices(volume.n_axial, self.mode, self.count)
        }
        for finding in findings:
            chosen.setdefault(finding.largest_slice, []).append(f"largest:{finding.label}")
        whole = findings_text(findings, self.template) if files.mask else None
        phi = self._phi(files, volume)
        series = pseudonym(self.key, "volume", files.image)
        spacing = volume.spacing
        records = []
        for k in sorted(chosen):
            visible = [f for f in findings if f.slice_range[0] <= k <= f.slice_range[1]]
            caption = findings_text(visible, self.template).text if visible else None
            png = render_png(apply_window(volume.axial(k), window), self.bit_depth)
            record = new_record(
                self.sample_id(item.sha256, k),
                source=self.source_group(
                    item.uri, item.sha256, item.size, license=self.params.get("license")
                ),
                image={"bytes": png, "format": "png"},
                subject={"study_pseudonym": series},
                medical={"modality": modality, "labels": [], "findings": whole.text if whole else None},
                text={
                    "source_caption": caption,
                    "final_caption": caption,
                    "final_caption_author": f"template:{whole.template_ref}" if caption and whole else None,
                    "authors": text_authors(
                        *(
                            (
                                name,
                                f"template:{whole.template_ref}",
                                whole.template_ref,
                                whole.template_sha256,
                            )
                            for name in ("source_caption", "final_caption")
                            if caption and whole
                        )
                    ),
                },
                scan={
                    "series_pseudonym": series,
                    "rows": volume.shape[1],
                    "columns": volume.shape[0],
                    "slice_index": k,
                    "slice_count": volume.n_axial,
                    "selection": "+".join(chosen[k]),
                    "pixel_spacing": [spacing[1], spacing[0]],
                    "slice_spacing": spacing[2],
                    "orientation": "".join(volume.orientation),
                    "window_center": window.center,
                    "window_width": window.width,
                    "window_function": window.function,
                    "window_origin": window.origin,
                    "report_sections": [],
                    "findings": [self._finding(f) for f in findings],
                },
            )
            hits = scan_record({key: v for key, v in record.items() if key != "image"}, phi)
            if hits:
                where = ", ".join(sorted({f"{h.attribute} in {h.where}" for h in hits}))
                records.append(self.quarantined_record(item, f"phi_detected: {where}", "slice", k))
                continue
            if whole:
                record[INGEST_DETAILS] = {
                    "findings_template": whole.template_ref,
                    "template_sha256": whole.template_sha256,
                }
            records.append(record)
        if self.volume_format:
            self._attach_volume(records, volume, modality)
        return records

    def _attach_volume(self, records: list[dict[str, Any]], volume: Volume, modality: str) -> None:
        """The whole volume in RAS canonical order rides on the exported slice nearest the middle."""
        carriers = [r for r in records if r["status"] == ACTIVE]
        if not carriers:
            return
        middle = volume.n_axial // 2
        carrier = min(
            carriers, key=lambda r: (abs(r["scan"]["slice_index"] - middle), r["scan"]["slice_index"])
        )
        what = "HU" if modality == "CT" else "scaled"
        carrier["volume"] = encode_volume(
            volume.read_canonical(), volume.spacing, self.volume_format, volume.affine_canonical, what
        )
        carrier["scan"]["selection"] += "+volume"

    def _finding(self, f: LabelFinding) -> dict[str, Any]:
        return {
            "label": f.label,
            "name": f.name,
            "volume_ml": round(f.volume_ml, 3),
            "max_axial_diameter_mm": round(f.max_axial_diameter_mm, 2),
            "slice_first": f.slice_range[0],
            "slice_last": f.slice_range[1],
            "largest_slice": f.largest_slice,
            "laterality": f.laterality,
            "text": self.template.render(f),
        }

    def _phi(self, files: VolumeFiles, volume: Volume) -> PhiValues:
        """Header free text and the relative path: what must never reach a record.

        Folder names alone are not scanned for: "liver/" would flag every liver finding. The path
        never enters a record by construction; the scan guards against a regression.
        """
        header = volume.image.header
        values: dict[str, tuple[str, ...]] = {}
        for field in HEADER_TEXT_FIELDS:
            raw = header.get(field)
            text = (
                bytes(np.asarray(raw).tobytes()).split(b"\0")[0].decode("latin-1").strip()
                if raw is not None
                else ""
            )
            if text:
                values[f"nifti.{field}"] = (text,)
        values["path"] = (files.image, files.stem)
        return PhiValues(values)
