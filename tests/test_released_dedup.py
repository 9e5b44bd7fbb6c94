"""Dedup across releases: a published sample stays when a copy arrives later, and a nightly run only
searches pairs that involve its new samples (real Prefect runs and releases on one lake)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import ImageOps

from medcurate.dedup.released import index_counts
from medcurate.lake import Lake
from medcurate.pipelines.flow import curate

from .figures import figure, save_png

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _config(corpus: Path, **near: object) -> dict:
    return {
        "name": "released-test",
        "sources": [{"name": "figs", "kind": "labeled", "uri": str(corpus), "params": {"license": "cc0"}}],
        "stages": {
            "normalize": {"max_side": 256, "min_side": 32},
            "exact_dedup": {},
            "near_dedup": {"variants": ["hflip"], **near},
        },
        "release": {"name": "released-test", "shard_max_count": 16},
    }


def _released(summary) -> set[str]:
    manifest = pq.read_table(Path(summary.release_path) / "manifest.parquet", columns=["source_uri"])
    return {Path(uri).name for uri in manifest.column("source_uri").to_pylist()}


def test_a_later_copy_never_displaces_a_released_sample_and_only_new_pairs_are_searched(
    tmp_path: Path,
) -> None:
    corpus, lake_root = tmp_path / "corpus", tmp_path / "lake"
    for seed in range(6):
        save_png(figure(seed), corpus / "lesion" / f"fig{seed}.png")
    first = curate(_config(corpus), str(lake_root))
    assert first.published and first.sample_count == 6
    lake = Lake(str(lake_root))
    assert index_counts(lake, first.run_id, "near_dedup") == {"searched": 6, "settled": 0}

    # A larger copy of fig0 (the "resolution" criterion prefers it), a mirrored copy of fig1, and a
    # new unrelated figure arrive.
    save_png(figure(0).resize((256, 256)), corpus / "lesion" / "fig0_large.png")
    save_png(ImageOps.mirror(figure(1)), corpus / "lesion" / "fig1_mirrored.png")
    save_png(figure(99), corpus / "lesion" / "fig99.png")
    second = curate(_config(corpus), str(lake_root))
    assert second.published
    assert _released(second) == {f"fig{i}.png" for i in range(6)} | {"fig99.png"}
    assert second.ledger["totals"]["filtered"] == {"near_duplicate": 2}
    # The six released samples were settled; only the three new ones were searched.
    assert index_counts(lake, second.run_id, "near_dedup") == {"searched": 3, "settled": 6}

    # Without "released" in the keep policy the better copy wins, even over a published sample; the
    # search stays incremental (the keep policy decides who stays, not who matches).
    best_copy = curate(_config(corpus, keep=["resolution"]), str(lake_root))
    released = _released(best_copy)
    assert "fig0_large.png" in released and "fig0.png" not in released
    assert index_counts(lake, best_copy.run_id, "near_dedup") == {"searched": 2, "settled": 7}

    # A wider radius may join samples that were apart: everything is searched again.
    wider = curate(_config(corpus, keep=["resolution"], radius=8), str(lake_root))
    assert index_counts(lake, wider.run_id, "near_dedup")["settled"] == 0
    assert _released(wider) == released
