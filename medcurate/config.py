"""Pipeline configuration: a YAML file, validated with clear errors, overridable from the command line.

Defaults are embedded here so a pipeline file only says what differs. ``config_hash`` covers what
shapes the data (sources, stages, release) and leaves out where and how it runs (lake, engine), which
is why the in-process and Spark engines yield the same lineage and the same shards.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medcurate.hashing import sha256_json

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Strict):
    name: str
    kind: str
    uri: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"source name {value!r} must match {NAME_PATTERN.pattern}")
        return value


class SparkConfig(Strict):
    master: str = "local[*]"
    conf: dict[str, Any] = Field(default_factory=dict)


class EngineConfig(Strict):
    kind: Literal["local", "spark"] = "local"
    batch_size: int = Field(64, ge=1)
    part_size: int = Field(512, ge=1)  # records per lake part: the unit of resumption
    spark: SparkConfig = Field(default_factory=SparkConfig)


class ModelConfig(Strict):
    """A model for one role (caption, judge, embed), loaded from a local path only."""

    path: str
    backend: Literal["transformers", "vllm", "http"] = "transformers"
    revision: str | None = None  # content hash of the weights; computed from ``path`` when readable
    endpoint: str | None = None  # http backend: the OpenAI-compatible base URL, e.g. http://gpu-01:8000/v1
    options: dict[str, Any] = Field(default_factory=dict)  # device, dtype, batch_size, concurrency, ...


class ReleaseConfig(Strict):
    name: str
    initial_version: str = "1.0.0"
    bump: Literal["major", "minor", "patch"] = "minor"
    shard_max_count: int = Field(1000, ge=1)
    shard_max_bytes: int = Field(256 * 1024 * 1024, ge=1024)


class PipelineConfig(Strict):
    name: str
    description: str = ""
    lake: str | None = None
    pseudonym_key: str | None = None  # prefer MEDCURATE_PSEUDONYM_KEY; never put a real key in a repo
    sources: list[SourceConfig]
    #: Stage name -> params, in order. Map stages before the first global stage run once per input
    #: (their results are cached in the lake); the rest run over the whole dataset every run.
    stages: dict[str, dict[str, Any]] = Field(default_factory=dict)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    #: Role -> model. Model stages whose role has none are skipped (and the run says so). Where the
    #: weights lie is not part of the config hash; their content hash is, through the stages.
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    release: ReleaseConfig

    @property
    def config_hash(self) -> str:
        return sha256_json(self.identity())[:16]

    def identity(self) -> dict[str, Any]:
        """The part of the config that shapes the data (no lake, engine, key, model paths or description)."""
        return self.model_dump(exclude={"lake", "engine", "description", "pseudonym_key", "models"})

    def resolved_pseudonym_key(self) -> str | None:
        return os.environ.get("MEDCURATE_PSEUDONYM_KEY") or self.pseudonym_key


class ConfigError(ValueError):
    """The pipeline file or an override is wrong; the message says where."""


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts; list items by index or, for sources, by name."""
    keys = dotted.split(".")
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            matches = [item for item in node if isinstance(item, dict) and item.get("name") == key]
            if key.isdigit() and int(key) < len(node):
                index = int(key)
            elif matches:
                index = node.index(matches[0])
            else:
                raise ConfigError(f"--set {dotted}: no list item {key!r}")
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            raise ConfigError(f"--set {dotted}: {'.'.join(keys[:i])} is not a mapping")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> None:
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        if not sep or not dotted:
            raise ConfigError(f"--set expects dotted.key=value, got {item!r}")
        _set_dotted(data, dotted.strip(), yaml.safe_load(raw) if raw.strip() else None)


def apply_input(data: dict[str, Any], inputs: list[str]) -> None:
    """``--input URI`` (single-source pipelines) or ``--input NAME=URI``.

    NAME is a source or an evaluation set of the ``decontaminate`` stage: both are data the run reads.
    """
    sources = data.get("sources") or []
    eval_sets = ((data.get("stages") or {}).get("decontaminate") or {}).get("eval_sets") or []
    for item in inputs:
        name, sep, uri = item.partition("=")
        named = [s for s in [*sources, *eval_sets] if isinstance(s, dict) and s.get("name") == name]
        if sep and "://" not in name and named:
            targets = named
        elif len(sources) == 1:
            targets, uri = sources, item
        else:
            names = [s.get("name") for s in sources]
            evals = [s.get("name") for s in eval_sets if isinstance(s, dict)]
            raise ConfigError(
                f"--input {item!r}: the pipeline has sources {names} and evaluation sets {evals}; "
                "use --input NAME=URI"
            )
        targets[0]["uri"] = uri


def apply_models(data: dict[str, Any], models: list[str]) -> None:
    """``--model ROLE=PATH[@backend]``: attach a model to a role, keeping its other YAML settings."""
    from medcurate.models.spec import ModelError, parse_model_option

    for item in models:
        try:
            role, path, backend = parse_model_option(item)
        except ModelError as exc:
            raise ConfigError(str(exc)) from exc
        entry = dict((data.get("models") or {}).get(role) or {})
        entry["path"] = path
        if backend:
            entry["backend"] = backend
        data.setdefault("models", {})
        data["models"] = {**(data["models"] or {}), role: entry}


def load_pipeline(
    path: str | Path, overrides: list[str] = (), inputs: list[str] = (), models: list[str] = ()
) -> PipelineConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read pipeline {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"pipeline {path} must be a YAML mapping")
    apply_input(data, list(inputs))
    apply_overrides(data, list(overrides))
    apply_models(data, list(models))
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"pipeline {path} is invalid:\n{exc}") from exc
