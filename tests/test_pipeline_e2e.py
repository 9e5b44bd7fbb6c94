"""End to end on the sample corpus: a real Prefect flow, a real lake, shards read back by webdataset."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from medcurate.lake import Lake
from medcurate.pipelines.flow import curate
from medcurate.release.catalog import list_releases, verify_release

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Without models the model stages are skipped; the rest run on every sample.
STAGES = {
    "normalize",
    "label_text",
    "figure_kind",
    "allow",
    "split",
    "exact_dedup",
    "near_dedup",
    "decontaminate",
    "caption_policy",
    "caption_dedup",
    "quality_signals",
    "caption_repeats",
    "quality_filter",
    "shard",
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, corpus_root):
    """One demo run shared by the read-only checks below (a run costs several seconds)."""
    from medcurate.config import load_pipeline

    from .conftest import DEMO_PIPELINE, demo_inputs

    cfg = load_pipeline(DEMO_PIPELINE, [], demo_inputs(corpus_root))
    lake_root = tmp_path_factory.mktemp("lake")
    summary = curate(cfg.model_dump(), str(lake_root))
    return cfg, lake_root, summary


def test_release_is_listed_and_verifies(demo_run):
    _, lake_root, summary = demo_run
    (release,) = list_releases(Lake(str(lake_root)))
    assert (release.name, release.version) == ("demo", "1.0.0")
    assert release.content_hash == summary.content_hash and summary.published
    assert verify_release(lake_root / release.path) == []


def test_shards_yield_exactly_the_manifest_samples(demo_run):
    _, lake_root, summary = demo_run
    folder = lake_root / "releases" / "demo" / "1.0.0"
    manifest = pq.read_table(folder / "manifest.parquet").to_pylist()
    shards = sorted(str(p) for p in (folder / "shards").glob("*.tar"))
    assert len(shards) > 1, "shard_max_count should split the demo release"
    seen = []
    for sample in wds.WebDataset(shards, shardshuffle=False):
        image_ext = "png" if "png" in sample else "jpg"
        Image.open(io.BytesIO(sample[image_ext])).load()
        assert sample["txt"].decode().strip()
        record = json.loads(sample["json"])
        assert record["sample_id"] == sample["__key__"]
        ingest = f"ingest.{record['source']['kind']}"
        assert {event["stage"] for event in record["lineage"]} == STAGES | {ingest}
        assert "bytes" not in record["image"]
        seen.append(sample["__key__"])
    assert seen == [row["key"] for row in manifest] == sorted(seen)
    assert len(seen) == summary.sample_count > 20


def test_manifest_offsets_point_at_members(demo_run):
    _, lake_root, _ = demo_run
    folder = lake_root / "releases" / "demo" / "1.0.0"
    rows = pq.read_table(folder / "manifest.parquet").to_pylist()
    # One 512-byte ustar header per member and no pax header before it (an int mtime needs none).
    assert all(m["data_offset"] - m["offset"] == 512 for r in rows for m in r["members"])
    row = rows[3]
    member = next(m for m in row["members"] if m["ext"] == "json")
    with open(folder / row["shard"], "rb") as shard:
        shard.seek(member["data_offset"])
        assert json.loads(shard.read(member["size"]))["sample_id"] == row["key"]


def test_ledger_balances_and_names_every_bad_input(demo_run):
    _, lake_root, summary = demo_run
    ledger = json.loads((lake_root / "runs" / summary.run_id / "ledger.json").read_text())
    chest = ledger["sources"]["chest-xray"]
    assert chest["balanced"] and ledger["sources"]["dermatology"]["balanced"]
    assert {"corrupt_image", "missing_file", "malformed_row", "decompression_bomb"} <= set(
        chest["quarantined"]
    )
    assert chest["filtered"].get("exact_duplicate") == 1
    totals = ledger["totals"]
    assert totals["candidates"] == totals["released"] + sum(totals["filtered"].values()) + sum(
        totals["quarantined"].values()
    )
    assert summary.quarantined == sum(totals["quarantined"].values()) >= 4


def _released_records(lake_root) -> list[dict]:
    shards = sorted(str(p) for p in (lake_root / "releases" / "demo" / "1.0.0" / "shards").glob("*.tar"))
    return [json.loads(sample["json"]) for sample in wds.WebDataset(shards, shardshuffle=False)]


def test_every_released_sample_traces_to_a_source_whose_checksum_still_matches(demo_run):
    from medcurate.audit import check_source
    from medcurate.lake import Lake

    _, lake_root, _ = demo_run
    lake = Lake(str(lake_root))
    records = _released_records(lake_root)
    checks = {r["sample_id"]: check_source(lake, r) for r in records}
    assert {c["status"] for c in checks.values()} == {"matches"}, checks
    kinds = {r["source"]["kind"]: checks[r["sample_id"]]["via"] for r in records}
    assert kinds.keys() >= {"labeled", "pmc", "dicom", "nifti"}
    assert kinds["dicom"] == kinds["nifti"] == "restricted path map" and kinds["labeled"] == "path"


def test_audit_source_lists_kept_and_dropped_samples_of_one_input(demo_run, corpus_root):
    from medcurate.audit import samples_of_source
    from medcurate.lake import Lake

    _, lake_root, _ = demo_run
    lake = Lake(str(lake_root))
    retracted = next(
        r
        for rel in lake.walk_files("runs", suffix=".parquet")
        if "/excluded/" in rel
        for r in lake.read_parquet(rel, columns=["sample_id", "status_reason", "source"]).to_pylist()
        if r["status_reason"] and r["status_reason"].startswith("retracted")
    )
    rows = samples_of_source(lake, retracted["source"]["uri"])
    assert [r["sample_id"] for r in rows] == [retracted["sample_id"]]
    assert rows[0]["status"] == "filtered" and rows[0]["reason"].startswith("retracted")
    for kept in _released_records(lake_root):  # every kind, DICOM by its instance uri too
        rows = {r["sample_id"]: r for r in samples_of_source(lake, kept["source"]["uri"])}
        assert rows[kept["sample_id"]]["status"] == "released", kept["source"]


def test_planted_duplicates_leave_exactly_one_copy(demo_run, corpus_root):
    """Re-encoded, resized and mirrored copies, and one figure reprinted by a second PMC article."""
    from medcurate.samplecorpus import PLANTED_DUPLICATES

    _, lake_root, summary = demo_run
    released = {(r["source"]["uri"], r["source"]["member"]): r for r in _released_records(lake_root)}
    removed = {}
    for stage in ("exact_dedup", "near_dedup"):
        for part in (lake_root / "runs" / summary.run_id / "excluded" / stage).rglob("*.parquet"):
            for row in pq.read_table(
                part, columns=["sample_id", "source", "dedup", "status_reason"]
            ).to_pylist():
                removed[(row["source"]["uri"], row["source"]["member"])] = row
    pairs = [
        ((str(corpus_root / copy), None), (str(corpus_root / original), None))
        for copy, original in PLANTED_DUPLICATES.items()
    ]
    pmc = {r["article"]["pmcid"]: key for key, r in released.items() if r["article"]}
    reprint = next(key for key, row in removed.items() if key[1] and key[1].startswith("PMC1000016/"))
    pairs.append((reprint, pmc["PMC1000001"]))  # the older, more permissive original stays
    for a, b in pairs:
        kept = [key for key in (a, b) if key in released]
        gone = [key for key in (a, b) if key in removed]
        assert len(kept) == 1 and len(gone) == 1, (a, b)
        row = removed[gone[0]]
        assert row["dedup"]["duplicate_of"] == released[kept[0]]["sample_id"]
        assert row["status_reason"].split(":")[0] in ("exact_duplicate", "near_duplicate")
        if "mirrored" in a[0]:
            assert row["dedup"]["method"] == "phash:hflip"


def test_planted_evaluation_images_are_absent_and_counted_on_the_card(demo_run, corpus_root):
    from medcurate.samplecorpus import PLANTED_DUPLICATES, PLANTED_EVAL

    _, lake_root, summary = demo_run
    released = {r["source"]["uri"] for r in _released_records(lake_root)}
    removed = {}
    for part in (lake_root / "runs" / summary.run_id / "excluded" / "decontaminate").rglob("*.parquet"):
        for row in pq.read_table(part, columns=["source", "status_reason", "lineage"]).to_pylist():
            removed[row["source"]["uri"]] = row
    assert len(removed) == len(PLANTED_EVAL)
    for path, eval_set in PLANTED_EVAL.items():
        uri = str(corpus_root / path)
        assert uri not in released and removed[uri]["status_reason"].startswith("eval_overlap: ")
        assert f" {eval_set}:" in removed[uri]["status_reason"]
    card = (lake_root / "releases" / "demo" / "1.0.0" / "card.md").read_text()
    assert "| derm-holdout | 3 | 0 | 1 | 1 |" in card and "| vqa-test | 2 | 0 | 1 | 1 |" in card
    assert f"| eval_overlap | {len(PLANTED_EVAL)} |" in card
    assert f"| near_duplicate | {len(PLANTED_DUPLICATES)} |" in card  # the PMC reprint is an exact one


def test_no_group_spans_two_splits(demo_run):
    """Patients, studies and articles each land in one split, checked over the whole release."""
    _, lake_root, _ = demo_run
    split_of: dict[tuple[str, str], set[str]] = {}
    for record in _released_records(lake_root):
        subject, article = record["subject"] or {}, record["article"] or {}
        for kind, value in (
            ("patient", subject.get("patient_pseudonym")),
            ("study", subject.get("study_pseudonym")),
            ("article", article.get("pmcid")),
        ):
            if value:
                split_of.setdefault((kind, value), set()).add(record["split"])
    assert split_of and all(len(splits) == 1 for splits in split_of.values())
    assert sum(kind == "patient" for kind, _ in split_of) >= 10
    assert {split for splits in split_of.values() for split in splits} >= {"train", "test"}


def test_no_phi_raw_patient_ids_in_shards(demo_run):
    _, lake_root, _ = demo_run
    for shard in (lake_root / "releases" / "demo" / "1.0.0" / "shards").glob("*.tar"):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            record = json.loads(sample["json"])
            assert (
                record["subject"]["patient_pseudonym"] is None
                or "patient" not in (record["subject"]["patient_pseudonym"])
            )


def test_second_run_reads_nothing_and_keeps_the_release(demo_run):
    cfg, lake_root, first = demo_run
    second = curate(cfg.model_dump(), str(lake_root))
    assert second.ledger["totals"]["new_inputs"] == 0
    assert second.content_hash == first.content_hash
    assert not second.published and second.release_version == "1.0.0"
    assert second.ledger["totals"] == {**first.ledger["totals"], "new_inputs": 0}


def test_new_input_makes_a_new_minor_version(demo_config, copy_corpus, tmp_path):
    corpus = copy_corpus()
    lake_root = tmp_path / "lake"
    from medcurate.config import load_pipeline

    from .conftest import DEMO_PIPELINE, demo_inputs

    cfg = load_pipeline(DEMO_PIPELINE, [], demo_inputs(corpus))
    first = curate(cfg.model_dump(), str(lake_root))
    extra = corpus / "labeled" / "dermatology" / "nevus" / "zz_new.png"
    Image.new("RGB", (64, 48), (120, 30, 60)).save(extra)
    second = curate(cfg.model_dump(), str(lake_root))
    assert second.ledger["totals"]["new_inputs"] == 1
    assert second.published and second.release_version == "1.1.0"
    assert second.sample_count == first.sample_count + 1
    info = json.loads((lake_root / "releases" / "demo" / "1.1.0" / "release.json").read_text())
    assert info["parent"] == {"version": "1.0.0", "content_hash": first.content_hash}
