"""The allow stage: records whose fields take other values are filtered with a per-field reason."""

from __future__ import annotations

import pytest

from medcurate.schemas.record import FILTERED, new_record, to_batch
from medcurate.stages import make_stage
from medcurate.stages.base import StageContext, run_map_stage

CTX = StageContext(run_id="test")


def _record(sample_id: str, license_id: str | None, kind: str | None) -> dict:
    figure = None if kind is None else {"kind": kind, "panels": [], "citing": []}
    return new_record(sample_id, source={"kind": "pmc", "license": license_id}, figure=figure)


def test_license_and_kind_rules_filter_with_a_reason_per_field():
    stage = make_stage("allow", {"source.license": ["cc0", "cc-by"], "figure.kind": ["medical_image", None]})
    batch = to_batch(
        [
            _record("a", "cc-by", "medical_image"),
            _record("b", "cc-by-nc", "medical_image"),
            _record("c", "cc0", "chart"),
            _record("d", None, "medical_image"),
            _record("e", "cc0", None),  # not a figure (a labeled image): a missing kind is allowed here
        ]
    )
    result = run_map_stage(stage, batch, CTX)
    assert result.kept.column("sample_id").to_pylist() == ["a", "e"]
    excluded = {r["sample_id"]: r for r in result.excluded.to_pylist()}
    assert {k: r["status"] for k, r in excluded.items()} == dict.fromkeys("bcd", FILTERED)
    assert excluded["b"]["status_reason"].startswith("license_not_allowed: source.license='cc-by-nc'")
    assert excluded["c"]["status_reason"].startswith("kind_not_allowed: figure.kind='chart'")
    assert excluded["d"]["status_reason"].startswith("license_not_allowed: source.license=None")
    assert excluded["b"]["lineage"][-1]["stage"] == "allow"


@pytest.mark.parametrize("bad", [[], "cc-by", None])
def test_a_rule_needs_a_list_of_values(bad):
    with pytest.raises(ValueError, match="non-empty list"):
        make_stage("allow", {"source.license": bad})
