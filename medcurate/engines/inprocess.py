"""The in-process engine: stages run in this Python process, batch by batch (tests, the embedded default)."""

from __future__ import annotations

import pyarrow as pa
from tqdm import tqdm

from medcurate.engines.base import BatchMapper, Engine, PartRef, restrict, sort_records
from medcurate.stages.base import MapStage, StageContext


class InProcessEngine(Engine):
    name = "local"

    def map_part(self, stage: MapStage, part: PartRef, ctx: StageContext) -> pa.Table:
        table = restrict(self.lake.read_parquet(part.path), part.sample_ids)
        mapper = BatchMapper(stage, ctx, None)
        batches = []
        with tqdm(total=table.num_rows, desc=stage.name, unit="rec", leave=False, disable=None) as bar:
            chunks = table.to_batches(max_chunksize=self.batch_size)
            for group in [chunks] if stage.whole_partition else [[chunk] for chunk in chunks]:
                batches.extend(mapper(group))
                bar.update(sum(chunk.num_rows for chunk in group))
        return sort_records(pa.Table.from_batches(batches, schema=batches[0].schema) if batches else table)

    def fit_table(self, parts: list[PartRef], columns: list[str]) -> pa.Table:
        names = ["sample_id", *columns]  # dotted paths select nested fields without image bytes
        tables = [
            restrict(self.lake.read_parquet(part.path, columns=names).rename_columns(names), part.sample_ids)
            for part in parts
        ]
        return pa.concat_tables(tables).sort_by("sample_id") if tables else pa.table({})
