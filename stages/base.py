"""The stage contract: map stages and global stages over Arrow batches of sample records.

A stage sees only Arrow batches, so the same code runs in-process, on Spark executors
(``mapInArrow``) and inside Prefect tasks. ``run_map_stage`` is the one boundary every engine calls:
it validates the schema on the way in and out and checks that no record was lost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from medcurate.hashing import canonical_json, sha256_json
from medcurate.schemas.record import (
    ACTIVE,
    FILTERED,
    QUARANTINED,
    RECORD_SCHEMA,
    SchemaMismatch,
    lineage_event,
    to_batch,
    validate_batch,
)


class Exclude(Exception):  # noqa: N818 - a control-flow signal, not an error of ours
    """Raised by a record stage to take a record out of the flow, with a reason code and detail."""

    status: ClassVar[str]

    def __init__(self, code: str, detail: str = "", **details: Any):
        self.code = code
        self.detail = detail
        self.details = details
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


class Quarantine(Exclude):
    """Bad input: unreadable, unsafe or malformed. Kept with its reason for inspection."""

    status = QUARANTINED


class Filter(Exclude):
    """Readable input that a rule of the pipeline does not want (too small, duplicate, ...)."""

    status = FILTERED


@dataclass(frozen=True)
class StageContext:
    """What a stage may know about the run it is part of (no global state)."""

    run_id: str
    #: Where the lake is (a URI executors can open), for stages that cache results there (model stages).
    lake_uri: str | None = None
    #: The release this run publishes to; dedup stages read what its earlier versions hold.
    release: str | None = None


@dataclass
class StageResult:
    kept: pa.RecordBatch
    excluded: pa.RecordBatch


@dataclass
class Stage(ABC):
    """Common identity of every stage: name, version and the hash of its parameters."""

    params: Mapping[str, Any] = field(default_factory=dict)

    name: ClassVar[str]
    version: ClassVar[str]
    #: The params this stage understands, when it says; any other is a config mistake, refused by name.
    known_params: ClassVar[tuple[str, ...] | None] = None

    def __post_init__(self) -> None:
        unknown = set(self.params) - set(self.known_params) if self.known_params is not None else set()
        if unknown:
            raise ValueError(
                f"{self.name}: unknown param(s) {sorted(unknown)}; known: {list(self.known_params)}"
            )

    @property
    def config_hash(self) -> str:
        return sha256_json({"stage": self.name, "version": self.version, "params": dict(self.params)})[:16]

    def event(self, ctx: StageContext, decision: str, reason: str | None = None, **details: Any) -> dict:
        """One lineage event of this stage; ``details`` are stored as canonical JSON."""
        return lineage_event(
            self.name,
            self.version,
            self.config_hash,
            ctx.run_id,
            decision,
            reason,
            model=details.pop("model", None),
            prompt_id=details.pop("prompt_id", None),
            prompt_sha256=details.pop("prompt_sha256", None),
            details=canonical_json(details) if details else None,
        )


class MapStage(Stage):
    """A batch-local stage: ``process(batch) -> (kept, excluded)``."""

    #: A stage that may add samples made from others (their last lineage event says ``derived``).
    derives_records: ClassVar[bool] = False
    #: Engines hand the stage a whole partition in one batch (model stages: the model batches it).
    whole_partition: ClassVar[bool] = False

    @abstractmethod
    def process(self, batch: pa.RecordBatch, ctx: StageContext) -> StageResult: ...


class RecordStage(MapStage):
    """A map stage written one record at a time.

    ``apply`` returns the updated record, or raises ``Quarantine``/``Filter``. Any other exception is
    a bug and propagates: a broken stage must fail the task, not quietly quarantine everything.
    """

    @abstractmethod
    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(record, details)``: the updated record and facts for its lineage event."""

    def lineage_extras(self) -> dict[str, Any]:
        """Model or prompt identity that every event of this stage carries (none by default)."""
        return {}

    def process(self, batch: pa.RecordBatch, ctx: StageContext) -> StageResult:
        kept, excluded = [], []
        for record in batch.to_pylist():
            try:
                record, details = self.apply(record, ctx)
                record["lineage"].append(self.event(ctx, "kept", **self.lineage_extras(), **details))
                kept.append(record)
            except Exclude as exc:
                mark_excluded(record, self, ctx, exc)
                excluded.append(record)
        return StageResult(to_batch(kept), to_batch(excluded))


def mark_excluded(record: dict[str, Any], stage: Stage, ctx: StageContext, exc: Exclude) -> None:
    """Set the record's status from ``exc`` and append the lineage event that explains it."""
    record["status"] = exc.status
    record["status_reason"] = exc.reason
    record["status_stage"] = stage.name
    record["lineage"].append(stage.event(ctx, exc.status, exc.reason, **exc.details))


class GlobalStage(Stage):
    """A stage that needs the whole dataset: ``fit`` once over a few columns, then map with the state."""

    #: Top-level record columns ``fit`` needs; engines fetch only these (no image bytes).
    fit_columns: ClassVar[tuple[str, ...]]

    @abstractmethod
    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> Any:
        """Compute the state from all active records (only ``fit_columns``); must be picklable.

        ``ctx`` names the run and the lake, for stages whose state also lives there (indexes of
        earlier releases, embedding stores, evaluation-set indexes); pure stages ignore it.
        """

    @abstractmethod
    def bind(self, state: Any) -> MapStage:
        """The map stage that applies ``state`` to each batch."""


def run_map_stage(stage: MapStage, batch: pa.RecordBatch, ctx: StageContext) -> StageResult:
    """Run one stage on one batch, enforcing the contract that every engine relies on."""
    where = f"stage {stage.name!r}"
    validate_batch(batch, f"{where} input")
    result = stage.process(batch, ctx)
    validate_batch(result.kept, f"{where} output (kept)")
    validate_batch(result.excluded, f"{where} output (excluded)")
    out_rows = result.kept.num_rows + result.excluded.num_rows
    if out_rows != batch.num_rows and not stage.derives_records:
        raise SchemaMismatch(
            f"{where} lost records: {batch.num_rows} in, "
            f"{result.kept.num_rows} kept + {result.excluded.num_rows} excluded out"
        )
    if stage.derives_records:
        ids_in = batch.column("sample_id").to_pylist()
        ids_out = (
            result.kept.column("sample_id").to_pylist() + result.excluded.column("sample_id").to_pylist()
        )
        if len(set(ids_out)) != len(ids_out) or set(ids_in) - set(ids_out):
            raise SchemaMismatch(f"{where} lost or duplicated records while deriving new ones")
    if set(result.kept.column("status").to_pylist()) - {ACTIVE}:
        raise SchemaMismatch(f"{where} kept a record whose status is not active")
    if set(result.excluded.column("status").to_pylist()) - {FILTERED, QUARANTINED}:
        raise SchemaMismatch(f"{where} excluded a record without a filtered/quarantined status")
    return result


def split_by_status(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(active, excluded) rows of a table that mixes both, as Spark's single output stream does."""
    import pyarrow.compute as pc

    active_mask = pc.equal(table.column("status"), ACTIVE)
    return table.filter(active_mask), table.filter(pc.invert(active_mask))


__all__ = [
    "RECORD_SCHEMA",
    "Filter",
    "GlobalStage",
    "MapStage",
    "Quarantine",
    "RecordStage",
    "StageContext",
    "StageResult",
    "mark_excluded",
    "run_map_stage",
    "split_by_status",
]
