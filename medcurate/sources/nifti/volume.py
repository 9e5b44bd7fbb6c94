"""Lazy NIfTI volumes in RAS canonical order, read one axial slice at a time.

``nib.as_closest_canonical`` gives the orientation we want, but whenever it has to flip or permute
axes it loads the whole array (gigabytes for a CT), although a corpus exports a few slices per
volume. So :class:`Volume` keeps the file's own orientation, maps a canonical slice index through
``io_orientation`` onto the file's axes, reads that one slice via ``img.dataobj`` (nibabel applies
``scl_slope``/``scl_inter``), and only then flips/permutes the small 2D array.

Coordinates: nibabel's world space is RAS+ (``aff2axcodes`` labels an axis "R" when it *increases*
toward the patient's right), so canonical index 0 runs left -> right, 1 posterior -> anterior and
2 inferior -> superior. :meth:`Volume.axial` returns slices in the radiological display convention:
anterior at the top, the patient's right on the image's left (as a reader looks at a supine patient
from the feet).
"""

from __future__ import annotations

import gzip
import os
import zlib
from io import BytesIO
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import aff2axcodes, apply_orientation, inv_ornt_aff, io_orientation
from nibabel.spatialimages import HeaderDataError
from PIL import Image

from medcurate.sources.slices import select_indices
from medcurate.sources.windowing import (
    CT_PRESETS,
    PERCENTILES,
    Window,
    percentile_window,
    preset,
    to_uint8,
    to_uint16,
)

#: CT preset used when none is asked for: NIfTI CT collections are mostly abdominal/whole-body
#: segmentation sets (MSD, TotalSegmentator, AbdomenAtlas), read in the soft-tissue window.
DEFAULT_CT_PRESET = "abdomen"

#: Exceptions nibabel, gzip and numpy raise for files that are not NIfTI, corrupt or truncated.
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile)

#: Compressed suffixes nibabel opens transparently; their size cannot be checked without decompressing.
_COMPRESSED = (".gz", ".bz2", ".zst")


class NiftiError(Exception):
    """A NIfTI input that cannot become samples; ``code`` is the quarantine reason.

    Codes: ``missing_file``, ``nifti_unreadable`` (not NIfTI, bad header, truncated data),
    ``nifti_not_3d``, ``nifti_bad_affine``, and from ``masks``: ``mask_grid_mismatch``,
    ``mask_not_labels``.
    """

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class Volume:
    """One 3D NIfTI volume (or one volume of a 4D series), presented in RAS canonical order.

    Nothing but the header is read until a slice is asked for. Use :meth:`open`.
    """

    def __init__(self, image: nib.Nifti1Pair, volume_index: int | None = None, source: str = "<memory>"):
        self.image = image
        self.source = source
        self.volume_index = volume_index
        self._file_shape, self._extra_index = _spatial_shape(image.shape, volume_index, source)
        affine = np.asarray(image.affine, dtype=np.float64)
        if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise NiftiError("nifti_bad_affine", f"{source}: affine is singular or not finite")
        ornt = io_orientation(affine)
        if np.isnan(ornt).any():
            raise NiftiError("nifti_bad_affine", f"{source}: affine has no usable orientation")
        self._ornt = ornt
        # canonical axis -> (file axis, flipped?)
        self._file_axis = {int(ornt[i, 0]): (i, bool(ornt[i, 1] < 0)) for i in range(3)}

    @classmethod
    def open(cls, path: str | os.PathLike[str], volume_index: int | None = None) -> Volume:
        """Read the header of ``path`` (``.nii``, ``.nii.gz``, or a ``.hdr``/``.img`` pair).

        ``volume_index`` picks one volume of a 4D file; without it a 4D file must hold one volume.
        An uncompressed file too short for its header's shape fails here; a truncated compressed
        file can only be noticed while decompressing, so it fails when the slice is read.
        """
        source = str(path)
        if not Path(path).exists():
            raise NiftiError("missing_file", f"{source} not found")
        try:
            image = nib.load(source)
        except _READ_ERRORS as exc:
            raise NiftiError("nifti_unreadable", f"{source}: {exc}") from exc
        if not isinstance(image, nib.Nifti1Pair):  # Nifti1Image, Nifti2Image and the pairs
            raise NiftiError("nifti_unreadable", f"{source}: a {type(image).__name__}, not NIfTI")
        _check_size(image, source)
        return cls(image, volume_index, source)

    # -- geometry ---------------------------------------------------------------------------------

    @property
    def orientation(self) -> tuple[str, str, str]:
        """The file's axis codes, e.g. ``("L", "P", "S")`` for DICOM-style LPS storage."""
        return tuple(aff2axcodes(self.image.affine))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape in canonical (x: L->R, y: P->A, z: I->S) order."""
        return tuple(self._file_shape[self._file_axis[a][0]] for a in range(3))  # type: ignore[return-value]

    @property
    def n_axial(self) -> int:
        return self.shape[2]

    @property
    def affine_canonical(self) -> np.ndarray:
        """The affine ``nib.as_closest_canonical`` would give, computed without touching the data."""
        return np.asarray(self.image.affine, dtype=np.float64) @ inv_ornt_aff(self._ornt, self._file_shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm, canonical order: column norms of the affine that actually places voxels
        (the header's pixdim can disagree with an sform)."""
        norms = np.sqrt((self.affine_canonical[:3, :3] ** 2).sum(axis=0))
        return tuple(float(v) for v in norms)  # type: ignore[return-value]

    # -- data ---------------------------------------------------------------------------------------

    def canonical_slice(self, k: int) -> np.ndarray:
        """Canonical axial slice ``k`` as float32 indexed ``[x, y]`` (no display flips)."""
        if not 0 <= k < self.n_axial:
            raise IndexError(f"axial slice {k} out of range 0..{self.n_axial - 1}")
        file_z, flip_z = self._file_axis[2]
        slicer: list[int | slice] = [slice(None)] * 3 + list(self._extra_index)
        slicer[file_z] = self._file_shape[file_z] - 1 - k if flip_z else k
        plane = self._read(tuple(slicer))
        # The two remaining file axes keep their file order; put canonical x first, then flip.
        (file_x, flip_x), (file_y, flip_y) = self._file_axis[0], self._file_axis[1]
        if file_x > file_y:
            plane = plane.T
        if flip_x:
            plane = plane[::-1, :]
        if flip_y:
            plane = plane[:, ::-1]
        return plane

    def axial(self, k: int) -> np.ndarray:
        """Canonical axial slice ``k`` (0 = most inferior) as a float32 display array.

        Rows run anterior (top) to posterior, columns from the patient's right (image left) to the
        patient's left: the radiological convention, so exported slices look like a PACS viewer.
        """
        return np.ascontiguousarray(self.canonical_slice(k).T[::-1, ::-1], dtype=np.float32)

    def read_canonical(self) -> np.ndarray:
        """The whole volume in canonical ``[x, y, z]`` order, values as stored after scaling.

        Loads everything: meant for label masks (small integer volumes), never for images.
        """
        slicer = (slice(None),) * 3 + tuple(self._extra_index)
        data = np.asanyarray(self._read_raw(slicer))
        return apply_orientation(data, self._ornt)

    def sample_values(self, max_slices: int = 16) -> np.ndarray:
        """Values of up to ``max_slices`` evenly spaced axial slices, flattened, for percentile windows.

        Percentiles of a few slices approximate those of the volume without loading it whole.
        """
        indices = select_indices(self.n_axial, "even", max_slices)
        return np.concatenate([self.canonical_slice(k).ravel() for k in indices])

    def _read_raw(self, slicer: tuple[int | slice, ...]) -> np.ndarray:
        try:
            return np.asarray(self.image.dataobj[slicer])
        except _READ_ERRORS as exc:
            raise NiftiError("nifti_unreadable", f"{self.source}: cannot read data: {exc}") from exc

    def _read(self, slicer: tuple[int | slice, ...]) -> np.ndarray:
        return self._read_raw(slicer).astype(np.float32, copy=False)


def _spatial_shape(
    shape: tuple[int, ...], volume_index: int | None, source: str
) -> tuple[tuple[int, int, int], tuple[int, ...]]:
    """The 3D shape and the indices that pick one volume along the axes beyond the third."""
    if len(shape) < 3:
        raise NiftiError("nifti_not_3d", f"{source}: shape {shape} has fewer than 3 spatial axes")
    extra = shape[3:]
    if volume_index is not None:
        if len(extra) != 1 or not 0 <= volume_index < extra[0]:
            raise NiftiError("nifti_not_3d", f"{source}: no volume {volume_index} in shape {shape}")
        return shape[:3], (volume_index,)  # type: ignore[return-value]
    if any(n != 1 for n in extra):
        raise NiftiError("nifti_not_3d", f"{source}: shape {shape} holds several volumes; pick one")
    return shape[:3], (0,) * len(extra)  # type: ignore[return-value]


def _check_size(image: nib.Nifti1Pair, source: str) -> None:
    """Fail early on an uncompressed file shorter than its header promises (cheap: one stat)."""
    filename = image.file_map["image"].filename
    if not filename or str(filename).endswith(_COMPRESSED):
        return
    proxy = image.dataobj
    needed = int(proxy.offset) + int(np.prod(proxy.shape)) * np.dtype(proxy.dtype).itemsize
    size = os.path.getsize(filename)
    if size < needed:
        raise NiftiError("nifti_unreadable", f"{source}: truncated: {size} bytes, header needs {needed}")


def window_for(volume: Volume, modality: str, window: str | None = None) -> Window:
    """The intensity window for ``volume``.

    CT ("CT"): a Hounsfield preset, ``window`` being a preset name or ``"preset:<name>"``
    (default :data:`DEFAULT_CT_PRESET`); NIfTI scaling already gives HU. Anything else (MR, PET,
    unknown) has no calibrated units, so it is normalised to the ``PERCENTILES`` of
    :meth:`Volume.sample_values`. ``"percentile"`` or ``"percentile:<lo>-<hi>"`` forces that for CT too.
    """
    name = window.removeprefix("preset:") if window else None
    if window and window.startswith("percentile"):
        low, high = PERCENTILES
        if ":" in window:
            try:
                low, high = (float(v) for v in window.split(":", 1)[1].split("-"))
            except ValueError:
                raise ValueError(f"invalid window {window!r}: expected percentile:<lo>-<hi>") from None
        return percentile_window(volume.sample_values(), low, high)
    if modality.upper() == "CT":
        return preset(name or DEFAULT_CT_PRESET)
    if name:
        known = ", ".join(sorted(CT_PRESETS))
        raise ValueError(
            f"CT preset {name!r} given for modality {modality!r}; presets ({known}) are Hounsfield "
            "windows and apply to CT only"
        )
    return percentile_window(volume.sample_values())


def render_png(array: np.ndarray, bit_depth: int = 8) -> bytes:
    """A grayscale PNG of ``array`` with no metadata, so equal pixels give equal bytes.

    ``array`` is either unit-interval floats (from ``apply_window``), quantised to ``bit_depth``,
    or already uint8 (bit_depth 8) / uint16 (bit_depth 16).
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    if np.issubdtype(array.dtype, np.floating):
        pixels = to_uint8(array) if bit_depth == 8 else to_uint16(array)
    elif array.dtype == dtype:
        pixels = array
    else:
        raise ValueError(f"a {array.dtype} array cannot be written as a {bit_depth}-bit PNG")
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2D array, got shape {pixels.shape}")
    im = Image.fromarray(np.ascontiguousarray(pixels))
    buf = BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


__all__ = ["DEFAULT_CT_PRESET", "NiftiError", "Volume", "render_png", "window_for"]
