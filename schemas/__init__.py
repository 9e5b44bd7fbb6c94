"""Versioned schemas of the sample record (Arrow) and its JSON Schema export."""

from medcurate.schemas.record import (
    ACTIVE,
    FILTERED,
    QUARANTINED,
    RECORD_SCHEMA,
    SCHEMA_VERSION,
    SchemaMismatch,
    new_record,
    to_batch,
    validate_batch,
)

__all__ = [
    "ACTIVE",
    "FILTERED",
    "QUARANTINED",
    "RECORD_SCHEMA",
    "SCHEMA_VERSION",
    "SchemaMismatch",
    "new_record",
    "to_batch",
    "validate_batch",
]
