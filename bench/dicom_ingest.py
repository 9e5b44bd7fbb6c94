"""Benchmark: the DICOM source (list + read) vs a plain dcmread + window + PNG loop over the same CT series.

The series are generated: ``--series`` CT series of ``--slices`` slices of 512x512 int16 (Rescale
Intercept -1024, a header window, consistent position, orientation and spacing), uncompressed Explicit VR
Little Endian, each header full of invented PHI (names, record numbers, birth date, address, phone,
institution, staff, accession numbers, free-text descriptions, a request sequence, private tags; see
``medcurate.clinical_corpus``). Deterministic.

The baseline is what a careful script does: for each file ``pydicom.dcmread``, ``.pixel_array``, Rescale
Slope/Intercept, the header window with the PS3.3 C.11.2.1.2 LINEAR formula to uint8, PNG with Pillow at
the compress level medcurate uses, bytes kept in memory. medcurate does more on purpose: it hashes every
file at listing and parses every header into pseudonymous facts, groups and checks each series' geometry
before it is a volume, then per slice hashes the file again (it must not have changed), de-identifies the
header (PS3.15 Basic Profile plus our sweep), writes it as DICOM JSON, and scans the finished record for
every original PHI value of the header (fail closed). So the ratio shows what that safety costs per slice.
Both sides must produce the same PNG bytes; the run checks that.

Each variant runs in its own fresh process (one process = one core, so every rate is per core) and
reports its own wall time and peak RSS. A re-list with the file-facts cache the first listing filled
shows that a nightly re-list of an unchanged archive opens no file.

Target: list+read within 1.3x of the baseline's time.

    python bench/dicom_ingest.py [--series 8] [--slices 64] [--keep DIR] [--profile 2]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from harness import (  # bench/harness.py
    add_child_arguments,
    in_work_folder,
    peak_rss_kib,
    print_markdown,
    run_variant,
    spawn,
    warm_page_cache,
)

TARGET_RATIO = 1.3
SIDE = 512
KEY = "bench-pseudonym-key"
PNG_LEVEL = 6  # PixelOptions.png_compress_level's default, checked against it in measure()
MANIFEST = "bench-manifest.json"
#: (study key in clinical_corpus.STUDIES, header window center, width): lung and mediastinum windows.
SERIES_PLAN = (
    ("doe_ct", -600, 1500),
    ("doe_ct", 50, 350),
    ("doe_ct_zip", -600, 1500),
    ("doe_ct_zip", 50, 350),
    ("roe_mr", -600, 1500),
    ("roe_mr", 40, 400),
    ("smith_cr", -600, 1500),
    ("smith_cr", 50, 350),
)


# -- inputs ------------------------------------------------------------------------------------------


def _anatomy(index: int, seed: int) -> np.ndarray:
    """Stored values of one chest slice: air, an elliptic body, two lungs, a nodule, CT-like noise."""
    rng = np.random.default_rng(seed)
    half = SIDE // 2
    yy, xx = np.mgrid[-half:half, -half:half].astype(np.float64)
    hu = np.full((SIDE, SIDE), -1000.0)
    hu[(xx / 220.0) ** 2 + (yy / 170.0) ** 2 < 1] = 40.0  # body
    for side in (-1, 1):  # lungs
        hu[((xx + side * 95) / 70.0) ** 2 + (yy / 110.0) ** 2 < 1] = -820.0
    hu[(xx + 110) ** 2 + (yy - 20) ** 2 < (8 + 3 * (index % 6)) ** 2] = 55.0  # a nodule growing through z
    hu[(xx / 25.0) ** 2 + ((yy - 120) / 20.0) ** 2 < 1] = 700.0  # spine
    return np.clip(hu + 1024 + rng.normal(0, 12, hu.shape), 0, 4095).astype(np.int16)


def ct_slice_bytes(series: int, index: int) -> bytes:
    """One CT slice as a Part 10 file, its header made like the sample corpus's (full of invented PHI)."""
    from medcurate.clinical_corpus import CT_IMAGE, SEED, _base, _bytes, _set_pixels

    study, center, width = SERIES_PLAN[series % len(SERIES_PLAN)]
    ds = _base(study, 10 + series, "CT", CT_IMAGE, index + 1)
    _set_pixels(ds, _anatomy(index, SEED + 1000 * series + index))
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = center, width
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-179.2, -179.2, -20.0 * series - 2.5 * index]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 2.5
    ds.BodyPartExamined = "CHEST"
    ds.KVP = 120
    ds.ConvolutionKernel = "B30f"
    return _bytes(ds)


def series_files(root: Path) -> list[Path]:
    """The generated files in manifest order (series, then instance)."""
    return [root / rel for rel in json.loads((root / MANIFEST).read_text())["files"]]


def ensure_series(root: Path, series: int, slices: int) -> None:
    """Write the series unless ``root`` already holds exactly this shape (--keep reuses it)."""
    manifest = root / MANIFEST
    shape = {"series": series, "slices": slices, "side": SIDE}
    if manifest.exists() and json.loads(manifest.read_text()).get("shape") == shape:
        return
    from medcurate.clinical_corpus import PATIENTS, STUDIES

    files = []
    for s in range(series):
        patient = PATIENTS[STUDIES[SERIES_PLAN[s % len(SERIES_PLAN)][0]][0]]
        folder = f"{patient.folder}/CT_{SERIES_PLAN[s % len(SERIES_PLAN)][0]}/series{10 + s:02d}"
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(slices):
            rel = f"{folder}/IM{i + 1:04d}.dcm"
            (root / rel).write_bytes(ct_slice_bytes(s, i))
            files.append(rel)
    manifest.write_text(json.dumps({"shape": shape, "files": files}))


# -- baseline ----------------------------------------------------------------------------------------


def baseline_png(path: Path) -> bytes:
    """dcmread, pixel_array, rescale, the header's LINEAR window to uint8, PNG at level 6."""
    import pydicom
    from PIL import Image

    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    unit = np.clip((hu - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)  # PS3.3 C.11.2.1.2, y in [0, 1]
    gray = np.rint(unit * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG", compress_level=PNG_LEVEL, optimize=False)
    return buffer.getvalue()


def run_baseline(root: Path) -> dict[str, Any]:
    paths = series_files(root)
    baseline_png(paths[0])  # imports, pydicom's decoder registry, zlib set-up
    start = time.perf_counter()
    pngs = [baseline_png(path) for path in paths]
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "slices": len(pngs),
        "png_digests": sorted(hashlib.sha256(png).hexdigest() for png in pngs),
        "rss_kib": peak_rss_kib(),
    }


# -- medcurate ---------------------------------------------------------------------------------------


def _source(root: Path, ctx: Any = None) -> Any:
    from medcurate.sources import SourceContext, make_source

    ctx = ctx or SourceContext(stat_cache=lambda *a: None, pseudonym_key=KEY)
    return make_source("dicom", "bench", str(root.resolve()), {"slices": "all"}, ctx)


def warm_up(path: Path) -> None:
    """The per-slice steps once on one file outside the timing, as the baseline warms on one file.

    What warms is per process in production too (imports, the dicom-anonymizer table, pydicom's decoder
    registry); the cache of PHI renderings, which depends on the data, is emptied again.
    """
    import pydicom

    from medcurate.sources.dicom import deid, phi, pixels, series

    data = path.read_bytes()
    series.header_facts(data, KEY)
    ds = pydicom.dcmread(io.BytesIO(data))
    result = deid.deidentify(ds, deid.DeidConfig(key=KEY))
    deid.header_json(result.dataset)
    phi.scan_record({"x": "warm up"}, phi.collect_phi(ds))
    for frame, stored in pixels.iter_frames(ds, [0]):
        pixels.render(ds, stored, pixels.PixelOptions(), frame=frame)
    clear = getattr(phi._patterns, "cache_clear", None)  # this file's PHI renderings: not a head start
    if clear is not None:
        clear()


def run_medcurate(root: Path, cache_file: Path) -> dict[str, Any]:
    """List cold (hash + header of every file), read every series; save the file facts for the re-list."""
    from medcurate.schemas.record import ACTIVE, QUARANTINED

    warm_up(series_files(root)[0])
    src = _source(root)
    start = time.perf_counter()
    items = list(src.list_inputs())
    list_s = time.perf_counter() - start
    list_rss = peak_rss_kib()
    statuses: Counter[str] = Counter()
    reasons: list[str] = []
    digests: list[str] = []
    start = time.perf_counter()
    for item in items:
        for record in src.read(item):
            statuses[record["status"]] += 1
            if record["status"] == QUARANTINED:
                reasons.append(record.get("status_reason") or "")
            else:
                digests.append(hashlib.sha256(record["image"]["bytes"]).hexdigest())
    read_s = time.perf_counter() - start
    known = [[*key, facts.sha256, facts.facts] for key, facts in src.ctx.file_facts.known.items()]
    cache_file.write_text(json.dumps({"known": known, "keys": [item.key for item in items]}))
    return {
        "list_s": list_s,
        "list_rss_kib": list_rss,
        "read_s": read_s,
        "rss_kib": peak_rss_kib(),
        "series": len(items),
        "errors": [item.error for item in items if item.error][:5],
        "slices": statuses.get(ACTIVE, 0),
        "quarantined": statuses.get(QUARANTINED, 0),
        "quarantine_reasons": sorted(set(reasons))[:5],
        "png_digests": sorted(digests),
    }


def run_relist(root: Path, cache_file: Path) -> dict[str, Any]:
    """List again with the file facts the first listing learned: the nightly case of an unchanged archive.

    Every file read is counted by wrapping ``Path.open`` and ``Path.read_bytes`` (listing uses the first;
    reading, not timed here, the second), so "opened 0 files" is measured, not assumed.
    """
    from medcurate.lake.file_facts import FileFacts
    from medcurate.sources import SourceContext

    saved = json.loads(cache_file.read_text())
    ctx = SourceContext(stat_cache=lambda *a: None, pseudonym_key=KEY)
    for uri, size, mtime_ns, sha, facts in saved["known"]:
        ctx.file_facts.known[(uri, size, mtime_ns)] = FileFacts(sha, facts)
    opened = _count_opens(root)
    src = _source(root, ctx)
    start = time.perf_counter()
    items = list(src.list_inputs())
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rss_kib": peak_rss_kib(),
        "series": len(items),
        "opened": opened["files"],
        "new_facts": len(ctx.file_facts.pending),
        "same_keys": [item.key for item in items] == saved["keys"],
    }


def _count_opens(root: Path) -> dict[str, int]:
    """Count opens of files under ``root`` from here on (this process only: it ends after the re-list)."""
    counter = {"files": 0}
    original_open, original_read = Path.open, Path.read_bytes
    prefix = str(root.resolve())

    def counted_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        counter["files"] += str(self).startswith(prefix)
        return original_open(self, *args, **kwargs)

    def counted_read(self: Path) -> bytes:
        counter["files"] += str(self).startswith(prefix)
        return original_read(self)

    Path.open, Path.read_bytes = counted_open, counted_read  # type: ignore[method-assign]
    return counter


def run_profile(root: Path, count: int) -> None:
    """cProfile of a cold DicomSource listing plus the read of the first ``count`` series."""
    import cProfile
    import pstats

    warm_up(series_files(root)[0])
    src = _source(root)
    profile = cProfile.Profile()
    profile.enable()
    items = list(src.list_inputs())
    slices = sum(len(src.read(item)) for item in items[:count])
    profile.disable()
    print(f"cProfile: DicomSource list ({len(items)} series) + read of {slices} slices\n")
    stats = pstats.Stats(profile, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)


RUNNERS = {
    "baseline": lambda root, _cache: run_baseline(root),
    "medcurate": run_medcurate,
    "relist": run_relist,
}


def check(base: dict[str, Any], ours: dict[str, Any], again: dict[str, Any], files: int) -> int:
    """Fail loudly unless both sides made every slice and the re-list opened nothing; identical PNGs."""
    assert not ours["errors"], f"inputs failed at listing: {ours['errors']}"
    assert ours["quarantined"] == 0, f"quarantined: {ours['quarantine_reasons']}"
    assert ours["slices"] == base["slices"] == files, (ours["slices"], base["slices"], files)
    assert again["opened"] == 0 and again["new_facts"] == 0, f"re-list opened {again['opened']} files"
    assert again["same_keys"], "re-list of an unchanged archive changed input keys"
    same = Counter(base["png_digests"]) & Counter(ours["png_digests"])
    assert sum(same.values()) == files, f"only {sum(same.values())} of {files} PNGs are byte-identical"
    return files


def measure(root: Path, series: int, slices: int, profile: int) -> None:
    """Run the variants one after another on a warm page cache, check they agree, print the table."""
    from medcurate.sources.dicom.pixels import PixelOptions

    assert PixelOptions().png_compress_level == PNG_LEVEL, "medcurate's PNG level changed: update PNG_LEVEL"
    start = time.perf_counter()
    ensure_series(root, series, slices)
    generate_s = time.perf_counter() - start
    paths = series_files(root)
    size_mib = warm_page_cache(paths) / 2**20
    with tempfile.TemporaryDirectory() as work:  # the first listing's file facts, for the re-list
        cache_file = Path(work) / "file-facts.json"
        base = spawn(__file__, "baseline", root, cache_file)
        ours = spawn(__file__, "medcurate", root, cache_file)
        again = spawn(__file__, "relist", root, cache_file)
    n = check(base, ours, again, len(paths))

    base_s, both_s = base["seconds"], ours["list_s"] + ours["read_s"]
    rows = [
        ("baseline (dcmread + window + PNG)", base_s, n, base["rss_kib"]),
        ("medcurate list (hash + header of every file)", ours["list_s"], None, ours["list_rss_kib"]),
        ("medcurate read (deid + PHI scan + PNG)", ours["read_s"], n, ours["rss_kib"]),
        ("medcurate list+read", both_s, n, ours["rss_kib"]),
        ("medcurate re-list (file facts warm)", again["seconds"], None, again["rss_kib"]),
    ]
    print(
        f"\n{series} CT series x {slices} slices of {SIDE}x{SIDE} int16 ({size_mib:.0f} MiB, {n} files; "
        f"ready in {generate_s:.1f} s), each variant in its own process = one core\n"
    )
    table = [("variant", "seconds", "slices/s/core", "peak RSS MiB", "ratio vs baseline")]
    for name, seconds, count, rss in rows:
        rate = f"{count / seconds:.1f}" if count is not None else "-"
        table.append((name, f"{seconds:.2f}", rate, f"{rss / 1024:.0f}", f"{seconds / base_s:.2f}x"))
    print_markdown(table)
    ratio = both_s / base_s
    print(
        "\nlist and read run in one process: the list row's RSS is the peak when listing ended, the read"
        " rows' RSS is that process's peak.\nall PNGs byte-identical to the baseline's; 0 quarantined; "
        "the re-list opened 0 files and kept every input key."
    )
    print(f"\ntarget: list+read within {TARGET_RATIO}x of baseline")
    print(f"result: list+read {ratio:.2f}x ({'met' if ratio <= TARGET_RATIO else 'MISSED'})")
    if profile:
        print()
        sys.stdout.flush()
        command = [sys.executable, __file__, "--variant", "profile", "--root", str(root)]
        subprocess.run(command + ["--count", str(profile)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=8)
    parser.add_argument("--slices", type=int, default=64, help="slices per series")
    parser.add_argument("--keep", type=Path, help="folder to create or reuse the series in between runs")
    parser.add_argument("--profile", type=int, default=0, help="also cProfile list + read of N series")
    add_child_arguments(parser, RUNNERS, count=1)
    args = parser.parse_args()
    if args.variant == "profile":
        run_profile(Path(args.root), args.count)
    elif args.variant:
        run_variant(args, RUNNERS)
    else:
        in_work_folder(
            args.keep, "series", lambda root: measure(root, args.series, args.slices, args.profile)
        )


if __name__ == "__main__":
    main()
