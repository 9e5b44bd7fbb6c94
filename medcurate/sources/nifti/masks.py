"""Measurements of each label in a segmentation mask: the numbers behind RadGPT-style findings text.

A mask paired with a CT (TotalSegmentator, AbdomenAtlas, MSD) says *where* structures are; a
caption needs *what a radiologist would report*: size, volume, extent and side. Everything is
measured in the RAS canonical grid of :class:`Volume` so the slice indices here are the ones
``Volume.axial`` exports, and distances go through the affine so anisotropic or oblique voxels are
measured in millimetres, not voxels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from medcurate.sources.nifti.volume import NiftiError, Volume

#: Share of a label's voxels on one side of the mid-sagittal plane that makes it that side's.
DOMINANT_SHARE = 0.9

#: Grid tolerance as a fraction of the smallest voxel size (float32 sform round-off is far below it).
GRID_TOLERANCE = 0.1

LATERALITIES = ("right", "left", "midline", "bilateral")


@dataclass(frozen=True)
class LabelFinding:
    """One label of a mask, measured. Slice indices are canonical axial indices (0 = most inferior)."""

    label: int
    name: str
    voxels: int
    volume_ml: float
    max_axial_diameter_mm: float
    slice_range: tuple[int, int]  # first and last axial slice holding the label, inclusive
    largest_slice: int  # the axial slice with the largest label area: the one to export
    laterality: str  # one of LATERALITIES
    centroid_mm: tuple[float, float, float]  # world RAS+


def _corners_mm(volume: Volume) -> np.ndarray:
    """World positions of the 8 corner voxel centres: equal grids have equal corners."""
    nx, ny, nz = volume.shape
    idx = np.array([[i, j, k, 1.0] for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)])
    return (volume.affine_canonical @ idx.T)[:3].T


def check_same_grid(image: Volume, mask: Volume) -> None:
    """Raise ``mask_grid_mismatch`` unless ``mask`` samples the same voxels as ``image``.

    Compared in canonical space, so a mask stored in another axis order or direction than its
    image (LPS vs RAS) still matches; corner positions may differ by a tenth of a voxel.
    """
    if image.shape != mask.shape:
        raise NiftiError(
            "mask_grid_mismatch", f"{mask.source}: canonical shape {mask.shape} != image {image.shape}"
        )
    tolerance = GRID_TOLERANCE * min(image.spacing)
    deviation = float(np.abs(_corners_mm(image) - _corners_mm(mask)).max())
    if deviation > tolerance:
        raise NiftiError(
            "mask_grid_mismatch",
            f"{mask.source}: voxel positions differ from the image by up to {deviation:.3g} mm",
        )


def _label_array(mask: Volume) -> np.ndarray:
    """The canonical mask as int64 labels; a probability map or negative values are not a label mask."""
    data = mask.read_canonical()
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.rint(data)):
            raise NiftiError("mask_not_labels", f"{mask.source}: values are not integer labels")
        data = np.rint(data)
    labels = data.astype(np.int64)
    if labels.min(initial=0) < 0:
        raise NiftiError("mask_not_labels", f"{mask.source}: negative label values")
    return labels


def _plane_diameter(plane: np.ndarray, in_plane: np.ndarray) -> float:
    """Largest distance (mm) between voxel centres of one boolean axial ``plane`` (``[x, y]``).

    Exact: the farthest pair lies on the convex hull, whose vertices are among the first and last
    voxel of each row (a linear map keeps hull vertices, so the hull is taken in index space).
    ``in_plane`` is the 3x2 block of the affine mapping (i, j) steps to mm.
    """
    rows = np.flatnonzero(plane.any(axis=0))
    first = plane[:, rows].argmax(axis=0)
    last = plane.shape[0] - 1 - plane[::-1, rows].argmax(axis=0)
    points = np.unique(np.concatenate([np.stack([first, rows], 1), np.stack([last, rows], 1)]), axis=0)
    if len(points) < 2:
        return 0.0
    # Collinear points have no 2D hull; then every candidate lies on the segment and pairwise is exact.
    with contextlib.suppress(QhullError):
        points = points[ConvexHull(points).vertices]
    return float(pdist(points.astype(np.float64) @ in_plane.T).max())


def _laterality(x_mm: np.ndarray, midline_mm: float, voxel_x_mm: float) -> str:
    """Side of a label from its voxels' world x (RAS+: larger x is the patient's right).

    ``DOMINANT_SHARE`` of the voxels on one side makes it that side; otherwise a label reaching
    within one voxel of the mid-sagittal plane is one structure across it ("midline"), and one that
    does not is separate structures on both sides ("bilateral", e.g. both kidneys).
    """
    offset = x_mm - midline_mm
    if np.mean(offset > 0) >= DOMINANT_SHARE:
        return "right"
    if np.mean(offset < 0) >= DOMINANT_SHARE:
        return "left"
    return "midline" if np.abs(offset).min() <= voxel_x_mm else "bilateral"


def measure_labels(
    mask: Volume, names: Mapping[int, str] | None = None, *, image: Volume | None = None
) -> list[LabelFinding]:
    """A :class:`LabelFinding` per non-zero label of ``mask``, ascending by label.

    Pass ``image`` to check first that the mask lies on its grid (``mask_grid_mismatch``). Names come
    from ``names`` (label -> name), else ``"label <n>"``. The midline is the world x of the volume's
    centre: it assumes the patient is centred left-right in the field of view, as in CT.
    """
    if image is not None:
        check_same_grid(image, mask)
    labels = _label_array(mask)
    affine = mask.affine_canonical
    voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
    in_plane = affine[:3, :2]
    min_diameter = max(mask.spacing[0], mask.spacing[1])  # a one-voxel lesion is one voxel across
    centre = (np.array(mask.shape, dtype=np.float64) - 1.0) / 2.0
    midline_mm = float(affine[0, :3] @ centre + affine[0, 3])
    names = names or {}
    findings = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        sub = labels[box] == label
        offset = np.array([s.start for s in box])
        coords = np.argwhere(sub) + offset  # (n, 3) canonical indices
        z_counts = sub.sum(axis=(0, 1))
        diameter = max(_plane_diameter(sub[:, :, z], in_plane) for z in np.flatnonzero(z_counts))
        world = coords @ affine[:3, :3].T + affine[:3, 3]
        findings.append(
            LabelFinding(
                label=label,
                name=names.get(label, f"label {label}"),
                voxels=len(coords),
                volume_ml=len(coords) * voxel_mm3 / 1000.0,
                max_axial_diameter_mm=max(diameter, min_diameter),
                slice_range=(int(box[2].start), int(box[2].stop - 1)),
                largest_slice=int(box[2].start + np.argmax(z_counts)),  # ties: the most inferior
                laterality=_laterality(world[:, 0], midline_mm, mask.spacing[0]),
                centroid_mm=tuple(float(v) for v in world.mean(axis=0)),  # type: ignore[arg-type]
            )
        )
    return findings


__all__ = ["LATERALITIES", "LabelFinding", "check_same_grid", "measure_labels"]
