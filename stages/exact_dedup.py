"""Exact duplicates by the sha256 of decoded pixels, across all sources (a global stage).

Pixel hashes (not file hashes) catch a losslessly re-encoded copy. The copy that stays is the one with
the largest source image, then the smallest sample_id, so the choice is deterministic; the removed
sample's lineage names the kept one.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from medcurate.stages.base import Filter, GlobalStage, RecordStage, StageContext


class ExactDedupStage(GlobalStage):
    name = "exact_dedup"
    version = "1"
    fit_columns = ("image.pixel_sha256", "image.source_width", "image.source_height")

    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> dict[str, str]:
        """pixel_sha256 -> sample_id of the copy to keep."""
        best: dict[str, tuple[int, str]] = {}
        for row in table.to_pylist():
            digest = row["image.pixel_sha256"]
            if digest is None:
                continue
            area = (row["image.source_width"] or 0) * (row["image.source_height"] or 0)
            rank = (-area, row["sample_id"])
            if digest not in best or rank < best[digest]:
                best[digest] = rank
        return {digest: rank[1] for digest, rank in best.items()}

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
