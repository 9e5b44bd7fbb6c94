"""A real release read by the loaders people train with: webdataset (shuffled, in a torch DataLoader),
wids (random access through ``wids.json``), Hugging Face ``datasets``, open_clip's WebDataset pipeline,
the manifest's offsets with no library at all, and the manifest in duckdb and polars."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import threading
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader
from webdataset.tariterators import base_plus_ext, tar_file_expander, url_opener, valid_sample

from medcurate.release.wids_index import WIDS_KIND, wids_descriptor

from .figures import labeled_release

CLASSES = ("effusion", "nodule", "normal")
PER_CLASS = 4
SHARD_MAX_COUNT = 3


def _image(seed: int) -> bytes:
    """Colour images (normalize writes JPEG) and, every third, grayscale ones (PNG): both extensions."""
    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in rng.integers(48, 96, 2))
    mode = "L" if seed % 3 == 0 else "RGB"
    image = Image.new(mode, (w, h), 40 if mode == "L" else (40, 80, 120))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = (int(v) for v in rng.integers(0, min(w, h) - 20, 2))
        fill = int(rng.integers(0, 255)) if mode == "L" else tuple(int(v) for v in rng.integers(0, 255, 3))
        draw.rectangle((x, y, x + 16, y + 12), fill=fill)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def release(tmp_path_factory, prefect_harness) -> Path:
    """A real release of 3 classes x 4 images in 3-sample shards, with its ``wids.json``."""
    images = {name: [_image(10 * c + i) for i in range(PER_CLASS)] for c, name in enumerate(CLASSES)}
    stages = {"split": {"ratios": {"train": 0.6, "val": 0.2, "test": 0.2}}}
    summary = labeled_release(
        tmp_path_factory.mktemp("compat"), "compat-test", images, stages, SHARD_MAX_COUNT
    )
    assert summary.published and summary.sample_count == len(CLASSES) * PER_CLASS
    folder = Path(summary.release_path)
    assert (folder / "wids.json").is_file()  # every release writes it
    return folder


@pytest.fixture(scope="module")
def manifest(release: Path) -> list[dict]:
    return pq.read_table(release / "manifest.parquet").to_pylist()


def _urls(release: Path) -> list[str]:
    info = json.loads((release / "release.json").read_text())
    return [str(release / shard["path"]) for shard in info["shards"]]


def _image_ext(row: dict) -> str:
    return {"jpeg": "jpg", "png": "png"}[row["image_format"]]


def test_the_release_has_several_shards_and_both_image_extensions(
    release: Path, manifest: list[dict]
) -> None:
    assert len(_urls(release)) == -(-len(manifest) // SHARD_MAX_COUNT) >= 4
    assert {_image_ext(row) for row in manifest} == {"jpg", "png"}
    for row in manifest:
        assert [m["ext"] for m in row["members"]] == sorted(m["ext"] for m in row["members"])
        assert {m["ext"] for m in row["members"]} == {_image_ext(row), "txt", "json", "cls"}


def test_member_bytes_at_the_manifest_offsets_equal_what_webdataset_yields(
    release: Path, manifest: list[dict]
) -> None:
    streamed = {s["__key__"]: s for s in wds.WebDataset(_urls(release), shardshuffle=False)}
    assert list(streamed) == [row["key"] for row in manifest]
    for row in manifest:
        with (release / row["shard"]).open("rb") as tar:
            assert row["offset"] == row["members"][0]["offset"]
            for member in row["members"]:
                # ``offset`` is where the member's headers start (a pax header first, if any); the
                # ustar header naming the member is the 512 bytes just before its data.
                tar.seek(member["data_offset"] - 512)
                name = tar.read(100).rstrip(b"\0").decode()
                assert name == f"{row['key']}.{member['ext']}" and member["offset"] < member["data_offset"]
                tar.seek(member["data_offset"])
                data = tar.read(member["size"])
                assert data == streamed[row["key"]][member["ext"]]
        image = streamed[row["key"]][_image_ext(row)]
        assert hashlib.sha256(image).hexdigest() == row["image_sha256"]
        assert streamed[row["key"]]["txt"].decode() == row["final_caption"]


def _check_epoch(batches, manifest: list[dict]) -> list[str]:
    by_key = {row["key"]: row for row in manifest}
    keys = []
    for images, texts, records in batches:
        for image, text, record in zip(images, texts, records, strict=True):
            row = by_key[record["sample_id"]]
            assert isinstance(image, Image.Image) and image.size == (row["width"], row["height"])
            assert text == row["final_caption"]
            keys.append(record["sample_id"])
    assert Counter(keys) == Counter(list(by_key))  # every sample exactly once
    return keys


def _worker_init(_: int) -> None:
    """This test process ran a Prefect flow (the fixture): a forked DataLoader worker inherits the
    threading-atexit hooks of Prefect's background services, which fail an assertion in the child and
    make it exit with code 1. A training process has none of them; drop them in the worker."""
    threading._threading_atexits.clear()  # type: ignore[attr-defined]


def _collate(samples):
    return tuple(list(column) for column in zip(*samples, strict=True))


@pytest.mark.parametrize("workers", [0, 2])
def test_webdataset_shuffled_in_a_torch_dataloader_yields_every_sample_once(
    release: Path, manifest: list[dict], workers: int
) -> None:
    dataset = (
        wds.WebDataset(
            _urls(release),
            shardshuffle=10,
            detshuffle=True,
            seed=7,
            nodesplitter=wds.split_by_node,
            workersplitter=wds.split_by_worker,
        )
        .shuffle(20, rng=random.Random(3))
        .decode("pil")
        .to_tuple("jpg;png", "txt", "json")
    )
    loader = DataLoader(
        dataset, batch_size=4, num_workers=workers, collate_fn=_collate, worker_init_fn=_worker_init
    )
    keys = _check_epoch(loader, manifest)
    assert keys != [row["key"] for row in manifest]  # shuffled
    # The same pipeline through WebLoader (webdataset's own DataLoader) with batching in the dataset.
    batched = dataset.batched(4, collation_fn=_collate)
    _check_epoch(
        wds.WebLoader(batched, batch_size=None, num_workers=workers, worker_init_fn=_worker_init), manifest
    )


def test_wids_random_access_through_wids_json(release: Path, manifest: list[dict], tmp_path: Path) -> None:
    import wids

    descriptor = json.loads((release / "wids.json").read_text())
    assert descriptor["__kind__"] == WIDS_KIND and descriptor["wids_version"] == 1
    assert [s["url"] for s in descriptor["shardlist"]] == [
        p.relative_to(release).as_posix() for p in map(Path, _urls(release))
    ]
    sizes = json.loads((release / "shards" / "sizes.json").read_text())
    assert [s["nsamples"] for s in descriptor["shardlist"]] == [
        sizes[Path(s["url"]).name] for s in descriptor["shardlist"]
    ]

    raw = wids.ShardListDataset(str(release / "wids.json"), cache_dir=str(tmp_path / "c"), transformations=[])
    assert len(raw) == len(manifest)
    for i in (0, 1, SHARD_MAX_COUNT, 7, len(manifest) - 1, 4, 0):
        row, sample = manifest[i], raw[i]
        assert sample["__key__"] == row["key"] and sample["__shard__"].endswith(row["shard"])
        assert {ext for ext in sample if not ext.startswith("__")} == {f".{m['ext']}" for m in row["members"]}
        image = sample[f".{_image_ext(row)}"].read()
        assert hashlib.sha256(image).hexdigest() == row["image_sha256"]
        assert sample[".txt"].read().decode() == row["final_caption"]
    raw.close()

    decoded = wids.ShardListDataset(str(release / "wids.json"), cache_dir=str(tmp_path / "d"))
    last = decoded[len(manifest) - 1]
    row = manifest[-1]
    assert last[".json"]["sample_id"] == row["key"] and last[".txt"] == row["final_caption"]
    assert last[f".{_image_ext(row)}"].size == (row["width"], row["height"])
    assert last[".cls"] == CLASSES.index(row["class_name"])
    decoded.close()


def test_wids_descriptor_is_relative_and_refuses_a_manifest_out_of_order(
    release: Path, manifest: list[dict]
) -> None:
    table = pq.read_table(release / "manifest.parquet")
    assert wids_descriptor(release, table, "compat-test") == json.loads((release / "wids.json").read_text())
    assert wids_descriptor(release, table)["name"] == "compat-test"  # from the shard prefix
    with pytest.raises(ValueError, match="not in tar order"):
        wids_descriptor(release, table.take([1, 0, *range(2, table.num_rows)]))
    with pytest.raises(ValueError, match="not contiguous"):
        wids_descriptor(release, table.take([*range(1, table.num_rows), 0]))


@pytest.fixture
def hf_datasets(tmp_path: Path, monkeypatch):
    """``datasets`` offline, with every cache under ``tmp_path``."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    import datasets

    return datasets


def _check_hf(ds, rows: list[dict]) -> None:
    assert ds.num_rows == len(rows)
    assert {_image_ext(row) for row in rows} | {"txt", "json", "cls", "__key__"} <= set(ds.column_names)
    assert sorted(ds["__key__"]) == sorted(row["key"] for row in rows)
    by_key = {row["key"]: row for row in rows}
    for sample in ds:
        row = by_key[sample["__key__"]]
        assert sample[_image_ext(row)].size == (row["width"], row["height"])
        assert sample["txt"] == row["final_caption"]
        assert sample["json"]["sample_id"] == row["key"]
        assert sample["cls"] == CLASSES.index(row["class_name"])


def test_hugging_face_datasets_loads_a_single_format_pull(
    release: Path, manifest: list[dict], tmp_path: Path, hf_datasets
) -> None:
    from medcurate.release.pull import pull

    info = pull(release, "image_format = 'jpeg'", None, tmp_path / "jpeg", shard_max_count=SHARD_MAX_COUNT)
    urls = [str(tmp_path / "jpeg" / shard["path"]) for shard in info["shards"]]
    ds = hf_datasets.load_dataset(
        "webdataset", data_files={"train": urls}, split="train", cache_dir=str(tmp_path / "cache")
    )
    _check_hf(ds, [row for row in manifest if row["image_format"] == "jpeg"])
    assert "png" not in ds.column_names


def test_hugging_face_datasets_needs_features_for_mixed_image_formats(
    release: Path, manifest: list[dict], tmp_path: Path, hf_datasets
) -> None:
    """The loader infers columns from the first shard's first 5 samples and refuses samples whose member
    extensions differ (``.jpg`` beside ``.png``); given ``features``, missing members read as None."""
    datasets = hf_datasets
    urls = _urls(release)
    with pytest.raises(ValueError, match="don't share the same prefix or the same types"):
        datasets.load_dataset(
            "webdataset", data_files={"train": urls}, split="train", cache_dir=str(tmp_path)
        )

    records = [json.loads(s["json"]) for s in wds.WebDataset(urls, shardshuffle=False)]
    record_features = datasets.Features.from_arrow_schema(pa.Table.from_pylist(records).schema)
    features = datasets.Features(
        {
            "jpg": datasets.Image(),
            "png": datasets.Image(),
            "txt": datasets.Value("string"),
            "cls": datasets.Value("int64"),
            "json": dict(record_features),
            "__key__": datasets.Value("string"),
            "__url__": datasets.Value("string"),
        }
    )
    ds = datasets.load_dataset(
        "webdataset",
        data_files={"train": urls},
        split="train",
        cache_dir=str(tmp_path / "cache"),
        features=features,
    )
    _check_hf(ds, manifest)
    for sample in ds:
        assert (sample["jpg"] is None) != (sample["png"] is None)


# open_clip's WebDataset pipeline (``open_clip_train/data.py``, ``get_wds_dataset`` and its helpers), with
# its stages as written there; only torchvision's preprocess and the tokenizer are stand-ins.
def filter_no_caption_or_no_image(sample):
    has_caption = "txt" in sample
    has_image = "png" in sample or "jpg" in sample or "jpeg" in sample or "webp" in sample
    return has_caption and has_image


def group_by_keys_nothrow(data, keys=base_plus_ext, lcase=True, suffixes=None, handler=None):
    current_sample = None
    for filesample in data:
        fname, value = filesample["fname"], filesample["data"]
        prefix, suffix = keys(fname)
        if prefix is None:
            continue
        if lcase:
            suffix = suffix.lower()
        if current_sample is None or prefix != current_sample["__key__"] or suffix in current_sample:
            if valid_sample(current_sample):
                yield current_sample
            current_sample = dict(__key__=prefix, __url__=filesample["__url__"])
        if suffixes is None or suffix in suffixes:
            current_sample[suffix] = value
    if valid_sample(current_sample):
        yield current_sample


def tarfile_to_samples_nothrow(src, handler=wds.reraise_exception):
    streams = url_opener(src, handler=handler)
    # open_clip pins webdataset<=0.2.86; webdataset 1.0 ends each shard with an empty ``{}`` marker that
    # this open_clip function cannot take (KeyError 'fname'), so ask for the 0.2 behaviour.
    files = tar_file_expander(streams, handler=handler, eof_value=None)
    return group_by_keys_nothrow(files, handler=handler)


def get_dataset_size(shards: list[str]) -> int:
    """open_clip reads the sample count from ``sizes.json`` beside the shards."""
    sizes = json.loads((Path(os.path.dirname(shards[0])) / "sizes.json").read_text())
    return sum(int(sizes[os.path.basename(shard)]) for shard in shards)


def _preprocess(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.resize((32, 32)), dtype=np.float32)).permute(2, 0, 1) / 255


def _tokenize(texts: list[str]) -> torch.Tensor:
    tokens = torch.zeros(len(texts), 77, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [ord(c) % 1000 + 1 for c in text[:77]]
        tokens[row, : len(ids)] = torch.tensor(ids)
    return tokens


def test_open_clip_webdataset_pipeline(release: Path, manifest: list[dict]) -> None:
    urls = _urls(release)
    assert get_dataset_size(urls) == len(manifest)
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(urls),
        wds.detshuffle(bufsize=10, initial=2, seed=0),
        wds.split_by_node,
        wds.split_by_worker,
        tarfile_to_samples_nothrow,
        wds.shuffle(bufsize=50, initial=10),
        wds.select(filter_no_caption_or_no_image),
        wds.decode("pilrgb"),
        wds.rename(image="jpg;png;jpeg;webp", text="txt"),
        wds.map_dict(image=_preprocess, text=lambda text: _tokenize([str(text)])[0]),
        wds.to_tuple("image", "text"),
        wds.batched(5, partial=True),
    )
    seen = 0
    for images, texts in wds.WebLoader(pipeline, batch_size=None, num_workers=2, worker_init_fn=_worker_init):
        assert images.shape[1:] == (3, 32, 32) and texts.shape == (len(images), 77)
        assert bool((texts[:, 0] != 0).all())  # every caption non-empty
        seen += len(images)
    assert seen == len(manifest)
    # webdataset (and open_clip) split a member name at its first dot: keys have none, extensions are known.
    for row in manifest:
        assert "." not in row["key"] and row["final_caption"].strip()
        for member in row["members"]:
            assert base_plus_ext(f"{row['key']}.{member['ext']}") == (row["key"], member["ext"])


def test_the_manifest_reads_the_same_in_pyarrow_duckdb_and_polars(release: Path) -> None:
    path = release / "manifest.parquet"
    table = pq.read_table(path)
    arrow_counts = Counter(
        zip(table.column("split").to_pylist(), table.column("modality").to_pylist(), strict=True)
    )
    rows = duckdb.sql(
        f"SELECT split, modality, count(*) AS n FROM read_parquet('{path}') GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert Counter({(split, modality): n for split, modality, n in rows}) == arrow_counts

    frame = pl.read_parquet(path)
    assert frame.height == table.num_rows and frame.columns == table.column_names
    grouped = frame.group_by("split", "modality").len()
    assert (
        Counter({(r["split"], r["modality"]): r["len"] for r in grouped.iter_rows(named=True)})
        == arrow_counts
    )
    nodules = frame.filter((pl.col("class_name") == "nodule") & (pl.col("split") == "train"))
    expected = table.filter(
        pc.and_(pc.equal(table["class_name"], "nodule"), pc.equal(table["split"], "train"))
    )
    assert nodules["key"].to_list() == expected.column("key").to_pylist()
    lazy = pl.scan_parquet(path).explode("members").filter(pl.col("members").struct.field("ext") == "txt")
    assert lazy.select(pl.len()).collect().item() == table.num_rows
