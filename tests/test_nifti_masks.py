"""Label measurements of NIfTI masks and the findings text rendered from them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medcurate.hashing import sha256_bytes
from medcurate.prompts import PROMPTS_DIR
from medcurate.sources.nifti.findings import finding_sentence, findings_text, load_findings_template
from medcurate.sources.nifti.masks import LabelFinding, check_same_grid, measure_labels
from medcurate.sources.nifti.volume import NiftiError, Volume

# DICOM-like LPS storage: file index i grows toward the patient's LEFT, j toward posterior.
LPS = np.diag([-0.8, -0.8, 2.5, 1.0])


def _save(path: Path, data: np.ndarray, affine: np.ndarray = LPS) -> Volume:
    nib.save(nib.Nifti1Image(data, affine), path)
    return Volume.open(path)


def test_ellipsoid_volume_diameter_and_slices(tmp_path):
    shape = (81, 81, 31)  # odd: the centre is a voxel centre, so the largest slice is unique
    a, b, c = 16.0, 12.0, 12.5  # semi-axes in mm along x, y, z; 16 mm = 20 in-plane voxels exactly
    i, j, k = np.indices(shape)
    centre = (np.array(shape) - 1) / 2
    x, y, z = (i - centre[0]) * 0.8, (j - centre[1]) * 0.8, (k - centre[2]) * 2.5
    inside = (x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2
    mask = _save(tmp_path / "ellipsoid.nii.gz", (inside <= 1).astype(np.uint8))

    (finding,) = measure_labels(mask, {1: "liver lesion"})
    assert finding.label == 1 and finding.name == "liver lesion"
    assert finding.voxels == int((inside <= 1).sum())
    assert finding.volume_ml == pytest.approx(4 / 3 * np.pi * a * b * c / 1000, rel=0.05)
    assert finding.volume_ml == pytest.approx(finding.voxels * 0.8 * 0.8 * 2.5 / 1000)
    assert abs(finding.max_axial_diameter_mm - 2 * a) <= 0.8 + 1e-6
    # z = +-12.5 mm is exactly +-5 slices of 2.5 mm from the centre slice 15.
    assert finding.slice_range == (10, 20)
    assert finding.largest_slice == 15
    assert finding.laterality == "midline"
    world_centre = LPS @ np.append(centre, 1.0)
    np.testing.assert_allclose(finding.centroid_mm, world_centre[:3], atol=1e-6)


def test_diameter_is_exact_for_a_diagonal_rectangle():
    """A 5 x 3 voxel rectangle, spacing 0.5 x 2 mm: the diagonal between corner centres."""
    data = np.zeros((12, 12, 3), dtype=np.uint8)
    data[2:7, 4:7, 1] = 1
    img = nib.Nifti1Image(data, np.diag([0.5, 2.0, 3.0, 1.0]))
    (finding,) = measure_labels(Volume(img))
    assert finding.max_axial_diameter_mm == pytest.approx(np.hypot(4 * 0.5, 2 * 2.0))
    assert finding.volume_ml == pytest.approx(15 * 3.0 / 1000)


def test_single_voxel_and_line_diameters():
    data = np.zeros((10, 10, 4), dtype=np.uint8)
    data[3, 3, 1] = 1  # one voxel: one (largest) in-plane voxel size across
    data[2:8, 6, 2] = 2  # a collinear line of 6 voxels along x: 5 steps of 0.7 mm
    (one, line) = measure_labels(Volume(nib.Nifti1Image(data, np.diag([0.7, 0.9, 2.0, 1.0]))))
    assert one.max_axial_diameter_mm == pytest.approx(0.9)
    assert one.slice_range == (1, 1) and one.largest_slice == 1
    assert line.max_axial_diameter_mm == pytest.approx(5 * 0.7)


def test_slice_range_and_largest_slice_in_flipped_storage(tmp_path):
    """Stored inferior-first (I axis): canonical slice = n - 1 - file slice."""
    data = np.zeros((20, 20, 16), dtype=np.uint8)
    sizes = {3: 2, 4: 4, 5: 6, 6: 3}  # file slice -> square side; largest at file slice 5
    for z, side in sizes.items():
        data[5 : 5 + side, 5 : 5 + side, z] = 7
    mask = _save(tmp_path / "lpi.nii", data, np.diag([-1.0, -1.0, -2.0, 1.0]))
    (finding,) = measure_labels(mask)
    assert finding.label == 7 and finding.name == "label 7"
    assert finding.slice_range == (15 - 6, 15 - 3)
    assert finding.largest_slice == 15 - 5
    assert finding.voxels == sum(s * s for s in sizes.values())
    assert finding.max_axial_diameter_mm == pytest.approx(np.hypot(5, 5))
    assert mask.axial(finding.largest_slice).sum() == 7 * 36  # the exported slice holds the 6x6 square


def test_laterality_follows_world_x(tmp_path):
    """RAS+: larger world x is the patient's RIGHT (nibabel labels the + end of axis 0 "R")."""
    shape = (40, 30, 9)
    data = np.zeros(shape, dtype=np.uint8)
    # LPS storage: small file i = large world x = patient's right.
    data[3:8, 10:15, 3:6] = 1  # right
    data[30:36, 10:15, 3:6] = 2  # left
    data[17:23, 20:24, 4] = 3  # straddles the centre (i = 19.5)
    data[2:5, 2:5, 7] = 4  # two separate blobs, one each side
    data[35:38, 2:5, 7] = 4
    mask = _save(tmp_path / "sides.nii.gz", data)
    assert mask.orientation == ("L", "P", "S")
    by_label = {f.label: f for f in measure_labels(mask)}
    assert by_label[1].laterality == "right"
    assert by_label[2].laterality == "left"
    assert by_label[3].laterality == "midline"
    assert by_label[4].laterality == "bilateral"
    assert by_label[1].centroid_mm[0] > by_label[2].centroid_mm[0]
    # Radiological display: the patient's right lies on the image's left half.
    cols = np.argwhere(mask.axial(by_label[1].largest_slice) == 1)[:, 1]
    assert cols.max() < shape[0] / 2


def test_laterality_same_in_ras_storage(tmp_path):
    data = np.zeros((40, 30, 9), dtype=np.uint8)
    data[32:37, 10:15, 3:6] = 1  # RAS storage: large file i = patient's right
    (finding,) = measure_labels(_save(tmp_path / "ras.nii", data, np.diag([0.8, 0.8, 2.5, 1.0])))
    assert finding.laterality == "right"


def test_grid_check(tmp_path):
    shape = (20, 16, 6)
    image = _save(tmp_path / "image.nii.gz", np.zeros(shape, dtype=np.int16))
    data = np.zeros(shape, dtype=np.uint8)
    data[2:6, 3:7, 2:4] = 1
    lps_mask = _save(tmp_path / "mask.nii.gz", data)
    # The same mask stored RAS (flipped on disk) still lies on the image's grid.
    ras_img = nib.as_closest_canonical(nib.load(tmp_path / "mask.nii.gz"))
    nib.save(ras_img, tmp_path / "mask_ras.nii.gz")
    ras_mask = Volume.open(tmp_path / "mask_ras.nii.gz")
    assert ras_mask.orientation == ("R", "A", "S")
    check_same_grid(image, ras_mask)
    (from_ras,) = measure_labels(ras_mask, image=image)
    (from_lps,) = measure_labels(lps_mask, image=image)
    np.testing.assert_allclose(from_ras.centroid_mm, from_lps.centroid_mm, atol=1e-5)  # float32 sform
    assert replace(from_ras, centroid_mm=from_lps.centroid_mm) == from_lps

    shifted = LPS.copy()
    shifted[0, 3] += 5.0
    for bad in (
        _save(tmp_path / "shifted.nii.gz", data, shifted),
        _save(tmp_path / "smaller.nii.gz", data[:, :, :5]),
    ):
        with pytest.raises(NiftiError) as err:
            measure_labels(bad, image=image)
        assert err.value.code == "mask_grid_mismatch"


def test_probability_map_is_not_a_label_mask(tmp_path):
    data = np.full((6, 6, 3), 0.5, dtype=np.float32)
    with pytest.raises(NiftiError) as err:
        measure_labels(_save(tmp_path / "prob.nii.gz", data))
    assert err.value.code == "mask_not_labels"


def test_empty_mask():
    mask = Volume(nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.uint8), np.eye(4)))
    assert measure_labels(mask) == []
    rendered = findings_text([])
    assert rendered.text == "No segmented findings." and rendered.sentences == ()


def _finding(**changes) -> LabelFinding:
    values = dict(
        label=1,
        name="liver lesion",
        voxels=1000,
        volume_ml=4.14,
        max_axial_diameter_mm=23.4,
        slice_range=(40, 52),
        largest_slice=46,
        laterality="right",
        centroid_mm=(60.0, -10.0, 100.0),
    )
    values.update(changes)
    return LabelFinding(**values)


def test_findings_text_and_lineage():
    rendered = findings_text([_finding(), _finding(label=2, name="kidney cyst", laterality="bilateral")])
    assert rendered.sentences[0] == (
        "Liver lesion (label 1), right side, 23 mm largest axial diameter, volume 4.1 mL, axial slices 40–52."
    )
    assert rendered.sentences[1].startswith("Kidney cyst (label 2), bilateral, 23 mm")
    assert rendered.text == " ".join(rendered.sentences)
    assert rendered.template_ref == "findings.lesion@1"
    path = PROMPTS_DIR / "findings" / "lesion.v1.yaml"
    assert rendered.template_sha256 == sha256_bytes(path.read_bytes())
    one = finding_sentence(_finding(slice_range=(7, 7), laterality="left"), "findings.lesion@1")
    assert one.endswith("left side, 23 mm largest axial diameter, volume 4.1 mL, axial slice 7.")


def test_findings_from_measured_mask(tmp_path):
    data = np.zeros((40, 30, 9), dtype=np.uint8)
    data[3:8, 10:15, 3:6] = 1
    findings = measure_labels(_save(tmp_path / "lesion.nii.gz", data), {1: "liver lesion"})
    template = load_findings_template()
    text = findings_text(findings, template).text
    (lesion,) = findings
    assert text == (
        f"Liver lesion (label 1), right side, {lesion.max_axial_diameter_mm:.0f} mm largest axial "
        f"diameter, volume {lesion.volume_ml:.1f} mL, axial slices 3–5."
    )


def test_template_kind_is_checked():
    from medcurate.prompts import load_prompt
    from medcurate.sources.nifti.findings import FindingsTemplate

    with pytest.raises(ValueError, match="not a findings_template"):
        FindingsTemplate(load_prompt("labels.generic"))
