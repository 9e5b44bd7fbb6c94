"""PMC end to end: `medcurate run pipelines/pmc.yaml --input DIR`, nightly updates, license selection.

Real Prefect flows on a real lake over the format-real sample mirror; shards are read back with
webdataset. The nightly tests change the mirror the way PMC does (a new Last Updated, an article
dropped from the file list, a license change) and check that the next release differs by exactly
those articles, with the reason written down.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from medcurate.cli import app
from medcurate.config import load_pipeline
from medcurate.pipelines.flow import curate
from medcurate.pmc_corpus import edit_last_updated, remove_from_file_list, set_license
from medcurate.sources.pmc.source import PmcSource

from .conftest import REPO

pytestmark = pytest.mark.usefixtures("prefect_harness")
PMC_PIPELINE = REPO / "pipelines" / "pmc.yaml"


@pytest.fixture(scope="module")
def expected(corpus_root) -> dict:
    from medcurate.pmc_corpus import write_pmc_sample_corpus

    # Re-running the generator over the session corpus rewrites nothing; it returns the expectations.
    return write_pmc_sample_corpus(corpus_root)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, corpus_root):
    lake = tmp_path_factory.mktemp("pmc-lake")
    result = CliRunner().invoke(
        app,
        ["run", str(PMC_PIPELINE), "--input", str(corpus_root / "pmc"), "--lake", str(lake), "--json"],
    )
    assert result.exit_code == 0, result.output
    return lake, json.loads(result.stdout)


def _manifest(release: Path) -> list[dict]:
    return pq.read_table(release / "manifest.parquet").to_pylist()


def _samples(release: Path) -> dict[str, dict]:
    shards = sorted(str(p) for p in (release / "shards").glob("*.tar"))
    return {sample["__key__"]: sample for sample in wds.WebDataset(shards, shardshuffle=False)}


def test_every_resolvable_figure_is_one_sample(cli_run, expected):
    lake, summary = cli_run
    classic = expected["classic"]
    retracted, reprints = classic["expected_retracted_samples"], classic["expected_duplicate_samples"]
    assert reprints == 1
    assert summary["sample_count"] == classic["expected_samples"] - retracted - reprints
    release = lake / "releases" / "pmc" / "1.0.0"
    samples = _samples(release)
    assert len(samples) == summary["sample_count"]
    per_article: dict[str, int] = {}
    for sample in samples.values():
        record = json.loads(sample["json"])
        Image.open(io.BytesIO(sample.get("png") or sample["jpg"])).load()
        caption = sample["txt"].decode()
        assert caption and caption == record["text"]["source_caption"]
        article, figure = record["article"], record["figure"]
        assert article["pmcid"] and article["title"] and article["journal"] and article["year"]
        assert record["source"]["license"] in {"cc0", "cc-by", "cc-by-nc", "cc-by-nc-nd"}
        assert record["source"]["member"].startswith(article["pmcid"] + "/")
        assert not record["source"]["member"].endswith(".gif"), "a thumbnail became a sample"
        assert figure["label"] and figure["kind"] and figure["kind_method"] == "heuristic-v1"
        package = classic["packages"][article["pmcid"]]
        spec = next(f for f in package["figure_list"] if f["id"] == figure["id"])
        assert figure["compound"] == bool(spec["panels"])
        assert [p["label"] for p in figure["panels"]][: len(spec["panels"])] == list(spec["panels"])
        if spec["cited_in"] or spec["cited_via_range"]:
            assert figure["citing"], f"{article['pmcid']} {figure['id']} lost its citing sentences"
            assert record["text"]["citing_context"]
        per_article[article["pmcid"]] = per_article.get(article["pmcid"], 0) + 1
    for pmcid, package in classic["packages"].items():
        wanted = 0 if package["quarantine"] or package["retracted"] or not package["in_file_list"] else None
        wanted = package["figures"] - package["duplicate_figures"] if wanted is None else wanted
        assert per_article.get(pmcid, 0) == wanted, pmcid


def test_hostile_and_broken_inputs_are_quarantined_with_their_reason(cli_run, expected):
    lake, summary = cli_run
    wanted: dict[str, int] = {}
    for reason in expected["classic"]["expected_quarantined"].values():
        wanted[reason] = wanted.get(reason, 0) + 1
    assert summary["ledger"]["totals"]["quarantined"] == wanted
    assert summary["ledger"]["totals"]["filtered"] == {"retracted": 1, "exact_duplicate": 1}
    # Nothing was unpacked anywhere: the traversal member's target never appears.
    assert not (lake.parent / "evil.txt").exists() and not Path("/tmp/evil").exists()
    run_dir = lake / "runs" / summary["run_id"]
    excluded = pq.read_table(run_dir / "excluded").to_pylist()
    reasons = {row["status_reason"].split(":")[0] for row in excluded}
    assert reasons == set(wanted) | {"retracted", "exact_duplicate"}


def test_a_second_nightly_run_reads_no_package(cli_run, corpus_root, monkeypatch):
    lake, first = cli_run
    calls = {"read": 0, "hash": 0}
    original_read, original_hash = PmcSource.read, PmcSource._stat_hash

    def counting_read(self, item):
        calls["read"] += 1
        return original_read(self, item)

    def counting_hash(self, info):
        before = self.ctx.stat_cache(info.path, info.size, info.mtime_ns)
        calls["hash"] += before is None
        return original_hash(self, info)

    monkeypatch.setattr(PmcSource, "read", counting_read)
    monkeypatch.setattr(PmcSource, "_stat_hash", counting_hash)
    cfg = load_pipeline(PMC_PIPELINE, [], [str(corpus_root / "pmc")])
    second = curate(cfg.model_dump(), str(lake))
    assert calls == {"read": 0, "hash": 0}
    assert second.ledger["totals"]["new_inputs"] == 0
    assert not second.published and second.content_hash == first["content_hash"]


@pytest.fixture
def nightly(tmp_path, corpus_root):
    mirror = tmp_path / "mirror"
    shutil.copytree(corpus_root / "pmc", mirror)
    cfg = load_pipeline(PMC_PIPELINE, [], [str(mirror)])
    lake = tmp_path / "lake"
    first = curate(cfg.model_dump(), str(lake))
    return mirror, cfg, lake, first


def test_updated_and_withdrawn_articles_are_the_whole_difference(nightly, expected):
    mirror, cfg, lake, first = nightly
    updated, withdrawn = "PMC1000001", "PMC1000002"
    edit_last_updated(mirror, updated, "2026-11-22 03:00:00")
    remove_from_file_list(mirror, withdrawn)
    second = curate(cfg.model_dump(), str(lake))
    assert second.ledger["totals"]["new_inputs"] == 1
    assert second.published and second.release_version == "1.1.0"

    old = {row["key"]: row for row in _manifest(lake / "releases" / "pmc" / "1.0.0")}
    new = {row["key"]: row for row in _manifest(lake / "releases" / "pmc" / "1.1.0")}
    gone = {old[key]["article_id"] for key in old.keys() - new.keys()}
    assert gone == {withdrawn}
    differing = {
        row["article_id"] for key, row in new.items() if old[key]["content_sha256"] != row["content_sha256"]
    }
    assert differing == {updated}

    changes = json.loads((lake / "releases" / "pmc" / "1.1.0" / "changes.json").read_text())
    assert {entry["article_id"] for entry in changes["inputs"]} == {updated, withdrawn}
    by_article = {entry["article_id"]: entry for entry in changes["inputs"]}
    assert all(r["reason"].startswith("withdrawn:") for r in by_article[withdrawn]["removed"])
    assert len(by_article[withdrawn]["removed"]) == expected["classic"]["packages"][withdrawn]["figures"]
    (reason,) = by_article[updated]["reasons"]
    assert reason.startswith("superseded:") and "last_updated=2026-11-22 03:00:00" in reason
    info = json.loads((lake / "releases" / "pmc" / "1.1.0" / "release.json").read_text())
    assert info["changes"] == {"added": 0, "removed": changes["removed"], "changed": changes["changed"]}

    # The re-read article's records say, in their lineage, which input they supersede.
    sample = _samples(lake / "releases" / "pmc" / "1.1.0")
    record = next(json.loads(s["json"]) for s in sample.values() if updated in s["json"].decode())
    ingest = next(e for e in record["lineage"] if e["stage"] == "ingest.pmc")
    details = json.loads(ingest["details"])
    assert details["last_updated"] == "2026-11-22 03:00:00" and len(details["supersedes_inputs"]) == 1


def test_a_license_change_relicenses_and_a_commercial_release_drops_it(nightly):
    mirror, cfg, lake, first = nightly
    relicensed = "PMC1000001"
    set_license(mirror, relicensed, "CC BY-NC")
    second = curate(cfg.model_dump(), str(lake))
    changes = json.loads((lake / "releases" / "pmc" / "1.1.0" / "changes.json").read_text())
    (entry,) = changes["inputs"]
    assert entry["article_id"] == relicensed
    assert all(c["fields"] == ["license"] for c in entry["changed"])
    assert entry["reasons"][0].startswith("relicensed: cc-by -> cc-by-nc")

    commercial = cfg.model_copy(deep=True)
    commercial.stages["allow"] = {"source.license": ["cc0", "pd", "cc-by"]}
    commercial.release.name = "pmc-commercial"
    third = curate(commercial.model_dump(), str(lake))
    filtered = third.ledger["totals"]["filtered"]
    released = _manifest(lake / "releases" / "pmc-commercial" / "1.0.0")
    assert {row["license"] for row in released} <= {"cc0", "cc-by"}
    # The reprint of PMC1000001's figure was a duplicate in the second run; here the licence stops it first.
    non_commercial = (
        second.sample_count - len(released) + second.ledger["totals"]["filtered"]["exact_duplicate"]
    )
    assert filtered["license_not_allowed"] == non_commercial > 0
    assert relicensed not in {row["article_id"] for row in released}


def test_cloud_layout_runs_through_the_same_pipeline(tmp_path, corpus_root, expected):
    cfg = load_pipeline(PMC_PIPELINE, [], [str(corpus_root / "pmc-cloud")])
    summary = curate(cfg.model_dump(), str(tmp_path / "lake"))
    cloud = expected["cloud"]
    assert summary.sample_count == cloud["expected_samples"]
    assert summary.ledger["totals"]["quarantined"] == {"graphic_missing": 1}
    groups = set()
    for sample in _samples(Path(summary.release_path)).values():
        record = json.loads(sample["json"])
        assert record["source"]["member"] is None and record["source"]["uri"].endswith(".jpg")
        ingest = next(e for e in record["lineage"] if e["stage"] == "ingest.pmc")
        groups.add(json.loads(ingest["details"])["group"])
    assert groups == {"oa_comm", "oa_noncomm"}
