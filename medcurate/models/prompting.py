"""Generation prompts: a versioned YAML file rendered with a record's context into messages.

Templates are Jinja2 in a sandbox with strict undefined variables, so a prompt can branch (labels or
no labels, citing sentences or none) but cannot reach Python objects, and a typo in a variable name
fails when the prompt is loaded rather than producing a silently empty prompt. The variables a
template may use are declared in the file and filled from the record by ``record_variables``; the
output JSON schema is declared beside them, checked as a schema when the prompt loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
import jsonschema
from jinja2.sandbox import SandboxedEnvironment

from medcurate.models.base import Sampling
from medcurate.prompts import Prompt, load_prompt

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)

#: Every variable ``record_variables`` provides; a prompt may declare any subset.
KNOWN_VARIABLES = (
    "modality",
    "body_part",
    "view",
    "positives",
    "negatives",
    "uncertain",
    "class_name",
    "source_caption",
    "citing",
    "findings",
    "report",
    "label_text",
    "panels",
    "caption",
)
_LISTS = frozenset({"positives", "negatives", "uncertain", "citing", "panels"})


class GenerationPrompt:
    """A ``kind: generation`` prompt: system and user templates, output schema, default sampling."""

    def __init__(self, prompt: Prompt):
        if prompt.kind != "generation":
            raise ValueError(f"prompt {prompt.ref} is a {prompt.kind!r}, not a generation prompt")
        data = prompt.data
        self.prompt = prompt
        self.variables = tuple(data.get("variables") or ())
        unknown = set(self.variables) - set(KNOWN_VARIABLES)
        if unknown:
            raise ValueError(f"prompt {prompt.ref} declares unknown variable(s) {sorted(unknown)}")
        self.schema: dict[str, Any] | None = data.get("output_schema")
        if self.schema is not None:
            jsonschema.Draft202012Validator.check_schema(self.schema)
        self.sampling = Sampling.from_mapping(data.get("sampling"))
        self._system = _ENV.from_string(data["system"]) if data.get("system") else None
        self._user = _ENV.from_string(data["user"])
        # Render once with empty values: an undeclared or misspelt variable fails now, not per record.
        self.render({name: [] if name in _LISTS else None for name in self.variables})

    @property
    def ref(self) -> str:
        return self.prompt.ref

    @property
    def sha256(self) -> str:
        return self.prompt.sha256

    def render(self, variables: Mapping[str, Any]) -> tuple[str | None, str]:
        """(system, user) messages; only declared variables reach the templates."""
        values = {name: variables.get(name, [] if name in _LISTS else None) for name in self.variables}
        try:
            system = self._system.render(values).strip() if self._system else None
            user = _tidy(self._user.render(values))
        except jinja2.UndefinedError as exc:
            raise ValueError(f"prompt {self.ref}: {exc.message} (declare it under variables)") from exc
        return system, user


def _tidy(text: str) -> str:
    """Drop the blank lines that skipped template branches leave behind."""
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip()).strip()


@lru_cache(maxsize=32)
def load_generation_prompt(ref: str) -> GenerationPrompt:
    return GenerationPrompt(load_prompt(ref))


def _names(labels: list[dict[str, Any]], value: str) -> list[str]:
    return [label["name"].replace("_", " ") for label in labels if label.get("value") == value]


def record_variables(record: Mapping[str, Any]) -> dict[str, Any]:
    """The context a prompt may use, read from a record (missing groups give None or empty lists)."""
    medical = record.get("medical") or {}
    text = record.get("text") or {}
    figure = record.get("figure") or {}
    scan = record.get("scan") or {}
    labels = medical.get("labels") or []
    findings = medical.get("findings") or " ".join(
        f["text"] for f in scan.get("findings") or [] if f.get("text")
    )
    report = " ".join(
        f"{s['name'].capitalize()}: {s['text']}" for s in scan.get("report_sections") or [] if s.get("text")
    )
    return {
        "modality": medical.get("modality"),
        "body_part": medical.get("body_part"),
        "view": medical.get("view"),
        "positives": _names(labels, "positive"),
        "negatives": _names(labels, "negative"),
        "uncertain": _names(labels, "uncertain"),
        "class_name": (medical.get("class_name") or "").replace("_", " ") or None,
        "source_caption": text.get("source_caption"),
        "citing": [c["text"] for c in figure.get("citing") or [] if c.get("text")],
        "findings": findings or None,
        "report": report or None,
        "label_text": text.get("label_text"),
        "panels": [dict(p) for p in figure.get("panels") or []],
        "caption": text.get("final_caption"),
    }
