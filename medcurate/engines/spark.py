"""The Spark engine: the same stages on executors through ``mapInArrow``.

Each part is one Spark job: executors read the parquet part straight from the lake (row groups give
parallelism without a shuffle), apply the stage to Arrow batches, and the driver collects the result
to write it as the next part. Local mode (``local[*]``) by default; ``master`` points at a cluster.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from medcurate.engines.base import BatchMapper, Engine, PartRef, sort_records
from medcurate.lake.store import Lake
from medcurate.stages.base import MapStage, StageContext

DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.files.maxPartitionBytes": "8m",
    "spark.driver.memory": "2g",
}


class SparkEngine(Engine):
    name = "spark"

    def __init__(self, lake: Lake, batch_size: int, master: str = "local[*]", conf: Mapping[str, Any] = ()):
        super().__init__(lake, batch_size)
        # Executors must run the interpreter that has medcurate and pyarrow installed.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.master(master).appName("medcurate")
        settings = {**DEFAULT_CONF, **dict(conf)}
        settings["spark.sql.execution.arrow.maxRecordsPerBatch"] = str(batch_size)
        for key, value in settings.items():
            builder = builder.config(key, str(value))
        self.master = master
        self.spark = builder.getOrCreate()
        self.spark.sparkContext.setLogLevel("ERROR")

    def resource_profile(self, stage: MapStage):
        """A Spark stage-level resource profile for stages that need a GPU per task, else None.

        GPU tasks then run only on executors that own one, while CPU stages keep every core. Local
        mode has no executors to schedule (and refuses task GPU requests), so it runs without one.
        """
        needs = stage.task_resources() if hasattr(stage, "task_resources") else {}
        if not needs.get("gpu") or self.master.startswith("local"):
            return None
        from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

        requests = TaskResourceRequests().cpus(int(needs.get("cpus", 1))).resource("gpu", needs["gpu"])
        return ResourceProfileBuilder().require(requests).build

    def map_part(self, stage: MapStage, part: PartRef, ctx: StageContext) -> pa.Table:
        frame = self.spark.read.parquet(self.lake.uri(part.path))
        mapper = BatchMapper(stage, ctx, part.sample_ids)
        mapped = frame.mapInArrow(mapper, frame.schema, profile=self.resource_profile(stage))
        return sort_records(mapped.toArrow())

    def fit_table(self, parts: list[PartRef], columns: list[str]) -> pa.Table:
        if not parts:
            return pa.table({})
        tables = []
        for part in parts:  # restriction differs per part; fit columns are small
            from pyspark.sql import functions as F  # noqa: N812

            selected = [F.col(name).alias(name) for name in ["sample_id", *columns]]
            frame = self.spark.read.parquet(self.lake.uri(part.path)).select(*selected)
            if part.sample_ids is not None:
                frame = frame.where(F.col("sample_id").isin(sorted(part.sample_ids)))
            tables.append(frame.toArrow())
        return pa.concat_tables(tables).sort_by("sample_id")

    def close(self) -> None:
        self.spark.stop()
