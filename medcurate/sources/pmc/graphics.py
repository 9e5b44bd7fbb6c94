"""Match a JATS ``<graphic xlink:href>`` to the image file that holds it.

PMC writes hrefs without an extension (``crr-16-1012-g001``) and ships several renditions of each
figure: the full-size ``.jpg`` (or ``.tif``/``.png``) and a small ``.gif`` thumbnail. We take the
largest rendition by pixel area, read from the image header only, so thumbnails never become samples.
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
    try:
        with Image.open(BytesIO(data)) as im:
            return im.size
    except Exception:  # any decoder error: rank it last, do not fail here
        return 0, 0


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
