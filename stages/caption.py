"""Caption each image from its context with the ``caption`` model (MedTrinity / MedDr style).

The prompt (``caption.context``) is diagnosis-guided when the record has labels: ground-truth
positives are to be described, negatives never stated as present. The answer goes to
``text.generated_caption``; whether it becomes the final caption is ``caption_policy``'s decision.
Params: ``prompt`` (ref), ``sampling`` (overrides), ``batch_size``, ``kinds`` (source kinds to caption;
all by default), ``role`` (default ``caption``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medcurate.stages.generation import GenerationStage


@dataclass
class CaptionStage(GenerationStage):
    name = "caption"
    version = "1"
    role = "caption"
    default_prompt = "caption.context"

    def absorb(self, record: dict[str, Any], output: Any) -> dict[str, Any]:
        caption = (output if isinstance(output, str) else output["caption"]).strip()  # free text: a string
        if not caption:  # valid JSON around nothing: no caption, and caption_policy keeps the author's
            return {"empty_answer": True}
        record["text"] = {**(record.get("text") or {}), "generated_caption": caption}
        self.note_author(record, "generated_caption")
        return {"caption_chars": len(caption)}
