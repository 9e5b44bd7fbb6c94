"""caption_policy: which caption ships (author or model), with authorship and label checks."""

from __future__ import annotations

import json

import pytest

from medcurate.schemas.record import FILTERED, QUARANTINED, new_record, to_batch
from medcurate.stages import make_stage
from medcurate.stages.base import StageContext, run_map_stage

CTX = StageContext(run_id="test")
MODEL = {
    "field": "generated_caption",
    "author": "model:tiny-vlm@abc123",
    "prompt_id": "caption.radiology@1",
    "prompt_sha256": "f" * 64,
}
TEMPLATE = "template:labels.chest_xray@1"


def _record(sample_id: str, final: str | None, generated: str | None, labels=(), authored=True) -> dict:
    text = {"final_caption": final, "final_caption_author": TEMPLATE if final else None}
    if generated:
        text.update(generated_caption=generated, authors=[MODEL] if authored else [])
    return new_record(sample_id, text=text, medical={"labels": [dict(lb) for lb in labels]})


def _run(records: list[dict], **params):
    result = run_map_stage(make_stage("caption_policy", params), to_batch(records), CTX)
    kept = {r["sample_id"]: r for r in result.kept.to_pylist()}
    return kept, {r["sample_id"]: r for r in result.excluded.to_pylist()}


def _details(record: dict) -> dict:
    return json.loads(record["lineage"][-1]["details"])


def test_prefer_author_keeps_author_text_and_falls_back_to_the_model():
    kept, excluded = _run(
        [
            _record("both", "Chest X-ray with cardiomegaly.", "Enlarged heart."),
            _record("model-only", None, "Enlarged heart."),
            _record("author-only", "Chest X-ray.", None),
            _record("none", None, None),
        ]
    )
    assert kept["both"]["text"]["final_caption"] == "Chest X-ray with cardiomegaly."
    assert kept["both"]["text"]["final_caption_author"] == TEMPLATE
    assert _details(kept["both"])["why"] == "prefer author"
    fallback = kept["model-only"]
    assert fallback["text"]["final_caption"] == "Enlarged heart."
    assert fallback["text"]["final_caption_author"] == MODEL["author"]
    assert fallback["text"]["authors"][-1] == {**MODEL, "field": "final_caption"}
    assert _details(fallback) == {"chosen": "model", "why": "no author caption", "replaced": None}
    assert fallback["lineage"][-1]["model"] == "tiny-vlm@abc123"
    assert fallback["lineage"][-1]["prompt_id"] == MODEL["prompt_id"]
    assert _details(kept["author-only"])["why"] == "no model caption"
    assert excluded["none"]["status"] == FILTERED and excluded["none"]["status_reason"].startswith(
        "no_caption"
    )


def test_prefer_model_replaces_the_author_text_and_says_what_it_replaced():
    kept, _ = _run(
        [_record("a", "Chest X-ray.", "Frontal chest radiograph, enlarged heart.")], prefer="model"
    )
    text = kept["a"]["text"]
    assert text["final_caption"] == "Frontal chest radiograph, enlarged heart."
    assert [a["field"] for a in text["authors"]] == ["generated_caption", "final_caption"]
    assert _details(kept["a"]) == {"chosen": "model", "why": "prefer model", "replaced": TEMPLATE}
    again, _ = _run([kept["a"]], prefer="model")  # idempotent: nothing appended twice
    assert again["a"]["text"]["authors"] == text["authors"]


def test_model_text_that_contradicts_labels_is_filtered_and_flagged():
    labels = [
        {"name": "Pleural_Effusion", "value": "positive"},
        {"name": "Cardiomegaly", "value": "negative"},
    ]
    records = [
        _record("bad", "Chest X-ray.", "No pleural effusion. Cardiomegaly.", labels),
        _record("good", "Chest X-ray.", "Right pleural effusion, no cardiomegaly.", labels),
    ]
    kept, excluded = _run(records, prefer="model")
    bad = excluded["bad"]
    assert bad["status"] == FILTERED
    assert bad["status_reason"] == (
        "model_contradicts_labels: negates positive label 'pleural effusion'; "
        "names negative label 'cardiomegaly'"
    )
    assert bad["quality"]["flags"] == [
        "model_contradicts_labels:negates positive label 'pleural effusion'",
        "model_contradicts_labels:names negative label 'cardiomegaly'",
    ]
    assert bad["text"]["final_caption"] == "Chest X-ray."  # nothing was replaced
    assert kept["good"]["text"]["final_caption"].startswith("Right pleural effusion")
    unchecked, _ = _run(records[:1], prefer="model", check_labels=False)
    assert unchecked["bad"]["text"]["final_caption_author"] == MODEL["author"]


def test_an_unattributed_model_caption_is_quarantined_rather_than_shipped():
    _, excluded = _run([_record("a", None, "Some caption.", authored=False)])
    assert excluded["a"]["status"] == QUARANTINED


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"prefer": "x"}, "prefer must be"),
        ({"x": 1}, "unknown"),
    ],
)
def test_bad_params_fail_at_construction(params, match):
    with pytest.raises(ValueError, match=match):
        make_stage("caption_policy", params)


def test_both_keeps_the_author_sample_and_derives_a_model_sample():
    labels = [{"name": "Cardiomegaly", "value": "positive"}]
    kept, excluded = _run(
        [
            _record("a", "Chest X-ray with cardiomegaly.", "Enlarged heart with cardiomegaly.", labels),
            _record("b", None, "Enlarged heart."),
        ],
        prefer="both",
    )
    assert set(kept) == {"a", "a_model", "b"} and not excluded
    assert kept["a"]["text"]["final_caption_author"] == TEMPLATE
    sibling = kept["a_model"]
    assert sibling["text"]["final_caption"] == "Enlarged heart with cardiomegaly."
    assert sibling["text"]["final_caption_author"] == MODEL["author"]
    assert sibling["lineage"][-1]["decision"] == "derived"
    assert _details(sibling)["derived_from"] == "a"
    assert len(sibling["lineage"]) == len(kept["a"]["lineage"])  # no parent 'kept' event copied


def test_contradicting_model_text_is_dropped_when_the_author_caption_ships():
    labels = [{"name": "Pleural_Effusion", "value": "negative"}]
    for prefer in ("author", "both"):
        kept, _ = _run(
            [_record("a", "Chest X-ray.", "Large pleural effusion on the right.", labels)], prefer=prefer
        )
        assert set(kept) == {"a"}
        text = kept["a"]["text"]
        assert text["final_caption"] == "Chest X-ray." and text["generated_caption"] is None
        assert not [a for a in text["authors"] or [] if a["field"] == "generated_caption"]
        assert any(f.startswith("model_contradicts_labels") for f in kept["a"]["quality"]["flags"])
