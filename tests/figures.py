"""Small synthetic figures for tests (distinct per seed, real PNG files), and a tiny real release."""

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


def labeled_release(
    root: Path, name: str, images: dict[str, list[bytes]], stages: dict, shard_max_count: int
):
    """A real release (``curate``, Prefect) of a labeled image folder: one class folder per key of
    ``images``, licensed cc0, modality XR, with ``stages`` after normalize and label_text."""
    from medcurate.pipelines.flow import curate

    corpus = root / "corpus"
    for class_name, blobs in images.items():
        (corpus / class_name).mkdir(parents=True)
        for i, blob in enumerate(blobs):
            (corpus / class_name / f"img{i}.png").write_bytes(blob)
    config = {
        "name": name,
        "sources": [
            {
                "name": "xr",
                "kind": "labeled",
                "uri": str(corpus),
                "params": {"license": "cc0", "modality": "XR"},
            }
        ],
        "stages": {
            "normalize": {"max_side": 256, "min_side": 32},
            "label_text": {"template": "labels.generic"},
            **stages,
        },
        "release": {"name": name, "shard_max_count": shard_max_count},
    }
    return curate(config, str(root / "lake"))
