"""Decontamination: eval sets in every supported form are fingerprinted like training images, cached
in the lake, and training copies of their images are filtered as eval_overlap, with per-set counts on
the release card."""

from __future__ import annotations

import csv
import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image, ImageDraw, ImageEnhance

from medcurate.dedup import evalsets
from medcurate.dedup.evalsets import EvalSetSpec, load_index
from medcurate.lake import Lake
from medcurate.release.card import _dedup_section
from medcurate.schemas.record import new_record, to_batch
from medcurate.stages import make_stage
from medcurate.stages.base import StageContext, run_map_stage
from medcurate.stages.normalize import NormalizeStage

from .figures import figure

NORMALIZE = {"max_side": 512, "min_side": 32, "jpeg_quality": 90}


# -- images -----------------------------------------------------------------------------------------


def picture(seed: int, size: int = 256, mode: str = "L") -> Image.Image:
    """A structured image (shapes, not noise) whose phash is far from other seeds'."""
    rng = np.random.default_rng(seed)
    image = Image.new(mode, (size, size), 20 if mode == "L" else (20, 30, 40))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, size * 3 // 4, 2)
        x1, y1 = np.array([x0, y0]) + rng.integers(size // 8, size // 2, 2)
        fill = int(rng.integers(60, 255))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape(
            (int(x0), int(y0), int(x1), int(y1)), fill=fill if mode == "L" else (fill, fill // 2, 255 - fill)
        )
    return image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def altered_copy(image: Image.Image) -> bytes:
    """A resized, brightened, lossy copy: other pixels, nearly the same phash."""
    smaller = ImageEnhance.Brightness(image.resize((200, 200), Image.Resampling.LANCZOS)).enhance(1.08)
    return encode(smaller, "JPEG", quality=70)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG header declaring 10^10 pixels over a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def training_record(sample_id: str, raw: bytes) -> dict:
    """A record as the pipeline has it after ``normalize`` (same params as the eval index)."""
    record, _ = NormalizeStage(NORMALIZE).apply(
        new_record(sample_id, image={"bytes": raw}), StageContext("t")
    )
    return record


def fit_table(records: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "sample_id": r["sample_id"],
                "image.pixel_sha256": r["image"]["pixel_sha256"],
                "image.phash": r["image"]["phash"],
                "image.phash_fine": r["image"]["phash_fine"],
            }
            for r in records
        ]
    )


def run_stage(params: dict, records: list[dict], lake_root: Path, run_id: str = "run1"):
    """fit + map as the engines do; returns (kept, excluded) by sample_id and the stage summary."""
    stage = make_stage("decontaminate", params)
    ctx = StageContext(run_id=run_id, lake_uri=str(lake_root))
    state = stage.fit(fit_table(records), ctx)
    result = run_map_stage(stage.bind(state), to_batch(records), ctx)
    kept = {r["sample_id"]: r for r in result.kept.to_pylist()}
    gone = {r["sample_id"]: r for r in result.excluded.to_pylist()}
    summary = json.loads((lake_root / "runs" / run_id / "decontaminate.json").read_text())
    return kept, gone, summary


@pytest.fixture
def images_set(tmp_path: Path) -> Path:
    """An eval set as a folder: two test images in nested folders, one corrupt file, one bomb."""
    root = tmp_path / "vqa-rad"
    (root / "test" / "chest").mkdir(parents=True)
    (root / "test" / "chest" / "a.png").write_bytes(encode(picture(1)))
    (root / "test" / "b.jpg").write_bytes(encode(picture(2, mode="RGB"), "JPEG", quality=95))
    (root / "test" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "test" / "bomb.png").write_bytes(png_bomb())
    (root / "test" / "notes.txt").write_text("not an image, not listed")
    return root


# -- the stage over an images folder ----------------------------------------------------------------


def test_images_folder_exact_and_near_copies_are_filtered(images_set: Path, tmp_path: Path) -> None:
    eval_a = picture(1)
    records = [
        training_record("s1-exact", encode(eval_a)),  # the same pixels, re-encoded losslessly
        training_record("s2-near", altered_copy(eval_a)),
        training_record("s3-other", encode(picture(7))),
        training_record("s4-color", encode(picture(2, mode="RGB"), "JPEG", quality=95)),
    ]
    params = {
        "eval_sets": [{"name": "vqa-rad", "kind": "images", "uri": str(images_set)}],
        "normalize": NORMALIZE,
    }
    kept, gone, summary = run_stage(params, records, tmp_path / "lake")

    assert set(kept) == {"s3-other"} and set(gone) == {"s1-exact", "s2-near", "s4-color"}
    exact = gone["s1-exact"]
    assert exact["status"] == "filtered" and exact["status_stage"] == "decontaminate"
    assert exact["status_reason"] == "eval_overlap: same pixels as vqa-rad:test/chest/a.png"
    assert exact["dedup"]["method"] == "exact_pixels" and exact["dedup"]["distance"] == 0.0
    near = gone["s2-near"]
    assert (
        near["status_reason"].startswith("eval_overlap: ")
        and "vqa-rad:test/chest/a.png" in near["status_reason"]
    )
    details = json.loads(near["lineage"][-1]["details"])
    assert details["eval_set"] == "vqa-rad" and details["eval_member"] == "test/chest/a.png"
    assert details["method"] == "phash" and 0 < details["distance"] <= 6
    assert near["dedup"]["method"] == "phash"
    assert summary == {
        "vqa-rad": {
            "images": 2,
            "unreadable": 2,
            "skipped": 0,
            "errors": {"corrupt_image": 1, "decompression_bomb": 1},
            "cached": False,
            "removed": 3,
            "eval_images_matched": 2,
            "radius": 6,
            "fine_radius": 24,
            "variants": [],
            "by_method": {"exact_pixels": 2, "phash": 1},
        }
    }


def test_without_eval_sets_the_stage_is_a_no_op(tmp_path: Path) -> None:
    records = [training_record("s1", encode(picture(1)))]
    kept, gone, summary = run_stage({}, records, tmp_path / "lake")
    assert set(kept) == {"s1"} and not gone and summary == {}


def test_first_configured_set_claims_a_sample(images_set: Path, tmp_path: Path) -> None:
    other = tmp_path / "slake"
    other.mkdir()
    (other / "same.png").write_bytes(encode(picture(1)))
    records = [training_record("s1", encode(picture(1)))]
    sets = [
        {"name": "vqa-rad", "kind": "images", "uri": str(images_set)},
        {"name": "slake", "kind": "images", "uri": str(other)},
    ]
    _, gone, summary = run_stage({"eval_sets": sets, "normalize": NORMALIZE}, records, tmp_path / "lake")
    assert json.loads(gone["s1"]["lineage"][-1]["details"])["eval_set"] == "vqa-rad"
    assert summary["vqa-rad"]["removed"] == 1 and summary["slake"]["removed"] == 0


def test_bad_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown param"):
        make_stage("decontaminate", {"eval_set": []})
    with pytest.raises(ValueError, match="kind must be"):
        make_stage("decontaminate", {"eval_sets": [{"name": "x", "kind": "hf", "uri": "."}]})
    with pytest.raises(ValueError, match="must match"):
        make_stage("decontaminate", {"eval_sets": [{"name": "../x", "kind": "images", "uri": "."}]})
    twice = [{"name": "x", "kind": "images", "uri": str(tmp_path)}] * 2
    with pytest.raises(ValueError, match="unique"):
        make_stage("decontaminate", {"eval_sets": twice})
    # A configured set that is not there stops the run at planning, before anything ships unchecked.
    gone = make_stage(
        "decontaminate", {"eval_sets": [{"name": "x", "kind": "images", "uri": str(tmp_path / "no")}]}
    )
    with pytest.raises(FileNotFoundError, match="eval set 'x': .* is not a folder"):
        gone.config_hash  # noqa: B018 - the property is what planning reads


def test_relative_uri_resolves_against_the_working_directory(images_set: Path, monkeypatch) -> None:
    monkeypatch.chdir(images_set.parent)
    stage = make_stage("decontaminate", {"eval_sets": [{"name": "v", "kind": "images", "uri": "vqa-rad"}]})
    assert stage.specs[0].uri == str(images_set.resolve())


# -- webdataset shards --------------------------------------------------------------------------------


def test_webdataset_shards(tmp_path: Path) -> None:
    shards = tmp_path / "pathvqa"
    shards.mkdir()
    for n in range(2):
        with wds.TarWriter(str(shards / f"test-{n:04d}.tar")) as sink:
            for k in range(2):
                seed = 10 + 2 * n + k
                sink.write({"__key__": f"s{seed}", "png": encode(picture(seed)), "txt": "a caption"})
    spec = EvalSetSpec.from_config({"name": "pathvqa", "kind": "webdataset", "uri": str(shards)})
    index = load_index(spec, NORMALIZE)
    assert index.table.column("member").to_pylist() == [
        "test-0000.tar/s10.png",
        "test-0000.tar/s11.png",
        "test-0001.tar/s12.png",
        "test-0001.tar/s13.png",
    ]
    assert index.images == 4
    records = [training_record("t1", altered_copy(picture(13))), training_record("t2", encode(picture(99)))]
    params = {
        "eval_sets": [{"name": "pathvqa", "kind": "webdataset", "uri": str(shards)}],
        "normalize": NORMALIZE,
    }
    kept, gone, _ = run_stage(params, records, tmp_path / "lake")
    assert set(gone) == {"t1"} and set(kept) == {"t2"}
    assert "pathvqa:test-0001.tar/s13.png" in gone["t1"]["status_reason"]


def test_hostile_tar_members_are_skipped_and_nothing_escapes(tmp_path: Path) -> None:
    payload = encode(picture(5))
    shard = tmp_path / "evil" / "test.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:

        def add(name: str, data: bytes = b"", **attrs) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for key, value in attrs.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("ok.png", payload)
        add("../escape.png", payload)
        add("/abs/root.png", payload)
        add("link.png", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add("hard.png", type=tarfile.LNKTYPE, linkname="ok.png")
        add("dev.png", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("sample.json", b"{}")
    spec = EvalSetSpec.from_config({"name": "evil", "kind": "webdataset", "uri": str(shard)})
    index = load_index(spec, NORMALIZE, Lake(str(tmp_path / "lake")))
    rows = {r["member"]: r for r in index.table.to_pylist()}
    assert set(rows) == {
        f"test.tar/{n}"
        for n in ("ok.png", "../escape.png", "/abs/root.png", "link.png", "hard.png", "dev.png")
    }
    assert rows["test.tar/ok.png"]["phash"] and not rows["test.tar/ok.png"]["error"]
    for name, row in rows.items():
        if name != "test.tar/ok.png":
            assert row["error"].startswith("unsafe_member: ") and row["phash"] is None, name
    assert index.summary()["skipped"] == 5 and index.images == 1
    assert not (tmp_path / "escape.png").exists() and not Path("/abs/root.png").exists()
    assert sorted(p.name for p in shard.parent.iterdir()) == ["test.tar"]  # nothing extracted


def test_a_corrupt_shard_is_counted_not_fatal(tmp_path: Path) -> None:
    shard = tmp_path / "bad.tar"
    shard.write_bytes(b"\x00garbage" * 100)
    index = load_index(EvalSetSpec("bad", "webdataset", str(shard)), NORMALIZE)
    assert index.images == 0 and index.summary()["unreadable"] == 1


# -- manifests ----------------------------------------------------------------------------------------


def test_manifest_parquet_with_hashes(tmp_path: Path) -> None:
    """A medcurate release's manifest.parquet lists key, pixel_sha256 and phash; no image is read."""
    released = [training_record(f"r{n}", encode(picture(20 + n))) for n in range(3)]
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "key": r["sample_id"],
                    "pixel_sha256": r["image"]["pixel_sha256"],
                    "phash": r["image"]["phash"],
                }
                for r in released
            ]
            + [{"key": "bad", "pixel_sha256": "xyz", "phash": None}]
        ),
        manifest,
    )
    records = [
        training_record("t-exact", encode(picture(21))),
        training_record("t-near", altered_copy(picture(22))),
    ]
    records.append(training_record("t-other", encode(picture(98))))
    params = {
        "eval_sets": [{"name": "medmnist", "kind": "manifest", "uri": str(manifest)}],
        "normalize": NORMALIZE,
    }
    kept, gone, summary = run_stage(params, records, tmp_path / "lake")
    assert set(kept) == {"t-other"}
    assert gone["t-exact"]["status_reason"] == "eval_overlap: same pixels as medmnist:r1"
    assert gone["t-near"]["dedup"]["method"] == "phash" and "medmnist:r2" in gone["t-near"]["status_reason"]
    assert summary["medmnist"]["images"] == 3 and summary["medmnist"]["errors"] == {"bad_hash": 1}


def test_fine_hash_confirms_near_matches(tmp_path: Path) -> None:
    """A 64-bit phash hit whose 256-bit hash is far is a look-alike, not a copy; without a fine hash
    on the eval side the hit stands (decontamination errs towards removing)."""
    record = training_record("t1", encode(picture(60)))
    image = record["image"]
    far_fine = f"{int(image['phash_fine'], 16) ^ ((1 << 256) - 1):064x}"  # all 256 bits differ
    lake_root = tmp_path / "lake"
    outcome = {}
    for label, fine in (("look-alike", far_fine), ("no-fine", None), ("copy", image["phash_fine"])):
        manifest = tmp_path / f"{label}.parquet"
        row = {"key": label, "pixel_sha256": None, "phash": image["phash"], "phash_fine": fine}
        pq.write_table(pa.Table.from_pylist([row]), manifest)
        sets = [{"name": label, "kind": "manifest", "uri": str(manifest)}]
        _, gone, _ = run_stage({"eval_sets": sets}, [dict(record)], lake_root, f"run-{label}")
        outcome[label] = bool(gone)
    assert outcome == {"look-alike": False, "no-fine": True, "copy": True}


def test_manifest_csv_with_relative_paths(tmp_path: Path) -> None:
    root = tmp_path / "slake"
    (root / "imgs").mkdir(parents=True)
    (root / "imgs" / "x.png").write_bytes(encode(picture(30)))
    (root / "imgs" / "y.png").write_bytes(encode(picture(31)))
    with (root / "test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["img_name", "question"])
        writer.writerows(
            [["imgs/x.png", "q1"], ["imgs/y.png", "q2"], ["../outside.png", "q3"], ["imgs/gone.png", ""]]
        )
    sets = [{"name": "slake", "kind": "manifest", "uri": str(root / "test.csv"), "path_column": "img_name"}]
    records = [training_record("t1", altered_copy(picture(31))), training_record("t2", encode(picture(97)))]
    kept, gone, summary = run_stage({"eval_sets": sets, "normalize": NORMALIZE}, records, tmp_path / "lake")
    assert set(gone) == {"t1"} and "slake:imgs/y.png" in gone["t1"]["status_reason"]
    assert summary["slake"]["images"] == 2
    assert summary["slake"]["errors"] == {"missing_file": 1, "unsafe_path": 1}


# -- the cache ---------------------------------------------------------------------------------------


def test_index_is_cached_and_rebuilt_only_when_the_set_changes(
    images_set: Path, tmp_path: Path, monkeypatch
) -> None:
    calls = []
    original = evalsets.Fingerprinter.__call__

    def counting(self, member, raw):
        calls.append(member)
        return original(self, member, raw)

    monkeypatch.setattr(evalsets.Fingerprinter, "__call__", counting)
    lake_root = tmp_path / "lake"
    records = [training_record("s1", encode(picture(1)))]
    params = {
        "eval_sets": [{"name": "vqa-rad", "kind": "images", "uri": str(images_set)}],
        "normalize": NORMALIZE,
    }
    _, _, first = run_stage(params, records, lake_root, "run1")
    assert len(calls) == 4 and first["vqa-rad"]["cached"] is False
    cached = list((lake_root / "state" / "evalsets" / "vqa-rad").glob("*.parquet"))
    assert len(cached) == 1

    _, gone, second = run_stage(params, records, lake_root, "run2")
    assert len(calls) == 4, "an unchanged set must not be decoded again"
    assert second["vqa-rad"]["cached"] is True and set(gone) == {"s1"}

    hash_before = make_stage("decontaminate", params).config_hash
    (images_set / "test" / "c.png").write_bytes(encode(picture(3)))
    _, _, third = run_stage(params, records, lake_root, "run3")
    assert len(calls) == 9 and third["vqa-rad"]["images"] == 3
    assert make_stage("decontaminate", params).config_hash != hash_before  # so the run id changes too

    other_params = {**params, "normalize": {**NORMALIZE, "max_side": 256}}
    run_stage(other_params, records, lake_root, "run4")
    assert len(calls) == 14, "other normalize params are another index"


# -- the card and a real run ---------------------------------------------------------------------------


def test_card_section_lists_sets_and_dedup_counts() -> None:
    ledger = {
        "sources": {
            "a": {"filtered": {"exact_duplicate": 2, "eval_overlap": 1, "too_small": 4}},
            "b": {"filtered": {"eval_overlap": 3, "near_duplicate": 1}},
        }
    }
    sets = {"vqa-rad": {"images": 451, "unreadable": 2, "skipped": 1, "removed": 4, "eval_images_matched": 3}}
    text = _dedup_section({"decontamination": sets}, ledger)
    assert "## Deduplication and decontamination" in text
    assert (
        "| eval_overlap | 4 |" in text
        and "| exact_duplicate | 2 |" in text
        and "| near_duplicate | 1 |" in text
    )
    assert "| vqa-rad | 451 | 3 | 4 | 3 |" in text
    assert "not checked" in _dedup_section({}, ledger) and "none configured" in _dedup_section(
        {"decontamination": {}}, ledger
    )


def test_end_to_end_release_card_counts_the_eval_set(tmp_path: Path, monkeypatch) -> None:
    """Source -> normalize -> decontaminate -> release through the steps the flow runs (no Prefect)."""
    from medcurate.config import PipelineConfig
    from medcurate.release.builder import ReleaseSettings, build_release
    from medcurate.steps import iter_sorted_records

    from .conftest import run_steps

    corpus = tmp_path / "corpus"
    for n, cls in enumerate(["normal", "normal", "lesion", "lesion"]):
        (corpus / cls).mkdir(parents=True, exist_ok=True)
        (corpus / cls / f"img{n}.png").write_bytes(encode(picture(40 + n)))
    evalset = tmp_path / "eval" / "test"
    evalset.mkdir(parents=True)
    (evalset / "leaked.jpg").write_bytes(altered_copy(picture(42)))
    monkeypatch.chdir(tmp_path)
    cfg = PipelineConfig.model_validate(
        {
            "name": "decon",
            "sources": [
                {"name": "derm", "kind": "labeled", "uri": "corpus", "params": {"layout": "imagefolder"}}
            ],
            "stages": {
                "normalize": NORMALIZE,
                "decontaminate": {
                    "eval_sets": [{"name": "derm-test", "kind": "images", "uri": "eval"}],
                    "normalize": NORMALIZE,
                },
            },
            "release": {"name": "decon"},
        }
    )
    lake, plan, parts, ledger = run_steps(cfg, tmp_path / "lake")
    records = list(iter_sorted_records(lake, parts))
    for record in records:
        ledger.source(record["source"]["dataset"]).released += 1
    outcome = build_release(
        lake,
        ReleaseSettings(**cfg.release.model_dump()),
        records,
        config=cfg.model_dump(),
        config_hash=cfg.config_hash,
        run_id=plan.run_id,
        ledger=ledger.as_dict,
    )
    ledger.check()
    assert outcome.release.info["sample_count"] == 3
    assert ledger.as_dict()["sources"]["derm"]["filtered"] == {"eval_overlap": 1}
    assert outcome.release.info["decontamination"]["derm-test"]["removed"] == 1
    card = (lake.local_path(outcome.release.path) / "card.md").read_text()
    assert "| derm-test | 1 | 0 | 1 | 1 |" in card and "| eval_overlap | 1 |" in card


def test_run_identity_follows_the_sets_content_not_its_file_times(tmp_path: Path) -> None:
    """The same set rewritten (a fresh copy: new mtimes) names the same run; changed bytes another."""
    import os

    image = tmp_path / "eval" / "x.png"
    image.parent.mkdir()
    image.write_bytes(b"\x89PNG not really an image")

    def config_hash() -> str:
        spec = {"name": "s", "kind": "images", "uri": str(image.parent)}
        return make_stage("decontaminate", {"eval_sets": [spec]}).config_hash

    before = config_hash()
    image.write_bytes(image.read_bytes())
    os.utime(image, ns=(1, 1))
    assert config_hash() == before
    image.write_bytes(b"\x89PNG not really an imagf")  # same size, other bytes
    assert config_hash() != before


# -- mirrored views ------------------------------------------------------------------------------------


def views_table(records: list[dict]) -> pa.Table:
    """``fit_table`` plus the columns views and semantic matching read."""
    table = fit_table(records)
    table = table.append_column(
        "image.phash_variants", pa.array([r["image"]["phash_variants"] for r in records])
    )
    return table.append_column("image.sha256", pa.array([r["image"]["sha256"] for r in records]))


def fit_and_apply(params: dict, records: list[dict], lake_root: Path, run_id: str, model=None):
    stage = make_stage("decontaminate", params)
    stage.model = model
    ctx = StageContext(run_id=run_id, lake_uri=str(lake_root))
    result = run_map_stage(stage.bind(stage.fit(views_table(records), ctx)), to_batch(records), ctx)
    summary = json.loads((lake_root / "runs" / run_id / "decontaminate.json").read_text())
    gone = {r["sample_id"]: r for r in result.excluded.to_pylist()}
    return {r["sample_id"] for r in result.kept.to_pylist()}, gone, summary


def test_a_mirrored_copy_is_removed_only_when_its_view_is_configured(
    images_set: Path, tmp_path: Path
) -> None:
    mirrored = picture(1).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    records = [
        training_record("t-mirrored", encode(mirrored)),
        training_record("t-other", encode(picture(8))),
    ]
    sets = [{"name": "vqa-rad", "kind": "images", "uri": str(images_set)}]
    params = {"eval_sets": sets, "normalize": NORMALIZE}
    kept, gone, summary = fit_and_apply(params, records, tmp_path / "lake", "plain")
    assert kept == {"t-mirrored", "t-other"} and not gone, "the plain phash of a mirror is far"
    assert summary["vqa-rad"]["by_method"] == {"exact_pixels": 0, "phash": 0}

    kept, gone, summary = fit_and_apply(
        {**params, "variants": ["hflip"]}, records, tmp_path / "lake", "views"
    )
    assert kept == {"t-other"} and set(gone) == {"t-mirrored"}
    record = gone["t-mirrored"]
    assert record["dedup"]["method"] == "phash:hflip" and record["dedup"]["distance"] <= 6
    assert record["status_reason"].endswith("(hflip view) from vqa-rad:test/chest/a.png")
    details = json.loads(record["lineage"][-1]["details"])
    assert details["method"] == "phash:hflip" and details["eval_member"] == "test/chest/a.png"
    assert summary["vqa-rad"]["by_method"] == {"exact_pixels": 0, "phash": 0, "phash:hflip": 1}
    assert summary["vqa-rad"]["variants"] == ["hflip"]


def test_a_missing_view_names_normalizes_hash_variants(images_set: Path, tmp_path: Path) -> None:
    record, _ = NormalizeStage({**NORMALIZE, "hash_variants": []}).apply(
        new_record("t1", image={"bytes": encode(picture(1))}), StageContext("t")
    )
    params = {
        "eval_sets": [{"name": "vqa-rad", "kind": "images", "uri": str(images_set)}],
        "normalize": NORMALIZE,
        "variants": ["hflip"],
    }
    with pytest.raises(
        ValueError, match=r"variant 'hflip' is missing on t1; add it to normalize's hash_variants"
    ):
        fit_and_apply(params, [record], tmp_path / "lake", "r")
    with pytest.raises(ValueError, match="semantic_threshold"):
        make_stage("decontaminate", {"semantic_threshold": 1.5})
    with pytest.raises(ValueError, match="variants"):
        make_stage("decontaminate", {"variants": "hflip"})


# -- semantic matching ---------------------------------------------------------------------------------


def test_best_matches_equals_brute_force() -> None:
    from medcurate.dedup.semantic import best_matches

    rng = np.random.default_rng(3)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    base = unit(rng.standard_normal((300, 32)))
    queries = unit(rng.standard_normal((1000, 32)))
    noise = rng.uniform(0.0, 0.1, (50, 1))  # cosines on both sides of 0.9
    queries[:50] = unit(base[rng.integers(0, 300, 50)] + rng.standard_normal((50, 32)) * noise)
    best, cosines = best_matches(queries, base, 0.9, block=128)
    sims = queries.astype(np.float64) @ base.astype(np.float64).T
    expected = np.where(sims.max(axis=1) >= 0.9, sims.argmax(axis=1), -1)
    assert (best == expected).all() and 10 <= (best >= 0).sum() < 50
    hit = best >= 0
    assert np.allclose(cosines[hit], sims.max(axis=1)[hit]) and np.isnan(cosines[~hit]).all()
    empty, _ = best_matches(queries, base[:0], 0.9)
    assert (empty == -1).all()


def test_semantic_matching_without_training_vectors_names_the_embed_stage(
    images_set: Path, tmp_path: Path
) -> None:
    from medcurate.models.spec import ModelSpec

    fake = ModelSpec("embed", "/models/fake-clip", "transformers", "0" * 64)
    params = {
        "eval_sets": [{"name": "vqa-rad", "kind": "images", "uri": str(images_set)}],
        "normalize": NORMALIZE,
    }
    records = [training_record("t1", encode(picture(9)))]
    with pytest.raises(RuntimeError, match=r"run the 'embed' stage .* before 'decontaminate'"):
        fit_and_apply(params, records, tmp_path / "lake", "r", model=fake)
    # The model is part of the stage's identity (and so of the run id).
    plain = make_stage("decontaminate", params)
    attached = make_stage("decontaminate", params)
    attached.model = fake
    assert plain.config_hash != attached.config_hash


def _semantic_pipeline(corpus: Path, evalset: Path, clip: Path | None, radius: int) -> dict:
    normalize = {"max_side": 256, "min_side": 32, "jpeg_quality": 90}
    config = {
        "name": "decon-semantic",
        "sources": [{"name": "figs", "kind": "labeled", "uri": str(corpus), "params": {"license": "cc0"}}],
        "stages": {
            "normalize": normalize,
            "embed": {},
            "decontaminate": {
                "eval_sets": [{"name": "leak-test", "kind": "images", "uri": str(evalset)}],
                "normalize": normalize,
                "radius": radius,
                "semantic_threshold": 0.9999,
            },
        },
        "release": {"name": "decon-semantic"},
    }
    if clip is not None:
        config["models"] = {"embed": {"path": str(clip)}}
    return config


def _vector_keys(lake: Lake) -> tuple[list[str], list[str]]:
    from medcurate.dedup.vectors import VECTOR_ROOT

    files = sorted(lake.walk_files(VECTOR_ROOT, suffix=".parquet"))
    keys = sorted(k for rel in files for k in lake.read_parquet(rel).column("key").to_pylist())
    return files, keys


def test_a_semantic_copy_of_a_training_image_is_removed_with_a_tiny_clip(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from medcurate.config import PipelineConfig
    from medcurate.models.registry import unload_all
    from medcurate.models.tiny import write_tiny_clip
    from medcurate.steps import build_stages

    from .conftest import run_steps

    corpus, evalset = tmp_path / "corpus", tmp_path / "eval"
    figures = [figure(seed) for seed in range(4)]
    for seed, image in enumerate(figures):
        (corpus / f"class{seed % 2}").mkdir(parents=True, exist_ok=True)
        (corpus / f"class{seed % 2}" / f"fig{seed}.png").write_bytes(encode(image))
    evalset.mkdir()
    # A 1-pixel crop of fig0: other pixels, a phash 2 bits away (radius 0 here), cosine ~0.99997.
    (evalset / "leak.png").write_bytes(encode(figures[0].crop((1, 1, 95, 95))))
    (evalset / "same.png").write_bytes(encode(figures[1]))  # fig1's pixels: an exact match
    (evalset / "unseen.png").write_bytes(encode(figure(10)))

    # Without a model the stage still runs (exact and phash only); only embed is skipped.
    cfg = PipelineConfig.model_validate(_semantic_pipeline(corpus, evalset, None, 0))
    _, dataset, skipped = build_stages(cfg)
    assert [s.name for s in dataset] == ["decontaminate"] and skipped == ["embed: no model for role 'embed'"]

    clip = write_tiny_clip(tmp_path / "tiny-clip")
    lake_root = tmp_path / "lake"
    try:
        cfg = PipelineConfig.model_validate(_semantic_pipeline(corpus, evalset, clip, 0))
        lake, plan, _, _ = run_steps(cfg, lake_root)
        assert plan.skipped_stages == []
        files, keys = _vector_keys(lake)
        # 4 training images + leak + unseen: same.png normalises to fig1's bytes and shares its vector.
        assert len(keys) == len(set(keys)) == 6

        # Another run (other radius: another run id) embeds nothing: training and eval vectors are stored.
        cfg2 = PipelineConfig.model_validate(_semantic_pipeline(corpus, evalset, clip, 1))
        _, plan2, _, _ = run_steps(cfg2, lake_root)
        assert plan2.run_id != plan.run_id
        assert _vector_keys(lake) == (files, keys)
    finally:
        unload_all()

    for run_id in (plan.run_id, plan2.run_id):
        excluded = {
            Path(row["source"]["uri"]).name: row
            for rel in lake.walk_files(f"runs/{run_id}/excluded/decontaminate", suffix=".parquet")
            for row in lake.read_parquet(rel).to_pylist()
        }
        assert set(excluded) == {"fig0.png", "fig1.png"}, "fig2 and fig3 stay"
        semantic, exact = excluded["fig0.png"], excluded["fig1.png"]
        assert semantic["dedup"]["method"].startswith("semantic:tiny-clip@")
        assert 0 <= semantic["dedup"]["distance"] < 1e-4
        assert semantic["status_reason"].startswith("eval_overlap: cosine 0.9999")
        assert semantic["status_reason"].endswith(" to leak-test:leak.png")
        event = semantic["lineage"][-1]
        assert event["stage"] == "decontaminate" and event["model"].startswith("tiny-clip@")
        assert json.loads(event["details"])["method"] == semantic["dedup"]["method"]
        assert exact["dedup"]["method"] == "exact_pixels" and exact["lineage"][-1]["model"] is None
        summary = json.loads((lake_root / "runs" / run_id / "decontaminate.json").read_text())["leak-test"]
        ref = semantic["dedup"]["method"].removeprefix("semantic:")
        assert summary["by_method"] == {"exact_pixels": 1, "phash": 0, f"semantic:{ref}": 1}
        assert summary["model"] == ref and summary["semantic_threshold"] == 0.9999
        assert summary["eval_images_embedded"] == 3 and summary["removed"] == 2
    text = _dedup_section({"decontamination": {"leak-test": summary}}, {})
    assert "| leak-test | 3 | 0 | 2 | 2 | exact_pixels 1, semantic:" in text
    assert f"image embeddings of `{ref}`, cosine >= 0.9999" in text
