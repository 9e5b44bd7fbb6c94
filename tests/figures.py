"""Small synthetic figures for dedup tests: distinct per seed, real PNG files."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def figure(seed: int, size: int = 96) -> Image.Image:
    """A flat background with four coloured discs placed by ``seed``: different seeds give images far
    apart in every hash, the same seed gives the same pixels."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    disc = size * 30 // 96
    for _ in range(4):
        x, y = (int(v) for v in rng.integers(0, size - 36 * size // 96, 2))
        draw.ellipse((x, y, x + disc, y + disc), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return image


def save_png(image: Image.Image, path: Path, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = BytesIO()
    image.save(buffer, "PNG", **options)
    path.write_bytes(buffer.getvalue())
