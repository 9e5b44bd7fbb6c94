"""The shared loop of stages that ask a generation model about each image: cache, batch, validate.

For one Arrow batch: the records this stage applies to are rendered into requests; those whose cache
key is already in the lake take the cached answer; the rest go to the model in batches (OOM halves
the batch; invalid JSON is retried once), and each batch of new answers is written to the cache at
once. A record whose answer is still invalid is quarantined with the error and the raw output; the
rest get the answer written into them by the subclass (``absorb``) and one lineage event naming the
model, the prompt id and the prompt's sha256.

The cache key is (image sha256, prompt sha256, rendered messages, sampling parameters) inside a
namespace per model identity and task, so a changed caption context, prompt file, model or sampling
setting is computed anew and nothing else is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from medcurate.hashing import canonical_json, sha256_json
from medcurate.models.base import GenerationRequest, Sampling
from medcurate.models.prompting import GenerationPrompt, load_generation_prompt, record_variables
from medcurate.models.registry import load_generator
from medcurate.models.structured import RAW_LIMIT, Outcome, generate_structured
from medcurate.schemas.record import note_author, to_batch
from medcurate.stages.base import Quarantine, StageContext, StageResult, mark_excluded
from medcurate.stages.model_stage import ModelStage


@dataclass
class GenerationStage(ModelStage):
    """Subclasses set ``default_prompt`` and implement ``applies`` and ``absorb``."""

    default_prompt: ClassVar[str]
    whole_partition: ClassVar[bool] = True

    @property
    def prompt(self) -> GenerationPrompt:
        return load_generation_prompt(str(self.params.get("prompt", self.default_prompt)))

    @property
    def sampling(self) -> Sampling:
        overrides = dict(self.params.get("sampling") or {})
        return Sampling.from_mapping({**self.prompt.sampling.as_dict(), **overrides})

    def applies(self, record: dict[str, Any]) -> bool:
        """Whether this record needs an answer (others pass through unchanged)."""
        kinds = self.params.get("kinds")
        return not kinds or (record.get("source") or {}).get("kind") in kinds

    def absorb(self, record: dict[str, Any], output: Any) -> dict[str, Any]:
        """Write a validated answer into the record; return facts for its lineage event."""
        raise NotImplementedError

    def request(self, record: dict[str, Any]) -> GenerationRequest:
        system, user = self.prompt.render(record_variables(record))
        return GenerationRequest(
            prompt=user,
            image=(record.get("image") or {}).get("bytes"),
            system=system,
            schema=self.prompt.schema,
        )

    def cache_key(self, record: dict[str, Any], request: GenerationRequest, sampling: Sampling) -> str:
        return sha256_json(
            [
                (record.get("image") or {}).get("sha256"),
                self.prompt.sha256,
                request.system,
                request.prompt,
                sampling.as_dict(),
            ]
        )[:40]

    def author(self) -> str:
        return f"model:{self.require_model().ref}"

    def note_author(self, record: dict[str, Any], field: str) -> None:
        """Say in ``text.authors`` that this model, asked with this prompt, wrote ``field``."""
        record["text"] = dict(record.get("text") or {})
        note_author(record["text"], field, self.author(), self.prompt.ref, self.prompt.sha256)

    def process(self, batch: pa.RecordBatch, ctx: StageContext) -> StageResult:
        records = batch.to_pylist()
        sampling = self.sampling
        wanted = [(i, self.request(r)) for i, r in enumerate(records) if self.applies(r)]
        keys = [self.cache_key(records[i], request, sampling) for i, request in wanted]
        cache = self.cache(ctx, self.name)
        cached = cache.get_many(keys) if cache is not None else {}
        todo = [(key, request) for key, (_, request) in zip(keys, wanted, strict=True) if key not in cached]
        fresh = self._generate(todo, sampling, ctx, cache) if todo else {}
        answers = {**cached, **fresh}
        kept, excluded = [], []
        model_facts = {
            **self.lineage_model(),
            "prompt_id": self.prompt.ref,
            "prompt_sha256": self.prompt.sha256,
        }
        by_index = {i: key for (i, _), key in zip(wanted, keys, strict=True)}
        for i, record in enumerate(records):
            key = by_index.get(i)
            if key is None:
                record["lineage"].append(self.event(ctx, "kept", applied=False))
                kept.append(record)
                continue
            row = answers[key]
            facts = {
                "cached": key not in fresh,
                "attempts": row["attempts"],
                "output_tokens": row["output_tokens"],
            }
            if row["error"]:
                detail = f"{row['error']} (after {row['attempts']} attempts)"
                exc = Quarantine("invalid_model_output", detail, raw=row["raw"], **model_facts, **facts)
                mark_excluded(record, self, ctx, exc)
                excluded.append(record)
                continue
            details = self.absorb(record, json.loads(row["value"]))
            record["lineage"].append(self.event(ctx, "kept", **model_facts, **facts, **details))
            kept.append(record)
        return StageResult(to_batch(kept), to_batch(excluded))

    def _generate(
        self, todo: list[tuple[str, GenerationRequest]], sampling: Sampling, ctx: StageContext, cache
    ) -> dict[str, dict]:
        """Answer the cache misses batch by batch, writing each batch to the cache as it completes."""
        generator = load_generator(self.require_model())
        size = int(self.params.get("batch_size") or generator.batch_size)
        fresh: dict[str, dict] = {}
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            outcomes = generate_structured(generator, [r for _, r in chunk], sampling, size)
            rows = [
                _cache_row(key, outcome, ctx.run_id)
                for (key, _), outcome in zip(chunk, outcomes, strict=True)
            ]
            if cache is not None:
                cache.put(rows)
            fresh.update((row["key"], row) for row in rows)
        return fresh


def _cache_row(key: str, outcome: Outcome, run_id: str) -> dict[str, Any]:
    return {
        "key": key,
        "value": None if outcome.error else canonical_json(outcome.output),
        "error": outcome.error,
        "raw": outcome.raw[:RAW_LIMIT],
        "attempts": outcome.attempts,
        "prompt_tokens": outcome.prompt_tokens,
        "output_tokens": outcome.output_tokens,
        "run_id": run_id,
    }
