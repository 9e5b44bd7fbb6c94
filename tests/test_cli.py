"""The command line on a real lake: run, releases, verify (with a flipped byte), audit."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from medcurate.cli import app

from .conftest import DEMO_PIPELINE, demo_inputs

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


@pytest.fixture(scope="module")
def cli_lake(tmp_path_factory, corpus_root):
    lake = tmp_path_factory.mktemp("cli-lake")
    result = runner.invoke(
        app,
        [
            "run", str(DEMO_PIPELINE), "--lake", str(lake), "--json",
            *[arg for value in demo_inputs(corpus_root) for arg in ("--input", value)],
            "--set", "release.name=cli-demo",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return lake, json.loads(result.stdout)


def test_run_exits_zero_and_reports_quarantine(cli_lake):
    _, summary = cli_lake
    assert summary["release_name"] == "cli-demo"
    assert sum(summary["ledger"]["totals"]["quarantined"].values()) >= 4


def test_releases_json_lists_the_release(cli_lake):
    lake, summary = cli_lake
    result = runner.invoke(app, ["releases", "--lake", str(lake), "--json"])
    assert result.exit_code == 0
    (row,) = json.loads(result.stdout)
    assert row == {
        "name": "cli-demo",
        "version": "1.0.0",
        "path": str(lake / "releases" / "cli-demo" / "1.0.0"),
        "samples": summary["sample_count"],
        "content_hash": summary["content_hash"],
        "parent": None,
    }


def test_verify_passes_then_fails_on_a_flipped_byte(cli_lake, tmp_path):
    lake, _ = cli_lake
    copy = tmp_path / "release"
    shutil.copytree(lake / "releases" / "cli-demo" / "1.0.0", copy)
    assert runner.invoke(app, ["verify", str(copy)]).exit_code == 0
    shard = sorted((copy / "shards").glob("*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01
    shard.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(copy), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["problems"] == [f"shards/{shard.name}: checksum mismatch"]


def test_audit_released_sample_shows_source_and_every_stage(cli_lake):
    import pyarrow.parquet as pq

    lake, _ = cli_lake
    keys = pq.read_table(lake / "releases" / "cli-demo" / "1.0.0" / "manifest.parquet").column("key")
    key = next(k for k in keys.to_pylist() if k.startswith("labeled-"))
    text = runner.invoke(app, ["audit", key, "--lake", str(lake)])
    assert text.exit_code == 0
    for stage in ("ingest.labeled", "normalize", "label_text", "split", "exact_dedup", "shard"):
        assert f"- {stage}@" in text.stdout
    assert "[matches]" in text.stdout  # the source file was hashed again
    payload = json.loads(runner.invoke(app, ["audit", key, "--lake", str(lake), "--json"]).stdout)
    record = payload["record"]
    assert record["sample_id"] == key and len(record["source"]["sha256"]) == 64
    assert payload["source_check"] == {"status": "matches", "why": "", "via": "path"}
    listed = runner.invoke(app, ["audit", "--source", record["source"]["uri"], "--lake", str(lake)])
    assert listed.exit_code == 0 and f"{key}  released" in listed.stdout


def test_audit_finds_a_quarantined_sample_with_its_reason(cli_lake):
    import pyarrow.parquet as pq

    lake, _ = cli_lake
    excluded = sorted(lake.glob("runs/*/excluded/normalize/chest-xray/*.parquet"))
    rows = pq.read_table(excluded[0], columns=["sample_id", "status_reason"]).to_pylist()
    bomb = next(r for r in rows if r["status_reason"].startswith("decompression_bomb"))
    result = runner.invoke(app, ["audit", bomb["sample_id"], "--lake", str(lake)])
    assert result.exit_code == 0
    assert "status:    quarantined (decompression_bomb" in result.stdout


def test_audit_unknown_sample_fails_clearly(cli_lake):
    lake, _ = cli_lake
    result = runner.invoke(app, ["audit", "labeled-nope", "--lake", str(lake)])
    assert result.exit_code == 1 and "not found" in result.output
    result = runner.invoke(app, ["audit", "--source", "/nowhere.png", "--lake", str(lake)])
    assert result.exit_code == 1 and "no input /nowhere.png" in result.output


def test_bad_pipeline_override_is_a_clear_error(tmp_path):
    result = runner.invoke(
        app, ["run", str(DEMO_PIPELINE), "--lake", str(tmp_path), "--set", "engine.kind=gpu"]
    )
    assert result.exit_code == 2 and "engine.kind" in result.output


def test_schedule_builds_a_cron_deployment():
    from medcurate.config import load_pipeline
    from medcurate.pipelines.schedule import deployment_for

    deployment = deployment_for(load_pipeline(DEMO_PIPELINE), "0 2 * * *", "/tmp/lake")
    assert deployment.name == "demo-nightly"
    assert deployment.schedules[0].schedule.cron == "0 2 * * *"
    assert deployment.parameters["lake_uri"] == "/tmp/lake"
