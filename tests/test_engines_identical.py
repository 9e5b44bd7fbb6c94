"""The in-process and Spark engines give byte-identical shards for the same pipeline and inputs."""

from __future__ import annotations

import pytest

from medcurate.pipelines.flow import curate

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.spark]


def _shard_bytes(lake_root, summary) -> dict[str, bytes]:
    folder = lake_root / "releases" / summary.release_name / summary.release_version / "shards"
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.tar"))}


def test_spark_and_in_process_shards_are_byte_identical(demo_config, tmp_path):
    # Small batches and parts so Spark really splits work across tasks and parts.
    common = ["engine.batch_size=4", "engine.part_size=16"]
    local = curate(demo_config(*common, "engine.kind=local").model_dump(), str(tmp_path / "local"))
    spark = curate(
        demo_config(*common, "engine.kind=spark", "engine.spark.master=local[2]").model_dump(),
        str(tmp_path / "spark"),
    )
    assert spark.content_hash == local.content_hash
    assert _shard_bytes(tmp_path / "spark", spark) == _shard_bytes(tmp_path / "local", local)
    assert spark.ledger == local.ledger
