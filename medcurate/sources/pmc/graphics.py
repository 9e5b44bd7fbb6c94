"""Match a JATS ``<graphic xlink:href>`` to the image file that holds it.

PMC writes hrefs without an extension (``crr-16-1012-g001``) and ships several renditions of each
figure: the full-size ``.jpg`` (or ``.tif``/``.png``) and a small ``.gif`` thumbnail. We take the
largest rendition by pixel area, read from the image header only, so thumbnails never become samples.
"""

from __future__ import annotations

import posixpath
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO

from PIL import Image

from medcurate.sources.pmc.archive import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    size: int

    @property
    def area(self) -> int:
        return self.width * self.height


def _stem(name: str) -> str:
    base = posixpath.basename(name.replace("\\", "/"))
    lower = base.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext):
            return lower[: -len(ext)]
    return lower


def _dimensions(data: bytes) -> tuple[int, int]:
    """Width and height from the header; (0, 0) when unreadable (the normalize stage says why later)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(BytesIO(data)) as im:
                return im.size
    except Exception:  # any decoder error: rank it last, do not fail here
        return 0, 0


def renditions(href: str, files: Mapping[str, bytes]) -> list[Rendition]:
    """Every file that is a rendition of ``href``, largest first (then bytes, then name, for ties)."""
    wanted = _stem(href)
    found = []
    for name, data in files.items():
        if name.lower().endswith(IMAGE_EXTENSIONS) and _stem(name) == wanted:
            width, height = _dimensions(data)
            found.append(Rendition(name, width, height, len(data)))
    return sorted(found, key=lambda r: (-r.area, -r.size, r.name))
