"""Label-to-text stage: wording from the YAML templates, lineage, and exclusions."""

from __future__ import annotations

import json

import pytest

from medcurate.prompts import load_prompt
from medcurate.schemas.record import QUARANTINED, new_record, to_batch
from medcurate.stages.base import StageContext, run_map_stage
from medcurate.stages.label_text import LabelTextStage

CTX = StageContext(run_id="t")


def labels(**values: str) -> list[dict[str, str]]:
    return [{"name": name.replace("_", " "), "value": value} for name, value in values.items()]


def record(sample_id: str = "s1", dataset: str = "chexpert", text: dict | None = None, **medical) -> dict:
    medical.setdefault("labels", [])
    return new_record(sample_id, source={"dataset": dataset}, medical=medical, text=text or {})


def run(stage: LabelTextStage, *records: dict):
    result = run_map_stage(stage, to_batch(records), CTX)
    return result.kept.to_pylist(), result.excluded.to_pylist()


CHEST = LabelTextStage({"templates": {"chexpert": "labels.chest_xray"}})


def test_chest_example_sentence_and_caption():
    rec = record(
        modality="XR",
        body_part="chest",
        view="Frontal",
        labels=labels(Cardiomegaly="positive", Edema="uncertain", Pleural_Effusion="negative"),
    )
    (kept,), excluded = run(CHEST, rec)
    assert excluded == []
    text = "Frontal chest X-ray with cardiomegaly; no pleural effusion; possible edema."
    assert kept["text"]["label_text"] == text
    assert kept["text"]["final_caption"] == text
    assert kept["text"]["final_caption_author"] == "template:labels.chest_xray@1"


def test_lineage_event_carries_prompt_identity():
    (kept,), _ = run(CHEST, record(labels=labels(Edema="positive")))
    event = kept["lineage"][-1]
    prompt = load_prompt("labels.chest_xray")
    assert (event["stage"], event["decision"]) == ("label_text", "kept")
    assert event["prompt_id"] == "labels.chest_xray@1"
    assert event["prompt_sha256"] == prompt.sha256
    details = json.loads(event["details"])
    assert "prompt_id" not in details and details["final_caption"] is True


def test_order_and_nothing_dropped():
    rec = record(
        view="PA",
        labels=labels(
            Pneumonia="uncertain",
            No_Finding="negative",
            Edema="negative",
            Cardiomegaly="positive",
            Support_Devices="positive",
            Fracture="positive",
            ARDS="uncertain",
        ),
    )
    (kept,), _ = run(CHEST, rec)
    assert kept["text"]["label_text"] == (
        "Frontal PA chest X-ray with cardiomegaly, support devices and fracture; "
        "abnormal findings present; no edema; possible pneumonia; possible ARDS."
    )


def test_no_finding_special_phrase_and_defaults():
    (kept,), _ = run(CHEST, record(labels=labels(No_Finding="positive")))
    assert kept["text"]["label_text"] == "Chest X-ray with no acute abnormality."


def test_only_negatives():
    (kept,), _ = run(CHEST, record(view="Lateral", labels=labels(Edema="negative", Pneumonia="negative")))
    assert kept["text"]["label_text"] == "Lateral chest X-ray; no edema; no pneumonia."


def test_existing_caption_is_kept():
    rec = record(
        labels=labels(Edema="positive"),
        text={"final_caption": "Author caption.", "final_caption_author": "author"},
    )
    (kept,), _ = run(CHEST, rec)
    assert kept["text"]["label_text"] == "Chest X-ray with edema."
    assert kept["text"]["final_caption"] == "Author caption."
    assert kept["text"]["final_caption_author"] == "author"
    assert json.loads(kept["lineage"][-1]["details"])["final_caption"] is False


def test_generic_single_label_class():
    stage = LabelTextStage({})
    rec = record(
        dataset="isic",
        modality="DERM",
        body_part="skin",
        class_name="melanoma",
        class_index=0,
        labels=labels(melanoma="positive"),
    )
    (kept,), _ = run(stage, rec)
    assert kept["text"]["label_text"] == "Dermoscopy image of skin showing melanoma."
    assert kept["text"]["final_caption_author"] == "template:labels.generic@1"


@pytest.mark.parametrize(
    ("medical", "expected"),
    [
        (
            {"modality": "DERM", "body_part": "skin", "class_name": "seborrheic_keratosis"},
            "Dermoscopy image of skin showing seborrheic keratosis.",
        ),
        (
            {"modality": "PATH", "body_part": "breast", "class_name": "invasive ductal carcinoma"},
            "Histopathology image of breast showing invasive ductal carcinoma.",
        ),
        (
            {"modality": "OPH", "body_part": "EYE", "class_name": "diabetic_retinopathy"},
            "Fundus photograph showing diabetic retinopathy.",
        ),
        ({"modality": "CT", "body_part": "CHEST", "class_name": "COVID-19"}, "Chest CT showing COVID-19."),
        ({"modality": "MR", "body_part": "brain", "class_name": "Glioma"}, "Brain MRI showing glioma."),
        (
            {"modality": "US", "body_part": "breast", "class_name": "benign"},
            "Breast ultrasound showing benign.",
        ),
        (
            {
                "modality": "XR",
                "view": "AP",
                "body_part": "knee",
                "labels": labels(Osteoarthritis="uncertain"),
            },
            "AP knee X-ray; possible osteoarthritis.",
        ),
        (
            {"class_name": "normal", "labels": labels(normal="positive", artifact="negative")},
            "Medical image showing normal; no artifact.",
        ),
    ],
)
def test_generic_template_phrases(medical, expected):
    (kept,), _ = run(LabelTextStage({"template": "labels.generic@1"}), record(**medical))
    assert kept["text"]["label_text"] == expected


def test_no_labels_passes_unchanged_for_a_caption_stage_to_fill():
    (kept,), excluded = run(CHEST, record(modality="XR"))
    assert excluded == [] and not kept["text"].get("final_caption")
    assert "no labels" in kept["lineage"][-1]["details"]


def test_invalid_label_value_is_quarantined():
    _, (excluded,) = run(CHEST, record(labels=[{"name": "Edema", "value": "maybe"}]))
    assert excluded["status"] == QUARANTINED
    assert excluded["status_reason"].startswith("invalid_label_value: ")


def test_mixed_batch_keeps_every_record():
    stage = LabelTextStage({"template": "labels.generic", "templates": {"chexpert": "labels.chest_xray@1"}})
    records = [
        record("a", labels=labels(Edema="positive")),
        record("b", dataset="derm", modality="DERM", body_part="skin", class_name="nevus"),
        record("c", dataset="derm"),
    ]
    kept, excluded = run(stage, *records)
    assert [r["sample_id"] for r in kept] == ["a", "b", "c"] and excluded == []
    assert kept[2]["text"].get("label_text") is None
    assert kept[0]["text"]["final_caption_author"] == "template:labels.chest_xray@1"
    assert kept[1]["text"]["final_caption_author"] == "template:labels.generic@1"


def test_unknown_template_is_a_config_error():
    with pytest.raises(KeyError, match="labels.generic"):
        run(LabelTextStage({"template": "labels.nope"}), record(labels=labels(Edema="positive")))
