"""Rewrite a compound PMC figure's caption into one self-contained caption per panel.

Applies to figures whose caption was split into panels (``figure.panels``, at least two). The answer
goes to ``text.panel_captions``; a panel label the model invents (not among the figure's panels) is
dropped, so every rewritten caption belongs to a panel the article has. Params as ``caption``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medcurate.stages.generation import GenerationStage


@dataclass
class PanelRewriteStage(GenerationStage):
    name = "panel_rewrite"
    version = "1"
    role = "caption"
    default_prompt = "caption.panels"

    def applies(self, record: dict[str, Any]) -> bool:
        panels = (record.get("figure") or {}).get("panels") or []
        return len(panels) >= 2 and super().applies(record)

    def absorb(self, record: dict[str, Any], output: Any) -> dict[str, Any]:
        known = {p["label"].strip("() ").lower(): p["label"] for p in record["figure"]["panels"]}
        rewritten, invented = [], []
        for panel in output["panels"]:
            label = panel["label"].strip("() ").lower()
            if label in known and all(p["label"] != known[label] for p in rewritten):
                rewritten.append({"label": known[label], "text": panel["caption"].strip()})
            else:
                invented.append(panel["label"])
        record["text"] = {**(record.get("text") or {}), "panel_captions": rewritten}
        self.note_author(record, "panel_captions")
        return {"panels": len(rewritten), "dropped_labels": invented}
