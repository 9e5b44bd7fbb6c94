"""Export the Arrow record schema as JSON Schema, for auditors and for validating shard ``.json`` members."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from medcurate.schemas.record import RECORD_SCHEMA, SCHEMA_VERSION

#: The committed export; a test keeps it in step with ``RECORD_SCHEMA``.
EXPORTED_PATH = Path(__file__).with_name("sample_record.schema.json")


def _type_to_json(data_type: pa.DataType) -> dict[str, Any]:
    if pa.types.is_struct(data_type):
        return {
            "type": ["object", "null"],
            "properties": {f.name: _type_to_json(f.type) for f in data_type},
            "additionalProperties": False,
        }
    if pa.types.is_list(data_type):
        return {"type": ["array", "null"], "items": _type_to_json(data_type.value_type)}
    if pa.types.is_string(data_type):
        return {"type": ["string", "null"]}
    if pa.types.is_binary(data_type):
        return {"type": ["string", "null"], "contentEncoding": "base64"}
    if pa.types.is_integer(data_type):
        return {"type": ["integer", "null"]}
    if pa.types.is_floating(data_type):
        return {"type": ["number", "null"]}
    if pa.types.is_boolean(data_type):
        return {"type": ["boolean", "null"]}
    raise TypeError(f"no JSON Schema mapping for {data_type}")


def record_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of a sample record as it appears in a shard's ``.json`` member."""
    properties = {field.name: _type_to_json(field.type) for field in RECORD_SCHEMA}
    properties["sample_id"] = {"type": "string", "pattern": r"^[^.]+$"}
    properties["schema_version"] = {"const": SCHEMA_VERSION}
    properties["status"] = {"enum": ["active", "filtered", "quarantined"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"medcurate:sample-record:{SCHEMA_VERSION}",
        "title": "medcurate sample record",
        "description": "One image-text sample with its source, texts, scores, dedup facts and lineage. "
        "In shards the image bytes are the image member, not part of the JSON.",
        "type": "object",
        "properties": properties,
        "required": ["sample_id", "schema_version", "status", "source", "lineage"],
        "additionalProperties": False,
    }


def dumps() -> str:
    return json.dumps(record_json_schema(), indent=2, sort_keys=True) + "\n"
