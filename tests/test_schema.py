"""The record schema: JSON Schema export in step, and loud failures at stage boundaries."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from medcurate.schemas import RECORD_SCHEMA, SchemaMismatch, new_record, to_batch, validate_batch
from medcurate.schemas.jsonschema import EXPORTED_PATH, dumps, record_json_schema
from medcurate.stages.base import MapStage, RecordStage, StageContext, StageResult, run_map_stage

CTX = StageContext(run_id="test")


def test_committed_json_schema_matches_arrow_schema():
    assert EXPORTED_PATH.read_text() == dumps(), "run `medcurate schema > schemas/sample_record.schema.json`"


def test_json_schema_covers_every_field():
    schema = record_json_schema()
    assert set(schema["properties"]) == set(RECORD_SCHEMA.names)
    assert "lineage" in schema["required"]
    assert json.loads(dumps())["properties"]["sample_id"]["pattern"] == r"^[^.]+$"


def test_validate_rejects_wrong_type_and_dotted_ids():
    batch = to_batch([new_record("a-1")])
    bad = batch.set_column(batch.schema.get_field_index("split"), "split", pa.array([1], pa.int64()))
    with pytest.raises(SchemaMismatch, match="'split': got int64"):
        validate_batch(bad, "test")
    with pytest.raises(SchemaMismatch, match="contains a dot"):
        validate_batch(to_batch([new_record("a.1")]), "test")


class DropsAColumn(MapStage):
    name, version = "broken", "1"

    def process(self, batch, ctx):
        return StageResult(batch.drop_columns(["split"]), batch.slice(0, 0))


class LosesRecords(MapStage):
    name, version = "lossy", "1"

    def process(self, batch, ctx):
        return StageResult(batch.slice(0, 1), batch.slice(0, 0))


class Uppercase(RecordStage):
    name, version = "upper", "1"

    def apply(self, record, ctx):
        record["text"]["final_caption"] = (record["text"]["final_caption"] or "").upper()
        return record, {"changed": True}


def test_stage_emitting_wrong_schema_fails_loudly():
    with pytest.raises(SchemaMismatch, match="stage 'broken' output.*missing field 'split'"):
        run_map_stage(DropsAColumn(), to_batch([new_record("a-1")]), CTX)


def test_stage_losing_records_fails_loudly():
    with pytest.raises(SchemaMismatch, match="lost records: 2 in"):
        run_map_stage(LosesRecords(), to_batch([new_record("a-1"), new_record("a-2")]), CTX)


def test_record_stage_appends_one_lineage_event():
    record = new_record("a-1", text={"final_caption": "x"})
    result = run_map_stage(Uppercase({"p": 1}), to_batch([record]), CTX)
    (out,) = result.kept.to_pylist()
    assert out["text"]["final_caption"] == "X"
    (event,) = out["lineage"]
    assert event["stage"] == "upper" and event["decision"] == "kept" and event["run_id"] == "test"
    assert json.loads(event["details"]) == {"changed": True}
    assert event["config_hash"] == Uppercase({"p": 1}).config_hash != Uppercase({"p": 2}).config_hash
