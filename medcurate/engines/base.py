"""Engines run stages over parts (parquet files of records) in the lake.

A part is the unit of resumption: a stage's output for a part is written once, atomically, under a
deterministic name, so a restarted run skips parts that are done. Engines differ only in where the
stage code runs; both return every input row (kept and excluded) sorted by ``sample_id`` and cast to
the record schema, which is what makes their outputs byte-identical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from medcurate.lake.store import Lake
from medcurate.schemas.record import RECORD_SCHEMA
from medcurate.stages.base import MapStage, StageContext, run_map_stage


@dataclass(frozen=True)
class PartRef:
    """A parquet part in the lake, optionally restricted to some sample ids."""

    path: str
    sample_ids: frozenset[str] | None = None


def restrict(table_or_batch: pa.Table | pa.RecordBatch, sample_ids: Collection[str] | None):
    if sample_ids is None:
        return table_or_batch
    return table_or_batch.filter(pc.is_in(table_or_batch.column("sample_id"), pa.array(sorted(sample_ids))))


def sort_records(table: pa.Table) -> pa.Table:
    return table.select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA).sort_by("sample_id")


class BatchMapper:
    """The picklable function both engines apply to a stream of Arrow batches."""

    def __init__(self, stage: MapStage, ctx: StageContext, sample_ids: frozenset[str] | None):
        self.stage = stage
        self.ctx = ctx
        self.sample_ids = sample_ids

    def __call__(self, batches):
        batches = (restrict(batch.cast(RECORD_SCHEMA), self.sample_ids) for batch in batches)
        if self.stage.whole_partition:  # one call per partition: a model engine batches it as it likes
            batches = [_concat([batch for batch in batches if batch.num_rows])]
        for batch in batches:
            if batch.num_rows == 0:
                continue
            result = run_map_stage(self.stage, batch, self.ctx)
            yield result.kept
            yield result.excluded


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch holding every row of ``batches`` (an empty batch when there are none)."""
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=RECORD_SCHEMA)
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA).combine_chunks().to_batches()[0]


class Engine(ABC):
    name: str

    def __init__(self, lake: Lake, batch_size: int):
        self.lake = lake
        self.batch_size = batch_size

    @abstractmethod
    def map_part(self, stage: MapStage, part: PartRef, ctx: StageContext) -> pa.Table:
        """Every row of ``part`` after ``stage``, sorted by sample_id."""

    @abstractmethod
    def fit_table(self, parts: list[PartRef], columns: list[str]) -> pa.Table:
        """The given columns of every row of ``parts`` (for a global stage's ``fit``)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release engine resources (a Spark session)."""
