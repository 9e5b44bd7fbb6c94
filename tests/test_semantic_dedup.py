"""Semantic dedup: the pair search against brute force, the lake's vector store, and the embed +
semantic_dedup stages through a real run with a tiny random CLIP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageEnhance

from medcurate.dedup.semantic import semantic_duplicate_pairs
from medcurate.dedup.vectors import VECTOR_ROOT, VectorStore, vector_namespace, vector_store
from medcurate.lake import Lake
from medcurate.models.spec import ModelSpec
from medcurate.schemas.record import new_record, to_batch
from medcurate.stages import make_stage
from medcurate.stages.base import StageContext, run_map_stage

from .figures import figure, save_png

FAKE_MODEL = ModelSpec("embed", "/models/fake-clip", "transformers", "0" * 64)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def planted(n: int, dim: int = 64, topics: int = 40, copies: float = 0.05, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``topics`` centres (intra-topic cosine ~0.5) with ``copies`` of them
    replaced by noisy copies of others, at cosines from ~0.9 to ~1 (both sides of 0.95)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((topics, dim)))
    x = unit(centres[rng.integers(0, topics, n)] + rng.standard_normal((n, dim)) * 0.12)
    m = int(n * copies)
    src, dst = rng.choice(n, (2, m), replace=False)
    noise = rng.uniform(0.0, 0.06, (m, 1))
    x[dst] = unit(x[src] + rng.standard_normal((m, dim)) * noise)
    return x


def brute_force(x: np.ndarray, threshold: float) -> np.ndarray:
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    i, j = np.nonzero(np.triu(sims >= threshold, 1))
    return np.column_stack([i, j, sims[i, j]])


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in pairs[:, :2]}


@pytest.mark.parametrize("flat_max", [10**6, 10])  # exact blocked product, clustered with probes
@pytest.mark.parametrize("threshold", [0.9, 0.95, 0.99])
def test_pairs_equal_brute_force(flat_max: int, threshold: float) -> None:
    x = planted(3000, seed=int(threshold * 100))
    expected = brute_force(x, threshold)
    got = semantic_duplicate_pairs(x, threshold, flat_max=flat_max)
    assert len(expected) >= 30
    np.testing.assert_array_equal(got[:, :2], expected[:, :2])
    np.testing.assert_allclose(got[:, 2], expected[:, 2], rtol=0, atol=1e-9)


def test_recall_of_border_pairs_on_unclustered_data() -> None:
    """The hard case for clustering: uniform vectors (no topics), so k-means borders cut everywhere.

    Measured on this set (n=20k, d=64, 141 clusters, 986 planted pairs at cosine 0.95-1.0, which are
    all the pairs above 0.95): probes=1 (plain SemDeDup) finds 0.955 of them, probes=2 0.998 (two
    missed), probes=3 all. Clustered real embeddings have far fewer pairs on a border (the planted set
    of ``test_pairs_equal_brute_force`` and the 200k benchmark: recall 1.0 with probes=2).
    """
    rng = np.random.default_rng(5)
    x = unit(rng.standard_normal((20_000, 64)))
    src, dst = rng.choice(len(x), (2, 1000), replace=False)
    x[dst] = unit(x[src] + rng.standard_normal((1000, 64)) * rng.uniform(0.0, 0.04, (1000, 1)))
    truth = {(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist(), strict=True)}
    truth = {p for p in truth if float(x[p[0]] @ x[p[1]]) >= 0.95}
    recall = {}
    for probes in (1, 2):
        found = as_set(semantic_duplicate_pairs(x, 0.95, probes=probes, flat_max=0))
        recall[probes] = len(truth & found) / len(truth)
    assert len(truth) > 800
    assert recall[2] >= 0.99 and recall[1] < recall[2]


def test_clustered_search_is_deterministic_and_validates_input() -> None:
    x = planted(4000, seed=3)
    first = semantic_duplicate_pairs(x, 0.95, flat_max=0, clusters=50, seed=7)
    assert np.array_equal(first, semantic_duplicate_pairs(x, 0.95, flat_max=0, clusters=50, seed=7))
    assert semantic_duplicate_pairs(x[:1], 0.95).shape == (0, 3)
    with pytest.raises(ValueError, match="threshold"):
        semantic_duplicate_pairs(x, 1.5)
    with pytest.raises(ValueError, match="probes"):
        semantic_duplicate_pairs(x, 0.9, probes=0)


def test_vector_store_round_trip_and_immutability(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    namespace = vector_namespace(FAKE_MODEL)
    store = VectorStore(lake, namespace)
    vectors = unit(np.random.default_rng(0).standard_normal((5, 8)))
    keys = ["e", "a", "c", "b", "d"]
    rel = store.put(keys, vectors)
    assert rel and rel.startswith(f"{VECTOR_ROOT}/image-{FAKE_MODEL.cache_namespace}/part-")
    schema = lake.read_parquet(rel).schema
    assert schema.field("vector").type == pa.list_(pa.float32(), 8)
    assert set(schema.names) == {"key", "vector"}
    written = lake.read_bytes(rel)

    fresh = VectorStore(lake, namespace)  # another process: reads the index from the lake
    got, found = fresh.read(["c", "zz", "a", "c"])
    assert found.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(got[[0, 2, 3]], vectors[[2, 1, 2]])
    assert not got[1].any()
    assert fresh.missing(["a", "zz", "zz", "y"]) == ["y", "zz"]

    # A stored key is never rewritten: same keys write nothing, new values for them are ignored.
    assert fresh.put(keys, vectors * 0) is None
    assert fresh.put(["a", "f"], vectors[:2] * 0) is not None
    np.testing.assert_array_equal(fresh.read(["a"])[0][0], vectors[1])
    assert lake.read_bytes(rel) == written and len(list(lake.walk_files(fresh.folder))) == 2
    # The first store object sees what another wrote (a Spark executor) when it asks for it.
    assert store.read(["f"])[1].tolist() == [True] and len(store) == 6


def _fit_table(records: list[dict], stage) -> pa.Table:
    flat = pa.Table.from_batches([to_batch(records)]).flatten()
    return flat.select(["sample_id", *stage.fit_columns])


def test_stage_groups_by_cosine_keeps_by_policy_and_names_the_embed_stage(tmp_path: Path) -> None:
    ctx = StageContext(run_id="t", lake_uri=str(tmp_path / "lake"))
    rng = np.random.default_rng(1)
    base, other = unit(rng.standard_normal((2, 32)))
    close = unit((base + 0.05 * rng.standard_normal(32))[None])[0]
    images = {  # sample_id: (image key, vector, license)
        "a-base": ("k-base", base, "cc-by-nc"),
        "b-close": ("k-close", close, "cc-by"),
        "c-same-image": ("k-base", base, "cc-by-nc-nd"),
        "d-other": ("k-other", other, "cc-by"),
    }
    vector_store(ctx.lake_uri, vector_namespace(FAKE_MODEL)).put(
        [key for key, _, _ in images.values()], np.stack([v for _, v, _ in images.values()])
    )
    records = [
        new_record(
            sid, image={"sha256": key, "source_width": 64, "source_height": 64}, source={"license": lic}
        )
        for sid, (key, _, lic) in images.items()
    ]
    stage = make_stage("semantic_dedup", {"threshold": 0.95, "keep": ["license"]})
    stage.model = FAKE_MODEL
    state = stage.fit(_fit_table(records, stage), ctx)
    cosine = float(base.astype(np.float64) @ close.astype(np.float64))
    assert cosine > 0.95
    assert state["a-base"][:2] == ("b-close", "b-close") and state["c-same-image"][1] == "b-close"
    assert "d-other" not in state
    result = run_map_stage(stage.bind(state), to_batch(records), ctx)
    kept = {r["sample_id"]: r for r in result.kept.to_pylist()}
    gone = {r["sample_id"]: r for r in result.excluded.to_pylist()}
    assert set(kept) == {"b-close", "d-other"} and set(gone) == {"a-base", "c-same-image"}
    assert kept["b-close"]["dedup"]["semantic_group"] == "b-close"
    for record in gone.values():
        assert record["status_reason"] == f"semantic_duplicate: cosine {cosine:.3f} to b-close"
        assert record["dedup"]["duplicate_of"] == "b-close"
        assert record["dedup"]["method"] == f"semantic:{FAKE_MODEL.ref}"
        assert record["dedup"]["distance"] == pytest.approx(1 - cosine)
        event = record["lineage"][-1]
        assert event["stage"] == "semantic_dedup" and event["model"] == FAKE_MODEL.ref
        assert json.loads(event["details"])["duplicate_of"] == "b-close"

    unknown = [*records, new_record("e-new", image={"sha256": "k-never-embedded"})]
    with pytest.raises(RuntimeError, match=r"'embed' stage.*e-new|e-new.*'embed' stage"):
        stage.fit(_fit_table(unknown, stage), ctx)


def _pipeline(corpus: Path, clip: Path | None, threshold: float) -> dict:
    config = {
        "name": "semdedup-test",
        "sources": [
            {"name": "figs", "kind": "labeled", "uri": str(corpus), "params": {"license": "cc0"}},
        ],
        "stages": {
            "normalize": {"max_side": 256, "min_side": 32, "jpeg_quality": 90},
            "embed": {},
            "semantic_dedup": {"threshold": threshold},
        },
        "release": {"name": "semdedup-test", "shard_max_count": 16},
    }
    if clip is not None:
        config["models"] = {"embed": {"path": str(clip)}}
    return config


def test_without_an_embed_model_both_stages_are_skipped_and_named(tmp_path: Path) -> None:
    from medcurate.config import PipelineConfig
    from medcurate.steps import build_stages

    cfg = PipelineConfig.model_validate(_pipeline(tmp_path, None, 0.95))
    per_input, dataset, skipped = build_stages(cfg)
    assert [s.name for s in [*per_input, *dataset]] == ["normalize"]
    assert skipped == ["embed: no model for role 'embed'", "semantic_dedup: no model for role 'embed'"]


def _run_steps(config: dict, lake_root: Path) -> tuple[Lake, str, dict]:
    """The flow's steps on the local engine without Prefect, with every model stage attached."""
    from medcurate.config import PipelineConfig

    from .conftest import run_steps

    lake, plan, _, ledger = run_steps(PipelineConfig.model_validate(config), lake_root)
    assert plan.skipped_stages == []
    return lake, plan.run_id, ledger.as_dict()


def _rows(lake: Lake, folder: str) -> dict[str, dict]:
    """Records under a run folder by their source file's name."""
    return {
        Path(row["source"]["uri"]).name: row
        for rel in lake.walk_files(folder, suffix=".parquet")
        for row in lake.read_parquet(rel).to_pylist()
    }


def test_embed_and_semantic_dedup_through_a_run_with_a_tiny_clip(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from medcurate.models.registry import unload_all
    from medcurate.models.tiny import write_tiny_clip

    corpus = tmp_path / "corpus"
    figures = [figure(seed) for seed in range(6)]
    for seed, image in enumerate(figures):
        save_png(image, corpus / f"class{seed % 2}" / f"fig{seed}.png")
    # A re-toned, smaller copy of fig0 (new pixel and phash); fig1's pixels in another PNG encoding.
    toned = ImageEnhance.Brightness(figures[0]).enhance(1.03).resize((88, 88), Image.LANCZOS)
    save_png(toned, corpus / "class0" / "zz-toned.png")
    save_png(figures[1], corpus / "class1" / "zz-reencoded.png", compress_level=0)
    clip = write_tiny_clip(tmp_path / "tiny-clip")
    # Random weights put all images near each other (distinct ones measured up to cosine 0.993), so
    # the test threshold sits between them and the copies (> 0.9999); real models use ~0.95.
    try:
        lake, run_id, ledger = _run_steps(_pipeline(corpus, clip, 0.999), tmp_path / "lake")
    finally:
        unload_all()
    assert len(list(lake.walk_files(VECTOR_ROOT, suffix=".parquet"))) >= 1
    excluded = _rows(lake, f"runs/{run_id}/excluded/semantic_dedup")
    kept = _rows(lake, f"runs/{run_id}/semantic_dedup")
    assert len(kept) == 6 and len(excluded) == 2 and "zz-toned.png" in excluded
    # Same pixels normalise to the same bytes, so one vector: which copy stays is sample_id's call.
    (reencoded,) = {"fig1.png", "zz-reencoded.png"} & set(excluded)
    other = "fig1.png" if reencoded == "zz-reencoded.png" else "zz-reencoded.png"
    for name, original in (("zz-toned.png", "fig0.png"), (reencoded, other)):
        record = excluded[name]
        assert record["dedup"]["duplicate_of"] == kept[original]["sample_id"]
        assert kept[original]["dedup"]["semantic_group"] == kept[original]["sample_id"]
        assert record["dedup"]["method"].startswith("semantic:tiny-clip@")
        assert 0 <= record["dedup"]["distance"] < 0.001
        assert record["status_reason"].startswith("semantic_duplicate: cosine ")
        event = record["lineage"][-1]
        assert event["stage"] == "semantic_dedup" and event["model"].startswith("tiny-clip@")
        embed = next(e for e in record["lineage"] if e["stage"] == "embed")
        assert embed["model"] == event["model"]
        assert json.loads(embed["details"])["embedding"] in ("computed", "stored")
    assert all(not r["dedup"]["semantic_group"] for name, r in kept.items() if name[:4] in ("fig2", "fig3"))
    assert sum(s["filtered"].get("semantic_duplicate", 0) for s in ledger["sources"].values()) == 2
