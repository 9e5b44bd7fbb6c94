"""How many samples share a caption (after normalisation): boilerplate and template text show up here.

A caption repeated across thousands of images ("Chest X-ray.", "Figure 2") teaches a model nothing
about the image it sits beside. Counting needs the whole dataset, so this is a global stage: ``fit``
counts normalised captions over all active records, and the bound map stage writes the count as the
score ``caption.repeats`` (1 = unique), for ``quality_filter`` to threshold (``max``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from medcurate.schemas.record import set_score
from medcurate.stages.base import GlobalStage, RecordStage, StageContext

SCORE = "caption.repeats"
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_DIGITS = re.compile(r"\d+")


def normalise_caption(text: str | None) -> str:
    """Lower-case, punctuation removed, each run of digits -> "0", whitespace collapsed.

    Digit runs (not single digits) become one "0" so "Figure 12" and "Figure 3" count as one caption.
    """
    text = _PUNCTUATION.sub("", (text or "").lower())
    return " ".join(_DIGITS.sub("0", text).split())


class CaptionRepeatsStage(GlobalStage):
    """No params."""

    name = "caption_repeats"
    version = "1"
    fit_columns = ("text.final_caption",)

    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> dict[str, int]:
        """Normalised caption -> number of records with it; only captions seen more than once."""
        captions = (row["text.final_caption"] for row in table.to_pylist())  # an empty run has no columns
        counts = Counter(key for key in map(normalise_caption, captions) if key)
        return {key: n for key, n in counts.items() if n > 1}

    def bind(self, state: dict[str, int]) -> ApplyCaptionRepeats:
        return ApplyCaptionRepeats(self.params, counts=state)


class ApplyCaptionRepeats(RecordStage):
    name = CaptionRepeatsStage.name
    version = CaptionRepeatsStage.version

    def __init__(self, params: Mapping[str, Any], counts: dict[str, int]):
        super().__init__(params)
        self.counts = counts

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        key = normalise_caption((record.get("text") or {}).get("final_caption"))
        if not key:
            return record, {"skipped": "no caption"}
        repeats = self.counts.get(key, 1)
        set_score(record, SCORE, repeats)
        return record, {"repeats": repeats}


__all__ = ["CaptionRepeatsStage", "normalise_caption"]
