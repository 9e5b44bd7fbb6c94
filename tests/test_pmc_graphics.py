"""Rendition sizes read from JPEG and GIF headers without Pillow must be exactly what Pillow says.

``graphics.header_size`` answers for the files it fully recognises and returns None for the rest (which
then go to ``Image.open``); here every answer it gives is compared with Pillow's, over images Pillow
writes in many variants and over truncated and corrupted copies of them.
"""

from __future__ import annotations

import io
import random
import struct
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from medcurate.sources.pmc import graphics
from medcurate.sources.pmc.graphics import _dimensions, header_size


def pillow_size(data: bytes) -> tuple[int, int]:
    """What sizing said before the header readers existed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except Exception:
            return 0, 0


def save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def noisy(mode: str, size: tuple[int, int]) -> Image.Image:
    data = bytes((i * 7919) % 251 for i in range(size[0] * size[1]))
    return Image.frombytes("L", size, data).convert(mode)


def jpegs() -> Iterator[bytes]:
    for mode in ("L", "RGB", "CMYK"):
        for size in ((1, 1), (37, 5), (320, 200)):
            image = noisy(mode, size)
            for options in (
                {},
                {"progressive": True},
                {"optimize": True, "quality": 20},
                {"dpi": (300, 300)},
                {"comment": b"scale bar 1 cm"},
                {"subsampling": 0, "restart_marker_blocks": 2},
                {"exif": Image.Exif().tobytes()},  # left to Pillow
                {"icc_profile": bytes(300)},  # left to Pillow
            ):
                yield save(image, "JPEG", **options)


def gifs() -> Iterator[bytes]:
    for mode in ("P", "L", "RGB", "1"):
        for size in ((1, 1), (31, 7), (160, 90)):
            image = noisy(mode, size)
            for options in (
                {},
                {"transparency": 0},
                {"comment": b"c" * 300},
                {"interlace": False},
                {"disposal": 1},
                {"disposal": 2},  # left to Pillow
                {"save_all": True, "append_images": [image.copy()], "duration": 80, "loop": 0},
            ):
                yield save(image, "GIF", **options)


def gif(
    exts: bytes = b"", screen: tuple[int, int] = (10, 10), frame: tuple[int, ...] = (0, 0, 10, 10)
) -> bytes:
    """A minimal GIF89a with a global palette, the given extensions and one image."""
    header = b"GIF89a" + struct.pack("<HH", *screen) + bytes([0x80, 0, 0]) + bytes(6)
    return header + exts + b"," + struct.pack("<HHHH", *frame) + b"\x00\x02\x02\x44\x01\x00;"


HANDMADE = [
    gif(),
    gif(frame=(6, 4, 10, 10)),  # the first image reaches past the screen: Pillow grows the size
    gif(screen=(0, 0)),
    gif(exts=b"!\xf9\x04\x01\x0a\x00\x00\x00"),  # graphic control with transparency
    gif(exts=b"!\xf9\x02\x01\x0a\x00"),  # one too short for Pillow
    gif(exts=b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"),  # loop count
    gif(exts=b"!\xff\x0bNETSCAPE2.0\x00"),  # loop block missing: Pillow reads on into the image
    gif(exts=b"!\xfe\x03abc\x02de\x00"),  # comment in two blocks
    gif(exts=b"!\x01\x00"),  # an extension whose first block is empty
    gif(exts=b"\x00"),  # a stray byte Pillow skips
    gif(exts=b";"),  # the trailer before any image
    b"GIF89a\x0a\x00\x0a\x00\x00\x00\x00",  # no image at all
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9",  # no frame header
]


def corpus() -> list[bytes]:
    return [*jpegs(), *gifs(), *HANDMADE]


def mutations(data: bytes, rng: random.Random, count: int) -> Iterator[bytes]:
    """Cuts anywhere in the first 600 bytes and at random, and random byte edits in the header."""
    for cut in {*range(0, min(len(data), 600), 7), *rng.sample(range(len(data) + 1), min(len(data), 8))}:
        yield data[:cut]
    head = min(len(data), 700)
    for _ in range(count):
        edited = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(head)
            if rng.random() < 0.8:
                edited[at] = rng.randrange(256)
            else:
                edited[at:at] = bytes([rng.randrange(256)])
        yield bytes(edited)


def test_header_sizes_are_pillows_sizes() -> None:
    for data in corpus():
        size = header_size(data)
        assert size is None or size == pillow_size(data)
        assert _dimensions(data) == pillow_size(data)


def test_the_renditions_pmc_ships_are_sized_without_pillow() -> None:
    image = noisy("RGB", (320, 200))
    assert header_size(save(image, "JPEG", quality=90)) == (320, 200)
    assert header_size(save(image, "JPEG", progressive=True, comment=b"x")) == (320, 200)
    assert header_size(save(image.resize((80, 50)), "GIF", comment=b"thumbnail")) == (80, 50)
    assert header_size(save(image.convert("L"), "GIF", transparency=0)) == (320, 200)


def test_header_sizes_of_cut_and_corrupted_headers_are_pillows_or_none() -> None:
    rng = random.Random(20240611)
    checked = 0
    for data in corpus():
        for mutated in mutations(data, rng, count=25):
            size = header_size(mutated)
            if size is not None:
                checked += 1
                assert size == pillow_size(mutated), mutated[:64]
    assert checked > 1000


@pytest.mark.parametrize("data", [save(noisy("RGB", (40, 30)), "JPEG"), gif()], ids=["jpeg", "gif"])
def test_a_plugin_pillow_would_try_first_sends_the_file_to_pillow(
    monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    assert header_size(data) is not None
    monkeypatch.setattr(Image, "ID", ["ANYTHING", *Image.ID])
    monkeypatch.setitem(Image.OPEN, "ANYTHING", (lambda fp, filename: None, None))  # no accept check
    assert header_size(data) is None


def test_sizes_over_pillows_pixel_limit_go_to_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    data = save(noisy("L", (64, 64)), "JPEG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert header_size(data) is None
    assert _dimensions(data) == pillow_size(data) == (0, 0)  # more than twice the limit: refused


def test_formats_without_a_header_reader_go_to_pillow() -> None:
    png = save(noisy("RGB", (12, 8)), "PNG")
    tif = save(noisy("RGB", (12, 8)), "TIFF")
    assert header_size(png) is None and header_size(tif) is None
    assert _dimensions(png) == _dimensions(tif) == (12, 8)
    assert graphics.stem("P/x-g001.TIF") == "x-g001"
