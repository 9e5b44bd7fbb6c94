"""3D payloads (``.npy`` or ``.nii.gz``) that ride beside a 2D sample, for 3D models and re-slicing.

Both encodings are deterministic (``np.save`` without pickle; gzip with no timestamp or name), so a
release that carries volumes is still byte-identical across runs. Values keep their physical meaning
(Hounsfield units for CT) and are stored as int16 when they are whole numbers in its range, else as
float32; the record says which and gives the spacing in the payload's axis order.
"""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np

from medcurate.hashing import sha256_bytes

FORMATS = ("npy", "nii.gz")


def gzip_bytes(data: bytes) -> bytes:
    """gzip with mtime 0 and no file name in the header: equal input, equal output."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as stream:
        stream.write(data)
    return out.getvalue()


def compact(values: np.ndarray) -> np.ndarray:
    """int16 when every value is a whole number that fits (CT in HU), else float32."""
    limits = np.iinfo(np.int16)
    whole = values.size and np.isfinite(values).all() and np.array_equal(values, np.rint(values))
    if whole and values.min() >= limits.min and values.max() <= limits.max:
        return values.astype(np.int16)
    return values.astype(np.float32)


def encode_volume(
    values: np.ndarray, spacing: tuple[float, float, float], fmt: str, affine: np.ndarray, what: str
) -> dict:
    """The record's ``volume`` group for ``values`` (3D) in ``fmt``.

    ``affine`` maps array indices to RAS+ millimetres; ``.npy`` keeps the array as given (the record
    holds the spacing), ``.nii.gz`` carries the affine in its header so viewers place it correctly.
    """
    if fmt not in FORMATS:
        raise ValueError(f"volume format must be one of {FORMATS}, got {fmt!r}")
    array = compact(np.asarray(values, dtype=np.float64))
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        data = buffer.getvalue()
    else:
        image = nib.Nifti1Image(array, affine)
        image.header.set_xyzt_units("mm", "sec")
        data = gzip_bytes(image.to_bytes())
    return {
        "bytes": data,
        "format": fmt,
        "sha256": sha256_bytes(data),
        "shape": [int(n) for n in array.shape],
        "spacing": [float(s) for s in spacing],
        "dtype": str(array.dtype),
        "values": what,
    }
