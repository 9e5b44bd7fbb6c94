"""Paraphrase a record's label text into varied natural captions (UniMed style).

Applies to records with ``text.label_text`` (labeled datasets). The answers go to ``text.paraphrases``;
each must keep the labels' polarity, so a paraphrase that names a negative label as present (or
denies a positive one) is dropped and counted, using the same negation rules as ``caption_policy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medcurate.stages.generation import GenerationStage


@dataclass
class ParaphraseStage(GenerationStage):
    name = "paraphrase"
    version = "1"
    role = "caption"
    default_prompt = "caption.paraphrase"

    def applies(self, record: dict[str, Any]) -> bool:
        return bool((record.get("text") or {}).get("label_text")) and super().applies(record)

    def absorb(self, record: dict[str, Any], output: Any) -> dict[str, Any]:
        from medcurate.text.negation import contradictions

        labels = (record.get("medical") or {}).get("labels") or []
        kept, dropped = [], 0
        for text in output["captions"]:
            text = text.strip()
            if contradictions(text, labels) or text in kept:
                dropped += 1
            else:
                kept.append(text)
        record["text"] = {**(record.get("text") or {}), "paraphrases": kept}
        self.note_author(record, "paraphrases")
        return {"paraphrases": len(kept), "dropped": dropped}
