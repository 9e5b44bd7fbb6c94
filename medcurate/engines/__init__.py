"""Engines: where stage code runs (this process, or Spark executors)."""

from __future__ import annotations

from typing import Any

from medcurate.engines.base import Engine, PartRef
from medcurate.lake.store import Lake


def make_engine(kind: str, lake: Lake, batch_size: int, spark: dict[str, Any] | None = None) -> Engine:
    if kind == "local":
        from medcurate.engines.inprocess import InProcessEngine

        return InProcessEngine(lake, batch_size)
    if kind == "spark":
        from medcurate.engines.spark import SparkEngine

        spark = spark or {}
        return SparkEngine(
            lake, batch_size, master=spark.get("master", "local[*]"), conf=spark.get("conf", {})
        )
    raise ValueError(f"unknown engine {kind!r}; use 'local' or 'spark'")


__all__ = ["Engine", "PartRef", "make_engine"]
