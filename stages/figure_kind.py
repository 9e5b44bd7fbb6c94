"""Say what a document figure shows: a medical image (and which modality) or a chart, diagram, gel...

Literature figures are mostly not medical images; a vision-language corpus for radiology or pathology
must tell them apart before anything else. The decision comes from a named classifier (caption cues
plus cheap image statistics by default; a model backend can register under another name) and is
stored with its confidence and method, so filters (``allow: {figure.kind: [medical_image]}``) and
auditors both see why. Records that are not figures (labeled datasets, scans) pass unchanged.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from PIL import Image

from medcurate.sources.pmc.figure_kind import CLASSIFIERS, image_stats
from medcurate.stages.base import RecordStage, StageContext

THUMBNAIL_SIDE = 256


class FigureKindStage(RecordStage):
    """Params: ``classifier`` (default ``heuristic-v1``)."""

    name = "figure_kind"
    version = "1"

    def __init__(self, params: dict[str, Any] | None = None):
        super().__init__(dict(params or {}))
        name = self.params.get("classifier", "heuristic-v1")
        if name not in CLASSIFIERS:
            raise ValueError(f"figure_kind: unknown classifier {name!r}; known: {sorted(CLASSIFIERS)}")
        self._classifier = CLASSIFIERS[name]()

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        figure = record.get("figure")
        if figure is None:
            return record, {"skipped": "not a document figure"}
        stats = None
        data = (record.get("image") or {}).get("bytes")
        if data:
            with Image.open(BytesIO(data)) as im:
                im.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))  # JPEG: decode at reduced size
                thumb = im.convert("RGB")
                thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                stats = image_stats(thumb)
        caption = (record.get("text") or {}).get("source_caption") or ""
        kind = self._classifier.classify(caption, stats)
        figure.update(kind=kind.kind, kind_confidence=kind.confidence, kind_method=kind.method)
        medical = record["medical"]
        if kind.modality and not medical.get("modality"):
            medical["modality"] = kind.modality
        return record, {"kind": kind.kind, "modality": kind.modality, "evidence": list(kind.evidence)}
