"""The NIfTI source on the clinical sample folder: pairing, findings captions, bad volumes, no PHI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from medcurate.clinical_corpus import NIFTI_DESCRIP, write_nifti_sample_corpus
from medcurate.schemas.record import ACTIVE, QUARANTINED, RECORD_SCHEMA
from medcurate.sources.base import SourceContext
from medcurate.sources.nifti.source import NiftiSource, pair_files

KEY = "test-pseudonym-key"


def _source(root: Path, **params) -> NiftiSource:
    return NiftiSource(
        "volumes", str(root), params, SourceContext(stat_cache=lambda *a: None, pseudonym_key=KEY)
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_nifti_sample_corpus(tmp_path_factory.mktemp("nifti"))


@pytest.fixture(scope="module")
def records(corpus):
    source = _source(corpus)
    return [r for item in source.list_inputs() for r in source.read(item)]


def test_pairing_by_stem():
    files = pair_files(
        ["a/x_ct.nii.gz", "a/x_ct_mask.nii.gz", "a/x_ct_labels.json", "b/y.nii", "c/z_seg.nii.gz"]
    )
    by_stem = {f.stem: f for f in files}
    assert by_stem["a/x_ct"].mask == "a/x_ct_mask.nii.gz" and by_stem["a/x_ct"].names == "a/x_ct_labels.json"
    assert by_stem["b/y"].mask is None
    assert by_stem["c/z"].image is None and by_stem["c/z"].mask == "c/z_seg.nii.gz"


def test_outcomes(records):
    pa.Table.from_pylist(records, RECORD_SCHEMA)
    quarantined = sorted(r["status_reason"].split(":")[0] for r in records if r["status"] == QUARANTINED)
    assert quarantined == ["mask_grid_mismatch", "nifti_unreadable"]
    active = [r for r in records if r["status"] == ACTIVE]
    ct = [r for r in active if r["medical"]["modality"] == "CT"]
    mr = [r for r in active if r["medical"]["modality"] == "MR"]
    assert len(mr) == 1 and mr[0]["scan"]["window_origin"].startswith("percentile")
    # middle slice plus the largest slice of each of the two labels
    tags = sorted(tag for r in ct for tag in r["scan"]["selection"].split("+"))
    assert tags == ["largest:1", "largest:2", "middle"]


def test_findings_text_and_measurements(records):
    ct = [r for r in records if r["status"] == ACTIVE and r["medical"]["modality"] == "CT"]
    findings = {f["name"]: f for f in ct[0]["scan"]["findings"]}
    liver, nodule = findings["liver lesion"], findings["lung nodule"]
    assert liver["laterality"] == "right" and nodule["laterality"] == "left"
    assert liver["volume_ml"] == pytest.approx(4 / 3 * np.pi * 6.0**3 / 1000, rel=0.15)
    assert liver["max_axial_diameter_mm"] == pytest.approx(12.0, abs=1.7)
    largest = next(r for r in ct if "largest:1" in r["scan"]["selection"])
    assert largest["scan"]["slice_index"] == liver["largest_slice"]
    assert largest["text"]["source_caption"].startswith("Liver lesion (label 1), right side")
    assert "mL" in ct[0]["medical"]["findings"]


def test_slice_pixels_follow_the_display_convention(records, corpus):
    """The patient's right is on the image's left: the liver lesion (right side) shows left of centre."""
    ct = next(r for r in records if r["status"] == ACTIVE and "largest:1" in (r["scan"]["selection"] or ""))
    pixels = np.asarray(Image.open(io.BytesIO(ct["image"]["bytes"])))
    mask = nib.as_closest_canonical(nib.load(corpus / "case001_ct_mask.nii.gz")).get_fdata()
    k = ct["scan"]["slice_index"]
    expected = (mask[:, :, k] == 1).T[::-1, ::-1]
    assert pixels.shape == expected.shape
    rows, cols = np.nonzero(expected)
    assert cols.mean() < pixels.shape[1] / 2
    assert (
        pixels[expected].mean() > pixels[~expected].mean()
    )  # the lesion (90 HU) is brighter in abdomen window


def test_header_text_and_paths_never_reach_records(records, corpus):
    text = json.dumps([{k: v for k, v in r.items() if k != "image"} for r in records])
    assert NIFTI_DESCRIP not in text and "MRN4451234" not in text
    assert str(corpus) not in text and "case001" not in text


def test_a_key_is_required(corpus):
    with pytest.raises(ValueError, match="pseudonym key"):
        NiftiSource("x", str(corpus), {}, SourceContext(stat_cache=lambda *a: None))


def test_a_volume_payload_is_the_canonical_volume(corpus):
    import gzip

    source = _source(corpus, volume="nii.gz")
    item = next(
        i for i in source.list_inputs() if i.payload.get("files") and "case001" in i.payload["files"].stem
    )
    records = [r for r in source.read(item) if r.get("volume")]
    assert len(records) == 1 and records[0]["scan"]["selection"].endswith("+volume")
    image = nib.Nifti1Image.from_bytes(gzip.decompress(records[0]["volume"]["bytes"]))
    canonical = nib.as_closest_canonical(nib.load(corpus / "case001_ct.nii.gz"))
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert np.allclose(image.affine, canonical.affine, atol=1e-4)
    assert np.array_equal(np.asarray(image.dataobj), canonical.get_fdata())
