"""Card plots: PNGs of a release's contents, byte for byte the same for the same inputs."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from PIL import Image

from medcurate.release.builder import MANIFEST_SCHEMA
from medcurate.release.card import render_card
from medcurate.release.plots import Plot, write_plots

DATASETS = {
    "chest-xray": ("XR", "CC-BY-4.0"),
    "dermatology": ("photo", "CC-BY-NC-4.0"),
    "pmc": ("figure", "CC0-1.0"),
    "dicom": ("CT", "internal-research-only"),
    "nifti": ("MR", "internal-research-only"),
}
SPLITS = ("train", "train", "train", "val", "test")
BANDS = ("20-29", "30-39", "40-49", "60-69", "90+", None)
WORDS = (
    "the",
    "chest",
    "radiograph",
    "shows",
    "a",
    "small",
    "left",
    "pleural",
    "effusion",
    "without",
    "pneumothorax",
    "or",
    "consolidation",
)


def _row(i: int, rng: random.Random, sex: bool = True) -> dict[str, Any]:
    dataset = sorted(DATASETS)[i % len(DATASETS)]
    modality, license_ = DATASETS[dataset]
    if dataset == "pmc" and i % 3 == 0:
        modality = "XR"
    scores = [{"name": "judge.quality", "value": rng.uniform(1, 5), "model": "judge@1"}]
    if i % 2:
        scores.append({"name": "clip.similarity", "value": rng.uniform(0.1, 0.4), "model": "clip@1"})
    return {
        "key": f"s{i:07d}",
        "shard": "shards/x-000000.tar",
        "offset": i * 1024,
        "members": [],
        "source_kind": "literature" if dataset == "pmc" else "labeled",
        "dataset": dataset,
        "license": license_,
        "modality": modality,
        "labels": [],
        "split": SPLITS[i % len(SPLITS)],
        "final_caption": " ".join(rng.choices(WORDS, k=rng.randint(3, 40))) if i % 11 else None,
        "scores": scores,
        "sex": (("F", "M", None)[i % 3]) if sex else None,
        "age_band": BANDS[i % len(BANDS)] if sex else None,
    }


def manifest_of(n: int, sex: bool = True) -> pa.Table:
    """``n`` generated rows; beyond 1,000 the first 1,000 repeat (cheap to build, same mix)."""
    rng = random.Random(7)
    block = pa.Table.from_pylist([_row(i, rng, sex) for i in range(min(n, 1000))], MANIFEST_SCHEMA)
    if n <= 1000:
        return block
    return pa.concat_tables([block] * (n // 1000) + [block.slice(0, n % 1000)]).combine_chunks()


INFO = {
    "name": "demo",
    "version": "1.0.0",
    "sample_count": 0,
    "shards": [],
    "content_hash": "ab" * 32,
    "schema_version": 1,
    "config_hash": "cd" * 8,
    "decontamination": {
        "derm-holdout": {"images": 3, "removed": 1, "eval_images_matched": 1},
        "vqa-test": {"images": 2, "removed": 2, "eval_images_matched": 1},
    },
}
LEDGER = {
    "sources": {
        "chest-xray": {
            "candidates": 40,
            "released": 30,
            "filtered": {"exact_duplicate": 3, "too_small": 4},
            "quarantined": {"decode_error": 3},
        },
        "pmc": {
            "candidates": 30,
            "released": 26,
            "filtered": {"eval_overlap": 2, "near_duplicate": 1},
            "quarantined": {"decode_error": 1},
        },
    }
}


def _non_background(path: Path) -> int:
    """Pixels that are not the white background."""
    image = Image.open(path).convert("L")
    return sum(count for value, count in enumerate(image.histogram()) if value < 250)


def test_plots_are_valid_pngs_and_deterministic(tmp_path: Path) -> None:
    manifest = manifest_of(600)
    plots = write_plots(INFO, manifest, LEDGER, tmp_path / "a")
    paths = [p.path for p in plots]
    assert paths == [
        "plots/by_source_modality.png",
        "plots/caption_length.png",
        "plots/score_clip.similarity.png",
        "plots/score_judge.quality.png",
        "plots/license.png",
        "plots/split.png",
        "plots/sex.png",
        "plots/age_band.png",
        "plots/ledger_reasons.png",
        "plots/decontamination.png",
    ]
    assert all(isinstance(p, Plot) and p.title for p in plots)
    assert sorted(f.name for f in (tmp_path / "a" / "plots").iterdir()) == sorted(
        p.removeprefix("plots/") for p in paths
    )
    for rel in paths:
        path = tmp_path / "a" / rel
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (600, 350)
            image.verify()
        assert _non_background(path) > 2000, rel
        assert b"Software" not in path.read_bytes()  # no Matplotlib version in the bytes

    again = write_plots(INFO, manifest, LEDGER, tmp_path / "b")
    assert again == plots
    for rel in paths:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_unknown_sex_and_age_skip_their_plots_and_nothing_is_drawn_empty(tmp_path: Path) -> None:
    plots = write_plots({}, manifest_of(50, sex=False), {"sources": {}}, tmp_path)
    names = {p.path.removeprefix("plots/") for p in plots}
    assert "sex.png" not in names and "age_band.png" not in names
    assert "ledger_reasons.png" not in names and "decontamination.png" not in names  # nothing to count
    assert {"by_source_modality.png", "license.png", "split.png"} <= names
    # Sets checked but nothing found: no chart of zeros.
    clean = {"decontamination": {"vqa": {"images": 4, "removed": 0, "eval_images_matched": 0}}}
    assert "plots/decontamination.png" not in {
        p.path for p in write_plots(clean, manifest_of(5), {}, tmp_path)
    }


def test_empty_manifest_writes_nothing(tmp_path: Path) -> None:
    empty = MANIFEST_SCHEMA.empty_table()
    assert write_plots({"decontamination": None}, empty, {"sources": {}}, tmp_path) == []
    assert not (tmp_path / "plots").exists()
    # No scores or captions at all: those plots are skipped, the rest still drawn.
    bare = pa.Table.from_pylist(
        [{**row, "scores": [], "final_caption": None} for row in manifest_of(20).to_pylist()], MANIFEST_SCHEMA
    )
    paths = [p.path for p in write_plots({}, bare, {}, tmp_path / "bare")]
    assert paths and not any("score_" in p or "caption" in p for p in paths)


def test_card_links_the_plots(tmp_path: Path) -> None:
    manifest = manifest_of(30)
    info = {**INFO, "sample_count": manifest.num_rows}
    plots = write_plots(info, manifest, LEDGER, tmp_path)
    card = render_card(info, manifest, LEDGER, plots)
    assert "## Plots" in card
    for plot in plots:
        assert f"![{plot.title}]({plot.path})" in card
    assert card.index("## Plots") < card.index("## Contents")
    # Without plots the card is what it always was (pull.py renders it so).
    plain = render_card(info, manifest, LEDGER)
    assert "## Plots" not in plain and "![" not in plain
    assert card.replace(card[card.index("## Plots") : card.index("## Contents")], "") == plain


@pytest.mark.parametrize("rows", [60, 100_000])
def test_plot_time(tmp_path: Path, rows: int) -> None:
    manifest = manifest_of(rows)
    write_plots(INFO, manifest_of(10), LEDGER, tmp_path / "warm")  # Matplotlib import and font cache
    started = time.perf_counter()
    plots = write_plots(INFO, manifest, LEDGER, tmp_path / "timed")
    elapsed = time.perf_counter() - started
    print(f"\n{len(plots)} plots for {rows} manifest rows: {elapsed:.3f}s")
    assert elapsed < 15
