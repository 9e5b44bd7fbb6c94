"""NormalizeStage, run through the real stage contract on images made here with Pillow and numpy."""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from medcurate.hashing import sha256_bytes
from medcurate.schemas.record import new_record, to_batch
from medcurate.stages.base import Quarantine, StageContext, run_map_stage
from medcurate.stages.normalize import NormalizeStage

CTX = StageContext(run_id="t")


def encode(im: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth-ish random image: JPEG-friendly, but not constant."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def bilevel_png(width: int, height: int, rows: bool = True) -> bytes:
    """A real 1-bit grayscale PNG of any declared size; all-black rows compress to almost nothing.

    With ``rows=False`` the IDAT is empty: the header is valid, the pixels cannot be decoded.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    idat = b""
    if rows:
        packer = zlib.compressobj(9)
        row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits
        idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def run(raw: bytes | None, params: dict | None = None, image: dict | None = None):
    record = new_record("x-1", image=image if image is not None else {"bytes": raw})
    return run_map_stage(NormalizeStage(params or {}), to_batch([record]), CTX)


def kept(raw: bytes, params: dict | None = None) -> dict:
    result = run(raw, params)
    assert result.excluded.num_rows == 0, result.excluded.column("status_reason").to_pylist()
    (record,) = result.kept.to_pylist()
    assert record["status"] == "active"
    event = record["lineage"][-1]
    assert (event["stage"], event["decision"]) == ("normalize", "kept")
    return record


def excluded(raw: bytes | None, params: dict | None = None, image: dict | None = None) -> dict:
    result = run(raw, params, image)
    assert result.kept.num_rows == 0
    (record,) = result.excluded.to_pylist()
    event = record["lineage"][-1]
    assert (event["stage"], event["decision"], event["reason"]) == (
        "normalize",
        record["status"],
        record["status_reason"],
    )
    assert record["status_stage"] == "normalize"
    return record


def pixels(record: dict) -> np.ndarray:
    return np.asarray(Image.open(BytesIO(record["image"]["bytes"])))


def details(record: dict) -> dict:
    raw = record["lineage"][-1]["details"]
    return json.loads(raw) if raw else {}


# 1. decompression bombs, refused from the header


def test_bomb_over_max_pixels_is_quarantined():
    record = excluded(bilevel_png(8000, 8000), {"max_pixels": 10_000_000})
    assert record["status"] == "quarantined"
    assert record["status_reason"] == (
        "decompression_bomb: 8000x8000 = 64000000 pixels exceeds limit 10000000"
    )


def test_bomb_is_refused_before_pixels_are_decoded():
    # Undecodable pixels behind a valid huge header: a decode attempt would say corrupt_image.
    record = excluded(bilevel_png(8000, 8000, rows=False), {"max_pixels": 1_000_000})
    assert record["status_reason"].startswith("decompression_bomb: 8000x8000 = 64000000 pixels")
    assert excluded(bilevel_png(64, 64, rows=False))["status_reason"].startswith("corrupt_image: ")


@pytest.mark.parametrize("side", [20000, 9500])  # Pillow's error (> 2x its limit) and its warning (> 1x)
def test_pillow_own_bomb_guard_becomes_quarantine(side):
    filters_before, limit_before = list(warnings.filters), Image.MAX_IMAGE_PIXELS
    record = excluded(bilevel_png(side, side), {"max_pixels": 10**12})
    assert record["status"] == "quarantined"
    assert record["status_reason"].startswith("decompression_bomb: Pillow: ")
    assert (warnings.filters, Image.MAX_IMAGE_PIXELS) == (filters_before, limit_before)


# 2. unreadable input


def truncated(fmt: str) -> bytes:
    raw = encode(noise((128, 128)), fmt)
    return raw[: len(raw) // 2]


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"not an image at all", truncated("JPEG"), truncated("PNG")],
    ids=["missing", "empty", "garbage", "truncated-jpeg", "truncated-png"],
)
def test_unreadable_bytes_are_quarantined(raw):
    record = excluded(raw)
    assert record["status"] == "quarantined"
    assert record["status_reason"].startswith("corrupt_image: ")


def test_record_without_image_group_is_quarantined():
    assert excluded(None, image={})["status_reason"] == "corrupt_image: no image bytes"


def test_truncated_jpeg_reason_carries_pillow_error():
    assert "truncated" in excluded(truncated("JPEG"))["status_reason"]


def test_file_over_max_file_bytes_is_quarantined():
    raw = encode(noise((64, 64)))
    record = excluded(raw, {"max_file_bytes": 100})
    assert record["status_reason"] == f"file_too_large: {len(raw)} bytes exceeds limit 100"


# 3. EXIF orientation


def test_exif_orientation_6_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    record = kept(encode(noise((80, 40)), "JPEG", exif=exif.tobytes()))
    image = record["image"]
    assert (image["width"], image["height"]) == (40, 80)
    assert (image["source_width"], image["source_height"]) == (80, 40)
    assert details(record)["exif_orientation"] == 6
    assert "exif" not in Image.open(BytesIO(image["bytes"])).info


# 4. modes


def test_16bit_grayscale_is_scaled_from_its_own_range_not_clipped():
    values = np.linspace(1000, 3000, 64 * 48).reshape(48, 64).astype(np.uint16)
    raw = encode(Image.fromarray(values))
    assert Image.open(BytesIO(raw)).mode == "I;16"
    record = kept(raw)
    image = record["image"]
    assert (image["mode"], image["bits"], image["format"], image["source_mode"]) == ("L", 8, "png", "I;16")
    expected = np.rint((values.astype(np.float64) - 1000) * (255 / 2000)).astype(np.uint8)
    np.testing.assert_array_equal(pixels(record), expected)
    assert details(record)["mode"] == ["I;16", "L"]


def test_16bit_big_endian_tiff_is_scaled():
    values = np.arange(32 * 40, dtype=np.uint16).reshape(40, 32) * 7 + 500
    im = Image.frombytes("I;16B", (32, 40), values.astype(">u2").tobytes())
    record = kept(encode(im, "TIFF"))
    out = pixels(record)
    assert (record["image"]["source_format"], out.min(), out.max()) == ("tiff", 0, 255)
    assert out[0, 0] == 0 and out[-1, -1] == 255


def test_constant_16bit_image_becomes_zeros():
    record = kept(encode(Image.fromarray(np.full((40, 40), 4000, np.uint16))))
    assert not pixels(record).any()


def test_keep_16bit_keeps_values_in_16bit_png():
    values = np.linspace(1000, 60000, 40 * 50).reshape(50, 40).astype(np.uint16)
    record = kept(encode(Image.fromarray(values)), {"keep_16bit": True, "grayscale_format": "jpeg"})
    image = record["image"]
    assert (image["mode"], image["bits"], image["format"]) == ("I;16", 16, "png")
    np.testing.assert_array_equal(pixels(record), values)
    assert len(image["phash"]) == 16


def test_float_tiff_is_scaled_to_l():
    values = np.linspace(-1.5, 2.5, 40 * 40, dtype=np.float32).reshape(40, 40)
    record = kept(encode(Image.fromarray(values), "TIFF"))
    out = pixels(record)
    assert (record["image"]["mode"], record["image"]["source_mode"]) == ("L", "F")
    assert (out.min(), out.max()) == (0, 255)


def test_gif_palette_with_transparency_is_composited_to_rgb():
    im = Image.new("P", (40, 40), 0)
    im.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
    im.paste(1, (0, 0, 20, 40))
    record = kept(encode(im, "GIF", transparency=0), {"color_format": "png"})
    image = record["image"]
    assert (image["source_format"], image["source_mode"], image["mode"]) == ("gif", "P", "RGB")
    out = pixels(record)
    assert tuple(out[5, 5]) == (200, 10, 20)
    assert tuple(out[5, 30]) == (255, 255, 255)  # transparent index over the default white background


def test_rgba_png_is_composited_over_background():
    im = Image.new("RGBA", (40, 40), (255, 0, 0, 128))
    record = kept(encode(im), {"color_format": "png"})
    assert record["image"]["mode"] == "RGB"
    assert tuple(pixels(record)[0, 0]) == (255, 127, 127)
    black = kept(encode(im), {"color_format": "png", "alpha_background": [0, 0, 0]})
    assert tuple(pixels(black)[0, 0]) == (128, 0, 0)


def test_la_and_bilevel_become_l():
    la = kept(encode(Image.new("LA", (40, 40), (100, 0))))
    assert (la["image"]["mode"], pixels(la)[0, 0]) == ("L", 255)
    bilevel = kept(encode(Image.new("1", (40, 40), 1)))
    image = bilevel["image"]
    assert (image["mode"], image["source_mode"], pixels(bilevel)[0, 0]) == ("L", "1", 255)


def test_cmyk_becomes_rgb_and_gray_looking_rgb_stays_rgb():
    cmyk = kept(encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG"))
    image = cmyk["image"]
    assert (image["mode"], image["source_mode"], image["format"]) == ("RGB", "CMYK", "jpeg")
    gray_rgb = kept(encode(Image.new("RGB", (40, 40), (90, 90, 90)), "PNG"))
    assert (gray_rgb["image"]["mode"], gray_rgb["image"]["format"]) == ("RGB", "jpeg")


# 5. resizing


def test_downscale_keeps_aspect_ratio_and_rounds():
    record = kept(encode(noise((300, 100), "L")), {"max_side": 64})
    image = record["image"]
    assert (image["width"], image["height"]) == (64, 21)  # 100 * 64 / 300 = 21.33
    assert (image["source_width"], image["source_height"]) == (300, 100)
    assert details(record) == {"resized": [300, 100, 64, 21]}


def test_never_upscales_and_unchanged_image_has_no_details():
    record = kept(encode(noise((40, 50), "L")), {"max_side": 1024})
    assert (record["image"]["width"], record["image"]["height"]) == (40, 50)
    assert record["lineage"][-1]["details"] is None


def test_large_jpeg_downscale_is_exact_and_deterministic():
    raw = encode(noise((1001, 333)), "JPEG", quality=95)
    first, second = kept(raw, {"max_side": 200}), kept(raw, {"max_side": 200})
    assert (first["image"]["width"], first["image"]["height"]) == (200, 67)
    assert first["image"]["bytes"] == second["image"]["bytes"]


def test_too_small_is_filtered():
    record = excluded(encode(noise((100, 20))))
    assert record["status"] == "filtered"
    assert record["status_reason"] == "too_small: 100x20 has a side below min_side 32"


# 6-7. encoding and record fields


def test_record_fields_and_hashes():
    record = kept(encode(noise((64, 48), "L"), "TIFF"))
    image = record["image"]
    assert image["format"] == "png" and image["source_format"] == "tiff"
    assert image["sha256"] == sha256_bytes(image["bytes"])
    decoded = Image.open(BytesIO(image["bytes"]))
    assert decoded.format == "PNG" and decoded.size == (64, 48)
    assert image["pixel_sha256"] == sha256_bytes(b"L|64|48|" + decoded.tobytes())
    assert len(image["phash"]) == 16 and int(image["phash"], 16) >= 0


def test_jpeg_output_carries_no_metadata():
    exif = Image.Exif()
    exif[0x010F] = "scanner"  # Make
    raw = encode(noise((64, 64)), "JPEG", exif=exif.tobytes(), icc_profile=b"\0" * 128, dpi=(300, 300))
    assert {"exif", "icc_profile", "dpi"} <= set(Image.open(BytesIO(raw)).info)
    out = Image.open(BytesIO(kept(raw)["image"]["bytes"]))
    assert out.format == "JPEG"
    assert not {"exif", "icc_profile", "dpi"} & set(out.info)


def test_formats_follow_params():
    params = {"grayscale_format": "jpeg", "color_format": "png"}
    assert kept(encode(noise((40, 40), "L")), params)["image"]["format"] == "jpeg"
    assert kept(encode(noise((40, 40))), params)["image"]["format"] == "png"


def test_bad_format_param_is_a_bug_not_a_quarantine():
    with pytest.raises(ValueError, match="color_format"):
        run(encode(noise((40, 40))), {"color_format": "webp"})


# 9. determinism


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_same_input_gives_identical_output(fmt):
    raw = encode(noise((120, 90)), fmt)
    first, second = kept(raw, {"max_side": 64}), kept(raw, {"max_side": 64})
    assert first["image"] == second["image"]
    assert first["lineage"][-1] == second["lineage"][-1]


def test_apply_directly():
    stage = NormalizeStage({"max_side": 32})
    record, facts = stage.apply(new_record("x-1", image={"bytes": encode(noise((64, 64)))}), CTX)
    assert (record["image"]["width"], facts) == (32, {"resized": [64, 64, 32, 32]})
    with pytest.raises(Quarantine):
        stage.apply(new_record("x-2", image={"bytes": b"junk"}), CTX)
