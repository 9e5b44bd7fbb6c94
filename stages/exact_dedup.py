"""Exact duplicates by the sha256 of decoded pixels, across all sources (a global stage).

Pixel hashes (not file hashes) catch a losslessly re-encoded copy and the same image shipped by two
sources (one figure in two PMC articles, a dataset re-publishing another's images). The copy that stays
is chosen by the shared keep policy (``medcurate.dedup.keep``); the removed sample's lineage names the
kept one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from medcurate.dedup.keep import DEFAULT_KEEP, DEFAULT_QUALITY_SCORE, KEEP_COLUMNS, check_keep, kept_members
from medcurate.dedup.released import with_released
from medcurate.stages.base import Filter, GlobalStage, RecordStage, StageContext


class ExactDedupStage(GlobalStage):
    name = "exact_dedup"
    version = "2"  # 2: the shared keep policy (license, resolution, oldest, ...)
    known_params = ("keep", "quality_score")
    fit_columns = ("image.pixel_sha256", *KEEP_COLUMNS)

    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> dict[str, str]:
        """pixel_sha256 -> sample_id of the copy to keep, for digests held by more than one record."""
        keep = check_keep(self.params.get("keep", DEFAULT_KEEP), self.name)
        cols = {name: table.column(name).to_pylist() for name in ("sample_id", *self.fit_columns)}
        with_released(cols, ctx)
        digests = cols["image.pixel_sha256"]
        rows = np.array([i for i, d in enumerate(digests) if d is not None], dtype=np.int64)
        if not len(rows):
            return {}
        _, labels, counts = np.unique([digests[i] for i in rows], return_inverse=True, return_counts=True)
        shared = counts[labels] > 1
        rows, labels = rows[shared], labels[shared]
        quality = self.params.get("quality_score", DEFAULT_QUALITY_SCORE)
        kept = kept_members(cols, rows, labels, keep, quality)
        return {
            digests[row]: cols["sample_id"][k] for row, k in zip(rows.tolist(), kept.tolist(), strict=True)
        }

    def bind(self, state: dict[str, str]) -> ApplyExactDedup:
        return ApplyExactDedup(self.params, keep=state)


class ApplyExactDedup(RecordStage):
    name = ExactDedupStage.name
    version = ExactDedupStage.version

    def __init__(self, params: dict[str, Any], keep: dict[str, str]):
        super().__init__(params)
        self.keep = keep

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        digest = record["image"]["pixel_sha256"]
        kept = self.keep.get(digest, record["sample_id"])
        record["dedup"] = {**(record["dedup"] or {}), "exact_group": digest}
        if kept != record["sample_id"]:
            record["dedup"].update(duplicate_of=kept, method="exact_pixels", distance=0.0)
            raise Filter(
                "exact_duplicate", f"same pixels as {kept}", duplicate_of=kept, method="exact_pixels"
            )
        return record, {}
