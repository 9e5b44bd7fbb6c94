"""The DICOM source: one input per series, one sample per exported slice or frame, de-identified inside.

Listing walks the root (plain files and zip archives), reads each new file's header once into
pseudonymous facts (cached in the lake by pseudonymous path, size and mtime, so a nightly re-list of
an unchanged archive opens nothing), and groups files into series. A series' input key covers the
bytes of all its files and its paired report, so a new slice or an edited report re-reads it.

Reading de-identifies each exported file's header in memory before anything is built from it, renders
the selected slices or frames, and then scans the finished record for every PHI value of the original
header (fail closed: a hit quarantines the sample). Quarantined records carry reasons, pseudonymous
uris and hashes only: no pixels, no header values, no paths.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pydicom

from medcurate.hashing import canonical_json, pseudonym, sha256_bytes, sha256_json
from medcurate.schemas.record import ACTIVE, QUARANTINED, new_record, text_authors
from medcurate.sources.base import INGEST_DETAILS, InputItem, Source
from medcurate.sources.clinical import pseudonymous_uri, require_key
from medcurate.sources.dicom import deid as deid_mod
from medcurate.sources.dicom import phi as phi_mod
from medcurate.sources.dicom import pixels
from medcurate.sources.dicom.files import (
    DICOM_SUFFIXES,
    PREAMBLE_END,
    ZIP_SUFFIXES,
    Found,
    Location,
    ZipLimits,
    ZipRefused,
    is_dicom_header,
    is_dicomdir,
    read_member,
    walk,
    zip_members,
)
from medcurate.sources.dicom.series import (
    Instance,
    Series,
    burned_in_reason,
    group_series,
    header_facts,
    slice_spacing,
    volume_order,
)
from medcurate.sources.reports import ReportIndex, scrub, split_sections
from medcurate.sources.slices import select_indices, slice_selection
from medcurate.sources.volumes import FORMATS as VOLUME_FORMATS
from medcurate.sources.volumes import encode_volume

PARAMS = {
    "volume",
    "slices",
    "slice_count",
    "window",
    "bit_depth",
    "dates",
    "burned_in",
    "reports",
    "license",
    "max_zip_members",
    "max_file_bytes",
}
REPORT_SECTIONS = ("findings", "impression")


class DicomSource(Source):
    """DICOM files and zip archives under a root, as de-identified 2D samples (slices and frames)."""

    kind = "dicom"
    version = "1"
    known_params = frozenset(PARAMS)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.key = require_key(self.kind, self.name, self.ctx)
        self.mode, self.count = slice_selection(self.params, self.kind)
        self.burned_in = self.params.get("burned_in", "quarantine")
        if self.burned_in not in ("quarantine", "allow"):
            raise ValueError(f"dicom source: burned_in must be quarantine or allow, got {self.burned_in!r}")
        self.pixel_options = pixels.PixelOptions(
            bit_depth=int(self.params.get("bit_depth", 8)), window=self.params.get("window")
        )
        self.deid_config = deid_mod.DeidConfig(key=self.key, dates=self.params.get("dates", "shift"))
        self.zip_limits = ZipLimits(
            max_members=int(self.params.get("max_zip_members", ZipLimits.max_members))
        )
        self.max_file_bytes = int(self.params.get("max_file_bytes", 4 * 2**30))
        self.volume_format = self.params.get("volume")
        if self.volume_format not in (None, *VOLUME_FORMATS):
            raise ValueError(
                f"dicom source: volume must be one of {VOLUME_FORMATS}, got {self.volume_format!r}"
            )
        self.root = Path(self.uri)
        self._reports: dict[str, Any] | None = None
        self._report_problems: list[InputItem] = []

    # -- listing ---------------------------------------------------------------------------------

    def _uri(self, location: Location) -> str:
        uri = pseudonymous_uri(self.kind, self.name, self.key, location.label())
        self.ctx.path_map.remember(
            uri, str(self.root / location.rel) + (f"!{location.member}" if location.member else "")
        )
        return uri

    def _problem(
        self, uri: str, reason: str, sha256: str | None = None, size: int | None = None
    ) -> InputItem:
        return InputItem(
            self.name, sha256_json(["problem", uri, sha256, reason]), uri, sha256, size, error=reason
        )

    def list_inputs(self) -> Iterator[InputItem]:
        if not self.root.is_dir():
            raise ValueError(f"dicom source {self.name!r}: {self.root} is not a folder")
        reports = self.report_index()
        instances: list[Instance] = []
        problems: list[InputItem] = []
        for found in walk(self.root):
            if is_dicomdir(found.location):
                continue
            uri = self._uri(found.location)
            if found.error:
                problems.append(self._problem(uri, found.error))
            elif found.location.rel.lower().endswith(ZIP_SUFFIXES):
                self._list_zip(found, uri, instances, problems)
            else:
                self._list_file(found, uri, instances, problems)
        for series in group_series(instances):
            yield self._series_item(series, reports)
        yield from sorted(problems + self._report_problems, key=lambda item: item.uri)

    def _list_file(
        self, found: Found, uri: str, instances: list[Instance], problems: list[InputItem]
    ) -> None:
        cached = self.ctx.file_facts.get(uri, found.size, found.mtime_ns)
        if cached is None:
            path = self.root / found.location.rel
            with path.open("rb") as stream:
                head = stream.read(PREAMBLE_END)
                facts = _not_dicom_facts(found.location.rel) if not is_dicom_header(head) else None
                if facts == {}:
                    data = b""  # skipped (a report, a README): its bytes are never needed
                elif found.size > self.max_file_bytes:
                    data, facts = b"", {"error": f"file_too_large: {found.size} bytes"}
                else:
                    data = head + stream.read()
                    facts = facts if facts is not None else header_facts(data, self.key)
            sha = sha256_bytes(data) if data else ""
            self.ctx.file_facts.put(uri, found.size, found.mtime_ns, sha, facts)
            cached = self.ctx.file_facts.get(uri, found.size, found.mtime_ns)
        facts = cached.facts
        if not facts or facts.get("directory"):
            return  # not DICOM (a report, a README) or a DICOMDIR index
        if facts.get("error"):
            problems.append(self._problem(uri, facts["error"], cached.sha256 or None, found.size))
            return
        instances.append(Instance(uri, cached.sha256, found.size, facts, found.location))

    def _list_zip(self, found: Found, uri: str, instances: list[Instance], problems: list[InputItem]) -> None:
        path = self.root / found.location.rel
        try:
            with zipfile.ZipFile(path) as archive:
                members = zip_members(archive, self.zip_limits)
                cached = self.ctx.file_facts.get(uri, found.size, found.mtime_ns)
                if cached is None:
                    listed = [self._zip_member_facts(archive, info) for info in members]
                    self.ctx.file_facts.put(uri, found.size, found.mtime_ns, "", {"members": listed})
                    cached = self.ctx.file_facts.get(uri, found.size, found.mtime_ns)
        except ZipRefused as exc:
            problems.append(self._problem(uri, str(exc), size=found.size))
            return
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            problems.append(self._problem(uri, f"archive_unreadable: {type(exc).__name__}", size=found.size))
            return
        for info, member in zip(members, cached.facts["members"], strict=True):
            location = Location(found.location.rel, info.filename)
            member_uri = self._uri(location)
            facts = member["facts"]
            if not facts or facts.get("directory"):
                continue
            if facts.get("error"):
                problems.append(self._problem(member_uri, facts["error"], member["sha256"], member["size"]))
            else:
                instances.append(Instance(member_uri, member["sha256"], member["size"], facts, location))

    def _zip_member_facts(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict[str, Any]:
        try:
            data = read_member(archive, info)
        except (zipfile.BadZipFile, OSError, EOFError, ZipRefused) as exc:
            return {
                "sha256": "",
                "size": info.file_size,
                "facts": {"error": f"archive_member_unreadable: {type(exc).__name__}"},
            }
        if is_dicom_header(data[:PREAMBLE_END]):
            facts = header_facts(data, self.key)
        else:
            facts = _not_dicom_facts(info.filename)
        return {"sha256": sha256_bytes(data), "size": info.file_size, "facts": facts}

    def report_index(self) -> dict[str, Any]:
        """Reports by pseudonymous accession number or study UID (raw text stays in memory only).

        Unusable report rows and conflicting duplicates become quarantined inputs of their own, so the
        ledger shows them instead of a report silently missing from its study.
        """
        if self._reports is None:
            self._reports = {}
            self._report_problems = []
            configured = self.params.get("reports")
            if configured:
                path = Path(configured) if Path(configured).is_absolute() else self.root / configured
                if not path.is_file():
                    raise ValueError(f"dicom source {self.name!r}: reports file {configured!r} not found")
                index = ReportIndex.load(path)
                for report in index:
                    for kind, value in sorted(report.keys.items()):
                        namespace = "accession" if kind == "accession" else "study"
                        self._reports.setdefault(
                            f"{namespace}:{pseudonym(self.key, namespace, value)}", report
                        )
                uri = f"{self.kind}://{self.name}/reports"
                for line, reason in index.problems:
                    self._report_problems.append(self._problem(f"{uri}#{line}", f"report_unusable: {reason}"))
                for dup in index.duplicates:
                    if not dup.same_content:
                        reason = f"report_conflict: row repeats the {dup.key_kind} of line {dup.first_line}"
                        self._report_problems.append(self._problem(f"{uri}#{dup.line}", reason))
        return self._reports

    def _series_item(self, series: Series, reports: dict[str, Any]) -> InputItem:
        first = series.instances[0].facts
        report = reports.get(f"accession:{first.get('accession')}") or reports.get(
            f"study:{first.get('study')}"
        )
        uri = f"{self.kind}://{self.name}/series/{series.series or series.instances[0].sha256}"
        files = sorted(i.sha256 for i in series.instances)
        key = sha256_json(["series", series.study, series.series, files, report.sha256 if report else None])
        payload = {"series": series, "report": report}
        return InputItem(
            self.name, key, uri, sha256_json(files), sum(i.size for i in series.instances), payload=payload
        )

    def details(self, item: InputItem) -> dict[str, Any] | None:
        series = item.payload.get("series")
        if series is None:
            return None
        report = item.payload.get("report")
        return {
            "files": len(series.instances),
            "modality": series.modality,
            "volume": series.is_volume(),
            "report_sha256": report.sha256 if report else None,
        }

    # -- reading ---------------------------------------------------------------------------------

    def read(self, item: InputItem) -> list[dict[str, Any]]:
        if item.error:
            return [self._quarantined(item.uri, item.sha256, item.size, item.error)]
        series: Series = item.payload["series"]
        if series.is_volume():
            ordered, problem = volume_order(series)
            if problem:
                return [self._quarantined(item.uri, item.sha256, item.size, problem)]
            chosen = select_indices(len(ordered), self.mode, self.count)
            spacing = slice_spacing(ordered)
            picks = [(ordered[i], i, len(ordered), spacing) for i in chosen]
        else:
            picks = [(inst, None, None, None) for inst in series.instances]
        records = []
        for inst, index, count, spacing in picks:
            records += self._read_instance(inst, item.payload.get("report"), index, count, spacing)
        if self.volume_format and series.is_volume():
            self._attach_volume(records, ordered, spacing)
        return records

    def _attach_volume(self, records: list[dict[str, Any]], ordered: list[Instance], spacing: float) -> None:
        """Give the exported slice nearest the middle the whole series as a 3D payload (in HU for CT).

        One record carries it so the volume is released once; a slice that cannot be decoded makes
        the volume incomplete, and the carrying record is quarantined with that reason.
        """
        carriers = [r for r in records if r["status"] == ACTIVE]
        if not carriers:
            return
        middle = len(ordered) // 2
        carrier = min(
            carriers, key=lambda r: (abs(r["scan"]["slice_index"] - middle), r["scan"]["slice_index"])
        )
        try:
            planes = []
            for inst in ordered:
                ds = pydicom.dcmread(BytesIO(self._load(inst)))
                (_, stored), *_ = pixels.iter_frames(ds, [0])
                planes.append(pixels.modality_values(ds, stored))
        except (pixels.PixelError, ChangedInput, OSError, ValueError) as exc:
            code = getattr(exc, "code", type(exc).__name__)
            index = records.index(carrier)
            records[index] = self._quarantined(
                carrier["source"]["uri"],
                carrier["source"]["sha256"],
                carrier["source"]["size"],
                f"volume_incomplete: a slice of the series failed ({code})",
                "volume",
            )
            return
        values = np.stack(planes)  # (slices, rows, columns), slices ordered along the normal
        first = ordered[0].facts
        row_mm, col_mm = first["spacing"]
        carrier["volume"] = encode_volume(
            values, (spacing, row_mm, col_mm), self.volume_format, _ras_affine(first, spacing), "modality_lut"
        )
        carrier["scan"]["selection"] += "+volume"

    def _quarantined(
        self, uri: str, sha256: str | None, size: int | None, reason: str, *extra: Any
    ) -> dict[str, Any]:
        return new_record(
            self.sample_id("quarantined", uri, sha256, *extra),
            status=QUARANTINED,
            status_reason=reason,
            status_stage=f"ingest.{self.kind}",
            source=self.source_group(uri, sha256, size),
        )

    def _load(self, inst: Instance) -> bytes:
        path = self.root / inst.location.rel
        if inst.location.member is None:
            data = path.read_bytes()
        else:
            with zipfile.ZipFile(path) as archive:
                data = read_member(archive, archive.getinfo(inst.location.member))
        if sha256_bytes(data) != inst.sha256:
            raise ChangedInput()
        return data

    def _read_instance(
        self, inst: Instance, report: Any, index: int | None, count: int | None, spacing: float | None
    ) -> list[dict[str, Any]]:
        def quarantine(reason: str, *extra: Any) -> list[dict[str, Any]]:
            return [self._quarantined(inst.uri, inst.sha256, inst.size, reason, *extra)]

        reason = burned_in_reason(inst.facts)
        if reason and self.burned_in == "quarantine":
            return quarantine(reason)
        try:
            data = self._load(inst)
        except ChangedInput:
            return quarantine("input_changed: the file changed between listing and reading")
        except (OSError, KeyError, zipfile.BadZipFile, ZipRefused) as exc:
            return quarantine(f"input_missing: {type(exc).__name__}")
        try:
            ds = pydicom.dcmread(BytesIO(data))
        except Exception as exc:
            return quarantine(f"dicom_unreadable: {type(exc).__name__}")
        result = deid_mod.deidentify(ds, self.deid_config)
        phi = result.phi  # the original values, collected by deidentify (a second pass cost 3 ms a slice)
        header = deid_mod.header_json(result.dataset)
        text = self._report_text(report, phi)
        try:
            frames = (
                [0] if index is not None else select_indices(pixels.frame_count(ds), self.mode, self.count)
            )
            rendered = [
                (f, pixels.render(ds, stored, self.pixel_options, frame=f))
                for f, stored in pixels.iter_frames(ds, frames)
            ]
        except pixels.PixelError as exc:
            return quarantine(f"{exc.code}: {exc.detail}")
        records = []
        for frame, image in rendered:
            record = self._record(inst, ds, result, header, image, frame, index, count, spacing, text)
            hits = phi_mod.scan_record({k: v for k, v in record.items() if k != "image"}, phi)
            if hits:
                where = ", ".join(sorted({f"{h.attribute} in {h.where}" for h in hits}))
                records += quarantine(f"phi_detected: {where}", frame)
            else:
                records.append(record)
        return records

    def _report_text(self, report: Any, phi: Any) -> dict[str, Any] | None:
        if report is None:
            return None
        known = [value for values in phi.by_attribute.values() for value in values]
        sections = report.sections or split_sections(report.text)
        scrubbed = {name: scrub(text, known) for name, text in sections.items() if text.strip()}
        method = next(iter(scrubbed.values())).method if scrubbed else None
        return {
            "sections": [{"name": name, "text": s.text} for name, s in sorted(scrubbed.items())],
            "findings": scrubbed["findings"].text if "findings" in scrubbed else None,
            "caption": " ".join(
                f"{name.capitalize()}: {scrubbed[name].text}" for name in REPORT_SECTIONS if name in scrubbed
            )
            or None,
            "method": method,
            "sha256": report.sha256,
        }

    def _record(
        self,
        inst: Instance,
        ds: pydicom.Dataset,
        result: Any,
        header: dict[str, Any],
        image: Any,
        frame: int,
        index: int | None,
        count: int | None,
        spacing: float | None,
        text: dict[str, Any] | None,
    ) -> dict[str, Any]:
        clean = result.dataset
        window = image.window
        thickness = clean.get("SliceThickness")
        selection = self.mode if self.mode != "even" else f"even:{self.count}"
        record = new_record(
            self.sample_id(inst.sha256, frame),
            source=self.source_group(inst.uri, inst.sha256, inst.size, license=self.params.get("license")),
            image={"bytes": image.png, "format": "png", "width": image.width, "height": image.height},
            subject={
                "patient_pseudonym": inst.facts.get("patient"),
                "study_pseudonym": inst.facts.get("study"),
                "sex": result.sex,
                "age_band": result.age_band,
            },
            medical={
                "modality": inst.facts.get("modality"),
                "body_part": str(clean.get("BodyPartExamined", "") or "").lower() or None,
                "view": str(clean.get("ViewPosition", "") or "") or None,
                "labels": [],
                "findings": text["findings"] if text else None,
            },
            text={
                "source_caption": text["caption"],
                "final_caption": text["caption"],
                "final_caption_author": f"report:{text['method']}" if text["caption"] else None,
                "authors": text_authors(
                    ("source_caption", f"report:{text['method']}" if text["caption"] else None),
                    ("final_caption", f"report:{text['method']}" if text["caption"] else None),
                ),
            }
            if text
            else {},
            scan={
                "series_pseudonym": inst.facts.get("series"),
                "site_pseudonym": result.site_pseudonym,
                "manufacturer": str(clean.get("Manufacturer", "") or "") or None,
                "model": str(clean.get("ManufacturerModelName", "") or "") or None,
                "transfer_syntax": inst.facts.get("transfer_syntax"),
                "photometric": image.photometric,
                "rows": inst.facts.get("rows"),
                "columns": inst.facts.get("columns"),
                "frame": frame,
                "slice_index": index,
                "slice_count": count if count is not None else inst.facts.get("frames"),
                "selection": selection,
                "pixel_spacing": inst.facts.get("spacing"),
                "slice_thickness": float(thickness) if thickness not in (None, "") else None,
                "slice_spacing": spacing,
                "window_center": window.center if window else None,
                "window_width": window.width if window else None,
                "window_function": window.function if window else None,
                "window_origin": window.origin if window else None,
                "deid_method": str(clean.get("DeidentificationMethod", "")) or None,
                "header_json": canonical_json(header),
                "report_sections": text["sections"] if text else [],
                "report_method": text["method"] if text else None,
                "findings": [],
            },
        )
        record[INGEST_DETAILS] = {"report_sha256": text["sha256"]} if text else {}
        return record


def _not_dicom_facts(name: str) -> dict[str, Any]:
    """Facts of a file without the DICOM preamble: skipped, unless its suffix claims it is DICOM."""
    suffix = PurePosixPath(name).suffix.lower()
    return {"error": "dicom_unreadable: no DICOM preamble"} if suffix in DICOM_SUFFIXES else {}


def _ras_affine(first: dict[str, Any], spacing: float) -> np.ndarray:
    """Array (slice, row, column) indices -> RAS+ mm, from the first slice's DICOM (LPS) geometry."""
    row_cos, col_cos = np.array(first["orientation"][:3]), np.array(first["orientation"][3:])
    row_mm, col_mm = first["spacing"]
    lps = np.eye(4)
    lps[:3, 0] = np.cross(row_cos, col_cos) * spacing  # slice axis, along the normal
    lps[:3, 1] = col_cos * row_mm  # down the rows
    lps[:3, 2] = row_cos * col_mm  # along a row
    lps[:3, 3] = first["position"]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


class ChangedInput(Exception):
    """A file's bytes no longer match the hash taken at listing."""
