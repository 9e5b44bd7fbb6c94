"""``medcurate pull``: a filtered, re-sharded, byte-reproducible release made from a real one."""

from __future__ import annotations

import json
import time
from io import BytesIO
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from medcurate.cli import app
from medcurate.release.builder import MANIFEST_SCHEMA
from medcurate.release.catalog import verify_release
from medcurate.release.pull import PullError, pull, select, shard_urls

from .figures import labeled_release

runner = CliRunner()
CLASSES = ("effusion", "nodule", "normal")
WHERE = "class_name IN ('effusion', 'nodule') AND scores.\"image.min_side\" >= 64"
PLAIN = [f for f in MANIFEST_SCHEMA.names if f not in ("shard", "offset", "members")]


def _image(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    side = int(rng.integers(48, 120))
    image = Image.new("RGB", (side, side + 8), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x, y = (int(v) for v in rng.integers(0, side - 20, 2))
        draw.rectangle((x, y, x + 18, y + 12), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    buffer = BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def parent(tmp_path_factory, prefect_harness) -> Path:
    """A real release of 3 classes x 8 images in 5-sample shards, with rule scores (quality_signals)."""
    images = {name: [_image(100 * c + i) for i in range(8)] for c, name in enumerate(CLASSES)}
    stages = {
        "split": {"ratios": {"train": 0.6, "val": 0.2, "test": 0.2}},
        "exact_dedup": {},
        "quality_signals": {},
    }
    summary = labeled_release(tmp_path_factory.mktemp("pull"), "pull-test", images, stages, 5)
    assert summary.published and summary.sample_count == 24
    return Path(summary.release_path)


def _expected(parent: Path, sql_where: str) -> pa.Table:
    """The reference: duckdb straight on the parent's manifest file (no view, no pull code)."""
    query = f"SELECT * FROM read_parquet('{parent / 'manifest.parquet'}') WHERE {sql_where} ORDER BY key"
    return duckdb.sql(query).arrow()


def _plain(table) -> pa.Table:
    if hasattr(table, "read_all"):
        table = table.read_all()
    return table.select(PLAIN)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_pull_matches_duckdb_on_the_parent_and_is_byte_reproducible(parent: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    info = pull(parent, WHERE, ["train", "val"], tmp_path / "a", shard_max_count=3, name="effusion-nodule")
    elapsed = time.perf_counter() - started
    expected = _expected(
        parent,
        "class_name IN ('effusion', 'nodule') AND split IN ('train', 'val') AND "
        "EXISTS (SELECT 1 FROM unnest(scores) AS t(s) WHERE s.name = 'image.min_side' AND s.value >= 64)",
    )
    expected = expected.read_all() if hasattr(expected, "read_all") else expected
    assert 0 < expected.num_rows < 16  # the filter and the split both drop samples
    pulled = pq.read_table(tmp_path / "a" / "manifest.parquet")
    assert pulled.schema == MANIFEST_SCHEMA
    assert _plain(pulled).equals(_plain(expected).cast(pulled.select(PLAIN).schema))
    # Members keep their extensions and sizes; only where they lie changed.
    strip = [[(m["ext"], m["size"]) for m in row] for row in pulled.column("members").to_pylist()]
    assert strip == [[(m["ext"], m["size"]) for m in row] for row in expected.column("members").to_pylist()]

    assert info["sample_count"] == expected.num_rows
    assert len(info["shards"]) == -(-expected.num_rows // 3)
    assert info["parent"]["name"] == "pull-test" and info["version"] == "1.0.0"
    assert info["filter"] == {"where": WHERE, "split": ["train", "val"]}
    parent_info = json.loads((parent / "release.json").read_text())
    assert info["parent"]["content_hash"] == parent_info["content_hash"]
    assert info["created_at"] == parent_info["created_at"]
    assert json.loads((tmp_path / "a" / "release.json").read_text()) == info
    card = (tmp_path / "a" / "card.md").read_text()
    assert "This release is a pull of **pull-test 1.0.0**" in card and WHERE in card
    assert "## Changes since the parent release\n\nnone: a pull selects, see Pull below\n" in card
    assert verify_release(tmp_path / "a") == []

    again = pull(parent, WHERE, ["val", "train"], tmp_path / "b", shard_max_count=3, name="effusion-nodule")
    assert again == info
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    print(f"\npull of {info['sample_count']} samples into {len(info['shards'])} shards: {elapsed:.3f}s")


def test_pulled_shards_read_back_with_webdataset(parent: Path, tmp_path: Path) -> None:
    info = pull(parent, "class_name = 'normal'", None, tmp_path / "normal", shard_max_bytes=20_000)
    keys = pq.read_table(tmp_path / "normal" / "manifest.parquet").column("key").to_pylist()
    urls = [str(tmp_path / "normal" / shard["path"]) for shard in info["shards"]]
    seen = []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        record = json.loads(sample["json"])
        assert record["sample_id"] == sample["__key__"]
        assert record["medical"]["class_name"] == "normal"
        assert sample["txt"].decode() == record["text"]["final_caption"]
        Image.open(BytesIO(sample["jpg"])).verify()  # normalize wrote JPEG
        seen.append(sample["__key__"])
    assert seen == keys and len(keys) == 8


def test_list_urls_names_only_the_parent_shards_holding_a_match(parent: Path) -> None:
    selected = select(parent / "manifest.parquet", "class_name = 'nodule'", "test")
    urls = shard_urls(parent, selected)
    assert urls == sorted({(parent / s).resolve().as_uri() for s in selected.column("shard").to_pylist()})
    assert all(url.startswith("file:///") and url.endswith(".tar") for url in urls)
    result = runner.invoke(
        app, ["pull", str(parent), "--where", "class_name = 'nodule'", "--split", "test", "--list-urls"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == urls


def test_scores_struct_aliases_and_missing_scores(parent: Path) -> None:
    manifest = parent / "manifest.parquet"
    by_alias = select(manifest, "scores.min_side >= 64").column("key")
    assert by_alias.equals(select(manifest, 'scores."image.min_side" >= 64').column("key"))
    assert 0 < len(by_alias) < 24
    with pytest.raises(PullError, match=r"scores here: .*caption\.words"):
        select(manifest, "scores.quality >= 4")  # no judge ran: a name no sample has is an error


def test_a_score_some_samples_lack_reads_null(tmp_path: Path) -> None:
    score = {"name": "judge.quality", "value": 4.0, "model": "m"}
    table = pa.table(
        {
            "key": ["a", "b", "c"],
            "split": ["train", "train", "test"],
            "labels": [[], [], []],
            "scores": [[score], [], [{**score, "value": 2.0}]],
        }
    )
    pq.write_table(table, tmp_path / "manifest.parquet")
    assert select(tmp_path / "manifest.parquet", "scores.quality >= 3").column("key").to_pylist() == ["a"]
    assert select(tmp_path / "manifest.parquet", "scores.quality IS NULL").column("key").to_pylist() == ["b"]
    assert select(tmp_path / "manifest.parquet", "true", "test").column("key").to_pylist() == ["c"]


@pytest.mark.parametrize(
    "where",
    [
        "1=1; DROP TABLE samples",
        "1=1); SELECT * FROM read_csv('/etc/passwd'",
        "true) AS __keep FROM samples UNION ALL SELECT 0, 'k', 'train', (true",
        "(SELECT count(*) FROM read_csv('/etc/passwd')) > 0",
        "read_csv('/etc/passwd') IS NOT NULL",
        "key IN (SELECT column0 FROM read_text('/etc/passwd'))",
        "1",
        "",
    ],
)
def test_a_filter_that_is_not_one_safe_boolean_expression_is_refused(parent: Path, where: str) -> None:
    with pytest.raises(PullError):
        select(parent / "manifest.parquet", where)


def test_cli_pull_writes_a_release_and_reports_errors(parent: Path, tmp_path: Path) -> None:
    lake = parent.parents[2]
    out = tmp_path / "cli"
    args = ["pull", "pull-test@1.0.0", "--lake", str(lake), "--where", "class_name = 'effusion'"]
    result = runner.invoke(app, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["samples"] == 8 and summary["path"] == str(out)
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0

    busy = runner.invoke(app, [*args, "--out", str(out)])
    assert busy.exit_code == 2 and "not an empty folder" in busy.output
    bad = runner.invoke(app, [*args[:-1], "class_name = ", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "Parser Error" in bad.output
    none = runner.invoke(app, [*args[:-1], "class_name = 'absent'", "--out", str(tmp_path / "y")])
    assert none.exit_code == 2 and "no sample" in none.output and not (tmp_path / "y").exists()
    split = runner.invoke(app, [*args, "--split", "holdout", "--out", str(tmp_path / "z")])
    assert split.exit_code == 2 and "unknown split holdout" in split.output
    missing = runner.invoke(app, ["pull", "nope", "--lake", str(lake), "--where", "true", "--list-urls"])
    assert missing.exit_code == 2 and "no release" in missing.output
