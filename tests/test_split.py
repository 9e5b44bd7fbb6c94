"""Split assignment: by patient, else study, else article, else sample; stable and group-exclusive."""

from __future__ import annotations

import json

from medcurate.schemas.record import new_record, to_batch
from medcurate.stages import make_stage
from medcurate.stages.base import StageContext, run_map_stage

CTX = StageContext(run_id="test")


def _split(records: list[dict], **params) -> dict[str, tuple[str, str]]:
    result = run_map_stage(make_stage("split", params), to_batch(records), CTX)
    return {
        r["sample_id"]: (r["split"], json.loads(r["lineage"][-1]["details"])["group"])
        for r in result.kept.to_pylist()
    }


def test_figures_of_one_article_share_a_split_and_patients_win_over_articles():
    records = [
        new_record(f"fig{i}-a{i % 7}", article={"pmcid": f"PMC{i % 7}", "keywords": []}) for i in range(70)
    ]
    records.append(
        new_record("scan", subject={"patient_pseudonym": "p1"}, article={"pmcid": "PMC1", "keywords": []})
    )
    records.append(new_record("loose"))
    splits = _split(records)
    by_article: dict[str, set[str]] = {}
    for sample_id, (split, group) in splits.items():
        if sample_id.startswith("fig"):
            assert group == "article"
            by_article.setdefault(sample_id.rsplit("-", 1)[1], set()).add(split)
    assert all(len(s) == 1 for s in by_article.values()) and len(by_article) == 7
    assert splits["scan"][1] == "patient" and splits["loose"][1] == "sample"


def test_assignment_does_not_depend_on_other_records_and_follows_the_seed():
    alone = _split([new_record("x1", article={"pmcid": "PMC42", "keywords": []})])
    crowd = [new_record(f"y{i}", article={"pmcid": f"PMC{i}", "keywords": []}) for i in range(50)]
    together = _split([*crowd, new_record("x1", article={"pmcid": "PMC42", "keywords": []})])
    assert alone["x1"] == together["x1"]
    seeds = {
        _split([new_record("x1", article={"pmcid": f"PMC{n}", "keywords": []})], seed=str(n))["x1"][0]
        for n in range(40)
    }
    assert seeds == {"train", "val", "test"}
