"""A run killed with SIGKILL midway resumes to the same release hash as a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import DEMO_PIPELINE, demo_inputs

pytestmark = pytest.mark.slow


def _command(corpus: Path, lake: Path) -> list[str]:
    return [
        sys.executable, "-m", "medcurate.cli", "run", str(DEMO_PIPELINE), "--lake", str(lake), "--json",
        *[arg for value in demo_inputs(corpus) for arg in ("--input", value)],
        "--set", "engine.part_size=3",
    ]  # fmt: skip


def _run(corpus: Path, lake: Path) -> dict:
    done = subprocess.run(_command(corpus, lake), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_sigkill_midway_then_rerun_gives_the_clean_release_hash(corpus_root, tmp_path):
    clean = _run(corpus_root, tmp_path / "clean")

    lake = tmp_path / "killed"
    # Its own process group, so the kill also takes Prefect's temporary API server, as a crash would.
    process = subprocess.Popen(
        _command(corpus_root, lake),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        normalized = list(lake.glob("runs/*/normalize/*/part-*.parquet"))
        if len(normalized) >= 2:  # midway through a per-input stage
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed; make parts smaller"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not list(lake.glob("releases/demo/[0-9]*")), "no release may appear from a killed run"

    resumed = _run(corpus_root, lake)
    assert resumed["content_hash"] == clean["content_hash"]
    assert resumed["ledger"]["totals"]["released"] == clean["ledger"]["totals"]["released"]
