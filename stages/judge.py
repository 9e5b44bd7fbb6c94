"""Judge each image and its final caption on a rubric with the ``judge`` model.

Writes scores ``judge.consistency``, ``judge.relevance``, ``judge.specificity`` (1-5) and their mean
``judge.quality`` (each naming the model), ``quality.is_medical``, ``quality.rationale`` and
``hallucination:<flag>`` entries in ``quality.flags``. It only measures; ``quality_filter`` decides.
Run it after ``caption_policy`` so it judges the caption that ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medcurate.schemas.record import set_score
from medcurate.stages.generation import GenerationStage

RUBRIC = {
    "judge.consistency": "image_text_consistency",
    "judge.relevance": "medical_relevance",
    "judge.specificity": "specificity",
}


@dataclass
class JudgeStage(GenerationStage):
    name = "judge"
    version = "1"
    role = "judge"
    default_prompt = "judge.pair"

    def applies(self, record: dict[str, Any]) -> bool:
        return bool((record.get("text") or {}).get("final_caption")) and super().applies(record)

    def absorb(self, record: dict[str, Any], output: Any) -> dict[str, Any]:
        model = self.require_model().ref
        for score, field in RUBRIC.items():
            set_score(record, score, output[field], model)
        mean = sum(output[field] for field in RUBRIC.values()) / len(RUBRIC)
        set_score(record, "judge.quality", round(mean, 3), model)
        quality = dict(record.get("quality") or {})
        flags = [f for f in quality.get("flags") or [] if not f.startswith("hallucination:")]
        flags += [f"hallucination:{flag}" for flag in sorted(set(output["hallucination_flags"]))]
        quality.update(
            is_medical=output["is_medical_image"], rationale=output["rationale"].strip(), flags=flags
        )
        record["quality"] = quality
        return {"quality": round(mean, 3), "flags": len(output["hallucination_flags"])}
