"""Model stages through the real flow: tiny random-weight models built here, the transformers backend
in-process and on Spark, and the HTTP backend against a real local server serving the same model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import webdataset as wds

from medcurate.config import load_pipeline
from medcurate.lake import Lake
from medcurate.models.cache import CACHE_ROOT, forget_caches
from medcurate.models.registry import unload_all
from medcurate.models.tiny import write_tiny_clip, write_tiny_vlm
from medcurate.pipelines.flow import curate
from medcurate.steps import build_stages

from .conftest import DEMO_PIPELINE, REPO, demo_inputs

pytestmark = pytest.mark.usefixtures("prefect_harness")

# A random judge flags and scores at random: the tests check that everything is scored, not kept.
# A random CLIP puts distinct images at cosine up to 0.993: only true copies may count as duplicates.
RELAXED = [
    "stages.quality_filter.drop_flags=[]",
    "stages.quality_filter.min={image.min_side: 32}",
    "stages.semantic_dedup.threshold=0.9999",
    "stages.decontaminate.semantic_threshold=0.9999",
]
MODEL_STAGES = ("embed", "semantic_dedup", "caption", "panel_rewrite", "paraphrase", "judge")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"vlm": write_tiny_vlm(root / "tiny-vlm"), "clip": write_tiny_clip(root / "tiny-clip")}


def _inputs(corpus_root: Path) -> list[str]:
    return demo_inputs(corpus_root)


def _models(tiny: dict[str, Path]) -> list[str]:
    return [f"caption={tiny['vlm']}", f"judge={tiny['vlm']}", f"embed={tiny['clip']}"]


def _released(lake_root: Path, summary) -> list[dict]:
    shards = sorted(str(p) for p in Path(summary.release_path, "shards").glob("*.tar"))
    return [json.loads(s["json"]) for s in wds.WebDataset(shards, shardshuffle=False)]


def _cache_files(lake_root: Path) -> list[str]:
    return sorted(str(p.relative_to(lake_root)) for p in (lake_root / CACHE_ROOT).rglob("*.parquet"))


@pytest.fixture(scope="module")
def model_run(tiny_models, corpus_root, tmp_path_factory):
    cfg = load_pipeline(DEMO_PIPELINE, RELAXED, _inputs(corpus_root), _models(tiny_models))
    lake_root = tmp_path_factory.mktemp("lake")
    summary = curate(cfg.model_dump(), str(lake_root))
    return lake_root, summary


def test_every_sample_is_captioned_and_scored_by_the_attached_models(model_run):
    lake_root, summary = model_run
    assert summary.skipped_stages == [] and summary.ledger["totals"]["balanced"]
    records = _released(lake_root, summary)
    assert len(records) == summary.sample_count > 40
    quarantined = summary.ledger["totals"]["quarantined"]
    captioned = 0
    for record in records:
        stages = {event["stage"]: event for event in record["lineage"]}
        assert {"caption", "judge", "quality_signals"} <= set(stages)
        assert stages["caption"]["model"].startswith("tiny-vlm@")
        captioned += bool(record["text"]["generated_caption"])  # a random model may answer ""
        names = {score["name"] for score in record["scores"]}
        assert {"judge.quality", "judge.consistency", "clip_similarity", "caption.words"} <= names
        assert record["quality"]["is_medical"] is not None
    assert captioned >= 0.8 * len(records)
    # Invalid model answers are quarantined with the raw output, never shipped (none expected here).
    assert quarantined.get("invalid_model_output", 0) == 0


def test_every_model_written_text_names_its_model_and_prompt_in_lineage(model_run):
    lake_root, summary = model_run
    checked = 0
    for record in _released(lake_root, summary):
        for author in record["text"]["authors"]:
            if not author["author"].startswith("model:"):
                continue
            model = author["author"].removeprefix("model:")
            assert author["prompt_id"] and len(author["prompt_sha256"]) == 64
            assert any(
                e["model"] == model
                and e["prompt_id"] == author["prompt_id"]
                and e["prompt_sha256"] == author["prompt_sha256"]
                for e in record["lineage"]
            ), (record["sample_id"], author)
            checked += 1
    assert checked >= summary.sample_count  # at least the generated caption of each sample
    release = json.loads(Path(summary.release_path, "release.json").read_text())
    assert set(release["config"]["models"]) == {"caption", "judge", "embed"}
    assert all("path" not in model for model in release["config"]["models"].values())


def test_a_rerun_computes_no_caption_or_score_twice(model_run, tiny_models, corpus_root):
    lake_root, first = model_run
    before = _cache_files(lake_root)
    forget_caches()
    unload_all()
    # A changed filter threshold makes a new run whose dataset stages run again over everything.
    overrides = [*RELAXED, "stages.quality_filter.max={image.aspect_ratio: 9}"]
    cfg = load_pipeline(DEMO_PIPELINE, overrides, _inputs(corpus_root), _models(tiny_models))
    second = curate(cfg.model_dump(), str(lake_root))
    assert second.run_id != first.run_id
    assert _cache_files(lake_root) == before  # nothing new was computed
    for record in _released(lake_root, second):
        for event in record["lineage"]:
            if event["stage"] in (*MODEL_STAGES, "quality_signals") and event["run_id"] == second.run_id:
                details = json.loads(event["details"] or "{}")
                assert details.get("cached", True) is True or details.get("clip_similarity") == "cached", (
                    event
                )


def test_without_models_the_model_stages_are_named_as_skipped(corpus_root):
    cfg = load_pipeline(DEMO_PIPELINE, [], _inputs(corpus_root))
    _, dataset, skipped = build_stages(cfg)
    assert [s.split(":")[0] for s in skipped] == list(MODEL_STAGES)
    assert "quality_signals" in [stage.name for stage in dataset]  # runs without a model, minus CLIP


@pytest.mark.spark
def test_model_stages_on_spark_executors(tiny_models, corpus_root, tmp_path):
    cfg = load_pipeline(
        REPO / "pipelines" / "labeled.yaml",
        [
            "engine.kind=spark",
            "engine.spark.master=local[2]",
            "stages.caption={}",
            "stages.caption_policy={}",
        ],
        [str(corpus_root / "labeled" / "chest_xray")],
        [f"caption={tiny_models['vlm']}"],
    )
    summary = curate(cfg.model_dump(), str(tmp_path / "lake"))
    records = _released(tmp_path / "lake", summary)
    assert records and all(any(e["stage"] == "caption" and e["model"] for e in r["lineage"]) for r in records)
    assert sum(bool(r["text"]["generated_caption"]) for r in records) >= 0.8 * len(records)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_backend_through_the_flow_against_a_served_tiny_model(tiny_models, corpus_root, tmp_path):
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "medcurate.cli",
        "serve-model",
        str(tiny_models["vlm"]),
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    endpoint = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{endpoint.removesuffix('/v1')}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("model server did not start")
        cfg = load_pipeline(
            REPO / "pipelines" / "labeled.yaml",
            [
                *RELAXED,
                "stages.caption_policy={prefer: model}",
                f"models.caption={{endpoint: '{endpoint}', options: {{concurrency: 4}}}}",
            ],
            [str(corpus_root / "labeled" / "chest_xray")],
            [f"caption={tiny_models['vlm']}@http"],
        )
        summary = curate(cfg.model_dump(), str(tmp_path / "lake"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    records = _released(tmp_path / "lake", summary)
    by_model = [r for r in records if r["text"]["final_caption_author"].startswith("model:tiny-vlm@")]
    assert records and len(by_model) >= 0.8 * len(records)  # the rest: a random model answered ""
    events = [e for r in records for e in r["lineage"] if e["stage"] == "caption"]
    assert all(json.loads(e["details"])["backend"] == "http" for e in events)
    assert Lake(str(tmp_path / "lake")).exists(CACHE_ROOT)
