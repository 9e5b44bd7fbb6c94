"""The DICOM source on the clinical sample folder: grouping, every bad case, pixels, PHI never out.

Real DICOM files written by the corpus generator (CT series, XA cine, MONOCHROME1 CR, RLE DX, JPEG 2000
and JPEG-LS MR, burned-in US, a zip transfer, broken files); no pydicom mocks.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from medcurate.clinical_corpus import PATIENTS, sample_phi, write_dicom_sample_corpus
from medcurate.hashing import pseudonym
from medcurate.schemas.record import ACTIVE, QUARANTINED, RECORD_SCHEMA
from medcurate.sources import dicom as dicom_pkg  # noqa: F401  (the package imports)
from medcurate.sources.base import SourceContext
from medcurate.sources.dicom import source as dicom_source
from medcurate.sources.dicom.source import DicomSource

KEY = "test-pseudonym-key"


def _source(root: Path, ctx: SourceContext | None = None, **params) -> DicomSource:
    ctx = ctx or SourceContext(stat_cache=lambda *a: None, pseudonym_key=KEY)
    return DicomSource("hospital", str(root), {"reports": "reports.csv", **params}, ctx)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_dicom_sample_corpus(tmp_path_factory.mktemp("dicom"))


@pytest.fixture(scope="module")
def outcome(corpus):
    source = _source(corpus)
    items = list(source.list_inputs())
    records = [record for item in items for record in source.read(item)]
    return source, items, records


def _reasons(records) -> list[str]:
    return sorted(r["status_reason"].split(":")[0] for r in records if r["status"] == QUARANTINED)


def test_every_case_ends_as_expected(outcome):
    _source_, _items, records = outcome
    active = [r for r in records if r["status"] == ACTIVE]
    by_modality = sorted(r["medical"]["modality"] for r in active)
    assert by_modality == ["CR", "CT", "CT", "DX", "MR", "XA"]  # CT series, zipped CT, j2k MR, ...
    assert _reasons(records) == sorted(
        [
            "burned_in_annotation",  # US
            "unsupported_transfer_syntax",  # JPEG-LS without a decoder
            "inconsistent_series",  # one MR slice of another size
            "pixel_data_missing",
            "pixel_decode_failed",  # truncated pixel data
            "dicom_unreadable",  # a text file named .dcm
        ]
    )
    import pyarrow as pa

    pa.Table.from_pylist(records, RECORD_SCHEMA)  # every record fits the schema


def test_no_phi_anywhere_in_records_or_uris(outcome, corpus):
    _source_, items, records = outcome
    text = json.dumps(
        [{k: v for k, v in r.items() if k != "image"} for r in records] + [i.uri for i in items]
    ).lower()
    leaked = [value for value in sample_phi() if value.lower() in text]
    assert leaked == []
    for record in records:
        assert record["source"]["uri"].startswith("dicom://hospital/")
        assert str(corpus) not in record["source"]["uri"]


def test_path_map_links_pseudonymous_uris_to_real_files(outcome, corpus):
    source, _items, records = outcome
    mapping = source.ctx.path_map.pending
    for record in records:
        if record["status"] == ACTIVE:
            real = mapping[record["source"]["uri"]]
            assert real.startswith(str(corpus))
            path, _, member = real.partition("!")
            data = zipfile.ZipFile(path).read(member) if member else Path(path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record["source"]["sha256"]


def test_subject_and_scan_facts(outcome):
    _source_, _items, records = outcome
    doe = PATIENTS["doe"]
    ct = next(
        r
        for r in records
        if r["status"] == ACTIVE and r["medical"]["modality"] == "CT" and r["text"].get("source_caption")
    )
    assert ct["subject"]["patient_pseudonym"] == pseudonym(KEY, "patient", doe.id)
    assert ct["subject"]["sex"] == "M" and ct["subject"]["age_band"] == "60-69"
    scan = ct["scan"]
    assert scan["slice_count"] == 12 and scan["slice_index"] == 6 and scan["selection"] == "middle"
    assert (
        scan["window_center"] == -600 and scan["window_width"] == 1500 and scan["window_origin"] == "header"
    )
    assert scan["slice_spacing"] == pytest.approx(2.5) and scan["pixel_spacing"] == [0.7, 0.7]
    header = json.loads(scan["header_json"])
    assert header["00120062"]["Value"] == ["YES"]  # PatientIdentityRemoved
    caption = ct["text"]["source_caption"]
    assert "nodule in the right lower lobe" in caption and "Impression:" in caption
    assert "House" not in caption and "555" not in caption
    smith = next(r for r in records if r["status"] == ACTIVE and r["medical"]["modality"] == "CR")
    assert smith["subject"]["age_band"] == "90+"
    assert smith["medical"]["view"] == "PA" and smith["medical"]["body_part"] == "chest"


def _window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR, written out independently of the source."""
    y = ((values - (center - 0.5)) / (width - 1) + 0.5).clip(0, 1)
    return np.rint(y * 255).astype(np.uint8)


def test_ct_middle_slice_pixels_match_an_independent_window(outcome, corpus):
    _source_, _items, records = outcome
    ct = next(r for r in records if r["status"] == ACTIVE and r["scan"]["slice_count"] == 12)
    slices = [pydicom.dcmread(p) for p in sorted((corpus / PATIENTS["doe"].folder / "CT_20240312").iterdir())]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    middle = slices[6]
    raw = np.frombuffer(middle.PixelData, dtype="<i2").reshape(64, 64).astype(np.float64)
    expected = _window(raw * 1 - 1024, -600, 1500)
    got = np.asarray(Image.open(io.BytesIO(ct["image"]["bytes"])))
    assert np.array_equal(got, expected)


def test_monochrome1_is_inverted_after_the_window(outcome, corpus):
    _source_, _items, records = outcome
    cr = next(r for r in records if r["status"] == ACTIVE and r["medical"]["modality"] == "CR")
    ds = pydicom.dcmread(corpus / PATIENTS["smith"].folder / "CR_20230901" / "chest_pa.dcm")
    raw = np.frombuffer(ds.PixelData, dtype="<u2").reshape(ds.Rows, ds.Columns).astype(np.float64)
    expected = 255 - _window(raw, 2000, 3000)
    got = np.asarray(Image.open(io.BytesIO(cr["image"]["bytes"])))
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_multiframe_exports_the_middle_frame_or_the_selection(outcome, corpus):
    _source_, _items, records = outcome
    xa = next(r for r in records if r["status"] == ACTIVE and r["medical"]["modality"] == "XA")
    assert xa["scan"]["frame"] == 3 and xa["scan"]["slice_count"] == 6
    source = _source(corpus, slices="all")
    item = next(i for i in source.list_inputs() if (source.details(i) or {}).get("modality") == "XA")
    frames = [r for r in source.read(item) if r["status"] == ACTIVE]
    assert [r["scan"]["frame"] for r in frames] == list(range(6))
    ds = pydicom.dcmread(corpus / PATIENTS["roe"].folder / "XA_20240401" / "XA_cine.dcm")
    raw = np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(6, 64, 64).astype(np.float64)
    for record in frames:
        got = np.asarray(Image.open(io.BytesIO(record["image"]["bytes"])))
        assert np.array_equal(got, _window(raw[record["scan"]["frame"]], 128, 256))


def test_relisting_an_unchanged_folder_reads_no_file(corpus, monkeypatch):
    ctx = SourceContext(stat_cache=lambda *a: None, pseudonym_key=KEY)
    first = [i.key for i in _source(corpus, ctx).list_inputs()]
    calls = []
    monkeypatch.setattr(dicom_source, "header_facts", lambda *a: calls.append(a) or {})
    second = [i.key for i in _source(corpus, ctx).list_inputs()]
    assert second == first and calls == []


def test_a_changed_report_changes_only_its_series(tmp_path):
    root = write_dicom_sample_corpus(tmp_path / "dicom")
    before = {i.uri: i.key for i in _source(root).list_inputs()}
    reports = (root / "reports.csv").read_text().replace("Mild cardiomegaly.", "Moderate cardiomegaly.")
    (root / "reports.csv").write_text(reports)
    after = {i.uri: i.key for i in _source(root).list_inputs()}
    changed = [uri for uri in before if before[uri] != after[uri]]
    assert len(changed) == 3  # the CR, DX and pixel-less CR series of the one study with that accession


def test_burned_in_can_be_allowed(corpus):
    source = _source(corpus, burned_in="allow")
    records = [r for i in source.list_inputs() for r in source.read(i)]
    assert "burned_in_annotation" not in _reasons(records)
    assert any(r["status"] == ACTIVE and r["medical"]["modality"] == "US" for r in records)


def test_all_slices_of_a_volume_in_order(corpus):
    source = _source(corpus, slices="all")
    item = next(i for i in source.list_inputs() if (source.details(i) or {}).get("files") == 12)
    records = source.read(item)
    assert [r["scan"]["slice_index"] for r in records] == list(range(12))
    assert len({r["sample_id"] for r in records}) == 12


def test_a_key_is_required(corpus):
    with pytest.raises(ValueError, match="MEDCURATE_PSEUDONYM_KEY"):
        DicomSource("x", str(corpus), {}, SourceContext(stat_cache=lambda *a: None))


def _zip(path: Path, entries: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            archive.writestr(info, data)


def test_hostile_zip_archives_are_refused_whole(tmp_path, corpus):
    root = tmp_path / "in"
    root.mkdir()
    dcm = next((corpus / PATIENTS["smith"].folder / "CR_20230901").iterdir()).read_bytes()
    _zip(
        root / "traversal.zip",
        [(zipfile.ZipInfo("ok.dcm"), dcm), (zipfile.ZipInfo("../../etc/evil.dcm"), dcm)],
    )
    link = zipfile.ZipInfo("link.dcm")
    link.external_attr = 0o120777 << 16
    _zip(root / "link.zip", [(link, b"/etc/passwd")])
    bomb = zipfile.ZipInfo("bomb.dcm")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    _zip(root / "bomb.zip", [(bomb, b"\0" * 50_000_000)])
    source = _source(root, reports=None)
    records = [r for i in source.list_inputs() for r in source.read(i)]
    assert sorted(r["status_reason"].split(":")[0] for r in records) == [
        "archive_bomb",
        "archive_unsafe_member",
        "archive_unsafe_member",
    ]
    assert all(r["status"] == QUARANTINED for r in records)


def test_dates_can_be_removed(corpus):
    source = _source(corpus, dates="remove")
    item = next(i for i in source.list_inputs() if (source.details(i) or {}).get("files") == 12)
    header = json.loads(source.read(item)[0]["scan"]["header_json"])
    assert "00080020" not in header or not header["00080020"].get("Value")  # StudyDate


@pytest.mark.parametrize("fmt", ["npy", "nii.gz"])
def test_a_volume_payload_holds_the_series_in_hounsfield_units(corpus, fmt):
    import nibabel as nib

    source = _source(corpus, volume=fmt)
    item = next(i for i in source.list_inputs() if (source.details(i) or {}).get("files") == 12)
    (record,) = source.read(item)
    volume = record["volume"]
    assert record["scan"]["selection"] == "middle+volume" and volume["format"] == fmt
    files = sorted((corpus / PATIENTS["doe"].folder / "CT_20240312").iterdir())
    slices = sorted((pydicom.dcmread(p) for p in files), key=lambda ds: float(ds.ImagePositionPatient[2]))
    expected = np.stack([np.frombuffer(ds.PixelData, "<i2").reshape(64, 64) - 1024 for ds in slices])
    if fmt == "npy":
        got = np.load(io.BytesIO(volume["bytes"]))
        assert got.shape == (12, 64, 64) and volume["spacing"] == pytest.approx([2.5, 0.7, 0.7])
        assert np.array_equal(got, expected)
    else:
        image = nib.Nifti1Image.from_bytes(gzip.decompress(volume["bytes"]))
        assert np.array_equal(np.asarray(image.dataobj), expected)
        # index (0, 0, 0) is the first pixel of the most inferior slice: LPS (-22.4, -22.4, z) -> RAS
        assert image.affine[:3, 3] == pytest.approx([22.4, 22.4, -27.5])
        assert nib.aff2axcodes(image.affine) == ("S", "P", "L")  # rows run posterior, columns left
    assert volume["dtype"] == "int16" and volume["values"] == "modality_lut"
    assert volume["sha256"] == hashlib.sha256(volume["bytes"]).hexdigest()


def test_a_shard_sample_carries_the_volume_beside_the_image(corpus):
    from medcurate.release.builder import content_sha256
    from medcurate.release.shards import record_json, sample_members

    source = _source(corpus, volume="npy")
    item = next(i for i in source.list_inputs() if (source.details(i) or {}).get("files") == 12)
    (record,) = source.read(item)
    members = sample_members(record)
    assert set(members) == {"png", "txt", "json", "npy"} and members["npy"] == record["volume"]["bytes"]
    described = json.loads(record_json(record))["volume"]
    assert "bytes" not in described and described["sha256"] == record["volume"]["sha256"]
    assert len(content_sha256(record)) == 64
