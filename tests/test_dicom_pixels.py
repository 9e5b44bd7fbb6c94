"""The DICOM pixel pipeline against references computed here with plain numpy on the raw stored bytes.

Every expected image is built from ``np.frombuffer(ds.PixelData, ...)`` and the PS3.3 formulas written
out in this file, never from pydicom's own processing helpers, so a wrong rescale, window formula,
inversion order or colour conversion in the module shows up as a pixel difference. 16-bit outputs are
compared too: a LINEAR vs LINEAR_EXACT slip is invisible at 8 bits but dozens of levels at 16.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from medcurate.sources.dicom.pixels import (
    PixelError,
    PixelOptions,
    RenderedFrame,
    describe_transfer_syntax,
    encode_png,
    frame_count,
    iter_frames,
    modality_values,
    render,
)

# --- helpers -------------------------------------------------------------------------------------


def _path(name: str) -> str:
    """A pydicom test file by exact name, never downloaded (skip if this pydicom lacks it)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} does not ship with this pydicom")
    return str(path)


def _read(name: str) -> Dataset:
    return pydicom.dcmread(_path(name))


def _raw(ds: Dataset) -> np.ndarray:
    """Stored values straight from the little-endian bytes: (frames, rows, cols[, samples])."""
    kind = "i" if int(ds.PixelRepresentation) else "u"
    dtype = np.dtype(f"<{kind}{int(ds.BitsAllocated) // 8}")
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.SamplesPerPixel)
    arr = np.frombuffer(ds.PixelData, dtype=dtype)[: frames * ds.Rows * ds.Columns * samples]
    if samples == 1:
        return arr.reshape(frames, ds.Rows, ds.Columns)
    if int(ds.get("PlanarConfiguration") or 0) == 1:
        return arr.reshape(frames, samples, ds.Rows, ds.Columns).transpose(0, 2, 3, 1)
    return arr.reshape(frames, ds.Rows, ds.Columns, samples)


def _linear(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR with y in [0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    low, high = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    return np.where(x <= low, 0.0, np.where(x > high, 1.0, (x - (c - 0.5)) / (w - 1) + 0.5))


def _linear_exact(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.3.2 LINEAR_EXACT with y in [0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 1.0, (x - c) / w + 0.5))


def _sigmoid(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.3.1 SIGMOID with y in [0, 1]."""
    return 1.0 / (1.0 + np.exp(-4.0 * (np.asarray(x, dtype=np.float64) - c) / w))


def _q(unit: np.ndarray, bits: int = 8) -> np.ndarray:
    return np.rint(unit * (2**bits - 1))


def _decode(frame: RenderedFrame) -> np.ndarray:
    image = Image.open(io.BytesIO(frame.png))
    assert image.mode == frame.mode
    assert image.size == (frame.width, frame.height)
    return np.asarray(image).astype(np.int64)


def _assert_close(actual: np.ndarray, expected: np.ndarray, atol: int = 1) -> None:
    """Equal up to ``atol`` levels (float32 vs float64 rounding at exact .5 ties) and mostly exact."""
    assert actual.shape == expected.shape
    diff = np.abs(actual.astype(np.int64) - expected.astype(np.int64))
    assert diff.max() <= atol, f"max diff {diff.max()}"
    assert (diff == 0).mean() > 0.97


def _both_depths(ds: Dataset, stored: np.ndarray, unit: np.ndarray, **kwargs) -> None:
    """The 8-bit and 16-bit renders both match the reference unit image."""
    window = kwargs.pop("window", None)
    eight = render(ds, stored, PixelOptions(window=window), **kwargs)
    sixteen = render(ds, stored, PixelOptions(bit_depth=16, window=window), **kwargs)
    assert (eight.mode, sixteen.mode) == ("L", "I;16")
    _assert_close(_decode(eight), _q(unit, 8))
    _assert_close(_decode(sixteen), _q(unit, 16))


def _new_dataset(pixels: np.ndarray, photometric: str, frames: int = 1, **attrs) -> Dataset:
    """A native little-endian image dataset around ``pixels`` (frames, rows, cols[, samples])."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = attrs.pop("sop_class", SecondaryCaptureImageStorage)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = attrs.pop("Modality", "OT")
    samples = 3 if pixels.ndim == 4 else 1
    ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = attrs.pop("BitsStored", ds.BitsAllocated)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if samples == 3:
        ds.PlanarConfiguration = attrs.pop("PlanarConfiguration", 0)
        if ds.PlanarConfiguration == 1:
            pixels = pixels.transpose(0, 3, 1, 2)
    if frames > 1:
        ds.NumberOfFrames = frames
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def _saved(ds: Dataset, path: Path) -> Dataset:
    """Write ``ds`` as a real DICOM file and read it back (what the pipeline will see)."""
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def _single(ds: Dataset) -> np.ndarray:
    frames = list(iter_frames(ds))
    assert [index for index, _ in frames] == [0]
    return frames[0][1]


def _item(**elements) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


# --- grayscale -----------------------------------------------------------------------------------


def test_ct_small_hounsfield_and_default_soft_tissue_window():
    ds = _read("CT_small.dcm")
    raw = _raw(ds)[0]
    stored = _single(ds)
    np.testing.assert_array_equal(stored, raw)
    hu = raw.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(modality_values(ds, stored), hu)
    assert "WindowCenter" not in ds
    frame = render(ds, stored)
    assert (frame.window.center, frame.window.width, frame.window.function) == (40.0, 400.0, "LINEAR")
    assert frame.photometric == "MONOCHROME2"
    _both_depths(ds, stored, _linear(hu, 40.0, 400.0))


def test_ct_forced_preset_and_percentile_windows():
    ds = _read("CT_small.dcm")
    stored = _single(ds)
    hu = _raw(ds)[0].astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    _both_depths(ds, stored, _linear(hu, -600.0, 1500.0), window="preset:lung")
    lo, hi = np.percentile(hu, [0.5, 99.5])
    _both_depths(ds, stored, _linear_exact(hu, (lo + hi) / 2, hi - lo), window="percentile")
    assert render(ds, stored, PixelOptions(window="percentile")).window.origin == "percentile:0.5-99.5"


def test_mr_small_header_window():
    ds = _read("MR_small.dcm")
    raw = _raw(ds)[0]
    stored = _single(ds)
    np.testing.assert_array_equal(stored, raw)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    frame = render(ds, stored)
    assert (frame.window.center, frame.window.width, frame.window.origin) == (center, width, "header")
    _both_depths(ds, stored, _linear(raw, center, width))


def test_monochrome1_rescale_window_then_inversion(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 4096, size=(1, 40, 30), dtype=np.uint16)
    pixels[0, 0, :4] = [0, 4095, 550, 551]  # both clip ends and the centre of the window
    ds = _new_dataset(
        pixels,
        "MONOCHROME1",
        BitsStored=12,
        Modality="CR",
        RescaleSlope="2",
        RescaleIntercept="-100",
        WindowCenter="1000",
        WindowWidth="2000",
    )
    ds = _saved(ds, tmp_path / "mono1.dcm")
    raw = _raw(ds)[0]
    values = raw.astype(np.float64) * 2 - 100
    stored = _single(ds)
    np.testing.assert_array_equal(stored, raw)
    # Inversion after VOI: the brightest physical values end up black.
    unit = 1.0 - _linear(values, 1000.0, 2000.0)
    _both_depths(ds, stored, unit)
    out = _decode(render(ds, stored))
    assert out[0, 1] == 0 and out[0, 0] == 255


def test_voi_lut_function_sigmoid_and_multiple_window_pairs(tmp_path):
    pixels = np.arange(-512, 512, dtype=np.int16).reshape(1, 32, 32)
    ds = _new_dataset(
        pixels,
        "MONOCHROME2",
        Modality="MR",
        WindowCenter=["10", "300"],
        WindowWidth=["200", "50"],
        VOILUTFunction="SIGMOID",
    )
    ds = _saved(ds, tmp_path / "sigmoid.dcm")
    stored = _single(ds)
    frame = render(ds, stored)
    assert (frame.window.center, frame.window.width, frame.window.function) == (10.0, 200.0, "SIGMOID")
    _both_depths(ds, stored, _sigmoid(_raw(ds)[0], 10.0, 200.0))


@pytest.mark.parametrize("entry_bits", [8, 16])
def test_voi_lut_sequence_table_scaled_by_its_output_range(tmp_path, entry_bits):
    pixels = np.arange(0, 4096, 2, dtype=np.uint16).reshape(1, 32, 64)
    entries, first = 3000, 500
    top = 2**entry_bits - 1
    table = np.rint(np.sqrt(np.linspace(0.0, 1.0, entries)) * top).astype(np.uint16)
    lut = _item(LUTDescriptor=[entries, first, entry_bits], LUTData=table.tolist())
    lut["LUTData"].VR = "US"
    ds = _new_dataset(pixels, "MONOCHROME2", BitsStored=12, Modality="MR", VOILUTSequence=[lut])
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-100"  # the table indexes rescaled values
    ds = _saved(ds, tmp_path / f"voilut{entry_bits}.dcm")
    values = _raw(ds)[0].astype(np.int64) - 100
    expected = table[np.clip(values - first, 0, entries - 1)] / top
    stored = _single(ds)
    assert render(ds, stored).window.origin == "voi_lut"
    _both_depths(ds, stored, expected)


def test_rtdose_multiframe_frame_by_frame_equals_full_array():
    ds = _read("rtdose.dcm")
    assert frame_count(ds) == int(ds.NumberOfFrames) > 3
    raw = _raw(ds)
    full = ds.pixel_array
    frames = dict(iter_frames(ds))
    assert sorted(frames) == list(range(frame_count(ds)))
    for index, stored in frames.items():
        np.testing.assert_array_equal(stored, full[index])
        np.testing.assert_array_equal(stored, raw[index])
        lo, hi = np.percentile(raw[index].astype(np.float64), [0.5, 99.5])
        unit = _linear_exact(raw[index], (lo + hi) / 2, max(hi - lo, 1.0))
        _both_depths(ds, stored, unit, frame=index)
    subset = list(iter_frames(ds, [3, 0, 3]))
    assert [index for index, _ in subset] == [3, 0, 3]
    for index, stored in subset:
        np.testing.assert_array_equal(stored, raw[index])
    with pytest.raises(IndexError):
        iter_frames(ds, [frame_count(ds)])


def test_enhanced_multiframe_per_frame_rescale_and_window(tmp_path):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 2000, size=(3, 16, 16), dtype=np.uint16)
    rescales = [(1.0, -1024.0), (2.0, -1000.0), (0.5, 0.0)]
    per_frame = []
    for index, (slope, intercept) in enumerate(rescales):
        group = _item(
            PixelValueTransformationSequence=[_item(RescaleSlope=str(slope), RescaleIntercept=str(intercept))]
        )
        if index == 2:
            group.FrameVOILUTSequence = [_item(WindowCenter="300", WindowWidth="1000")]
        per_frame.append(group)
    shared = _item(FrameVOILUTSequence=[_item(WindowCenter="40", WindowWidth="400")])
    ds = _new_dataset(
        pixels,
        "MONOCHROME2",
        frames=3,
        sop_class=EnhancedCTImageStorage,
        Modality="CT",
        SharedFunctionalGroupsSequence=[shared],
        PerFrameFunctionalGroupsSequence=per_frame,
    )
    ds = _saved(ds, tmp_path / "enhanced.dcm")
    raw = _raw(ds)
    windows = [(40.0, 400.0), (40.0, 400.0), (300.0, 1000.0)]
    for index, stored in iter_frames(ds):
        slope, intercept = rescales[index]
        values = raw[index].astype(np.float64) * slope + intercept
        np.testing.assert_allclose(modality_values(ds, stored, frame=index), values)
        frame = render(ds, stored, frame=index)
        assert (frame.window.center, frame.window.width) == windows[index]
        _both_depths(ds, stored, _linear(values, *windows[index]), frame=index)


def test_sixteen_bit_png_matches_eight_bit_over_257():
    ds = _read("MR_small.dcm")
    stored = _single(ds)
    eight = render(ds, stored, PixelOptions(bit_depth=8))
    sixteen = render(ds, stored, PixelOptions(bit_depth=16))
    assert sixteen.mode == "I;16" and sixteen.window == eight.window
    wide = _decode(sixteen)
    assert wide.max() > 255  # really 16-bit, not 8-bit values in a 16-bit container
    _assert_close(np.rint(wide / 257.0), _decode(eight))


# --- decoders and failures -----------------------------------------------------------------------


def test_rle_lossless_decodes_with_pydicom_and_equals_uncompressed():
    assert get_decoder(RLELossless).is_available
    plain, rle = _read("MR_small.dcm"), _read("MR_small_RLE.dcm")
    assert rle.file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(_single(rle), _single(plain))
    assert render(rle, _single(rle)).png == render(plain, _single(plain)).png


def test_jpeg2000_decodes_when_a_plugin_is_installed():
    if not get_decoder(JPEG2000Lossless).is_available:
        pytest.skip("no JPEG 2000 decoder plugin installed")
    j2k = _read("MR_small_jp2klossless.dcm")
    np.testing.assert_array_equal(_single(j2k), _raw(_read("MR_small.dcm"))[0])


def test_jpeg_ls_without_plugin_is_unsupported_before_decoding():
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder plugin is installed here")
    ds = _read("MR_small_jpeg_ls_lossless.dcm")
    with pytest.raises(PixelError) as caught:
        iter_frames(ds)  # raised by the call itself, not when the first frame is pulled
    error = caught.value
    assert error.code == "unsupported_transfer_syntax"
    assert "JPEG-LS Lossless" in error.detail and "1.2.840.10008.1.2.4.80" in error.detail
    assert "pylibjpeg" in error.detail and "gdcm" in error.detail
    assert str(error) == f"unsupported_transfer_syntax: {error.detail}"


def test_unknown_transfer_syntax_is_unsupported():
    ds = _read("MR_small.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    with pytest.raises(PixelError) as caught:
        iter_frames(ds)
    assert caught.value.code == "unsupported_transfer_syntax"
    assert "1.2.3.4.5.6.7" in caught.value.detail


def test_missing_pixel_data(tmp_path):
    ds = _read("MR_small.dcm")
    del ds.PixelData
    ds = _saved(ds, tmp_path / "nopixels.dcm")
    with pytest.raises(PixelError) as caught:
        iter_frames(ds)
    assert caught.value.code == "pixel_data_missing"


def test_truncated_native_pixel_data(tmp_path):
    ds = _read("MR_small.dcm")
    ds.PixelData = ds.PixelData[:-100]
    ds = _saved(ds, tmp_path / "truncated.dcm")
    frames = iter_frames(ds)
    with pytest.raises(PixelError) as caught:
        next(frames)
    assert caught.value.code == "pixel_decode_failed"
    with pytest.raises(PixelError) as caught:
        list(iter_frames(_read("MR_truncated.dcm")))
    assert caught.value.code == "pixel_decode_failed"


def test_corrupt_rle_frame_fails_only_when_reached():
    """Frames decode one at a time: a corrupt last frame does not stop the first ones."""
    pixels = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    ds = _new_dataset(pixels, "MONOCHROME2", frames=3)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    fragments = list(generate_frames(ds.PixelData, number_of_frames=3))
    ds.PixelData = encapsulate([*fragments[:2], b"\xff" * 10])
    np.testing.assert_array_equal(dict(iter_frames(ds, [1]))[1], pixels[1])
    frames = iter_frames(ds)
    assert [index for index, _ in (next(frames), next(frames))] == [0, 1]
    with pytest.raises(PixelError) as caught:
        next(frames)
    assert caught.value.code == "pixel_decode_failed" and "frame 2" in caught.value.detail


def test_unsupported_photometric():
    ds = _read("examples_rgb_color.dcm")
    stored = _single(ds)
    with pytest.raises(PixelError) as caught:
        render(ds, stored, photometric="HSV")
    assert caught.value.code == "unsupported_photometric"
    with pytest.raises(PixelError) as caught:
        render(ds, stored, photometric="MONOCHROME2")  # a colour frame is not grayscale
    assert caught.value.code == "unsupported_photometric"


# --- colour --------------------------------------------------------------------------------------


def test_palette_color_16bit_entries_to_rgb():
    ds = _read("examples_palette.dcm")
    raw = _raw(ds)[0]
    stored = _single(ds)
    np.testing.assert_array_equal(stored, raw)
    entries, first, bits = (int(v) for v in ds.RedPaletteColorLookupTableDescriptor)
    assert bits == 16
    channels = []
    for colour in ("Red", "Green", "Blue"):
        table = np.frombuffer(ds[f"{colour}PaletteColorLookupTableData"].value, dtype="<u2")
        channels.append(table[np.clip(raw.astype(np.int64) - first, 0, entries - 1)])
    expected = np.rint(np.stack(channels, axis=-1) / 257.0)
    frame = render(ds, stored)
    assert (frame.mode, frame.window, frame.photometric) == ("RGB", None, "PALETTE COLOR")
    np.testing.assert_array_equal(_decode(frame), expected)


@pytest.mark.parametrize("entry_bits", [8, 16])
def test_palette_color_built_tables(tmp_path, entry_bits):
    """Arbitrary 16-bit entries (v / 257, not v >> 8) and 8-bit entries stored in 16-bit words."""
    rng = np.random.default_rng(4)
    entries, first = 200, 20
    tables = rng.integers(0, 2**entry_bits, size=(3, entries), dtype=np.uint16)
    pixels = rng.integers(0, 256, size=(1, 24, 16), dtype=np.uint8)
    ds = _new_dataset(pixels, "PALETTE COLOR")
    for colour, table in zip(("Red", "Green", "Blue"), tables, strict=True):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [entries, first, entry_bits])
        setattr(ds, f"{colour}PaletteColorLookupTableData", table.astype("<u2").tobytes())
    ds = _saved(ds, tmp_path / f"palette{entry_bits}.dcm")
    index = np.clip(_raw(ds)[0].astype(np.int64) - first, 0, entries - 1)
    expected = np.stack([table[index] for table in tables], axis=-1).astype(np.float64)
    if entry_bits == 16:
        expected = np.rint(expected / 257.0)
    np.testing.assert_array_equal(_decode(render(ds, _single(ds))), expected)


@pytest.mark.parametrize("name", ["examples_rgb_color.dcm", "SC_rgb_small_odd.dcm"])
def test_rgb_native_stays_rgb(name):
    ds = _read(name)
    frame = render(ds, _single(ds), PixelOptions(bit_depth=16))  # 16-bit applies to grayscale only
    assert frame.mode == "RGB"
    np.testing.assert_array_equal(_decode(frame), _raw(ds)[0])


def test_rgb_16bit_planar_configuration_1_scaled_to_8bit(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 4096, size=(1, 12, 10, 3), dtype=np.uint16)
    ds = _saved(_new_dataset(pixels, "RGB", BitsStored=12, PlanarConfiguration=1), tmp_path / "rgb16.dcm")
    raw = _raw(ds)[0]
    np.testing.assert_array_equal(raw, pixels[0])
    frame = render(ds, _single(ds))
    np.testing.assert_array_equal(_decode(frame), np.rint(raw / 4095.0 * 255.0))


def _ybr_to_rgb(ybr: np.ndarray) -> np.ndarray:
    """PS3.3 C.7.6.3.1.2 YBR_FULL -> RGB."""
    y, cb, cr = (ybr[..., i].astype(np.float64) for i in range(3))
    rgb = np.stack(
        [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)],
        axis=-1,
    )
    return np.clip(np.rint(rgb), 0, 255)


def test_ybr_full_422_native_converted_to_rgb_once():
    ds = _read("SC_ybr_full_422_uncompressed.dcm")
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    # Native 4:2:2 stores Y1 Y2 Cb Cr for each horizontal pixel pair.
    quads = np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(ds.Rows, ds.Columns // 2, 4)
    ybr = np.empty((ds.Rows, ds.Columns, 3), dtype=np.uint8)
    ybr[:, 0::2, 0], ybr[:, 1::2, 0] = quads[..., 0], quads[..., 1]
    ybr[..., 1] = np.repeat(quads[..., 2], 2, axis=1)
    ybr[..., 2] = np.repeat(quads[..., 3], 2, axis=1)
    expected = _ybr_to_rgb(ybr)
    frame = render(ds, _single(ds))
    assert (frame.mode, frame.photometric) == ("RGB", "YBR_FULL_422")
    _assert_close(_decode(frame), expected)
    # The same values given as still-YBR (a raw decode) are converted by render, to the same picture.
    assert render(ds, ybr, photometric="YBR_FULL_422").png == frame.png


def test_ybr_full_round_trip_to_original_rgb(tmp_path):
    rgb = _raw(_read("examples_rgb_color.dcm"))[0].astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    ybr = np.stack(
        [
            0.299 * r + 0.587 * g + 0.114 * b,
            -0.168736 * r - 0.331264 * g + 0.5 * b + 128,
            0.5 * r - 0.418688 * g - 0.081312 * b + 128,
        ],
        axis=-1,
    )
    ybr = np.clip(np.rint(ybr), 0, 255).astype(np.uint8)[None]
    ds = _saved(_new_dataset(ybr, "YBR_FULL"), tmp_path / "ybr_full.dcm")
    out = _decode(render(ds, _single(ds)))
    diff = np.abs(out - rgb)
    assert diff.max() <= 3 and diff.mean() < 1.0  # rounding only: a second conversion would be far off


def test_ybr_jpeg_baseline_matches_the_codec_rgb():
    ds = _read("examples_ybr_color.dcm")
    if not get_decoder(ds.file_meta.TransferSyntaxUID).is_available:
        pytest.skip("no JPEG baseline decoder installed")
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    fragments = generate_frames(ds.PixelData, number_of_frames=frame_count(ds))
    for (_, stored), fragment in zip(iter_frames(ds, [0, 1]), fragments, strict=False):
        expected = np.asarray(Image.open(io.BytesIO(fragment)).convert("RGB"))
        out = _decode(render(ds, stored))
        assert np.abs(out - expected).max() <= 2


# --- output and options --------------------------------------------------------------------------


def test_png_bytes_are_deterministic():
    for name in ("CT_small.dcm", "examples_palette.dcm"):
        first = render(_read(name), _single(_read(name)), PixelOptions(bit_depth=16))
        second = render(_read(name), _single(_read(name)), PixelOptions(bit_depth=16))
        assert first.png == second.png
        assert first == second


def test_compress_level_changes_size_not_pixels():
    ds = _read("CT_small.dcm")
    stored = _single(ds)
    fast, small = (render(ds, stored, PixelOptions(png_compress_level=level)) for level in (0, 9))
    assert len(fast.png) > len(small.png)
    np.testing.assert_array_equal(_decode(fast), _decode(small))


def test_encode_png_modes():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    wide = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4).astype(">u2")
    colour = np.arange(36, dtype=np.uint8).reshape(3, 4, 3)
    for array, mode in ((gray, "L"), (wide, "I;16"), (colour, "RGB")):
        image = Image.open(io.BytesIO(encode_png(array)))
        assert image.mode == mode
        np.testing.assert_array_equal(np.asarray(image), array)
    with pytest.raises(ValueError):
        encode_png(np.zeros((3, 4), dtype=np.float32))


def test_pixel_options_are_validated():
    for bad in ({"bit_depth": 12}, {"window": "soft"}, {"window": "preset:nope"}, {"png_compress_level": 10}):
        with pytest.raises(ValueError):
            PixelOptions(**bad)
    assert PixelOptions(window="preset:bone").window == "preset:bone"


def test_describe_transfer_syntax_and_frame_count():
    assert (
        describe_transfer_syntax(_read("CT_small.dcm")) == "Explicit VR Little Endian (1.2.840.10008.1.2.1)"
    )
    assert describe_transfer_syntax(_read("MR_small_RLE.dcm")) == "RLE Lossless (1.2.840.10008.1.2.5)"
    assert frame_count(_read("CT_small.dcm")) == 1
    ds = _new_dataset(np.zeros((1, 2, 2), np.uint8), "MONOCHROME2", sop_class=CTImageStorage)
    ds.NumberOfFrames = 0
    assert frame_count(ds) == 1
