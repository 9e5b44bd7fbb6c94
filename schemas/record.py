"""The sample record: one row per image-text sample, as a versioned Arrow schema.

Every stage boundary validates batches against ``RECORD_SCHEMA`` so that a stage emitting a wrong
schema fails loudly at the boundary instead of corrupting a release downstream. Only types that survive
a round trip through Spark's Arrow conversion are used (no unsigned integers, no timestamps).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

# 1.1: article, figure (PMC); 1.2: scan, volume (DICOM, NIfTI); 1.3: text authors, quality;
# 1.4: 256-bit phash and perceptual hashes of flipped/rotated views (image.phash_fine, phash_variants)
SCHEMA_VERSION = "1.4"

#: Values of ``status``: where a record stands after the last stage that touched it.
ACTIVE, FILTERED, QUARANTINED = "active", "filtered", "quarantined"
STATUSES = (ACTIVE, FILTERED, QUARANTINED)

LABEL = pa.struct([("name", pa.string()), ("value", pa.string())])

LINEAGE_EVENT = pa.struct(
    [
        ("stage", pa.string()),
        ("stage_version", pa.string()),
        ("config_hash", pa.string()),
        ("run_id", pa.string()),
        ("model", pa.string()),
        ("prompt_id", pa.string()),
        ("prompt_sha256", pa.string()),
        ("decision", pa.string()),
        ("reason", pa.string()),
        ("details", pa.string()),  # canonical JSON of stage-specific facts (sizes, distances, ...)
    ]
)

SOURCE = pa.struct(
    [
        ("kind", pa.string()),  # labeled, pmc, dicom, nifti
        ("dataset", pa.string()),
        ("uri", pa.string()),  # the exact file the image bytes came from
        ("member", pa.string()),  # member inside an archive, if any
        ("sha256", pa.string()),  # of the source file's bytes
        ("size", pa.int64()),
        ("input_key", pa.string()),  # catalogue key of the input this sample was born from
        ("manifest_uri", pa.string()),  # the index (CSV, file list) that named this sample
        ("manifest_line", pa.int64()),
        ("license", pa.string()),
        ("license_url", pa.string()),
        ("citation", pa.string()),
    ]
)

#: The perceptual hash of one transformed view of the image, for flip/rotation-aware near dedup.
PHASH_VARIANT = pa.struct([("transform", pa.string()), ("phash", pa.string()), ("phash_fine", pa.string())])

IMAGE = pa.struct(
    [
        ("bytes", pa.binary()),
        ("sha256", pa.string()),  # of the encoded bytes above
        ("pixel_sha256", pa.string()),  # of the decoded pixels: catches re-encoded copies
        ("format", pa.string()),  # png, jpeg
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mode", pa.string()),
        ("bits", pa.int32()),
        ("phash", pa.string()),  # 64-bit DCT perceptual hash, 16 hex digits
        ("phash_fine", pa.string()),  # 256-bit DCT perceptual hash, 64 hex digits: verifies phash matches
        ("phash_variants", pa.list_(PHASH_VARIANT)),  # of transformed views (hflip, rot90, ...)
        ("source_format", pa.string()),
        ("source_width", pa.int32()),
        ("source_height", pa.int32()),
        ("source_mode", pa.string()),
    ]
)

SUBJECT = pa.struct(
    [
        ("patient_pseudonym", pa.string()),  # keyed HMAC, never the raw identifier
        ("study_pseudonym", pa.string()),
        ("sex", pa.string()),
        ("age_band", pa.string()),
    ]
)

MEDICAL = pa.struct(
    [
        ("modality", pa.string()),
        ("body_part", pa.string()),
        ("view", pa.string()),
        ("labels", pa.list_(LABEL)),  # value: positive, negative, uncertain
        ("class_name", pa.string()),  # single-label datasets only
        ("class_index", pa.int32()),
        ("findings", pa.string()),
    ]
)

PANEL = pa.struct([("label", pa.string()), ("text", pa.string())])

#: Who wrote one text field: "author" (the source's own words), "report:<method>", "template:<id>@<v>",
#: or "model:<name>@<revision>" with the prompt that asked for it.
TEXT_AUTHOR = pa.struct(
    [
        ("field", pa.string()),
        ("author", pa.string()),
        ("prompt_id", pa.string()),  # id@version, for templates and model prompts
        ("prompt_sha256", pa.string()),
    ]
)

TEXT = pa.struct(
    [
        ("source_caption", pa.string()),
        ("citing_context", pa.string()),
        ("label_text", pa.string()),
        ("generated_caption", pa.string()),
        ("final_caption", pa.string()),
        ("final_caption_author", pa.string()),  # e.g. "template:labels.chest_xray@1", "author", "model:..."
        ("paraphrases", pa.list_(pa.string())),  # model paraphrases of the label text (UniMed style)
        ("panel_captions", pa.list_(PANEL)),  # model-rewritten, self-contained caption per panel
        ("authors", pa.list_(TEXT_AUTHOR)),  # one entry per text field written, in the order written
    ]
)

#: What quality stages concluded beyond numeric scores (those live in ``scores``).
QUALITY = pa.struct(
    [
        ("language", pa.string()),  # ISO 639-1 code of the final caption
        ("language_confidence", pa.float64()),
        ("is_medical", pa.bool_()),  # the judge's verdict on the image
        ("rationale", pa.string()),  # the judge's short reason
        ("flags", pa.list_(pa.string())),  # hallucination flags, label contradictions, ...
    ]
)

ARTICLE = pa.struct(
    [
        ("pmcid", pa.string()),
        ("pmid", pa.string()),
        ("doi", pa.string()),
        ("title", pa.string()),
        ("journal", pa.string()),
        ("year", pa.int32()),
        ("article_type", pa.string()),
        ("keywords", pa.list_(pa.string())),
        ("last_updated", pa.string()),  # as the source index states it (PMC file list)
    ]
)

CITING_SENTENCE = pa.struct([("section", pa.string()), ("text", pa.string())])

FIGURE = pa.struct(
    [
        ("id", pa.string()),  # the figure's id in its document (e.g. JATS fig/@id)
        ("label", pa.string()),  # "Figure 3"
        ("title", pa.string()),  # caption title
        ("graphic", pa.string()),  # the reference the document makes to the image (xlink:href)
        ("container", pa.string()),  # body, fig-group, floats-group, boxed-text, ...
        ("compound", pa.bool_()),  # multi-panel, per the caption
        ("panels", pa.list_(PANEL)),  # per-panel sub-captions, in order
        ("citing", pa.list_(CITING_SENTENCE)),  # sentences of the text that cite this figure
        ("kind", pa.string()),  # medical_image, chart, diagram, table_image, gel, equipment_photo, photo
        ("kind_confidence", pa.float64()),
        ("kind_method", pa.string()),  # the classifier that decided, e.g. heuristic-v1
    ]
)

FINDING = pa.struct(
    [
        ("label", pa.int32()),  # value in the label volume
        ("name", pa.string()),
        ("volume_ml", pa.float64()),
        ("max_axial_diameter_mm", pa.float64()),
        ("slice_first", pa.int32()),  # canonical (RAS) axial indices, inclusive
        ("slice_last", pa.int32()),
        ("largest_slice", pa.int32()),
        ("laterality", pa.string()),  # right, left, midline, bilateral
        ("text", pa.string()),  # the finding as rendered by the findings template
    ]
)

REPORT_SECTION = pa.struct([("name", pa.string()), ("text", pa.string())])

SCAN = pa.struct(
    [
        ("series_pseudonym", pa.string()),  # keyed HMAC of the series (DICOM) or volume (NIfTI)
        ("site_pseudonym", pa.string()),  # keyed HMAC of the institution, for fairness audits
        ("manufacturer", pa.string()),
        ("model", pa.string()),
        ("transfer_syntax", pa.string()),
        ("photometric", pa.string()),
        ("rows", pa.int32()),
        ("columns", pa.int32()),
        ("frame", pa.int32()),  # frame index inside a multi-frame file
        ("slice_index", pa.int32()),  # position of this slice in its ordered volume
        ("slice_count", pa.int32()),
        ("selection", pa.string()),  # why this slice was exported: middle, even:5, all, largest:<label>
        ("pixel_spacing", pa.list_(pa.float64())),  # mm, (row, column)
        ("slice_thickness", pa.float64()),
        ("slice_spacing", pa.float64()),  # mm between slice centres
        ("orientation", pa.string()),  # NIfTI axis codes of the file, e.g. LPS
        ("window_center", pa.float64()),
        ("window_width", pa.float64()),
        ("window_function", pa.string()),
        ("window_origin", pa.string()),  # header, voi_lut, preset:<name>, percentile:<lo>-<hi>
        ("deid_method", pa.string()),
        ("header_json", pa.string()),  # the de-identified DICOM header (DICOM JSON model, no bulk data)
        ("report_sections", pa.list_(REPORT_SECTION)),  # scrubbed report, by section
        ("report_method", pa.string()),  # how the report was scrubbed, e.g. regex-v1
        ("findings", pa.list_(FINDING)),  # per label of a paired label volume (NIfTI)
    ]
)

VOLUME = pa.struct(
    [
        ("bytes", pa.binary()),  # the 3D payload: .npy or .nii.gz
        ("format", pa.string()),  # npy, nii.gz
        ("sha256", pa.string()),  # of the bytes above
        ("shape", pa.list_(pa.int32())),  # npy: (slices, rows, columns); nii.gz: RAS canonical (x, y, z)
        ("spacing", pa.list_(pa.float64())),  # mm, in the order of ``shape``
        ("dtype", pa.string()),
        ("values", pa.string()),  # what the numbers are: HU, modality_lut, stored
    ]
)

SCORE = pa.struct([("name", pa.string()), ("value", pa.float64()), ("model", pa.string())])

DEDUP = pa.struct(
    [
        ("exact_group", pa.string()),
        ("near_group", pa.string()),
        ("semantic_group", pa.string()),
        ("duplicate_of", pa.string()),
        ("method", pa.string()),
        ("distance", pa.float64()),
    ]
)

RECORD_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("schema_version", pa.string()),
        ("status", pa.string()),
        ("status_reason", pa.string()),
        ("status_stage", pa.string()),
        ("source", SOURCE),
        ("image", IMAGE),
        ("subject", SUBJECT),
        ("medical", MEDICAL),
        ("text", TEXT),
        ("article", ARTICLE),
        ("figure", FIGURE),
        ("scan", SCAN),
        ("volume", VOLUME),  # optional 3D payload beside the 2D image (clinical sources)
        ("scores", pa.list_(SCORE)),
        ("quality", QUALITY),
        ("dedup", DEDUP),
        ("split", pa.string()),
        ("lineage", pa.list_(LINEAGE_EVENT)),
    ],
    metadata={"medcurate.schema_version": SCHEMA_VERSION},
)


class SchemaMismatch(TypeError):
    """A batch does not have the record schema: the stage that produced it is broken."""


def _diff(actual: pa.Schema, expected: pa.Schema) -> str:
    lines = []
    names = {f.name for f in expected}
    for field in expected:
        if field.name not in actual.names:
            lines.append(f"missing field {field.name!r}")
        elif not actual.field(field.name).type.equals(field.type):
            lines.append(f"{field.name!r}: got {actual.field(field.name).type}, expected {field.type}")
    lines += [f"unexpected field {name!r}" for name in actual.names if name not in names]
    if not lines and actual.names != expected.names:
        lines.append(f"field order {actual.names} != {expected.names}")
    return "; ".join(lines)


def validate_batch(batch: pa.RecordBatch | pa.Table, where: str) -> None:
    """Raise ``SchemaMismatch`` naming ``where`` unless ``batch`` is a well-formed record batch."""
    if not batch.schema.equals(RECORD_SCHEMA, check_metadata=False):
        raise SchemaMismatch(f"{where}: wrong record schema: {_diff(batch.schema, RECORD_SCHEMA)}")
    ids = batch.column("sample_id")
    if ids.null_count:
        raise SchemaMismatch(f"{where}: {ids.null_count} record(s) without sample_id")
    for sample_id in ids.to_pylist():
        if "." in sample_id:
            raise SchemaMismatch(f"{where}: sample_id {sample_id!r} contains a dot (breaks WebDataset keys)")
    bad = set(batch.column("status").to_pylist()) - set(STATUSES)
    if bad:
        raise SchemaMismatch(f"{where}: unknown status values {sorted(map(str, bad))}")


def new_record(sample_id: str, **groups: Any) -> dict[str, Any]:
    """A record dict with every group present (missing values null), status active."""
    record: dict[str, Any] = {
        "sample_id": sample_id,
        "schema_version": SCHEMA_VERSION,
        "status": ACTIVE,
        "status_reason": None,
        "status_stage": None,
        "source": {},
        "image": {},
        "subject": {},
        "medical": {"labels": []},
        "text": {},
        "article": None,  # only sources that read documents (PMC) fill these two
        "figure": None,
        "scan": None,  # only clinical sources (DICOM, NIfTI) fill this
        "volume": None,  # and this, when asked for a 3D payload
        "scores": [],
        "quality": None,  # written by quality stages
        "dedup": {},
        "split": None,
        "lineage": [],
    }
    record.update(groups)
    return record


def lineage_event(
    stage: str,
    stage_version: str,
    config_hash: str,
    run_id: str,
    decision: str,
    reason: str | None = None,
    *,
    model: str | None = None,
    prompt_id: str | None = None,
    prompt_sha256: str | None = None,
    details: str | None = None,
) -> dict[str, Any]:
    """One lineage event; the only place its fields are spelled out."""
    return {
        "stage": stage,
        "stage_version": stage_version,
        "config_hash": config_hash,
        "run_id": run_id,
        "model": model,
        "prompt_id": prompt_id,
        "prompt_sha256": prompt_sha256,
        "decision": decision,
        "reason": reason,
        "details": details,
    }


def text_authors(
    *entries: tuple[str, str | None, str | None, str | None] | tuple[str, str | None],
) -> list[dict[str, Any]]:
    """``text.authors`` from ``(field, author[, prompt_id, prompt_sha256])``; skips authorless ones."""
    authors = []
    for field, author, *prompt in entries:
        if author:
            prompt_id, prompt_sha256 = (list(prompt) + [None, None])[:2]
            authors.append(
                {"field": field, "author": author, "prompt_id": prompt_id, "prompt_sha256": prompt_sha256}
            )
    return authors


def note_author(
    text: dict[str, Any],
    field: str,
    author: str,
    prompt_id: str | None = None,
    prompt_sha256: str | None = None,
) -> None:
    """Record in ``text["authors"]`` who wrote ``field`` (replacing an earlier entry for it)."""
    kept = [entry for entry in text.get("authors") or [] if entry["field"] != field]
    text["authors"] = [*kept, *text_authors((field, author, prompt_id, prompt_sha256))]


def set_score(record: dict[str, Any], name: str, value: float, model: str | None = None) -> None:
    """Write score ``name`` (replacing an earlier one, so stages stay idempotent); scores sorted by name."""
    scores = [s for s in record.get("scores") or [] if s["name"] != name]
    scores.append({"name": name, "value": float(value), "model": model})
    record["scores"] = sorted(scores, key=lambda s: s["name"])


def get_score(record: Mapping[str, Any], name: str) -> float | None:
    """The value of score ``name``, or None when no stage wrote it."""
    values = [s["value"] for s in record.get("scores") or [] if s["name"] == name]
    return values[-1] if values else None


def to_batch(records: Iterable[Mapping[str, Any]]) -> pa.RecordBatch:
    """Records (dicts) to a validated RecordBatch with the record schema."""
    return pa.RecordBatch.from_pylist(list(records), schema=RECORD_SCHEMA)


def empty_table() -> pa.Table:
    return RECORD_SCHEMA.empty_table()
