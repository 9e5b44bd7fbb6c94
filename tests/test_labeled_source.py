"""LabeledSource: CSV and ImageFolder listing, hostile input, pseudonyms and determinism."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medcurate.hashing import sha256_bytes
from medcurate.schemas.record import ACTIVE, QUARANTINED, to_batch
from medcurate.sources import SOURCES, LabeledSource, make_source
from medcurate.sources.base import SourceContext

CTX = SourceContext(stat_cache=lambda uri, size, mtime: None, pseudonym_key="test-key")
HEADER = "Path,Sex,Age,Frontal/Lateral,Cardiomegaly,Edema,Pleural Effusion"


def put(root: Path, rel: str, data: bytes | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else f"image bytes of {rel}".encode())
    return path


def csv_dataset(root: Path, rows: list[str], header: str = HEADER, images: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel in images:
        put(root, rel)
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def source(root: Path, ctx: SourceContext = CTX, name: str = "chexpert", **params) -> LabeledSource:
    return LabeledSource(name, str(root), params, ctx)


def read_all(src: LabeledSource) -> list[dict]:
    records = [record for item in src.list_inputs() for record in src.read(item)]
    to_batch(records)  # every record, quarantined or not, fits the schema
    return records


@pytest.fixture
def chest(tmp_path: Path) -> Path:
    return csv_dataset(
        tmp_path / "chest",
        [
            "p1/s1/view1_frontal.png,Male,67,Frontal,1.0,-1.0,0.0",
            "p1/s1/view2_lateral.jpg,Male,67,Lateral,,1,",
            "p2/s1/view1_frontal.png,Female,93,Frontal,0,,-1",
        ],
        images=("p1/s1/view1_frontal.png", "p1/s1/view2_lateral.jpg", "p2/s1/view1_frontal.png"),
    )


def test_registry():
    assert SOURCES["labeled"] is LabeledSource
    assert isinstance(make_source("labeled", "x", "/nowhere", {}, CTX), LabeledSource)
    with pytest.raises(ValueError, match="labeled"):
        make_source("webdataset", "x", "/nowhere", {}, CTX)


def test_csv_records(chest: Path):
    src = source(
        chest,
        view_column="Frontal/Lateral",
        sex_column="Sex",
        age_column="Age",
        modality="XR",
        body_part="chest",
        license="CC-BY-4.0",
        citation="Irvin et al. 2019",
    )
    first, second, third = read_all(src)
    assert [r["status"] for r in (first, second, third)] == [ACTIVE] * 3
    assert first["medical"]["labels"] == [
        {"name": "Cardiomegaly", "value": "positive"},
        {"name": "Edema", "value": "uncertain"},
        {"name": "Pleural Effusion", "value": "negative"},
    ]
    assert second["medical"]["labels"] == [{"name": "Edema", "value": "positive"}]  # blanks: not mentioned
    assert [r["medical"]["view"] for r in (first, second, third)] == ["Frontal", "Lateral", "Frontal"]
    assert first["medical"]["modality"] == "XR" and first["medical"]["body_part"] == "chest"
    assert (first["subject"]["sex"], first["subject"]["age_band"]) == ("male", "60-69")
    assert third["subject"]["age_band"] == "90+"
    path = chest / "p1/s1/view1_frontal.png"
    assert first["image"]["bytes"] == path.read_bytes()
    src_fields = first["source"]
    assert src_fields["kind"] == "labeled" and src_fields["dataset"] == "chexpert"
    assert src_fields["uri"] == str(path.resolve())
    assert src_fields["sha256"] == sha256_bytes(path.read_bytes()) == first["image"]["sha256"]
    assert src_fields["size"] == path.stat().st_size
    assert src_fields["manifest_uri"] == str(chest / "labels.csv")
    assert [r["source"]["manifest_line"] for r in (first, second, third)] == [2, 3, 4]
    assert (src_fields["license"], src_fields["citation"]) == ("CC-BY-4.0", "Irvin et al. 2019")
    assert first["lineage"] == []  # the flow's ingest step appends the event
    assert first["sample_id"] == src.sample_id("chexpert", "p1/s1/view1_frontal.png", src_fields["sha256"])


def test_auto_label_columns_skip_metadata(chest: Path):
    items = list(source(chest).list_inputs())
    names = {label["name"] for item in items for label in item.payload["labels"]}
    assert names == {"Cardiomegaly", "Edema", "Pleural Effusion"}  # not Sex, Age, Frontal/Lateral


def test_listing_is_deterministic_and_content_keyed(chest: Path):
    first, again = list(source(chest).list_inputs()), list(source(chest).list_inputs())
    assert [i.key for i in first] == [i.key for i in again]
    assert [r["sample_id"] for r in read_all(source(chest))] == [
        r["sample_id"] for r in read_all(source(chest))
    ]
    assert len({i.key for i in first}) == 3
    # a changed label is a new input; a changed file is a new input and a new sample
    text = (chest / "labels.csv").read_text().replace("Lateral,,1,", "Lateral,,0,")
    (chest / "labels.csv").write_text(text)
    relabeled = list(source(chest).list_inputs())
    assert [i.key == j.key for i, j in zip(first, relabeled, strict=True)] == [True, False, True]
    put(chest, "p2/s1/view1_frontal.png", b"new bytes")
    rehashed = list(source(chest).list_inputs())
    assert rehashed[2].key != first[2].key and rehashed[2].sha256 == sha256_bytes(b"new bytes")


def test_stat_cache_is_asked_with_the_item_uri(chest: Path):
    asked = []

    def cache(uri: str, size: int, mtime_ns: int) -> str | None:
        asked.append((uri, size, mtime_ns))
        return "f" * 64

    items = list(source(chest, SourceContext(stat_cache=cache)).list_inputs())
    assert [(i.uri, i.size, i.mtime_ns) for i in items] == asked
    assert {i.sha256 for i in items} == {"f" * 64}


def test_hostile_paths(tmp_path: Path):
    outside = put(tmp_path, "secret.png", b"outside the root")
    root = tmp_path / "data"
    put(root, "images/ok.png")
    (root / "images").joinpath("escape.png").symlink_to(outside)
    (root / "images").joinpath("inside.png").symlink_to(root / "images/ok.png")
    (root / "linked_dir").symlink_to(tmp_path)
    csv_dataset(
        root,
        [
            "../secret.png,1",
            f"{outside},1",
            "images/../../secret.png,1",
            "images/escape.png,1",
            "linked_dir/secret.png,1",
            "C:\\\\data\\\\x.png,1",
            "images/inside.png,1",
            "images/ok.png,0",
        ],
        header="Path,Edema",
    )
    items = list(source(root).list_inputs())
    errors = [i.error.split(":")[0] if i.error else None for i in items]
    assert errors == ["unsafe_path"] * 6 + [None, None]
    for item in items[:6]:
        assert "secret" not in item.uri and item.sha256 is None
    records = read_all(source(root))
    assert [r["status"] for r in records] == [QUARANTINED] * 6 + [ACTIVE] * 2
    assert all((r["image"].get("bytes") or b"") != b"outside the root" for r in records)
    assert records[0]["status_reason"].startswith("unsafe_path: '../secret.png'")
    assert records[0]["status_stage"] == "ingest.labeled"


def test_malformed_rows_and_missing_files(tmp_path: Path):
    root = csv_dataset(
        tmp_path / "d",
        [
            "a.png,1.0,0.0",
            "b.png,1.0",  # too few fields
            "",  # blank lines are not rows
            'c.png,1.0,0.0,"extra, field"',  # too many
            "d.png,yes,0",  # invalid label value
            "missing.png,1,0",
            "a.png,0,0",  # the same file listed twice
            ",1,0",  # no path
            '"e\n.png",1,0',  # a quoted newline: one record over two lines
        ],
        header="Path,Edema,Pneumonia",
        images=("a.png", "c.png", "d.png"),
    )
    src = source(root, label_columns=["Edema", "Pneumonia"])
    items = list(src.list_inputs())
    assert [i.error for i in items] == [
        None,
        "malformed_row: line 3: expected 3 fields, got 2",
        "malformed_row: line 5: expected 3 fields, got 4",
        "malformed_row: line 6: column 'Edema': invalid label value 'yes' (expected 1, 0, -1 or blank)",
        f"missing_file: missing.png not found under {root}",
        "malformed_row: line 8: duplicate path 'a.png' (first on line 2)",
        "malformed_row: line 9: empty 'Path'",
        f"missing_file: e\n.png not found under {root}",
    ]
    assert items[4].uri == str(root.resolve() / "missing.png")
    assert items[7].payload["line"] == 10
    records = read_all(src)
    assert [r["status"] for r in records] == [ACTIVE] + [QUARANTINED] * 7
    assert records[1]["source"]["manifest_line"] == 3
    assert len({r["sample_id"] for r in records}) == len(records)
    assert [i.key for i in items] == [i.key for i in src.list_inputs()]


def test_non_utf8_row_bom_and_crlf(tmp_path: Path):
    root = tmp_path / "d"
    put(root, "a.png")
    put(root, "b.png")
    manifest = "\ufeffPath,Edema\r\na.png,1\r\n".encode() + b"b\xff.png,1\r\nb.png,-1.0\r\n"
    (root / "labels.csv").write_bytes(manifest)
    items = list(source(root).list_inputs())
    assert [i.error for i in items] == [None, "malformed_row: line 3: not valid UTF-8", None]
    assert items[2].payload["labels"] == [{"name": "Edema", "value": "uncertain"}]


def test_config_errors(tmp_path: Path):
    root = csv_dataset(tmp_path / "d", ["a.png,1"], header="Image File,Edema", images=("a.png",))
    with pytest.raises(ValueError, match="no path column"):
        list(source(root).list_inputs())
    assert [i.error for i in source(root, path_column="Image File").list_inputs()] == [None]
    with pytest.raises(ValueError, match="unknown param"):
        source(root, lable_columns=["Edema"])
    with pytest.raises(ValueError, match="label_columns"):
        list(source(root, path_column="Image File", label_columns=["Nope"]).list_inputs())
    with pytest.raises(ValueError, match="must be a list"):
        source(root, label_columns="Edema")
    with pytest.raises(ValueError, match="pseudonym key"):
        source(root, SourceContext(stat_cache=CTX.stat_cache), patient_column="Edema")
    with pytest.raises(FileNotFoundError):
        list(source(tmp_path / "absent", layout="csv").list_inputs())


def test_patient_ids_are_pseudonymised_and_never_stored(tmp_path: Path):
    raw_ids = ["MRN-0042", "MRN-0077"]
    root = csv_dataset(
        tmp_path / "d",
        [f"a.png,{raw_ids[0]},1", f"b.png,{raw_ids[1]},0", f"c.png,{raw_ids[0]},-1", "x.png,1,2,3"],
        header="Path,PatientID,Edema",
        images=("a.png", "b.png", "c.png"),
    )
    src = source(root, patient_column="PatientID")
    items = list(src.list_inputs())
    records = read_all(src)
    pseudonyms = [r["subject"]["patient_pseudonym"] for r in records[:3]]
    assert pseudonyms[0] == pseudonyms[2] != pseudonyms[1]
    for raw in raw_ids:
        assert all(raw not in p and "0042" not in p for p in pseudonyms)
        assert raw not in repr(records) and raw not in repr([(i.payload, i.uri, i.error) for i in items])
    other_key = source(
        root, SourceContext(stat_cache=CTX.stat_cache, pseudonym_key="other"), patient_column="PatientID"
    )
    assert read_all(other_key)[0]["subject"]["patient_pseudonym"] != pseudonyms[0]
    assert records[0]["medical"]["labels"] == [{"name": "Edema", "value": "positive"}]


def test_patient_regex_on_paths(chest: Path, tmp_path: Path):
    src = source(chest, patient_regex=r"^(p\d+)/")
    pseudonyms = [r["subject"]["patient_pseudonym"] for r in read_all(src)]
    assert pseudonyms[0] == pseudonyms[1] != pseudonyms[2]
    assert all(p and not p.startswith("p1") and "p2/" not in p for p in pseudonyms)
    whole_match = source(chest, patient_regex=r"p\d+")
    assert [r["subject"]["patient_pseudonym"] for r in read_all(whole_match)] == pseudonyms
    put(tmp_path / "derm", "nevus/pat7_a.jpg")
    put(tmp_path / "derm", "nevus/b.jpg")
    folder = source(tmp_path / "derm", patient_regex=r"/(pat\d+)_")
    assert [r["subject"]["patient_pseudonym"] is None for r in read_all(folder)] == [
        True,
        False,
    ]  # b.jpg, pat7_a.jpg
    no_key = SourceContext(stat_cache=CTX.stat_cache)
    with pytest.raises(ValueError, match="patient_regex is set but no pseudonym key"):
        source(chest, no_key, patient_regex="p")
    with pytest.raises(ValueError, match="not both"):
        source(chest, patient_regex="p", patient_column="Sex")
    with pytest.raises(ValueError, match="invalid patient_regex"):
        source(chest, patient_regex="(")


def test_csv_class_column(tmp_path: Path):
    root = csv_dataset(
        tmp_path / "d",
        ["x/1.jpg,nevus", "x/2.jpg,melanoma", "x/3.jpg,nevus", "x/4.jpg,"],
        header="filename,diagnosis",
        images=("x/1.jpg", "x/2.jpg", "x/3.jpg", "x/4.jpg"),
    )
    items = list(source(root, class_column="diagnosis").list_inputs())
    assert [(i.payload.get("class_name"), i.payload.get("class_index")) for i in items[:3]] == [
        ("nevus", 1),
        ("melanoma", 0),
        ("nevus", 1),
    ]
    assert items[0].payload["labels"] == [{"name": "nevus", "value": "positive"}]
    assert items[3].error == "malformed_row: line 5: empty class in 'diagnosis'"


def test_imagefolder(tmp_path: Path):
    outside = put(tmp_path, "secret.jpg")
    root = tmp_path / "derm"
    for rel in ("nevus/b.jpg", "nevus/a.PNG", "melanoma/sub/c.jpeg", "melanoma/d.webp", "top.png"):
        put(root, rel)
    put(root, "nevus/notes.txt")
    put(root, "nevus/.hidden.jpg")
    put(root, ".cache/x.jpg")
    (root / "nevus/escape.jpg").symlink_to(outside)
    (root / "linked").symlink_to(tmp_path)  # not followed
    src = source(root, name="derm", modality="DERM", body_part="skin")
    assert src.layout == "imagefolder"
    items = list(src.list_inputs())
    assert [i.payload["relpath"] for i in items] == [
        "melanoma/d.webp",
        "melanoma/sub/c.jpeg",
        "nevus/a.PNG",
        "nevus/b.jpg",
        "nevus/escape.jpg",
        "top.png",
    ]
    assert [i.payload.get("class_index") for i in items[:4]] == [0, 0, 1, 1]
    assert items[4].error.startswith("unsafe_path: ")
    assert items[5].error == "no_class: top.png is not inside a class folder"
    records = read_all(src)
    assert records[2]["medical"]["class_name"] == "nevus"
    assert records[2]["medical"]["labels"] == [{"name": "nevus", "value": "positive"}]
    assert records[2]["source"]["manifest_uri"] is None
    assert [r["status"] for r in records] == [ACTIVE] * 4 + [QUARANTINED] * 2
    assert [i.key for i in items] == [i.key for i in src.list_inputs()]
    only_jpg = list(source(root, extensions=["jpg"]).list_inputs())
    assert [i.payload["relpath"] for i in only_jpg] == ["nevus/b.jpg", "nevus/escape.jpg"]


def test_changed_or_vanished_after_listing(chest: Path):
    src = source(chest)
    first, second, third = src.list_inputs()
    put(chest, "p1/s1/view1_frontal.png", b"replaced")
    (chest / "p1/s1/view2_lateral.jpg").unlink()
    (record,) = src.read(first)
    assert record["status"] == QUARANTINED
    assert record["status_reason"] == "file_changed: p1/s1/view1_frontal.png changed since listing"
    assert (
        src.read(second)[0]["status_reason"] == "missing_file: p1/s1/view2_lateral.jpg vanished since listing"
    )
    assert src.read(third)[0]["status"] == ACTIVE


def test_special_files_and_size_limit(tmp_path: Path):
    root = csv_dataset(tmp_path / "d", ["fifo.png,1", "big.png,1", "dir,1"], header="Path,Edema")
    os.mkfifo(root / "fifo.png")
    put(root, "big.png", bytes(2048))
    (root / "dir").mkdir()
    items = list(source(root, max_file_bytes=1024).list_inputs())
    assert [i.error for i in items] == [
        "not_a_file: fifo.png is not a regular file",
        "file_too_large: big.png has 2048 bytes (limit 1024)",
        "not_a_file: dir is not a regular file",
    ]
