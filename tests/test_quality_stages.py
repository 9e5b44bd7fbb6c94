"""quality_signals (measure), caption_repeats (global count) and quality_filter (decide)."""

from __future__ import annotations

import json
from io import BytesIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from medcurate.hashing import sha256_bytes
from medcurate.schemas.record import FILTERED, new_record, to_batch
from medcurate.stages import make_stage
from medcurate.stages.base import StageContext, run_map_stage
from medcurate.stages.caption_repeats import normalise_caption

CTX = StageContext(run_id="test")


def _png(width: int, height: int, shade: int = 128) -> bytes:
    buf = BytesIO()
    Image.new("L", (width, height), shade).save(buf, format="PNG")
    return buf.getvalue()


def _record(sample_id: str, caption: str | None, size=(40, 20), source_size=None, **groups) -> dict:
    data = _png(*size, shade=len(sample_id) * 20)
    image = {"bytes": data, "sha256": sha256_bytes(data), "width": size[0], "height": size[1]}
    if source_size:
        image.update(source_width=source_size[0], source_height=source_size[1])
    return new_record(sample_id, image=image, text={"final_caption": caption}, **groups)


def _scores(record: dict) -> dict[str, float]:
    return {s["name"]: s["value"] for s in record["scores"]}


def _run(stage, records: list[dict], ctx: StageContext = CTX):
    result = run_map_stage(stage, to_batch(records), ctx)
    return {r["sample_id"]: r for r in result.kept.to_pylist()}, {
        r["sample_id"]: r for r in result.excluded.to_pylist()
    }


def test_signals_without_a_model_measure_images_captions_and_language():
    records = [
        _record(
            "en", "Frontal chest radiograph showing a small left pleural effusion.", source_size=(3000, 2000)
        ),
        _record("de", "Röntgenaufnahme des Thorax mit kleinem linksseitigem Pleuraerguss.", size=(20, 50)),
        _record("none", None),
    ]
    kept, excluded = _run(make_stage("quality_signals", {}), records)
    assert not excluded and set(kept) == {"en", "de", "none"}
    en = _scores(kept["en"])
    assert en["image.min_side"] == 2000 and en["image.megapixels"] == 6.0 and en["image.aspect_ratio"] == 1.5
    assert en["caption.words"] == 9 and en["caption.chars"] == len(records[0]["text"]["final_caption"])
    assert "clip_similarity" not in en
    assert _scores(kept["de"])["image.aspect_ratio"] == 2.5 and _scores(kept["de"])["image.min_side"] == 20
    assert all(s["model"] is None for s in kept["en"]["scores"])
    assert kept["en"]["quality"]["language"] == "en" and kept["de"]["quality"]["language"] == "de"
    assert 0 < kept["de"]["quality"]["language_confidence"] <= 1
    assert kept["none"]["quality"]["language"] is None and _scores(kept["none"])["caption.words"] == 0
    again, _ = _run(make_stage("quality_signals", {}), list(kept.values()))
    assert again["en"]["scores"] == kept["en"]["scores"]  # replaced by name, not duplicated


def test_caption_repeats_counts_normalised_captions_over_the_dataset(tmp_path):
    captions = {
        "a": "Figure 12: Chest X-ray.",
        "b": "figure 3 chest x-ray",
        "c": "  FIGURE 7.  Chest   XRay!",
        "d": "A unique caption.",
        "e": None,
    }
    assert normalise_caption(captions["a"]) == normalise_caption(captions["b"]) == "figure 0 chest xray"
    batch = to_batch([_record(k, v) for k, v in captions.items()])
    pq.write_table(pa.Table.from_batches([batch]), tmp_path / "part.parquet")
    names = ["sample_id", "text.final_caption"]  # as engines fetch fit columns: dotted, without bytes
    stage = make_stage("caption_repeats", {})
    assert list(stage.fit_columns) == names[1:]
    table = pq.read_table(tmp_path / "part.parquet", columns=names).rename_columns(names)
    state = stage.fit(table)
    assert state == {"figure 0 chest xray": 3}
    kept, _ = _run(stage.bind(state), [_record(k, v) for k, v in captions.items()])
    assert {k: _scores(r).get("caption.repeats") for k, r in kept.items()} == {
        "a": 3,
        "b": 3,
        "c": 3,
        "d": 1,
        "e": None,
    }
    assert stage.fit(pa.table({})) == {}  # a run with no active records


def _scored(sample_id: str, quality=None, min_side=None, **scores) -> dict:
    record = _record(sample_id, "caption", quality=quality)
    scores = {"image.min_side": min_side, "caption.repeats": scores.pop("repeats", None), **scores}
    record["scores"] = [{"name": k, "value": v, "model": None} for k, v in scores.items() if v is not None]
    return record


def _quality(language="en", is_medical=None, flags=()) -> dict:
    return {"language": language, "language_confidence": 0.9, "is_medical": is_medical, "flags": list(flags)}


def test_quality_filter_applies_each_rule_with_the_value_and_threshold():
    stage = make_stage(
        "quality_filter",
        {
            "min": {"image.min_side": 64, "clip_similarity": 0.2},
            "max": {"caption.repeats": 5},
            "languages": ["en"],
            "require_medical": True,
            "drop_flags": ["hallucination:", "model_contradicts_labels"],
        },
    )
    records = [
        _scored("ok", _quality(), min_side=64, clip_similarity=0.3, repeats=1),
        _scored("small", _quality(), min_side=32),
        _scored("repeated", _quality(), min_side=100, repeats=6),
        _scored("german", _quality("de"), min_side=100),
        _scored("unknown-language", _quality(None), min_side=100),
        _scored("not-medical", _quality(is_medical=False), min_side=100),
        _scored("flagged", _quality(flags=["hallucination:laterality"]), min_side=100),
        _scored("unmeasured", None),
    ]
    kept, excluded = _run(stage, records)
    assert set(kept) == {"ok", "unknown-language", "unmeasured"}
    assert {k: r["status"] for k, r in excluded.items()} == dict.fromkeys(excluded, FILTERED)
    reasons = {k: r["status_reason"] for k, r in excluded.items()}
    assert reasons == {
        "small": "score_below_min: image.min_side=32 < 64",
        "repeated": "score_above_max: caption.repeats=6 > 5",
        "german": "language_not_allowed: quality.language='de' is not one of [en]",
        "not-medical": "not_medical: quality.is_medical is false",
        "flagged": "flagged: quality.flags has 'hallucination:laterality' (drops 'hallucination:'*)",
    }
    details = json.loads(excluded["small"]["lineage"][-1]["details"])
    assert details == {"score": "image.min_side", "value": 32.0, "threshold": 64.0}
    missing = json.loads(kept["unmeasured"]["lineage"][-1]["details"])["missing_scores"]
    assert missing == ["caption.repeats", "clip_similarity", "image.min_side"]
    strict = make_stage("quality_filter", {"languages": ["en"], "allow_unknown_language": False})
    _, dropped = _run(strict, [_scored("unknown-language", _quality(None))])
    assert dropped["unknown-language"]["status_reason"].startswith("language_not_allowed")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"minimum": {}}, "unknown param"),
        ({"min": {"x": "high"}}, "must be a number"),
        ({"max": [1]}, "must map score names"),
        ({"languages": "en"}, "list of non-empty strings"),
    ],
)
def test_quality_filter_rejects_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        make_stage("quality_filter", params)


def test_clip_similarity_with_a_tiny_clip_is_batched_and_cached_in_the_lake(tmp_path):
    pytest.importorskip("torch")
    from medcurate.models.cache import forget_caches
    from medcurate.models.registry import unload_all
    from medcurate.models.spec import resolve_model
    from medcurate.models.tiny import write_tiny_clip
    from medcurate.stages.quality_signals import QualitySignalsStage

    spec = resolve_model("embed", str(write_tiny_clip(tmp_path / "clip")))
    ctx = StageContext(run_id="t", lake_uri=str(tmp_path / "lake"))
    records = [
        _record("a", "Chest X-ray with cardiomegaly."),
        _record("bb", "Axial CT of the abdomen."),
        _record("ccc", "Chest X-ray with cardiomegaly."),  # same caption, other image: its own pair
        _record("nocap", None),
    ]
    try:
        first, _ = _run(QualitySignalsStage({}, model=spec), records, ctx)
        forget_caches()
        second, _ = _run(QualitySignalsStage({}, model=spec), records, ctx)
    finally:
        unload_all()
        forget_caches()
    for sample_id in ("a", "bb", "ccc"):
        score = next(s for s in first[sample_id]["scores"] if s["name"] == "clip_similarity")
        assert -1 <= score["value"] <= 1 and score["model"] == spec.ref
        assert _scores(second[sample_id])["clip_similarity"] == score["value"]
        assert json.loads(first[sample_id]["lineage"][-1]["details"])["clip_similarity"] == "computed"
        assert json.loads(second[sample_id]["lineage"][-1]["details"])["clip_similarity"] == "cached"
        assert first[sample_id]["lineage"][-1]["model"] == spec.ref
    assert "clip_similarity" not in _scores(first["nocap"])
    assert json.loads(first["nocap"]["lineage"][-1]["details"])["clip_similarity"].startswith("skipped")
