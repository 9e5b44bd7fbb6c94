"""`medcurate diff A B` on real releases of one lake: added, removed with the reason from lineage or
from the releases in between, changed with the fields (real Prefect runs, real manifests)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medcurate.cli import app
from medcurate.pipelines.flow import curate
from medcurate.release.diff import diff_releases, summary

from .figures import figure, save_png

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _config(corpus: Path, license: str, keep: list[str]) -> dict:
    return {
        "name": "diff-test",
        "sources": [{"name": "figs", "kind": "labeled", "uri": str(corpus), "params": {"license": license}}],
        "stages": {"normalize": {"max_side": 256, "min_side": 32}, "near_dedup": {"keep": keep}},
        "release": {"name": "diff-test", "shard_max_count": 16},
    }


def _by_file(table) -> dict[str, dict]:
    return {Path(row["source_uri"]).name: row for row in table.to_pylist()}


def test_diff_across_skipped_versions_names_why_each_sample_went(tmp_path: Path) -> None:
    corpus, lake = tmp_path / "corpus", tmp_path / "lake"
    for seed in range(6):
        save_png(figure(seed), corpus / "lesion" / f"fig{seed}.png")
    first = curate(_config(corpus, "cc0", ["resolution"]), str(lake))
    # 1.1.0: a larger copy of fig0 replaces it (keep by resolution), fig5 is withdrawn, fig99 is new.
    save_png(figure(0).resize((192, 192)), corpus / "lesion" / "fig0_large.png")
    save_png(figure(99), corpus / "lesion" / "fig99.png")
    (corpus / "lesion" / "fig5.png").unlink()
    second = curate(_config(corpus, "cc0", ["resolution"]), str(lake))
    # 1.2.0: the source is relicensed.
    third = curate(_config(corpus, "cc-by", ["resolution"]), str(lake))
    assert (first.release_version, second.release_version, third.release_version) == (
        "1.0.0",
        "1.1.0",
        "1.2.0",
    )

    table = diff_releases(Path(first.release_path), Path(third.release_path))
    assert summary(table) == {"added": 2, "removed": 2, "changed": 4}
    rows = _by_file(table)
    assert {name for name, row in rows.items() if row["change"] == "added"} == {"fig0_large.png", "fig99.png"}
    fig0 = rows["fig0.png"]  # excluded by the newer release's own run: reason and lineage detail
    assert fig0["change"] == "removed" and fig0["stage"] == "near_dedup"
    assert fig0["reason"].startswith("near_duplicate") and "method=phash" in fig0["reason"]
    assert f"duplicate_of={rows['fig0_large.png']['key']}" in fig0["reason"]
    fig5 = rows["fig5.png"]  # gone before: the reason the release in between recorded
    assert fig5["change"] == "removed" and fig5["reason"].startswith("withdrawn:")
    changed = [row for row in rows.values() if row["change"] == "changed"]
    assert all(
        row["fields"] == ["license"] and row["reason"] == "relicensed: cc0 -> cc-by" for row in changed
    )
    assert json.loads(changed[0]["before"]) == {"license": "cc0"}

    # The CLI by NAME@VERSION in the lake, with the parquet copy.
    out = tmp_path / "diff.parquet"
    result = CliRunner().invoke(
        app, ["diff", "diff-test@1.0.0", "diff-test@1.2.0", "--lake", str(lake), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "2 added, 2 removed, 4 changed" in result.output
    assert pq.read_table(out).equals(table)
    # The same release against itself: nothing.
    assert summary(diff_releases(Path(third.release_path), Path(third.release_path))) == {
        "added": 0,
        "removed": 0,
        "changed": 0,
    }
