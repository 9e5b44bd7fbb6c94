"""Clinical end to end: `medcurate run pipelines/dicom.yaml|nifti.yaml --input DIR` on the sample folders.

Real Prefect flows, a real lake, shards read back with webdataset. The PHI test reads every file the
run wrote (parquet decoded, tar members, JSON, text) outside the access-restricted path map and
looks for every invented identifying value of the corpus: names, record numbers, birth dates,
addresses, phone numbers, institution, accession numbers, descriptions, folder names.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from typer.testing import CliRunner

from medcurate.cli import app
from medcurate.clinical_corpus import NIFTI_DESCRIP, sample_phi

from .conftest import REPO

pytestmark = pytest.mark.usefixtures("prefect_harness")
ENV = {"MEDCURATE_PSEUDONYM_KEY": "clinical-test-key"}


def _run(pipeline: str, source_dir: Path, lake: Path) -> dict:
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(REPO / "pipelines" / pipeline),
            "--input",
            str(source_dir),
            "--lake",
            str(lake),
            "--json",
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus_root):
    lake = tmp_path_factory.mktemp("clinical-lake")
    dicom = _run("dicom.yaml", corpus_root / "dicom", lake)
    nifti = _run("nifti.yaml", corpus_root / "nifti", lake)
    return lake, dicom, nifti


def _samples(release: Path) -> list[dict]:
    shards = sorted(str(p) for p in (release / "shards").glob("*.tar"))
    return list(wds.WebDataset(shards, shardshuffle=False))


def test_dicom_release(runs):
    lake, dicom, _ = runs
    samples = _samples(lake / "releases" / "dicom" / "1.0.0")
    # Series without a report have no text until a caption model is attached: filtered, not shipped empty.
    assert len(samples) == dicom["sample_count"] == 4
    assert dicom["ledger"]["totals"]["filtered"] == {"no_caption": 2}
    assert "caption" in " ".join(dicom["skipped_stages"])
    for sample in samples:
        record = json.loads(sample["json"])
        assert "png" in sample and record["source"]["uri"].startswith("dicom://dicom/")
        assert record["subject"]["patient_pseudonym"] and record["split"] in {"train", "val", "test"}
    quarantined = dicom["ledger"]["totals"]["quarantined"]
    assert sum(quarantined.values()) == 6, quarantined
    manifest = pq.read_table(lake / "releases" / "dicom" / "1.0.0" / "manifest.parquet").to_pylist()
    assert {row["sex"] for row in manifest} == {"M", "F"}
    assert {row["age_band"] for row in manifest} >= {"60-69", "90+"}
    assert all(row["manufacturer"] == "ACME Medical" and row["site_pseudonym"] for row in manifest)
    card = (lake / "releases" / "dicom" / "1.0.0" / "card.md").read_text()
    assert "### By age band" in card and "| 90+ |" in card


def test_nifti_release(runs):
    lake, _, nifti = runs
    samples = _samples(lake / "releases" / "nifti" / "1.0.0")
    assert len(samples) == nifti["sample_count"] == 3  # CT middle + two largest-label slices
    assert nifti["ledger"]["totals"]["filtered"] == {"no_caption": 1}  # the MR: no mask, no text yet
    captions = [s["txt"].decode() for s in samples if "txt" in s]
    assert any(c.startswith("Liver lesion (label 1), right side") for c in captions)
    assert sorted(nifti["ledger"]["totals"]["quarantined"]) == ["mask_grid_mismatch", "nifti_unreadable"]


def _strings(path: Path) -> str:
    """Everything a file says, decoded: parquet rows as JSON, tar members, or the raw text."""
    if path.suffix == ".parquet":
        return json.dumps(
            pq.read_table(path).to_pylist(), default=lambda b: b.hex() if isinstance(b, bytes) else str(b)
        )
    if path.suffix == ".tar":
        with tarfile.open(path) as tar:
            return " ".join(
                f"{m.name} " + tar.extractfile(m).read().decode("latin-1")
                for m in tar.getmembers()
                if m.isfile()
            )
    return path.read_bytes().decode("latin-1")


def test_no_phi_in_the_lake_or_releases_outside_the_restricted_store(runs, corpus_root):
    lake, _, _ = runs
    # The configured source roots are the operator's, not a patient's (release.json keeps the config);
    # the folders and file names below them are what carries names and record numbers.
    needles = [v.lower() for v in [*sample_phi(), NIFTI_DESCRIP, "case001_ct", "IM0001"]]
    checked = 0
    for path in sorted(lake.rglob("*")):
        if not path.is_file() or "restricted" in path.relative_to(lake).parts:
            continue
        text = _strings(path).lower()
        leaked = [n for n in needles if n in text]
        assert not leaked, f"{path.relative_to(lake)} holds {leaked}"
        checked += 1
    assert checked > 20


def test_restricted_store_is_owner_only_and_reveals_real_paths(runs, corpus_root):
    lake, _, _ = runs
    restricted = lake / "restricted"
    for path in [restricted, *restricted.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is readable by others ({oct(mode)})"
    record = json.loads(_samples(lake / "releases" / "dicom" / "1.0.0")[0]["json"])
    result = CliRunner().invoke(app, ["reveal", record["source"]["uri"], "--lake", str(lake)])
    assert result.exit_code == 0, result.output
    location = result.stdout.split("\t", 1)[1].strip()
    assert location.startswith(str(corpus_root / "dicom"))


def test_nightly_rerun_reads_nothing_new(runs, corpus_root):
    lake, dicom, _ = runs
    again = _run("dicom.yaml", corpus_root / "dicom", lake)
    assert again["ledger"]["sources"]["dicom"]["new_inputs"] == 0
    assert again["content_hash"] == dicom["content_hash"]


def test_dicom_pipeline_refuses_to_run_without_a_key(tmp_path, corpus_root):
    env = {k: v for k, v in os.environ.items() if k != "MEDCURATE_PSEUDONYM_KEY"}
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(REPO / "pipelines" / "dicom.yaml"),
            "--input",
            str(corpus_root / "dicom"),
            "--lake",
            str(tmp_path),
        ],
        env={**env, "MEDCURATE_PSEUDONYM_KEY": ""},
    )
    assert result.exit_code != 0
    assert "MEDCURATE_PSEUDONYM_KEY" in result.output
