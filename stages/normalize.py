"""Normalize source images: decode safely, orient, fix the mode, bound the size, re-encode.

Everything after this stage sees one of three pixel layouts (8-bit ``L``, 8-bit ``RGB``, optionally
16-bit ``I;16``) in PNG or JPEG, with hashes of both the encoded bytes and the pixels. The output is
a pure function of the input bytes and the params (no metadata is copied, no encoder randomness),
so re-running a release reproduces it byte for byte.
"""

from __future__ import annotations

import re
import struct
import warnings
from io import BytesIO
from typing import Any

import imagehash
import numpy as np
from PIL import ExifTags, Image, ImageOps

from medcurate.hashing import sha256_bytes
from medcurate.stages.base import Filter, Quarantine, RecordStage, StageContext

DEFAULTS: dict[str, Any] = {
    "max_side": 1024,
    "min_side": 32,
    "max_pixels": 100_000_000,
    "max_file_bytes": 200_000_000,
    "jpeg_quality": 90,
    "png_compress_level": 6,
    "grayscale_format": "png",
    "color_format": "jpeg",
    "keep_16bit": False,
    "alpha_background": [255, 255, 255],
    # Perceptual hashes of these views too, so near_dedup can match a flipped or rotated copy.
    "hash_variants": ["hflip"],
}

#: Views ``hash_variants`` may name.
HASH_TRANSFORMS = {
    "hflip": Image.Transpose.FLIP_LEFT_RIGHT,
    "vflip": Image.Transpose.FLIP_TOP_BOTTOM,
    "rot90": Image.Transpose.ROTATE_90,
    "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270,
}

#: What Pillow raises for bytes it cannot decode; anything else out of Pillow is a bug of ours.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
_HIGH_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_GRAY_MODES = {"1", "L", "LA", "La"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_FORMATS = ("png", "jpeg")
ORIENTATION = ExifTags.Base.Orientation


def _open_checked(
    raw: bytes | None, max_pixels: int, max_file_bytes: int, max_side: int
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``raw`` fully, refusing bombs from the header before any pixel is decoded.

    Returns the image and the size its header declares (a JPEG may decode smaller via ``draft``).

    Pillow's own bomb guard (a warning, then an error at twice ``Image.MAX_IMAGE_PIXELS``) is turned
    into the same quarantine locally, without touching Pillow's global settings. Truncated files are
    quarantined because ``LOAD_TRUNCATED_IMAGES`` stays off.
    """
    if not raw:
        raise Quarantine("corrupt_image", "no image bytes")
    if len(raw) > max_file_bytes:
        raise Quarantine("file_too_large", f"{len(raw)} bytes exceeds limit {max_file_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(BytesIO(raw))
            w, h = im.size
            if w * h > max_pixels:
                raise Quarantine("decompression_bomb", f"{w}x{h} = {w * h} pixels exceeds limit {max_pixels}")
            if im.format == "JPEG" and max(w, h) > max_side:
                # Let libjpeg downscale in the DCT domain (1/2..1/8, never below the target): much
                # faster for big photos and still deterministic.
                im.draft(im.mode, _target_size(w, h, max_side))
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Quarantine("decompression_bomb", f"Pillow: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise Quarantine("corrupt_image", f"Pillow cannot decode it: {_describe(exc)}") from exc
    return im, (w, h)


def _describe(exc: Exception) -> str:
    """Pillow's message without object addresses, so the same bad file always gives the same reason."""
    return re.sub(r" ?<[^>]* at 0x[0-9a-f]+>", "", f"{type(exc).__name__}: {exc}")


def _rescale(pixels: np.ndarray, top: int, dtype: type) -> np.ndarray:
    """Map the image's own min..max linearly to 0..top (a constant image becomes zeros).

    Medical 16-bit and float images rarely use the full range, so clipping (Pillow's ``convert``)
    would turn most of them white or black.
    """
    values = pixels.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype)
    lo, hi = values[finite].min(), values[finite].max()
    if hi == lo:
        return np.zeros(values.shape, dtype)
    if not finite.all():
        values = np.where(finite, values, lo)
    return np.rint((values - lo) * (top / (hi - lo))).astype(dtype)


def _to_output_mode(im: Image.Image, keep_16bit: bool, background: tuple[int, int, int]) -> Image.Image:
    """Reduce any Pillow mode to ``L``, ``RGB`` or (with ``keep_16bit``) ``I;16``.

    Grayscale-looking RGB stays RGB: guessing from pixel values would make the mode depend on content.
    """
    if im.mode in _HIGH_BIT_MODES or im.mode == "F":
        pixels = np.asarray(im)
        if keep_16bit and im.mode in _HIGH_BIT_MODES:
            fits = pixels.min() >= 0 and pixels.max() <= 0xFFFF
            wide = pixels.astype(np.uint16) if fits else _rescale(pixels, 0xFFFF, np.uint16)
            return Image.fromarray(np.ascontiguousarray(wide, dtype="<u2"))
        return Image.fromarray(_rescale(pixels, 255, np.uint8))
    gray = im.mode in _GRAY_MODES
    target = "L" if gray else "RGB"
    try:
        if im.mode in _ALPHA_MODES or "transparency" in im.info:
            with_alpha = im.convert("LA" if gray else "RGBA")
            fill = Image.new("RGB", (1, 1), background).convert(target).getpixel((0, 0))
            out = Image.new(target, im.size, fill)
            out.paste(with_alpha.convert(target), mask=with_alpha.getchannel("A"))
            return out
        return im if im.mode == target else im.convert(target)
    except ValueError as exc:  # a readable file in a mode Pillow cannot convert (rare TIFF layouts)
        raise Quarantine("unsupported_mode", f"cannot convert mode {im.mode} to {target}: {exc}") from exc


def _target_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    """Size with the longest side at most ``max_side``; exact integer round-half-up, never below 1."""
    longest = max(w, h)
    if longest <= max_side:
        return w, h

    def scaled(n: int) -> int:
        return max(1, (2 * n * max_side + longest) // (2 * longest))

    return scaled(w), scaled(h)


def _resize(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize with LANCZOS to ``size``.

    ``size`` comes from the header size, so a JPEG decoded smaller by ``draft`` lands on exactly the
    size a full decode would.
    """
    return im if size == im.size else im.resize(size, Image.Resampling.LANCZOS)


def _encode(im: Image.Image, fmt: str, params: dict[str, Any]) -> bytes:
    """Encode without metadata (no EXIF, ICC, dpi) so the bytes depend on the pixels and params only."""
    im = im.copy()
    im.info = {}
    buf = BytesIO()
    if fmt == "png":
        im.save(buf, format="PNG", compress_level=params["png_compress_level"])
    else:
        quality = params["jpeg_quality"]
        im.save(buf, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2, optimize=False)
    return buf.getvalue()


def perceptual_hashes(image: Image.Image) -> dict[str, str]:
    """The 64-bit phash that finds candidates and the 256-bit one that confirms them.

    Medical images share their low-frequency layout (every chest film has two lungs), so 64-bit hashes
    of different patients often fall a few bits apart; the finer hash keeps enough detail to tell a
    copy (a few bits of 256 apart) from a look-alike (dozens).
    """
    return {"phash": str(imagehash.phash(image)), "phash_fine": str(imagehash.phash(image, hash_size=16))}


class NormalizeStage(RecordStage):
    """Turn raw source image bytes into a bounded, normalized PNG/JPEG with its hashes."""

    name = "normalize"
    version = "2"  # 2: phash_variants

    def _params(self) -> dict[str, Any]:
        params = {**DEFAULTS, **self.params}
        for key in ("grayscale_format", "color_format"):
            if params[key] not in _FORMATS:
                raise ValueError(f"normalize: {key} must be 'png' or 'jpeg', got {params[key]!r}")
        unknown = set(params["hash_variants"]) - set(HASH_TRANSFORMS)
        if unknown:
            raise ValueError(
                f"normalize: unknown hash_variants {sorted(unknown)}; known: {list(HASH_TRANSFORMS)}"
            )
        return params

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        p = self._params()
        image = dict(record.get("image") or {})
        src, (sw, sh) = _open_checked(image.get("bytes"), p["max_pixels"], p["max_file_bytes"], p["max_side"])
        source_format, source_mode = (src.format or "").lower(), src.mode
        if min(sw, sh) < p["min_side"]:
            raise Filter("too_small", f"{sw}x{sh} has a side below min_side {p['min_side']}")
        details: dict[str, Any] = {}
        try:
            orientation = src.getexif().get(ORIENTATION, 1)
            oriented = ImageOps.exif_transpose(src)
        except _DECODE_ERRORS as exc:
            raise Quarantine("corrupt_image", f"bad EXIF: {_describe(exc)}") from exc
        if orientation in range(2, 9):
            details["exif_orientation"] = orientation
        before = (sh, sw) if orientation in range(5, 9) else (sw, sh)  # 5..8 swap the axes

        im = _to_output_mode(oriented, p["keep_16bit"], tuple(p["alpha_background"]))
        im = _resize(im, _target_size(*before, p["max_side"]))
        if im.size != before:
            details["resized"] = [*before, *im.size]
        if im.mode != source_mode:
            details["mode"] = [source_mode, im.mode]

        fmt = "png" if im.mode == "I;16" else p["grayscale_format" if im.mode == "L" else "color_format"]
        encoded = _encode(im, fmt, p)
        w, h = im.size
        # imagehash converts to L by clipping, so a 16-bit image is hashed on its 8-bit rescaled view.
        hash_view = Image.fromarray(_rescale(np.asarray(im), 255, np.uint8)) if im.mode == "I;16" else im
        image.update(
            bytes=encoded,
            sha256=sha256_bytes(encoded),
            pixel_sha256=sha256_bytes(f"{im.mode}|{w}|{h}|".encode() + im.tobytes()),
            format=fmt,
            width=w,
            height=h,
            mode=im.mode,
            bits=16 if im.mode == "I;16" else 8,
            **perceptual_hashes(hash_view),
            phash_variants=[
                {"transform": name, **perceptual_hashes(hash_view.transpose(HASH_TRANSFORMS[name]))}
                for name in p["hash_variants"]
            ],
            source_format=source_format,
            source_width=sw,
            source_height=sh,
            source_mode=source_mode,
        )
        record["image"] = image
        return record, details
