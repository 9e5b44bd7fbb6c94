"""Structured generation: batching, OOM back-off, JSON validation and one retry, for every backend.

Invalid output (not JSON, or JSON that breaks the prompt's schema) is retried once with the next seed,
then reported with the raw text so the stage can quarantine the sample and an auditor can see what the
model said. CUDA running out of memory halves the batch and goes on; a single request that still does
not fit is a real error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import jsonschema

from medcurate.models.base import Generation, GenerationRequest, Generator, OutOfMemory, Sampling

#: How much of an invalid answer is kept for inspection.
RAW_LIMIT = 2000


@dataclass(frozen=True)
class Outcome:
    """The answer to one request: parsed output, or the error and raw text that explain its absence."""

    output: Any | None
    raw: str
    error: str | None
    attempts: int
    prompt_tokens: int = 0
    output_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_output(text: str, schema: Any | None) -> tuple[Any | None, str | None]:
    """``(value, None)`` when ``text`` satisfies ``schema`` (any text when none), else ``(None, why)``."""
    if schema is None:
        stripped = text.strip()
        return (stripped, None) if stripped else (None, "empty_output: the model returned no text")
    try:
        value = json.loads(_strip_fence(text))
    except json.JSONDecodeError as exc:
        return None, f"invalid_json: {exc.msg} at position {exc.pos}"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "(root)"
        return None, f"schema_mismatch: {where}: {exc.message[:200]}"
    return value, None


def _strip_fence(text: str) -> str:
    """Some chat models wrap JSON in a Markdown fence even when asked not to."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        body = stripped[3:-3]
        return body.split("\n", 1)[1] if body.lower().startswith("json") else body
    return stripped


def generate_batched(
    generator: Generator,
    requests: Sequence[GenerationRequest],
    sampling: Sampling,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[Generation]:
    """All answers in order, ``batch_size`` at a time, halving the batch whenever memory runs out."""
    results: list[Generation] = []
    size = max(1, batch_size)
    start = 0
    while start < len(requests):
        chunk = requests[start : start + size]
        try:
            answers = generator.generate(chunk, sampling)
        except OutOfMemory:
            if size == 1:
                raise
            size = max(1, size // 2)
            continue
        if len(answers) != len(chunk):
            raise RuntimeError(f"{generator.backend} answered {len(answers)} of {len(chunk)} requests")
        results.extend(answers)
        start += len(chunk)
        if on_batch:
            on_batch(len(chunk))
    return results


def generate_structured(
    generator: Generator,
    requests: Sequence[GenerationRequest],
    sampling: Sampling,
    batch_size: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """Answers parsed against each request's schema; invalid ones retried once (next seed), then reported."""
    size = batch_size or generator.batch_size
    first = generate_batched(generator, requests, sampling, size, on_batch)
    outcomes: list[Outcome | None] = []
    retry: list[int] = []
    for i, (request, answer) in enumerate(zip(requests, first, strict=True)):
        value, error = parse_output(answer.text, request.schema)
        if error is None:
            outcomes.append(Outcome(value, answer.text, None, 1, answer.prompt_tokens, answer.output_tokens))
        else:
            outcomes.append(None)
            retry.append(i)
    if retry:
        second = generate_batched(
            generator, [requests[i] for i in retry], replace(sampling, seed=sampling.seed + 1), size
        )
        for i, answer in zip(retry, second, strict=True):
            value, error = parse_output(answer.text, requests[i].schema)
            outcomes[i] = Outcome(
                value,
                answer.text[:RAW_LIMIT],
                error,
                2,
                first[i].prompt_tokens + answer.prompt_tokens,
                first[i].output_tokens + answer.output_tokens,
            )
    return [outcome for outcome in outcomes if outcome is not None]
