"""Match a JATS ``<graphic xlink:href>`` to the image file that holds it.

PMC writes hrefs without an extension (``crr-16-1012-g001``) and ships several renditions of each
figure: the full-size ``.jpg`` (or ``.tif``/``.png``) and a small ``.gif`` thumbnail. We take the
largest rendition by pixel area, read from the image header only, so thumbnails never become samples.

Sizes are what Pillow's ``Image.open(...).size`` says. For the JPEG and GIF files that make up nearly
all renditions, a strict reader of the same header bytes answers first (Pillow's plugins parse them
byte by byte in Python, which was most of the sizing time); anything it does not fully recognise goes
to Pillow, so the answer never differs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO

from PIL import Image

from medcurate.sources.pmc.archive import IMAGE_EXTENSIONS

#: No extension is a suffix of another (".tif" vs ".tiff"), so at most one matches a name.
_EXTENSIONS = frozenset(IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    size: int

    @property
    def area(self) -> int:
        return self.width * self.height


def _split(name: str) -> tuple[str, bool]:
    """(lower-cased basename without its image extension, whether it had one).

    The extension is whatever follows the basename's last dot, looked up in a set: the same answer
    as trying every extension with ``endswith``, since each extension is a dot and no further dot.
    """
    base = name.replace("\\", "/").rpartition("/")[2]  # what posixpath.basename returns
    lower = base.lower()
    dot = lower.rfind(".")
    if dot >= 0 and lower[dot:] in _EXTENSIONS:
        return lower[:dot], True
    return lower, False


def stem(name: str) -> str:
    """The name a rendition is matched by: basename, lower-cased, without an image extension."""
    return _split(name)[0]


def group_by_stem(files: Mapping[str, bytes]) -> dict[str, dict[str, bytes]]:
    """The image files of ``files`` by ``stem``: ``renditions(href, groups.get(stem(href), {}))`` gives
    what ``renditions(href, files)`` does while looking only at that figure's own candidates."""
    groups: dict[str, dict[str, bytes]] = {}
    for name, data in files.items():
        key, is_image = _split(name)
        if is_image:
            groups.setdefault(key, {})[name] = data
    return groups


def _dimensions(data: bytes) -> tuple[int, int]:
    """Width and height from the header; (0, 0) when unreadable (the normalize stage says why later).

    Callers silence Pillow's warnings around it, once for all their candidates.
    """
    size = header_size(data)
    if size is not None:
        return size
    try:
        with Image.open(BytesIO(data)) as im:
            return im.size
    except Exception:  # any decoder error: rank it last, do not fail here
        return 0, 0


# -- header sizes without Pillow -------------------------------------------------------------------
#
# Each reader follows the reads Pillow's plugin makes (JpegImageFile._open, GifImageFile._open and
# _seek(0), as of Pillow 13) and gives up (None) wherever Pillow would raise, warn, skip stray bytes,
# or read more than the header (EXIF, ICC profiles, Photoshop resources, MPO, GIF disposal), leaving
# those files to it. tests/test_pmc_graphics.py compares every answer with the installed Pillow's.

#: JPEG markers Pillow reads as a frame header (SOFn and DHP), and those it only reads past.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xDE})
_JPEG_SKIP = frozenset({0xC4, 0xCC, 0xDC, 0xDD, 0xDF, 0xFE})  # DHT, DAC, DNL, DRI, EXP, COM
_JPEG_SOS, _JPEG_DQT = 0xDA, 0xDB
#: APPn payloads Pillow parses beyond storing them: left to Pillow.
_APP_PARSED = ((0xE1, b"Exif\0\0"), (0xE2, b"ICC_PROFILE\0"), (0xE2, b"MPF\0"), (0xED, b"Photoshop 3.0\0"))
#: APPn payloads from which Pillow reads a 16-bit version at offset 5.
_APP_VERSIONED = ((0xE0, b"JFIF"), (0xEE, b"Adobe"))


def header_size(data: bytes) -> tuple[int, int] | None:
    """``Image.open(BytesIO(data)).size`` for a JPEG or GIF whose header a strict reader accepts;
    None for anything else (the caller asks Pillow)."""
    if data.startswith(b"\xff\xd8\xff"):
        plugin, size = "JPEG", _jpeg_size(data)
    elif data.startswith((b"GIF87a", b"GIF89a")):
        plugin, size = "GIF", _gif_size(data)
    else:
        return None
    if size is None or min(size) <= 0 or _over_pixel_limit(size) or not _tried_first(plugin, data[:16]):
        return None
    return size


def _over_pixel_limit(size: tuple[int, int]) -> bool:
    """Whether Pillow's decompression-bomb check would warn or refuse (both left to Pillow)."""
    limit = Image.MAX_IMAGE_PIXELS
    return limit is not None and max(1, size[0]) * max(1, size[1]) > limit


def _tried_first(plugin: str, prefix: bytes) -> bool:
    """Whether ``Image.open`` would hand these bytes to ``plugin`` first: every plugin registered
    before it has an accept check that refuses ``prefix`` (one without a check would be tried)."""
    try:
        for name in Image.ID:
            if name == plugin:
                return True
            accept = Image.OPEN[name][1]
            if accept is None or accept(prefix):
                return False
    except Exception:  # an odd registry: let Pillow sort it out
        return False
    return False


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The frame size of a JPEG whose segments, from the first marker to the start of scan, are all
    well-formed and of kinds Pillow only stores or checks."""
    size = None
    pos, end_of_data = 2, len(data)  # Pillow reads the marker after the 0xFF at offset 2
    while pos + 4 <= end_of_data and data[pos] == 0xFF:
        marker = data[pos + 1]
        end = pos + 2 + (data[pos + 2] << 8 | data[pos + 3])
        if end < pos + 4 or end > end_of_data:  # a length below 2, or a segment cut short
            return None
        if marker == _JPEG_SOS:
            return size
        payload = data[pos + 4 : end]
        if marker in _JPEG_SOF:
            size = _sof_size(payload)
            if size is None:
                return None
        elif marker == _JPEG_DQT:
            if not _dqt_well_formed(payload):
                return None
        elif 0xE0 <= marker <= 0xEF:
            if not _app_stored_only(marker, payload):
                return None
        elif marker not in _JPEG_SKIP:
            return None
        pos = end
    return None  # stray bytes, or no start of scan


def _sof_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) of a frame header Pillow accepts: 8-bit, 1, 3 or 4 components, whole
    3-byte component entries."""
    if len(payload) < 6 or payload[0] != 8 or payload[5] not in (1, 3, 4) or (len(payload) - 6) % 3:
        return None
    return payload[3] << 8 | payload[4], payload[1] << 8 | payload[2]


def _dqt_well_formed(payload: bytes) -> bool:
    """Whether the quantization tables fill the segment exactly (Pillow refuses one cut short)."""
    pos = 0
    while pos < len(payload):
        pos += 65 if payload[pos] < 16 else 129  # 64 entries of 8 or 16 bits, after a 1-byte id
    return pos == len(payload)


def _app_stored_only(marker: int, payload: bytes) -> bool:
    """Whether Pillow only stores this APPn payload (and reads nothing from it that can fail)."""
    for app, prefix in _APP_VERSIONED:
        if marker == app and payload.startswith(prefix):
            return len(payload) >= 7
    return not any(marker == app and payload.startswith(prefix) for app, prefix in _APP_PARSED)


def _gif_size(data: bytes) -> tuple[int, int] | None:
    """The size Pillow gives a GIF: the logical screen, grown to the first image's extent."""
    if len(data) < 13:
        return None
    width, height = data[6] | data[7] << 8, data[8] | data[9] << 8
    pos = _after_palette(data, 13, data[10])
    while pos is not None and pos < len(data):
        introducer = data[pos]
        if introducer == 0x21:  # "!": an extension
            pos = _after_extension(data, pos + 1)
        elif introducer == 0x2C:  # ",": the first image descriptor
            descriptor = data[pos + 1 : pos + 10]
            if len(descriptor) < 9:
                return None
            right = int.from_bytes(descriptor[0:2], "little") + int.from_bytes(descriptor[4:6], "little")
            bottom = int.from_bytes(descriptor[2:4], "little") + int.from_bytes(descriptor[6:8], "little")
            pos = _after_palette(data, pos + 10, descriptor[8])
            if pos is None or pos >= len(data):  # Pillow then reads the LZW code size byte
                return None
            return max(width, right), max(height, bottom)
        else:  # the trailer before any image, or stray bytes Pillow would skip
            return None
    return None  # the data ends before an image


def _after_palette(data: bytes, pos: int, flags: int) -> int | None:
    """Where the colour table that ``flags`` announces ends; None when the data ends first."""
    if flags & 128:
        pos += 3 << ((flags & 7) + 1)
    return pos if pos <= len(data) else None


def _gif_block(data: bytes, pos: int) -> tuple[bytes | None, int]:
    """Pillow's ``GifImageFile.data()`` at ``pos``: the next data sub-block (None for a zero length
    or the end of the data; short when the data ends inside it), and where reading goes on."""
    if pos >= len(data) or not data[pos]:
        return None, min(pos + 1, len(data))
    end = pos + 1 + data[pos]
    return data[pos + 1 : end], min(end, len(data))


def _after_extension(data: bytes, pos: int) -> int | None:
    """Where Pillow goes on after the extension whose label is at ``pos``; None for a graphic control
    extension it cannot read or that asks for disposal (Pillow then prepares a fill)."""
    if pos >= len(data):
        return None
    label = data[pos]
    block, pos = _gif_block(data, pos + 1)
    if label == 0xFE:  # comment: its blocks up to an empty one, and nothing more
        while block:
            block, pos = _gif_block(data, pos)
        return pos
    if label == 0xF9 and block is not None and (len(block) < 4 or (block[0] >> 2) & 7 >= 2):
        return None
    if label == 0xFF and block is not None and block.startswith(b"NETSCAPE2.0"):
        block, pos = _gif_block(data, pos)  # the loop count
    while True:  # Pillow: while self.data(): pass
        block, pos = _gif_block(data, pos)
        if not block:
            return pos


def figure_renditions(
    graphics: Sequence[Sequence[str]], groups: Mapping[str, Mapping[str, bytes]]
) -> list[list[Rendition]]:
    """For each figure's hrefs, ``[r for href in hrefs for r in renditions(href, groups.get(stem(href),
    {}))]``, with ``groups`` from ``group_by_stem``.

    Every candidate's header is read once, all of them in one pass, one image format after another
    (by extension, then name): the decoders' code and tables stay warm, which in a full ingest run
    (where parsing and hashing run between images) saves a good part of the header reading.
    """
    wanted = [[groups.get(stem(href), {}) for href in hrefs] for hrefs in graphics]
    names = {name: data for candidates in wanted for group in candidates for name, data in group.items()}
    order = sorted(names, key=lambda name: (name.rpartition(".")[2].lower(), name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sizes = {name: _dimensions(names[name]) for name in order}
    result = []
    for candidates in wanted:
        found = []
        for group in candidates:
            ranked = [Rendition(name, *sizes[name], len(data)) for name, data in group.items()]
            found.extend(sorted(ranked, key=lambda r: (-r.area, -r.size, r.name)))
        result.append(found)
    return result


def renditions(href: str, files: Mapping[str, bytes]) -> list[Rendition]:
    """Every file that is a rendition of ``href``, largest first (then bytes, then name, for ties)."""
    wanted = stem(href)
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, data in files.items():
            key, is_image = _split(name)
            if is_image and key == wanted:
                width, height = _dimensions(data)
                found.append(Rendition(name, width, height, len(data)))
    return sorted(found, key=lambda r: (-r.area, -r.size, r.name))
