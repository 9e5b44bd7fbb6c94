"""Keep only records whose fields take allowed values (licenses, figure kinds, modalities, ...).

A release for commercial use takes only ``source.license: [cc0, cc-by]``; a radiology release takes
``figure.kind: [medical_image]``. Each refused record is *filtered* (not lost) with a reason code per
field, ``<field>_not_allowed``, so the ledger counts exclusions by license, by kind, and so on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medcurate.stages.base import Filter, RecordStage, StageContext


def field_value(record: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path (``source.license``); None when any level is missing."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


class AllowStage(RecordStage):
    """Params: a mapping of dotted field -> allowed values (``null`` allows a missing value)."""

    name = "allow"
    version = "1"

    def __init__(self, params: Mapping[str, Any] | None = None):
        super().__init__(dict(params or {}))
        for dotted, values in self.params.items():
            if not isinstance(values, list | tuple) or not values:
                raise ValueError(f"allow: {dotted} needs a non-empty list of allowed values, got {values!r}")

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        checked = {}
        for dotted, allowed in sorted(self.params.items()):
            value = field_value(record, dotted)
            if value not in allowed:
                leaf = dotted.rsplit(".", 1)[-1]
                shown = ", ".join("null" if v is None else str(v) for v in allowed)
                raise Filter(
                    f"{leaf}_not_allowed", f"{dotted}={value!r} is not one of [{shown}]", field=dotted
                )
            checked[dotted] = value
        return record, {"checked": checked}
