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
        inputs = [
            f"chest-xray={corpus_root / 'labeled' / 'chest_xray'}",
            f"dermatology={corpus_root / 'labeled' / 'dermatology'}",
            f"pmc={corpus_root / 'pmc'}",
            f"dicom={corpus_root / 'dicom'}",
            f"nifti={corpus_root / 'nifti'}",
        ]
        return load_pipeline(DEMO_PIPELINE, list(overrides), inputs)

    return make


@pytest.fixture
def copy_corpus(corpus_root, tmp_path):
    """A private, writable copy of the corpus for tests that change it."""

    def make() -> Path:
        target = tmp_path / "corpus"
        shutil.copytree(corpus_root, target)
        return target

    return make
