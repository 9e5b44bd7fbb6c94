"""NIfTI volumes: canonical orientation, display convention, lazy reads, errors, windows, PNG."""

from __future__ import annotations

import gzip
import io
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel import openers
from nibabel.arrayproxy import ArrayProxy
from nibabel.testing import data_path
from PIL import Image

from medcurate.sources.nifti.volume import NiftiError, Volume, render_png, window_for
from medcurate.sources.windowing import apply_window, percentile_window, to_uint8

NIBABEL_DATA = Path(data_path)

# File affines (3x3 part) in non-canonical orientations; translations are added in _affine.
ORIENTATIONS = {
    "LPS": (np.diag([-0.7, -0.8, 2.5]), ("L", "P", "S")),
    "LAS": (np.diag([-1.0, 1.0, 2.0]), ("L", "A", "S")),
    # file axis 0 -> +z, axis 1 -> +x, axis 2 -> -y
    "SRP": (np.array([[0.0, 0.9, 0.0], [0.0, 0.0, -1.1], [1.5, 0.0, 0.0]]), ("S", "R", "P")),
    # file axis 0 -> +y, axis 1 -> -x, axis 2 -> -z: x comes after y on disk
    "ALI": (np.array([[0.0, -0.9, 0.0], [1.2, 0.0, 0.0], [0.0, 0.0, -2.0]]), ("A", "L", "I")),
    # LPI rotated 10 degrees about z: still closest to L, P, I
    "LPI_oblique": (
        np.array(
            [[-np.cos(0.17), np.sin(0.17), 0.0], [-np.sin(0.17), -np.cos(0.17), 0.0], [0.0, 0.0, -2.0]]
        ),
        ("L", "P", "I"),
    ),
}


def _affine(rzs: np.ndarray, translation=(-20.0, 15.0, -30.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rzs
    affine[:3, 3] = translation
    return affine


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _display(canonical_plane: np.ndarray) -> np.ndarray:
    """Radiological display of a canonical [x, y] plane, written out independently of the module."""
    nx, ny = canonical_plane.shape
    out = np.empty((ny, nx), dtype=np.float32)
    for row in range(ny):
        for col in range(nx):
            # top row = most anterior (largest y); left column = patient's right (largest x)
            out[row, col] = canonical_plane[nx - 1 - col, ny - 1 - row]
    return out


def _find(volume: Volume, value: float) -> tuple[int, int, int]:
    """(slice, row, col) of the single voxel holding ``value``."""
    hits = [(k, *map(int, rc)) for k in range(volume.n_axial) for rc in np.argwhere(volume.axial(k) == value)]
    assert len(hits) == 1, hits
    return hits[0]


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_axial_matches_closest_canonical_and_display_convention(tmp_path, name):
    rzs, codes = ORIENTATIONS[name]
    affine = _affine(rzs)
    shape = (11, 9, 7)
    data = np.random.default_rng(1).integers(10, 100, shape).astype(np.int16)
    # Markers placed by world direction, computed from the raw affine: one step from a reference voxel
    # along the file axis that points most to +y (anterior), +x (right) and +z (superior).
    ref = np.array([5, 4, 3])
    markers = {1000: ref}
    for value, world_axis in ((2000, 1), (3000, 0), (4000, 2)):
        file_axis = int(np.argmax(np.abs(rzs[world_axis])))
        step = np.zeros(3, dtype=int)
        step[file_axis] = int(np.sign(rzs[world_axis, file_axis]))
        markers[value] = ref + step
    for value, idx in markers.items():
        data[tuple(idx)] = value
    path = _save(tmp_path / f"{name}.nii", data, affine)

    vol = Volume.open(path)
    img = nib.load(path)
    canonical = nib.as_closest_canonical(img)
    assert vol.orientation == codes
    assert vol.shape == canonical.shape
    np.testing.assert_allclose(vol.affine_canonical, canonical.affine, atol=1e-6)
    np.testing.assert_allclose(vol.spacing, np.sqrt((canonical.affine[:3, :3] ** 2).sum(0)), rtol=1e-6)
    full = canonical.get_fdata()
    for k in range(vol.n_axial):
        np.testing.assert_array_equal(vol.axial(k), _display(full[:, :, k]))

    k0, r0, c0 = _find(vol, 1000)
    assert _find(vol, 2000) == (k0, r0 - 1, c0)  # anterior: one row up
    assert _find(vol, 3000) == (k0, r0, c0 - 1)  # patient's right: one column to the image's left
    assert _find(vol, 4000) == (k0 + 1, r0, c0)  # superior: next axial slice


def test_lps_volume_displays_like_dicom(tmp_path):
    """DICOM stores LPS (rows posterior-ward, columns toward the patient's left): the same picture."""
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    vol = Volume.open(_save(tmp_path / "lps.nii.gz", data, _affine(np.diag([-1.0, -1.0, 1.0]))))
    for k in range(4):
        np.testing.assert_array_equal(vol.axial(k), data[:, :, k].T)
    assert vol.axial(0).dtype == np.float32


@pytest.mark.parametrize("filename", ["anatomical.nii", "standard.nii.gz"])
def test_nibabel_files_match_closest_canonical(filename):
    path = NIBABEL_DATA / filename
    vol = Volume.open(path)
    canonical = nib.as_closest_canonical(nib.load(path))
    full = canonical.get_fdata()
    assert vol.shape == full.shape
    np.testing.assert_allclose(vol.affine_canonical, canonical.affine)
    for k in range(vol.n_axial):
        np.testing.assert_array_equal(vol.axial(k), _display(full[:, :, k]))


def test_4d_needs_a_volume_index():
    path = NIBABEL_DATA / "example4d.nii.gz"
    with pytest.raises(NiftiError) as err:
        Volume.open(path)
    assert err.value.code == "nifti_not_3d"
    with pytest.raises(NiftiError) as err:
        Volume.open(path, volume_index=2)
    assert err.value.code == "nifti_not_3d"
    vol = Volume.open(path, volume_index=1)
    full = nib.as_closest_canonical(nib.load(path)).get_fdata()[..., 1]
    assert vol.shape == full.shape
    for k in (0, 11, vol.n_axial - 1):
        np.testing.assert_array_equal(vol.axial(k), _display(full[:, :, k]))


def test_2d_is_not_3d(tmp_path):
    path = _save(tmp_path / "flat.nii", np.zeros((8, 8), dtype=np.uint8), np.eye(4))
    with pytest.raises(NiftiError) as err:
        Volume.open(path)
    assert err.value.code == "nifti_not_3d"


def test_axial_reads_one_slice_lazily(tmp_path, monkeypatch):
    shape = (64, 48, 30)
    data = np.random.default_rng(2).integers(-1000, 1000, shape).astype(np.int16)
    path = _save(tmp_path / "ct.nii", data, _affine(np.diag([-0.8, -0.8, 2.0])))
    vol = Volume.open(path)
    assert isinstance(vol.image.dataobj, ArrayProxy)

    def refuse(*args, **kwargs):
        raise AssertionError("the whole array was read")

    monkeypatch.setattr(ArrayProxy, "__array__", refuse)
    monkeypatch.setattr(ArrayProxy, "get_unscaled", refuse)
    monkeypatch.setattr(nib.Nifti1Image, "get_fdata", refuse)
    read_sizes: list[int] = []
    original_read = openers.Opener.read

    def counting_read(self, *args):
        out = original_read(self, *args)
        read_sizes.append(len(out))
        return out

    monkeypatch.setattr(openers.Opener, "read", counting_read)

    slice_bytes = shape[0] * shape[1] * 2
    np.testing.assert_array_equal(vol.axial(7), data[:, :, 7].T)
    assert sum(read_sizes) == slice_bytes
    read_sizes.clear()
    vol.sample_values(max_slices=4)
    assert sum(read_sizes) == 4 * slice_bytes
    assert not vol.image.in_memory
    assert vol.image._data_cache is None


def test_truncated_gzip_is_unreadable_at_the_latest_when_read(tmp_path):
    data = np.random.default_rng(3).integers(0, 4000, (32, 32, 20)).astype(np.int16)
    raw = (_save(tmp_path / "full.nii.gz", data, np.eye(4))).read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(NiftiError) as err:
        vol = Volume.open(path)
        for k in range(vol.n_axial):
            vol.axial(k)
    assert err.value.code == "nifti_unreadable"


def test_truncated_uncompressed_fails_on_open(tmp_path):
    raw = _save(tmp_path / "full.nii", np.ones((16, 16, 8), dtype=np.int16), np.eye(4)).read_bytes()
    path = tmp_path / "cut.nii"
    path.write_bytes(raw[:-10])
    with pytest.raises(NiftiError) as err:
        Volume.open(path)
    assert err.value.code == "nifti_unreadable"


def test_not_nifti_and_missing(tmp_path):
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header" * 50))
    with pytest.raises(NiftiError) as err:
        Volume.open(path)
    assert err.value.code == "nifti_unreadable"
    mgh = tmp_path / "brain.mgz"
    nib.save(nib.MGHImage(np.zeros((4, 4, 4), dtype=np.float32), np.eye(4)), mgh)
    with pytest.raises(NiftiError, match="not NIfTI") as err:
        Volume.open(mgh)
    assert err.value.code == "nifti_unreadable"
    with pytest.raises(NiftiError) as err:
        Volume.open(tmp_path / "absent.nii")
    assert err.value.code == "missing_file"


@pytest.mark.parametrize("srow_x", [[0.0, 0.0, 0.0, 0.0], [np.nan, 0.0, 0.0, 0.0]])
def test_bad_affine(tmp_path, srow_x):
    path = _save(tmp_path / "bad.nii", np.zeros((4, 4, 4), dtype=np.uint8), np.eye(4))
    header = nib.load(path).header.copy()
    header["srow_x"] = srow_x
    header["sform_code"], header["qform_code"] = 1, 0
    with open(path, "r+b") as f:
        header.write_to(f)
    with pytest.raises(NiftiError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Volume.open(path)
    assert err.value.code == "nifti_bad_affine"


def _ct_volume(tmp_path) -> Volume:
    """A CT stored as uint16 raw = HU + 1024 with scl_inter -1024, as many converters write it."""
    hu = np.zeros((6, 5, 3), dtype=np.int32)
    hu[0:2], hu[2:4], hu[4:6] = -1000, 0, 1000
    path = _save(tmp_path / "ct.nii", (hu + 1024).astype(np.uint16), np.diag([-1.0, -1.0, 1.0, 1.0]))
    header = nib.load(path).header.copy()
    header["scl_slope"], header["scl_inter"] = 1.0, -1024.0
    with open(path, "r+b") as f:
        header.write_to(f)
    return Volume.open(path)


def test_ct_lung_preset_in_hounsfield_units(tmp_path):
    vol = _ct_volume(tmp_path)
    slab = vol.axial(1)  # LPS: columns are file axis 0
    np.testing.assert_array_equal(slab[0], [-1000, -1000, 0, 0, 1000, 1000])
    window = window_for(vol, "CT", "lung")
    assert window == window_for(vol, "CT", "preset:lung")
    assert window.origin == "preset:lung"
    # PS3.3 C.11.2.1.2 LINEAR, c = -600, w = 1500, scaled to 255:
    #   -1000: ((-1000 + 600.5) / 1499 + 0.5) * 255 = 0.23349 * 255 = 59.54 -> 60
    #       0: ((0 + 600.5) / 1499 + 0.5) * 255 = 0.90060 * 255 = 229.65 -> 230
    #    1000: above the window -> 255
    pixels = to_uint8(apply_window(slab, window))
    np.testing.assert_array_equal(pixels[0], [60, 60, 230, 230, 255, 255])


def test_ct_default_and_bad_windows(tmp_path):
    vol = _ct_volume(tmp_path)
    assert window_for(vol, "CT", None).origin == "preset:abdomen"
    assert window_for(vol, "CT", "percentile").origin.startswith("percentile")
    with pytest.raises(ValueError, match="unknown CT window preset"):
        window_for(vol, "CT", "kidney")
    with pytest.raises(ValueError, match="CT only"):
        window_for(vol, "MR", "lung")


def test_mr_percentile_window(tmp_path):
    data = np.random.default_rng(4).gamma(2.0, 200.0, (20, 18, 10)).astype(np.float32)
    vol = Volume.open(_save(tmp_path / "t1.nii.gz", data, np.diag([1.0, 1.0, 3.0, 1.0])))
    window = window_for(vol, "MR", None)
    assert window.function == "LINEAR_EXACT"
    assert window == percentile_window(data)  # 10 slices <= 16: every slice is sampled
    lo, hi = np.percentile(data, [0.5, 99.5])
    assert window.center == pytest.approx((lo + hi) / 2)
    assert window.width == pytest.approx(hi - lo)
    assert window_for(vol, "MR", "percentile:1-99") == percentile_window(data, 1, 99)


def test_sample_values_reads_evenly_spaced_slices(tmp_path):
    data = np.zeros((4, 4, 40), dtype=np.int16)
    data[:, :, :] = np.arange(40)
    vol = Volume.open(_save(tmp_path / "ramp.nii", data, np.eye(4)))
    values = vol.sample_values(max_slices=4)
    assert sorted(set(values.tolist())) == [5, 15, 25, 35]


def test_render_png_is_deterministic_and_lossless():
    unit = np.linspace(0.0, 1.0, 12 * 10, dtype=np.float32).reshape(12, 10)
    png8 = render_png(unit)
    assert png8 == render_png(unit.copy())
    for chunk in (b"tEXt", b"iTXt", b"zTXt", b"pHYs", b"tIME"):
        assert chunk not in png8
    decoded = Image.open(io.BytesIO(png8))
    assert decoded.mode == "L" and decoded.size == (10, 12)
    np.testing.assert_array_equal(np.asarray(decoded), to_uint8(unit))
    png16 = render_png(unit, bit_depth=16)
    values = np.asarray(Image.open(io.BytesIO(png16)))
    np.testing.assert_array_equal(values, np.rint(unit.astype(np.float64) * 65535))
    with pytest.raises(ValueError):
        render_png(np.zeros((2, 2), dtype=np.int32))
