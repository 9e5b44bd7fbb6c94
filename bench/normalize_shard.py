"""Benchmark: ingest + normalize + shard through medcurate vs a plain Pillow + tarfile loop.

Both sides process the same generated images with the same decode, resize and encode settings in one
process (one core), so the ratio shows what the pipeline's bookkeeping costs: records, schema checks,
lineage, lake parts, catalogue, manifest and checksums. Target: medcurate within 1.3x of the baseline.

    python bench/normalize_shard.py [--images 400] [--side 1024]
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from medcurate.config import PipelineConfig
from medcurate.engines import make_engine
from medcurate.lake import Lake
from medcurate.release.builder import ReleaseSettings, build_release
from medcurate.steps import iter_sorted_records, plan_run, run_stages

MAX_SIDE, QUALITY = 512, 90


def make_images(folder: Path, count: int, side: int) -> list[Path]:
    """Half RGB JPEG photos, half 8-bit grayscale PNG scans, with real texture (not flat colour)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        kind = "photo" if i % 2 else "scan"
        (folder / kind).mkdir(parents=True, exist_ok=True)
        h, w = side * 3 // 4, side
        base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
        if kind == "photo":
            path = folder / kind / f"{i:05d}.jpg"
            image.save(path, quality=92)
        else:
            path = folder / kind / f"{i:05d}.png"
            image.convert("L").save(path)
        paths.append(path)
    return paths


def baseline(paths: list[Path], out: Path) -> None:
    """What a careful hand-written script does: decode, resize, encode, append to a tar."""
    with tarfile.open(out, "w") as tar:
        for path in paths:
            with Image.open(path) as im:
                im.load()
                gray = im.mode == "L"
                im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
                buffer = io.BytesIO()
                if gray:
                    im.save(buffer, format="PNG", compress_level=6)
                else:
                    im.convert("RGB").save(buffer, format="JPEG", quality=QUALITY, subsampling=0)
            data = buffer.getvalue()
            info = tarfile.TarInfo(f"{path.stem}.{'png' if gray else 'jpg'}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def medcurate_run(source_dir: Path, lake_dir: Path) -> int:
    """The pipeline's own steps, in-process, without Prefect's start-up (measured elsewhere)."""
    cfg = PipelineConfig.model_validate(
        {
            "name": "bench",
            "sources": [{"name": "bench", "kind": "labeled", "uri": str(source_dir), "params": {}}],
            "stages": {"normalize": {"max_side": MAX_SIDE, "jpeg_quality": QUALITY}, "label_text": {}},
            "engine": {"kind": "local", "part_size": 256},
            "release": {"name": "bench", "shard_max_count": 10_000},
        }
    )
    lake = Lake(str(lake_dir))
    plan = plan_run(cfg, lake)
    engine = make_engine("local", lake, cfg.engine.batch_size)
    parts, ledger = run_stages(lake, engine, plan, cfg.engine.part_size)
    outcome = build_release(
        lake, ReleaseSettings(**cfg.release.model_dump()), iter_sorted_records(lake, parts),
        config=cfg.model_dump(), config_hash=cfg.config_hash, run_id=plan.run_id, ledger=ledger.as_dict,
    )  # fmt: skip
    return outcome.release.info["sample_count"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--side", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_images(root / "images", args.images, args.side)
        # Warm both paths once (imports, codec tables) on a few images.
        baseline(paths[:4], root / "warm.tar")
        start = time.perf_counter()
        baseline(paths, root / "baseline.tar")
        base_s = time.perf_counter() - start
        start = time.perf_counter()
        released = medcurate_run(root / "images", root / "lake")
        ours_s = time.perf_counter() - start
    assert released == len(paths), f"released {released} of {len(paths)}"
    rows = [("baseline (Pillow + tarfile)", base_s), ("medcurate ingest+normalize+shard", ours_s)]
    print(f"\n{args.images} images of {args.side}x{args.side * 3 // 4}, max side {MAX_SIDE}, one core\n")
    print(f"| {'path':<34} | {'seconds':>8} | {'images/s/core':>13} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 15}|")
    for name, seconds in rows:
        print(f"| {name:<34} | {seconds:8.2f} | {args.images / seconds:13.1f} |")
    print(f"\nratio medcurate / baseline: {ours_s / base_s:.2f}x (target <= 1.30x)")


if __name__ == "__main__":
    main()
