"""Choose the caption a sample ships with: the author-side text or the model's generated caption.

Sources and templates put their own text in ``text.final_caption`` (author, report, label template);
a caption model writes ``text.generated_caption``. Which one a release uses is a policy, not a
property of either stage, so it is decided here, once, with the reason in lineage.

Policies: ``author`` (model text only where the source has none), ``model`` (model text wherever there
is some), ``both`` (the author caption stays, and the model caption becomes a sample of its own,
``<sample_id>_model``, same image, same split, lineage naming the sample it came from).

Model text is checked against the record's own labels first. When it contradicts them ("no pleural
effusion" on an image labeled with one) it is flagged in ``quality.flags`` and never ships: a sample
whose caption it would have been is filtered (``model_contradicts_labels``), and a sample that keeps
its author caption loses the model text.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from medcurate.schemas.record import to_batch
from medcurate.stages.base import Filter, Quarantine, RecordStage, StageContext, StageResult
from medcurate.text.negation import contradictions

PREFERENCES = ("author", "model", "both")
DERIVED_SUFFIX = "_model"
PARAMS = ("prefer", "check_labels")
CONTRADICTION_FLAG = "model_contradicts_labels"


def model_author(text: Mapping[str, Any]) -> dict[str, Any] | None:
    """The latest ``text.authors`` entry for ``generated_caption`` (who wrote it, with which prompt)."""
    entries = [a for a in text.get("authors") or [] if a.get("field") == "generated_caption"]
    return dict(entries[-1]) if entries else None


def add_flags(record: dict[str, Any], flags: list[str]) -> None:
    """Append ``flags`` to ``quality.flags`` (creating the group), each once."""
    quality = record["quality"] = dict(record.get("quality") or {})
    existing = list(quality.get("flags") or [])
    quality["flags"] = existing + [f for f in flags if f not in existing]


class CaptionPolicyStage(RecordStage):
    """Params: ``prefer`` (``author`` | ``model`` | ``both``; default author), ``check_labels`` (true)."""

    name = "caption_policy"
    known_params = PARAMS
    version = "2"  # 2: 'both'; contradicting model text is dropped even when the author caption stays

    def __init__(self, params: Mapping[str, Any] | None = None):
        super().__init__(dict(params or {}))
        prefer = self.params.get("prefer", "author")
        if prefer not in PREFERENCES:
            raise ValueError(f"caption_policy: prefer must be one of {list(PREFERENCES)}, got {prefer!r}")
        self.prefer: str = prefer
        self.check_labels = bool(self.params.get("check_labels", True))
        self.derives_records = prefer == "both"

    def process(self, batch: pa.RecordBatch, ctx: StageContext) -> StageResult:
        result = super().process(batch, ctx)
        if not self.derives_records:
            return result
        kept = result.kept.to_pylist()
        derived = [sibling for record in kept if (sibling := self._model_sibling(record, ctx))]
        return StageResult(to_batch(kept + derived), result.excluded)

    def _model_sibling(self, record: dict[str, Any], ctx: StageContext) -> dict[str, Any] | None:
        """The model caption as a sample of its own, when the record ships its author caption."""
        text = record["text"]
        if not (text.get("generated_caption") or "").strip() or (
            text.get("final_caption_author") or ""
        ).startswith("model:"):
            return None
        sibling = copy.deepcopy(record)
        sibling["sample_id"] = f"{record['sample_id']}{DERIVED_SUFFIX}"
        sibling["lineage"].pop()  # this stage's "kept" event of the parent
        _, details = self._use_model(sibling, sibling["text"], "both: model caption as its own sample")
        sibling["lineage"].append(self.event(ctx, "derived", derived_from=record["sample_id"], **details))
        return sibling

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        text = record["text"] = dict(record.get("text") or {})
        current_author = text.get("final_caption_author")
        if (current_author or "").startswith("model:"):
            return record, {"chosen": "model", "why": "final caption already written by a model"}
        has_author = bool((text.get("final_caption") or "").strip())
        has_model = bool((text.get("generated_caption") or "").strip())
        if not (has_author or has_model):
            raise Filter("no_caption", "neither an author caption nor a model caption")
        if not has_model:
            return record, {"chosen": "author", "author": current_author, "why": "no model caption"}
        if self.prefer in ("author", "both") and has_author:
            found = self._contradictions(record, text)
            if found:  # the author caption ships; the contradicting model text does not
                add_flags(record, [f"{CONTRADICTION_FLAG}:{reason}" for reason in found])
                text["generated_caption"] = None
                text["authors"] = [
                    a for a in text.get("authors") or [] if a.get("field") != "generated_caption"
                ]
                return record, {
                    "chosen": "author",
                    "why": "model caption contradicts labels",
                    "dropped": found,
                }
            return record, {"chosen": "author", "author": current_author, "why": f"prefer {self.prefer}"}
        why = "prefer model" if self.prefer == "model" else "no author caption"
        return self._use_model(record, text, why)

    def _use_model(
        self, record: dict[str, Any], text: dict[str, Any], why: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        entry = model_author(text)
        if entry is None:
            raise Quarantine("unattributed_model_caption", "generated_caption has no text.authors entry")
        provenance = {
            "model": entry["author"].removeprefix("model:"),
            "prompt_id": entry.get("prompt_id"),
            "prompt_sha256": entry.get("prompt_sha256"),
        }
        found = self._contradictions(record, text)
        if found:
            add_flags(record, [f"{CONTRADICTION_FLAG}:{reason}" for reason in found])
            raise Filter(CONTRADICTION_FLAG, "; ".join(found), contradictions=found, **provenance)
        replaced = text.get("final_caption_author")
        text["final_caption"] = text["generated_caption"]
        text["final_caption_author"] = entry["author"]
        author = {k: entry.get(k) for k in ("author", "prompt_id", "prompt_sha256")}
        authors = [a for a in text.get("authors") or [] if a.get("field") != "final_caption"]
        text["authors"] = [*authors, {"field": "final_caption", **author}]  # one entry per field
        return record, {"chosen": "model", "why": why, "replaced": replaced, **provenance}

    def _contradictions(self, record: dict[str, Any], text: dict[str, Any]) -> list[str]:
        if not self.check_labels:
            return []
        return contradictions(text["generated_caption"], (record.get("medical") or {}).get("labels") or [])


__all__ = ["CONTRADICTION_FLAG", "CaptionPolicyStage"]
