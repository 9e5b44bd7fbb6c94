"""Deterministic, group-aware train/val/test assignment.

The split of a sample depends only on its group (patient pseudonym, else study pseudonym, else its
article, else the sample itself) and a seed, never on which other samples exist: new data never moves
an old sample to another split, and one patient (or one article) never straddles train and test.
"""

from __future__ import annotations

from typing import Any

from medcurate.hashing import sha256_text
from medcurate.stages.base import RecordStage, StageContext

DEFAULT_RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}


class SplitStage(RecordStage):
    name = "split"
    version = "2"  # 2: articles group their figures

    def _ratios(self) -> list[tuple[str, float]]:
        ratios = dict(self.params.get("ratios", DEFAULT_RATIOS))
        total = sum(ratios.values())
        if total <= 0 or any(v < 0 for v in ratios.values()):
            raise ValueError(f"split ratios must be non-negative and sum above 0: {ratios}")
        return [(name, value / total) for name, value in ratios.items()]

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        subject = record["subject"] or {}
        article = record.get("article") or {}
        # Figures of one article share text and authors: like one patient's images, keep them together.
        candidates = [
            ("patient", subject.get("patient_pseudonym")),
            ("study", subject.get("study_pseudonym")),
            ("article", article.get("pmcid") and f"article:{article['pmcid']}"),
            ("sample", record["sample_id"]),
        ]
        kind, group = next((kind, value) for kind, value in candidates if value)
        seed = str(self.params.get("seed", "medcurate"))
        position = int(sha256_text(f"{seed}\x1f{group}")[:15], 16) / float(1 << 60)
        cumulative = 0.0
        ratios = self._ratios()
        record["split"] = ratios[-1][0]
        for name, share in ratios:
            cumulative += share
            if position < cumulative:
                record["split"] = name
                break
        return record, {"group": kind}
