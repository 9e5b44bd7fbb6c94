"""The DICOM pixel pipeline: stored values, frame by frame, to a deterministic PNG.

Grayscale follows the DICOM display chain (PS3.3 C.11): stored values -> Modality LUT / Rescale (physical
units, HU for CT) -> VOI (a header LUT table or window, a CT preset, or a percentile window) -> the unit
interval of ``windowing`` -> MONOCHROME1 inversion -> 8 or 16 bits. Colour goes to 8-bit RGB (PALETTE
COLOR through its palette, YBR through one colour conversion). Every failure is a ``PixelError`` with a
stable ``code`` so a source can quarantine the file with a reason instead of crashing a nightly run.

Frames are decoded one at a time through pydicom 3's decoder registry: a 2,000-frame cine loop from
which a corpus wants three frames costs three frame decodes, not the whole loop in memory.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, convert_color_space, get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGExtended12Bit,
)

from medcurate.sources.windowing import (
    FUNCTIONS,
    Window,
    apply_window,
    percentile_window,
    preset,
    to_uint8,
    to_uint16,
)

#: The three elements that can hold an image's pixels (integer, float and double float data).
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

#: The window for a CT without one in its header: soft tissue shows most anatomy acceptably.
DEFAULT_CT_PRESET = "soft_tissue"

#: Colour spaces that a decoder hands back as RGB (pydicom converts YBR_FULL*, codecs undo ICT/RCT).
DECODED_AS_RGB = frozenset({"YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})

#: YBR colour spaces this module converts itself when given still-YBR values.
YBR_CONVERTIBLE = frozenset({"YBR_FULL", "YBR_FULL_422"})

GRAYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})


class PixelError(Exception):
    """A file whose pixels cannot be rendered; ``code`` is stable, ``detail`` is for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class PixelOptions:
    """How to render a frame; recorded with the sample so the same PNG can be made again.

    ``window``: None uses the header (VOI LUT table, else the first Window Center/Width pair with its VOI
    LUT Function), falling back to ``DEFAULT_CT_PRESET`` for CT and a percentile window otherwise;
    ``"preset:<name>"`` forces a CT preset and ``"percentile"`` a percentile window. ``bit_depth`` 16
    keeps the same window at 16-bit precision (grayscale only; colour is always 8-bit RGB).
    """

    bit_depth: int = 8
    window: str | None = None
    png_compress_level: int = 6

    def __post_init__(self) -> None:
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, not {self.bit_depth!r}")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"png_compress_level must be 0..9, not {self.png_compress_level!r}")
        if self.window is not None:
            _check_window_spec(self.window)


@dataclass(frozen=True)
class RenderedFrame:
    """One encoded frame. ``window`` is None for colour; ``photometric`` is the file's declared one."""

    png: bytes
    width: int
    height: int
    mode: str  # "L", "RGB" or "I;16"
    window: Window | None
    photometric: str


# --- transfer syntax and decoding ---------------------------------------------------------------


def transfer_syntax(ds: Dataset) -> UID | None:
    """The dataset's transfer syntax; for files without file meta, the one their encoding implies."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(str(uid))
    implicit, little = ds.original_encoding
    if little is None:
        return None
    if implicit:
        return ImplicitVRLittleEndian if little else None
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def describe_transfer_syntax(ds: Dataset) -> str:
    """``"<name> (<uid>)"`` for logs and quarantine reasons (the UID alone is unreadable to people)."""
    uid = transfer_syntax(ds)
    if uid is None:
        return "no Transfer Syntax UID"
    name = uid.name if uid.name != str(uid) else "unknown transfer syntax"
    return f"{name} ({uid})"


def frame_count(ds: Dataset) -> int:
    """Number of frames; a missing, empty or zero Number of Frames means one (as pydicom reads it)."""
    try:
        count = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return 1
    return max(count, 1)


def frame_photometric(ds: Dataset) -> str:
    """The colour space of the arrays ``iter_frames`` yields (RGB for every YBR a decoder converts)."""
    declared = _declared_photometric(ds)
    return "RGB" if declared in DECODED_AS_RGB else declared


def iter_frames(ds: Dataset, indices: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, stored values)`` for the frames asked for (all when None), decoding one at a time.

    Missing pixel data and transfer syntaxes without an installed decoder are reported here, before any
    decoding; corrupt or truncated data is reported as ``pixel_decode_failed`` when its frame is reached.
    Colour frames come back in ``frame_photometric(ds)`` (RGB for YBR), converted exactly once.
    """
    decoder = _require_decoder(ds)
    wanted = _checked_indices(ds, indices)
    return _decode_frames(ds, decoder, wanted)


def _require_decoder(ds: Dataset) -> Any:
    """The pydicom decoder for the dataset, or the PixelError that says why there is none."""
    if not any(keyword in ds and not ds[keyword].is_empty for keyword in PIXEL_KEYWORDS):
        raise PixelError("pixel_data_missing", "no Pixel Data, Float Pixel Data or Double Float Pixel Data")
    uid = transfer_syntax(ds)
    if uid is None:
        raise PixelError("unsupported_transfer_syntax", "no Transfer Syntax UID and no known encoding")
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise PixelError(
            "unsupported_transfer_syntax", f"{describe_transfer_syntax(ds)}: pydicom has no decoder for it"
        ) from None
    if not decoder.is_available:
        options = "; ".join(decoder.missing_dependencies) or "none known"
        raise PixelError(
            "unsupported_transfer_syntax",
            f"{describe_transfer_syntax(ds)}: no installed decoder plugin; any of these would decode it: "
            f"{options}",
        )
    if _pillow_cannot_decode(ds, decoder, uid):
        raise PixelError(
            "unsupported_transfer_syntax",
            f"{describe_transfer_syntax(ds)} with {ds.get('BitsStored')} bits stored: the installed decoder "
            "(pillow) handles 8-bit JPEG only; gdcm or pylibjpeg with pylibjpeg-libjpeg would decode it",
        )
    return decoder


def _pillow_cannot_decode(ds: Dataset, decoder: Any, uid: UID) -> bool:
    """12-bit JPEG Extended with only pillow installed: the registry says "available", pillow refuses.

    Old CT and MR archives hold much 12-bit JPEG; calling it corrupt would hide that a plugin fixes it.
    """
    only_pillow = tuple(decoder.available_plugins) == ("pillow",)
    return only_pillow and uid == JPEGExtended12Bit and int(ds.get("BitsStored") or 8) != 8


def _checked_indices(ds: Dataset, indices: Iterable[int] | None) -> list[int] | None:
    """Requested frame indices, validated up front so a typo is an IndexError, not a decode failure."""
    if indices is None:
        return None
    total = frame_count(ds)
    wanted = [int(index) for index in indices]
    for index in wanted:
        if not 0 <= index < total:
            raise IndexError(f"frame {index} out of range: the dataset has {total} frame(s)")
    return wanted


def _decode_frames(ds: Dataset, decoder: Any, wanted: list[int] | None) -> Iterator[tuple[int, np.ndarray]]:
    """The generator behind ``iter_frames``: any decoder exception becomes ``pixel_decode_failed``."""
    order = list(range(frame_count(ds))) if wanted is None else wanted
    if not order:
        return
    # indices=None lets pydicom walk encapsulated fragments once instead of seeking each frame.
    frames = decoder.iter_array(ds, indices=wanted)
    for index in order:
        try:
            arr, properties = next(frames)
        except Exception as exc:  # every decoder failure is one quarantine reason
            raise PixelError(
                "pixel_decode_failed",
                f"frame {index} of {describe_transfer_syntax(ds)} data: {type(exc).__name__}: {exc}",
            ) from exc
        yield index, _as_frame_photometric(ds, arr, properties)


def _as_frame_photometric(ds: Dataset, arr: np.ndarray, properties: dict[str, Any]) -> np.ndarray:
    """Bring a decoded frame to ``frame_photometric(ds)``, trusting what the decoder says it returned.

    pydicom 3 converts YBR_FULL(_422) to RGB while decoding (and reports it); converting again from the
    header's Photometric Interpretation would shift every colour, so the decoder's report decides.
    """
    returned = str(properties.get("photometric_interpretation", "")).strip().upper()
    expected = frame_photometric(ds)
    if arr.ndim != 3 or returned == expected or not returned:
        return arr
    if returned in YBR_CONVERTIBLE and expected == "RGB":
        return convert_color_space(arr, returned, "RGB")
    raise PixelError("unsupported_photometric", f"decoder returned {returned} for a {expected} frame")


# --- physical values and VOI --------------------------------------------------------------------


def modality_values(ds: Dataset, arr: np.ndarray, *, frame: int = 0) -> np.ndarray:
    """Stored values -> physical values (float64): Rescale Slope/Intercept or the Modality LUT.

    Enhanced multi-frame objects keep the rescale in the shared or per-frame functional groups, which
    pydicom's ``apply_modality_lut`` does not look at, so those are applied here for ``frame``.
    """
    item = _functional_item(ds, frame, "PixelValueTransformationSequence")
    if item is not None and "RescaleSlope" in item and "RescaleIntercept" in item:
        slope, intercept = float(item.RescaleSlope), float(item.RescaleIntercept)
        return np.asarray(arr, dtype=np.float64) * slope + intercept
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)


def header_window(ds: Dataset, *, frame: int = 0) -> Window | None:
    """The first Window Center/Width pair (per-frame groups first) with its VOI LUT Function, if valid.

    An invalid header window (width 0, NaN) returns None so the modality default applies instead of
    the file being lost; an unknown VOI LUT Function is read as LINEAR, the standard's default.
    """
    item = _functional_item(ds, frame, "FrameVOILUTSequence")
    source = item if item is not None and "WindowCenter" in item else ds
    center, width = _first(source.get("WindowCenter")), _first(source.get("WindowWidth"))
    if center is None or width is None:
        return None
    function = str(source.get("VOILUTFunction") or "LINEAR").strip().upper()
    function = function if function in FUNCTIONS else "LINEAR"
    try:
        center_f, width_f = float(center), float(width)
        if not math.isfinite(center_f):
            return None
        return Window(center_f, width_f, function, origin="header")
    except (TypeError, ValueError):
        return None


def default_window(ds: Dataset, values: np.ndarray) -> Window:
    """The window when the header has none: a CT preset in HU, else a percentile window of the frame."""
    if str(ds.get("Modality", "")).upper() == "CT":
        return preset(DEFAULT_CT_PRESET)
    return percentile_window(values)


def voi_unit(
    ds: Dataset, values: np.ndarray, options: PixelOptions, *, frame: int = 0
) -> tuple[np.ndarray, Window]:
    """Physical values -> [0, 1] float32 plus the window used (VOI LUT tables get origin "voi_lut")."""
    item = _voi_lut_item(ds) if options.window is None else None
    if item is not None:
        return _apply_voi_table(ds, values, item)
    window = _fixed_window(ds, options, frame) or percentile_window(values)
    return apply_window(values, window), window


def _fixed_window(ds: Dataset, options: PixelOptions, frame: int) -> Window | None:
    """The window when it does not depend on the frame's values (a forced preset, the header's window,
    the CT default); None when a percentile window of the values is due.

    One place decides this for ``voi_unit`` and for ``_voi_is_pointwise``, so the lookup-table path of
    ``_grayscale`` can never pick a different window than the direct path would.
    """
    if options.window is not None:
        return None if options.window == "percentile" else preset(options.window.removeprefix("preset:"))
    window = header_window(ds, frame=frame)
    if window is not None:
        return window
    return preset(DEFAULT_CT_PRESET) if str(ds.get("Modality", "")).upper() == "CT" else None


def _apply_voi_table(ds: Dataset, values: np.ndarray, item: Dataset) -> tuple[np.ndarray, Window]:
    """A VOI LUT Sequence table scaled to [0, 1] by its output range (2**bits - 1).

    The lookup is done here rather than by pydicom 3.0.2's ``apply_voi``, which indexes with the entry
    dtype: an 8-bit table of more than 256 entries wraps its indices and returns wrong values. Inputs
    are rounded to the nearest table entry (rescaled values need not be integers).
    """
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 2**16
    table = _lut_entries(ds, item, entries)
    index = np.clip(np.rint(np.nan_to_num(values, nan=float(first))) - first, 0, entries - 1)
    unit = np.clip(table[index.astype(np.intp)] / float(2**bits - 1), 0.0, 1.0).astype(np.float32)
    # Records the table's input span; the table itself stays in the header for reproduction.
    return unit, Window(first + entries / 2.0, float(entries), "LINEAR_EXACT", origin="voi_lut")


def _lut_entries(ds: Dataset, item: Dataset, entries: int) -> np.ndarray:
    """LUT Data as float64: a US list, or OW words in the dataset's byte order."""
    data = item.LUTData
    if isinstance(data, bytes | bytearray):
        uid = transfer_syntax(ds)
        dtype = np.dtype(">u2" if uid is not None and not uid.is_little_endian else "<u2")
        # 8-bit entries are normally in 16-bit words; tolerate tables packed one byte per entry.
        table = np.frombuffer(data, dtype=dtype if len(data) >= 2 * entries else np.uint8)
    else:
        table = np.atleast_1d(np.asarray(data))
    if table.size < entries:
        detail = f"VOI LUT has {table.size} entries, its descriptor says {entries}"
        raise PixelError("pixel_decode_failed", detail)
    return table[:entries].astype(np.float64)


def _voi_lut_item(ds: Dataset) -> Dataset | None:
    """The first VOI LUT Sequence item with a table, or None."""
    items = ds.get("VOILUTSequence")
    if not items:
        return None
    item = items[0]
    return item if "LUTDescriptor" in item and "LUTData" in item else None


def _check_window_spec(spec: str) -> None:
    """ValueError unless ``spec`` is "percentile" or "preset:<known name>" (fail at config time)."""
    if spec == "percentile":
        return
    if not spec.startswith("preset:"):
        raise ValueError(f"window must be None, 'percentile' or 'preset:<name>', not {spec!r}")
    preset(spec.removeprefix("preset:"))


def _functional_item(ds: Dataset, frame: int, keyword: str) -> Dataset | None:
    """The first item of functional group ``keyword`` for ``frame``: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and 0 <= frame < len(per_frame):
        item = _first_item(per_frame[frame].get(keyword))
        if item is not None:
            return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    return _first_item(shared[0].get(keyword)) if shared else None


def _first_item(items: Sequence[Dataset] | None) -> Dataset | None:
    return items[0] if items else None


def _first(value: Any) -> Any:
    """First value of a possibly multi-valued element; None for empty."""
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return value
    return value[0] if len(value) else None


# --- rendering -----------------------------------------------------------------------------------


def render(
    ds: Dataset,
    stored: np.ndarray,
    options: PixelOptions | None = None,
    *,
    frame: int = 0,
    photometric: str | None = None,
) -> RenderedFrame:
    """One frame of stored values (as ``iter_frames`` yields them) to a PNG.

    ``frame`` selects per-frame rescale and windows in enhanced objects. ``photometric`` is the colour
    space of ``stored`` when it did not come from ``iter_frames`` (e.g. "YBR_FULL" for a raw decode);
    by default it is ``frame_photometric(ds)``, so YBR that a decoder already converted is never
    converted twice.
    """
    options = options or PixelOptions()
    space = (photometric or frame_photometric(ds)).strip().upper()
    window: Window | None = None
    if space in GRAYSCALE:
        pixels, window = _grayscale(ds, _expect_shape(stored, space, 2), options, frame, space)
    elif space == "PALETTE COLOR":
        pixels = _palette_rgb(ds, _expect_shape(stored, space, 2))
    elif space in YBR_CONVERTIBLE:
        pixels = _rgb8(ds, convert_color_space(_expect_shape(stored, space, 3), space, "RGB"))
    elif space == "RGB":
        pixels = _rgb8(ds, _expect_shape(stored, space, 3))
    else:
        raise PixelError("unsupported_photometric", f"cannot render Photometric Interpretation {space!r}")
    return RenderedFrame(
        png=encode_png(pixels, compress_level=options.png_compress_level),
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        mode=_png_mode(pixels),
        window=window,
        photometric=_declared_photometric(ds) or space,
    )


def _grayscale(
    ds: Dataset, stored: np.ndarray, options: PixelOptions, frame: int, space: str
) -> tuple[np.ndarray, Window]:
    """The display chain of ``_grayscale_chain``, through a lookup table when that gives the same pixels.

    Why a table: for 8- and 16-bit stored values every step maps each value on its own (rescale or
    Modality LUT, a fixed LINEAR or LINEAR_EXACT window or a VOI LUT table, inversion, rounding), so
    running the chain once over the frame's range of stored values and looking the frame up gives the
    same output bytes: the same IEEE operations on the same inputs. A 512x512 CT slice has 262,144
    pixels and about 4,000 distinct values; the float64 chain over every pixel was a tenth of a slice's
    ingest time. Percentile windows (drawn from the whole frame) and SIGMOID (``np.exp``, whose
    vectorised kernels are not promised to round alike for every array length) take the direct path.
    """
    span = _table_span(stored) if _voi_is_pointwise(ds, options, frame) else None
    if span is None:
        return _grayscale_chain(ds, stored, options, frame, space)
    low, high = span
    domain = np.arange(low, high + 1).astype(stored.dtype)
    table, window = _grayscale_chain(ds, domain, options, frame, space)
    return table[np.subtract(stored, low, dtype=np.intp)], window


def _voi_is_pointwise(ds: Dataset, options: PixelOptions, frame: int) -> bool:
    """True when the VOI step is exact arithmetic per value: a VOI LUT table or a fixed linear window."""
    if options.window is None and _voi_lut_item(ds) is not None:
        return True
    window = _fixed_window(ds, options, frame)
    return window is not None and window.function in ("LINEAR", "LINEAR_EXACT")


def _table_span(stored: np.ndarray) -> tuple[int, int] | None:
    """(min, max) of an 8- or 16-bit integer frame when a table over that range is smaller than the frame."""
    if stored.dtype.kind not in "iu" or stored.dtype.itemsize > 2 or stored.size == 0:
        return None
    low, high = int(stored.min()), int(stored.max())
    return (low, high) if high - low < stored.size else None


def _grayscale_chain(
    ds: Dataset, stored: np.ndarray, options: PixelOptions, frame: int, space: str
) -> tuple[np.ndarray, Window]:
    """Modality LUT -> VOI -> MONOCHROME1 inversion (after VOI, as PS3.3 orders it) -> 8 or 16 bits."""
    values = modality_values(ds, stored, frame=frame)
    unit, window = voi_unit(ds, values, options, frame=frame)
    unit = np.nan_to_num(unit, nan=0.0)  # float pixel data may hold NaN; show it as the window floor
    if space == "MONOCHROME1":
        unit = 1.0 - unit
    return (to_uint16(unit) if options.bit_depth == 16 else to_uint8(unit)), window


def _palette_rgb(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """PALETTE COLOR indices -> 8-bit RGB; 16-bit palette entries are scaled (v / 257), not truncated."""
    try:
        rgb = apply_color_lut(stored, ds)[..., :3]
        nominal_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    except (AttributeError, KeyError, ValueError, IndexError) as exc:
        raise PixelError("unsupported_photometric", f"PALETTE COLOR without a usable palette: {exc}") from exc
    if nominal_bits > 8:
        scaled = np.rint(rgb.astype(np.float64) * 255.0 / float(2**nominal_bits - 1))
        return np.clip(scaled, 0, 255).astype(np.uint8)
    # 8-bit entries may sit in 16-bit words (PS3.3 C.7.6.3.1.6); the values are 0..255 either way.
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _rgb8(ds: Dataset, rgb: np.ndarray) -> np.ndarray:
    """RGB of any depth -> 8 bits, scaled by Bits Stored (a 12-bit colour image is not 16-bit dark)."""
    if rgb.dtype == np.uint8:
        return rgb
    container = rgb.dtype.itemsize * 8
    bits = min(int(ds.get("BitsStored") or container), container)
    scaled = np.rint(rgb.astype(np.float64) * 255.0 / float(2**bits - 1))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _expect_shape(stored: np.ndarray, space: str, ndim: int) -> np.ndarray:
    """``stored`` if it has the shape ``space`` needs; a frame of the wrong kind is a header mismatch."""
    arr = np.asarray(stored)
    ok = arr.ndim == ndim and (ndim == 2 or arr.shape[2] == 3)
    if not ok:
        raise PixelError("unsupported_photometric", f"{space} frame has unexpected shape {arr.shape}")
    return arr


def _declared_photometric(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation") or "").strip().upper()


def encode_png(array: np.ndarray, *, compress_level: int = 6) -> bytes:
    """uint8 L / uint8 RGB / uint16 I;16 array -> PNG bytes, identical for identical input.

    Pillow writes no text chunks or timestamps unless asked, and ``optimize=False`` keeps the encoder
    from searching filters, so the bytes depend only on the pixels and ``compress_level``.
    """
    arr = np.asarray(array)
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
        arr = arr.astype(np.uint16, copy=False)  # big-endian '>u2' too: Pillow reads native order
    mode = _png_mode(arr)
    image = Image.fromarray(np.ascontiguousarray(arr))
    if image.mode != mode:
        raise ValueError(f"Pillow made a {image.mode} image from a {mode} array")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level, optimize=False)
    return buffer.getvalue()


def _png_mode(arr: np.ndarray) -> str:
    """The Pillow mode for an output array; ValueError for anything the pipeline should not produce."""
    if arr.ndim == 2 and arr.dtype == np.uint8:
        return "L"
    if arr.ndim == 2 and arr.dtype == np.uint16:
        return "I;16"
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        return "RGB"
    raise ValueError(f"cannot encode a {arr.dtype} array of shape {arr.shape} as PNG")
