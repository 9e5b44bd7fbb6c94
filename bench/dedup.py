"""Benchmark: exact near-duplicate pairs of 64-bit hashes (banded, ``medcurate.dedup``) vs faiss brute force.

Data is generated: N uniform random 64-bit hashes, of which 1% are replaced by copies of others with 1..radius
random bits flipped (the near duplicates to find). Ours runs at 100k, 300k and N to show growth. The baseline
is the exact brute force ``faiss.IndexBinaryFlat`` range search; all N queries would take minutes, so it runs
``--queries`` of them (half planted copies, half random) against the full index and is extrapolated to N
queries (marked in the table). Recall compares our pairs that touch those queries with brute force's (must be
1.0). Each variant runs in its own fresh process with its own peak RSS (VmHWM, data generation included).

Target: N = 1M, radius 8 in under 2 minutes on one core.

    python bench/dedup.py [--n 1000000] [--radius 8] [--queries 20000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from harness import peak_rss_kib, print_markdown, run_child  # bench/harness.py

TARGET_S = 120.0


def generate(n: int, radius: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, indices of the planted copies)."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    copies = n // 100
    src = rng.integers(0, n - copies, copies)
    dst = np.arange(n - copies, n)
    flips = rng.integers(1, radius + 1, copies)
    order = rng.random((copies, 64)).argsort(axis=1)  # a random bit permutation per copy
    chosen = np.arange(64)[None, :] < flips[:, None]
    bits = np.where(chosen, np.uint64(1) << order.astype(np.uint64), np.uint64(0))
    hashes[dst] = hashes[src] ^ np.bitwise_or.reduce(bits, axis=1)
    return hashes, dst


def run_variant(kind: str, n: int, radius: int, queries: int) -> dict:
    from medcurate.dedup import near_duplicate_pairs

    hashes, planted = generate(n, radius)
    if kind == "ours":
        start = time.perf_counter()
        pairs = near_duplicate_pairs(hashes, radius)
        return {"wall": time.perf_counter() - start, "rss": peak_rss_kib(), "pairs": len(pairs)}
    import faiss

    rng = np.random.default_rng(1)
    picked = np.concatenate(
        [rng.choice(planted, min(queries // 2, len(planted)), replace=False), rng.choice(n, queries // 2)]
    )
    picked = np.unique(picked)
    codes = hashes.view(np.uint8).reshape(-1, 8)
    start = time.perf_counter()
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, _, ids = index.range_search(codes[picked], radius + 1)  # faiss keeps distance < its radius
    wall = time.perf_counter() - start
    rss = peak_rss_kib()
    query = np.repeat(picked, np.diff(lims.astype(np.int64)))
    truth = {(min(a, b), max(a, b)) for a, b in zip(query.tolist(), ids.tolist(), strict=True) if a != b}
    ours = near_duplicate_pairs(hashes, radius)
    touch = np.isin(ours[:, 0], picked) | np.isin(ours[:, 1], picked)
    found = {(int(a), int(b)) for a, b in ours[touch, :2]}
    return {
        "wall": wall * n / len(picked),
        "measured": wall,
        "queries": len(picked),
        "rss": rss,
        "pairs": len(truth),
        "recall": len(truth & found) / len(truth) if truth else 1.0,
        "extra": len(found - truth),
    }


def spawn(kind: str, n: int, args: argparse.Namespace) -> dict:
    command = [__file__, "--variant", kind, "--n", str(n), "--radius", str(args.radius)]
    return run_child([*command, "--queries", str(args.queries)], f"{kind} {n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--radius", type=int, default=8)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--variant", choices=["ours", "faiss"])
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.n, args.radius, args.queries)))
        return
    sizes = sorted({min(s, args.n) for s in (100_000, 300_000)} | {args.n})
    ours = {n: spawn("ours", n, args) for n in sizes}
    base = spawn("faiss", args.n, args)
    mib = 1024
    table = [("variant", "N", "wall s", "peak RSS MiB", "pairs", "recall", "vs baseline")]
    for n, r in ours.items():
        ratio = f"{base['wall'] / r['wall']:.1f}x faster" if n == args.n else ""
        row = ("medcurate banded", f"{n:,}", f"{r['wall']:.1f}", f"{r['rss'] / mib:.0f}", f"{r['pairs']:,}")
        table.append((*row, "", ratio))
    label = f"faiss IndexBinaryFlat, {base['queries']:,} queries ({base['measured']:.1f} s) extrapolated"
    row = (label, f"{args.n:,}", f"{base['wall']:.1f}", f"{base['rss'] / mib:.0f}")
    table.append((*row, f"{base['pairs']:,} (sample)", f"{base['recall']:.4f}", "1.0x"))
    print(
        f"radius {args.radius}; 1% planted copies with 1..{args.radius} flipped bits; one process per row\n"
    )
    print_markdown(table)
    verdict = "met" if ours[args.n]["wall"] < TARGET_S else "MISSED"
    print(f"\ntarget {args.n:,} in < {TARGET_S:.0f} s: {verdict}; recall must be 1.0: {base['recall']:.4f}")


if __name__ == "__main__":
    main()
