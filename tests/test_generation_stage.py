"""The generation stage loop with a scripted backend: per-batch caching (a crash loses at most the batch
in flight), quarantine of answers that stay invalid, and records the stage does not apply to."""

from __future__ import annotations

import json

import pytest

from medcurate.models import registry
from medcurate.models.base import Generation, Generator
from medcurate.models.cache import forget_caches
from medcurate.models.spec import ModelSpec
from medcurate.schemas.record import QUARANTINED, new_record, to_batch
from medcurate.stages import make_stage
from medcurate.stages.base import StageContext, run_map_stage

SPEC = ModelSpec("caption", "/models/scripted", "transformers", "r" * 64)


class Scripted(Generator):
    backend = "scripted"
    batch_size = 2

    def __init__(self, answer, crash_after: int | None = None):
        self.answer, self.crash_after, self.requests = answer, crash_after, 0

    def generate(self, requests, sampling):
        if self.crash_after is not None and self.requests >= self.crash_after:
            raise RuntimeError("worker died")
        self.requests += len(requests)
        return [Generation(self.answer(r.prompt)) for r in requests]


@pytest.fixture
def backend(monkeypatch):
    def install(generator: Generator) -> Generator:
        forget_caches()
        monkeypatch.setitem(registry._loaded, registry.model_key("generator", SPEC), generator)
        return generator

    yield install
    forget_caches()


def _records(n: int) -> list[dict]:
    return [
        new_record(
            f"s{i}", image={"bytes": b"img", "sha256": f"{i:064x}"}, text={"source_caption": f"Case {i}."}
        )
        for i in range(n)
    ]


def _caption_stage():
    stage = make_stage("caption", {"batch_size": 2})
    stage.model = SPEC
    return stage


def test_a_crash_loses_at_most_the_batch_in_flight(backend, tmp_path):
    ctx = StageContext("run", lake_uri=str(tmp_path))
    answer = lambda prompt: json.dumps({"caption": "A caption."})  # noqa: E731
    crashing = backend(Scripted(answer, crash_after=4))  # two batches of two, then the worker dies
    with pytest.raises(RuntimeError, match="worker died"):
        run_map_stage(_caption_stage(), to_batch(_records(7)), ctx)
    assert crashing.requests == 4
    resumed = backend(Scripted(answer))
    result = run_map_stage(_caption_stage(), to_batch(_records(7)), ctx)
    assert resumed.requests == 3  # only what was not cached before the crash
    cached = [json.loads(r["lineage"][-1]["details"])["cached"] for r in result.kept.to_pylist()]
    assert cached.count(True) == 4 and result.kept.num_rows == 7


def test_answers_that_stay_invalid_are_quarantined_with_the_raw_output(backend, tmp_path):
    backend(Scripted(lambda prompt: "sorry, no JSON" if "Case 1." in prompt else '{"caption": "ok"}'))
    result = run_map_stage(
        _caption_stage(), to_batch(_records(3)), StageContext("run", lake_uri=str(tmp_path))
    )
    (bad,) = result.excluded.to_pylist()
    assert bad["sample_id"] == "s1" and bad["status"] == QUARANTINED
    assert bad["status_reason"].startswith("invalid_model_output: invalid_json")
    event = bad["lineage"][-1]
    assert json.loads(event["details"])["raw"] == "sorry, no JSON"
    assert event["model"] == SPEC.ref and event["prompt_id"] == "caption.context@1"
    assert [r["text"]["generated_caption"] for r in result.kept.to_pylist()] == ["ok", "ok"]


def test_records_a_stage_does_not_apply_to_pass_unchanged(backend, tmp_path):
    backend(Scripted(lambda prompt: json.dumps({"panels": [{"label": "A", "caption": "x"}]})))
    stage = make_stage("panel_rewrite", {})
    stage.model = SPEC
    records = _records(2)
    records[0]["figure"] = {"panels": [{"label": "A", "text": "CT."}, {"label": "B", "text": "MR."}]}
    result = run_map_stage(stage, to_batch(records), StageContext("run", lake_uri=str(tmp_path)))
    by_id = {r["sample_id"]: r for r in result.kept.to_pylist()}
    assert by_id["s0"]["text"]["panel_captions"] == [{"label": "A", "text": "x"}]
    assert json.loads(by_id["s1"]["lineage"][-1]["details"]) == {"applied": False}


def test_gpu_stages_ask_spark_for_a_gpu_and_http_ones_do_not():
    from medcurate.engines.spark import SparkEngine

    engine = object.__new__(SparkEngine)  # resource profiles need no session to be built
    stage = _caption_stage()
    stage.model = ModelSpec("caption", "/m", "vllm", "r")
    engine.master = "local[2]"
    assert engine.resource_profile(stage) is None  # local mode cannot schedule GPUs
    engine.master = "spark://head:7077"
    profile = engine.resource_profile(stage)
    assert profile.taskResources["gpu"].amount == 1.0
    stage.model = ModelSpec("caption", "/m", "http", "r", endpoint="http://gpu-01:8000/v1")
    assert engine.resource_profile(stage) is None


def test_engines_hand_a_model_stage_whole_partitions(backend, tmp_path):
    """Engine batches of 2 rows, yet the model sees batches of its own size over the whole part."""
    import pyarrow as pa

    from medcurate.engines import PartRef
    from medcurate.engines.inprocess import InProcessEngine
    from medcurate.lake import Lake
    from medcurate.schemas.record import RECORD_SCHEMA

    class Counting(Scripted):
        batch_size = 4

        def generate(self, requests, sampling):
            self.sizes = [*getattr(self, "sizes", []), len(requests)]
            return super().generate(requests, sampling)

    generator = backend(Counting(lambda prompt: json.dumps({"caption": "c"})))
    lake = Lake(str(tmp_path / "lake"))
    lake.write_parquet("runs/r/part.parquet", pa.Table.from_pylist(_records(5), RECORD_SCHEMA))
    stage = make_stage("caption", {})
    stage.model = SPEC
    table = InProcessEngine(lake, batch_size=2).map_part(
        stage, PartRef("runs/r/part.parquet"), StageContext("r")
    )
    assert table.num_rows == 5 and generator.sizes == [4, 1]
