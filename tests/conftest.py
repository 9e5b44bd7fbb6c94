"""Shared fixtures: one Prefect test harness per session (its temporary API costs ~10-20 s to start)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Tiny test models are faster on one thread, and two busy threads per process on a 2-core CI machine
# (Spark workers, model servers) make OpenMP spin-waits slow everything down many times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

REPO = Path(__file__).resolve().parents[1]
DEMO_PIPELINE = REPO / "pipelines" / "demo.yaml"


def demo_inputs(corpus: Path) -> list[str]:
    """``--input NAME=URI`` values pointing the demo pipeline's sources and eval sets at ``corpus``."""
    return [
        f"chest-xray={corpus / 'labeled' / 'chest_xray'}",
        f"dermatology={corpus / 'labeled' / 'dermatology'}",
        f"pmc={corpus / 'pmc'}",
        f"dicom={corpus / 'dicom'}",
        f"nifti={corpus / 'nifti'}",
        f"derm-holdout={corpus / 'eval' / 'derm_holdout'}",
        f"vqa-test={corpus / 'eval' / 'vqa_test'}",
    ]


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory) -> Path:
    """The sample corpus, written once per session (read-only for tests)."""
    from medcurate.samplecorpus import write_sample_corpus

    root = tmp_path_factory.mktemp("corpus")
    write_sample_corpus(root)
    return root


@pytest.fixture
def demo_config(corpus_root):
    """The shipped demo pipeline, pointed at the session's corpus."""
    from medcurate.config import load_pipeline

    def make(*overrides: str):
        return load_pipeline(DEMO_PIPELINE, list(overrides), demo_inputs(corpus_root))

    return make


@pytest.fixture
def copy_corpus(corpus_root, tmp_path):
    """A private, writable copy of the corpus for tests that change it."""

    def make() -> Path:
        target = tmp_path / "corpus"
        shutil.copytree(corpus_root, target)
        return target

    return make


def run_steps(cfg, lake_root: Path):
    """The run's steps on the local engine without Prefect (whose harness costs ~40 s).

    For fast tests of a stage inside a real run; returns (lake, plan, final parts, ledger).
    """
    from medcurate.engines import make_engine
    from medcurate.lake import Lake
    from medcurate.steps import plan_run, run_stages

    lake = Lake(str(lake_root))
    plan = plan_run(cfg, lake)
    engine = make_engine("local", lake, cfg.engine.batch_size)
    try:
        parts, ledger = run_stages(lake, engine, plan, cfg.engine.part_size)
    finally:
        engine.close()
    return lake, plan, parts, ledger
