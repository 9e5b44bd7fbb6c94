"""Drop samples by the measurements earlier stages recorded: score thresholds, language, verdicts, flags.

Measuring (``quality_signals``, ``caption_repeats``, judge stages) and deciding are separate, so a
release can be re-cut with other thresholds without recomputing anything. Every drop names the rule,
the value and the threshold, so the ledger and an auditor see exactly why a sample left. A score that
is missing (its stage did not run, or had no model) never filters: absence of evidence is not a fail,
but the lineage says which scores were missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medcurate.schemas.record import get_score
from medcurate.stages.base import Filter, RecordStage, StageContext

PARAMS = ("min", "max", "languages", "allow_unknown_language", "require_medical", "drop_flags")


def _thresholds(params: Mapping[str, Any], key: str) -> dict[str, float]:
    table = params.get(key) or {}
    if not isinstance(table, Mapping):
        raise ValueError(f"quality_filter: {key} must map score names to numbers, got {table!r}")
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"quality_filter: {key}.{name} must be a number, got {value!r}")
    return {str(name): float(value) for name, value in table.items()}


def _strings(params: Mapping[str, Any], key: str) -> list[str] | None:
    values = params.get(key)
    if values is None:
        return None
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"quality_filter: {key} must be a list of non-empty strings, got {values!r}")
    return list(values)


def _drop(code: str, detail: str, score: str, value: Any, threshold: Any) -> Filter:
    return Filter(code, detail, score=score, value=value, threshold=threshold)


class QualityFilterStage(RecordStage):
    """Params: ``min``/``max`` ({score: threshold}), ``languages`` (allowed ``quality.language``),
    ``allow_unknown_language`` (default true), ``require_medical`` (default false) and ``drop_flags``
    (prefixes of ``quality.flags`` entries that drop a sample)."""

    name = "quality_filter"
    known_params = PARAMS
    version = "1"

    def __init__(self, params: Mapping[str, Any] | None = None):
        super().__init__(dict(params or {}))
        self.minimum = _thresholds(self.params, "min")
        self.maximum = _thresholds(self.params, "max")
        self.languages = _strings(self.params, "languages")
        self.drop_flags = _strings(self.params, "drop_flags") or []
        self.allow_unknown_language = bool(self.params.get("allow_unknown_language", True))
        self.require_medical = bool(self.params.get("require_medical", False))

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        quality = record.get("quality") or {}
        for flag in quality.get("flags") or []:
            prefix = next((p for p in self.drop_flags if flag.startswith(p)), None)
            if prefix is not None:
                raise _drop(
                    "flagged",
                    f"quality.flags has {flag!r} (drops {prefix!r}*)",
                    "quality.flags",
                    flag,
                    prefix,
                )
        if self.require_medical and quality.get("is_medical") is False:
            raise _drop("not_medical", "quality.is_medical is false", "quality.is_medical", False, True)
        self._check_language(quality.get("language"))
        missing = []
        for bound, table in (("min", self.minimum), ("max", self.maximum)):
            for name, threshold in sorted(table.items()):
                value = get_score(record, name)
                if value is None:
                    missing.append(name)
                elif bound == "min" and value < threshold:
                    raise _drop(
                        "score_below_min", f"{name}={value:g} < {threshold:g}", name, value, threshold
                    )
                elif bound == "max" and value > threshold:
                    raise _drop(
                        "score_above_max", f"{name}={value:g} > {threshold:g}", name, value, threshold
                    )
        return record, {"missing_scores": sorted(set(missing))} if missing else {}

    def _check_language(self, language: str | None) -> None:
        if self.languages is None:
            return
        if language is None and self.allow_unknown_language:
            return
        if language not in self.languages:
            allowed = ", ".join(self.languages)
            raise _drop(
                "language_not_allowed",
                f"quality.language={language!r} is not one of [{allowed}]",
                "quality.language",
                language,
                self.languages,
            )


__all__ = ["QualityFilterStage"]
