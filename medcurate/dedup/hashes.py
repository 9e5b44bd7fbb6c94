"""All pairs of 64-bit hashes within a Hamming radius, exactly, without comparing all n² pairs.

Brute force (``faiss.IndexBinaryFlat`` range search) does ~3,000 queries/s over 1M hashes, so ~330 s
for a corpus; it stays the path for small sets, where it is simplest. Beyond ``flat_max`` we use the
generalised pigeonhole of multi-index hashing: cut the 64 bits into ``b`` bands; two hashes within
``r`` bits differ in at most ``r`` bands, so they agree exactly on at least ``b - r`` bands and hence
on one of the C(b, b - r) subsets of that many bands. Each subset is one pass: mask the hashes, sort,
and every run of equal masked values is a bucket whose pairs are candidates, verified by popcount.
``b = r + 1`` (one band per key) is the textbook case, but with r = 8 its keys are 7 bits long and
1M random hashes give ~4e9 candidates; the band count is therefore chosen by a cost model (for
r = 8 and 1M hashes: 11 bands, 165 passes of 17-18-bit keys). Recall is 1.0 by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from math import comb

import numpy as np

#: Up to this many hashes an exhaustive faiss range search is cheap enough (~7 s at 20k).
FLAT_MAX = 20_000


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).astype(np.int64)


def _band_ranges(bands: int) -> list[tuple[int, int]]:
    """``bands`` contiguous (first bit, width) ranges covering all 64 bits, widths within one."""
    edges = np.linspace(0, 64, bands + 1).round().astype(int)
    return [(int(lo), int(hi - lo)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def _band_masks(bands: int) -> list[int]:
    """The bit mask of each of ``_band_ranges``."""
    return [((1 << width) - 1) << lo for lo, width in _band_ranges(bands)]


#: Keys of up to this many bits are looked up in a dense table instead of by binary search.
DENSE_KEY_BITS = 22


def _dense_keys(hashes: np.ndarray, ranges: tuple[tuple[int, int], ...]) -> np.ndarray:
    """The bits of ``ranges`` packed into a small integer (a table index)."""
    key = np.zeros(len(hashes), np.int64)
    offset = 0
    for lo, width in ranges:
        part = (hashes >> np.uint64(lo)) & np.uint64((1 << width) - 1)
        key |= part.astype(np.int64) << offset
        offset += width
    return key


def _lookup(base: np.ndarray, queries: np.ndarray, ranges: tuple[tuple[int, int], ...]):
    """(order of base by key, first position and count of each query's key in that order).

    Binary search of a million keys into a small sorted base costs ~90 ms a pass (cache misses);
    a dense table of counts answers the same in a few ms when the key is narrow.
    """
    width = sum(w for _, w in ranges)
    if width <= DENSE_KEY_BITS:
        base_keys, query_keys = _dense_keys(base, ranges), _dense_keys(queries, ranges)
        order = np.argsort(base_keys, kind="stable")
        counts = np.bincount(base_keys, minlength=1 << width)
        starts = np.cumsum(counts) - counts
        return order, starts[query_keys], counts[query_keys]
    mask = np.uint64(sum(((1 << w) - 1) << lo for lo, w in ranges))
    base_keys = base & mask
    order = np.argsort(base_keys)
    sorted_keys = base_keys[order]
    query_keys = queries & mask
    lo = np.searchsorted(sorted_keys, query_keys, side="left")
    return order, lo, np.searchsorted(sorted_keys, query_keys, side="right") - lo


def choose_bands(n: int, radius: int, queries: int | None = None) -> int:
    """Band count minimising passes × (sort + expected candidates), for uniformly spread hashes:
    pairs within ``n`` hashes, or with ``queries`` given, pairs of each query with ``n`` base hashes
    (a few new hashes against a large index need fewer, coarser passes).

    Real perceptual hashes cluster, so buckets are fuller than this assumes; the choice still only
    affects speed, never which pairs are found.
    """

    def cost(b: int) -> float:
        key_bits = 64 * (b - radius) / b
        if queries is None:
            return comb(b, radius) * (n + 0.5 * n * n / 2.0 ** (key_bits + 1))
        return comb(b, radius) * (n + queries + queries * n / 2.0**key_bits)

    return min(range(radius + 1, min(64, radius + 8) + 1), key=cost)


def run_pairs(starts: np.ndarray, lengths: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Positions (p, p + d) of every pair inside each run, one offset d at a time.

    Yielding per offset keeps memory at O(n) however many pairs a bucket holds; a run of length L
    costs L(L-1)/2 pair checks and L numpy steps, so a giant bucket is slow but still correct.
    """
    keep = lengths >= 2
    starts, lengths = starts[keep], lengths[keep]
    if not len(starts):
        return
    offsets = np.cumsum(lengths) - lengths
    pos = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
    left = np.repeat(starts + lengths, lengths) - pos - 1  # later members of the same run
    d = 1
    while len(pos):
        live = left >= d
        pos, left = pos[live], left[live]
        if len(pos):
            yield pos, pos + d
        d += 1


def equal_runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) of each run of equal values in a sorted array."""
    if not len(sorted_values):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    return starts, np.diff(np.r_[starts, len(sorted_values)])


def _flat_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    import faiss

    codes = np.ascontiguousarray(hashes).view(np.uint8).reshape(-1, 8)  # Hamming ignores byte order
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, dist, ids = index.range_search(codes, radius + 1)  # faiss keeps distance < its radius
    query = np.repeat(np.arange(len(hashes)), np.diff(lims.astype(np.int64)))
    keep = ids > query
    return np.column_stack([query[keep], ids[keep], dist[keep].astype(np.int64)])


def _banded_pairs(hashes: np.ndarray, radius: int, bands: int | None) -> np.ndarray:
    bands = bands or choose_bands(len(hashes), radius)
    masks = _band_masks(bands)
    found: list[np.ndarray] = []
    for subset in combinations(masks, bands - radius):
        keys = hashes & np.uint64(sum(subset))
        order = np.argsort(keys)
        starts, lengths = equal_runs(keys[order])
        for a, b in run_pairs(starts, lengths):
            i, j = order[a], order[b]
            dist = _popcount(hashes[i] ^ hashes[j])
            ok = dist <= radius
            if ok.any():
                i, j = i[ok], j[ok]
                found.append(np.column_stack([np.minimum(i, j), np.maximum(i, j), dist[ok]]))
    if not found:
        return np.zeros((0, 3), np.int64)
    # A close pair agrees on many band subsets, so it is found in many passes: keep one row each.
    return np.unique(np.concatenate(found), axis=0)


def near_duplicate_pairs(
    hashes: np.ndarray, radius: int, *, flat_max: int = FLAT_MAX, bands: int | None = None
) -> np.ndarray:
    """Every (i, j, distance) with i < j and Hamming(hashes[i], hashes[j]) <= radius, sorted.

    Identical hashes are collapsed first so a thousand blank images cost one bucket entry per pass,
    not a million candidate pairs per pass; the output still lists each of their pairs (it must).
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    if not 0 <= radius < 64:
        raise ValueError(f"radius must be in [0, 63], got {radius}")
    uniq, inverse = np.unique(hashes, return_inverse=True)
    inverse = inverse.reshape(-1)
    upairs = _flat_pairs(uniq, radius) if len(uniq) <= flat_max else _banded_pairs(uniq, radius, bands)
    # Expand pairs of distinct values to pairs of original indices, then add the identical ones.
    members = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(uniq))
    first = np.cumsum(counts) - counts
    cu, cv = counts[upairs[:, 0]], counts[upairs[:, 1]]
    rows = cu * cv
    pid = np.repeat(np.arange(len(upairs)), rows)
    local = np.arange(int(rows.sum())) - np.repeat(np.cumsum(rows) - rows, rows)
    i = members[first[upairs[pid, 0]] + local // cv[pid]]
    j = members[first[upairs[pid, 1]] + local % cv[pid]]
    parts = [np.column_stack([np.minimum(i, j), np.maximum(i, j), upairs[pid, 2]])]
    for a, b in run_pairs(first, counts):
        i, j = members[a], members[b]
        parts.append(np.column_stack([np.minimum(i, j), np.maximum(i, j), np.zeros(len(a), np.int64)]))
    out = np.concatenate(parts).astype(np.int64)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def _banded_cross_pairs(queries: np.ndarray, base: np.ndarray, radius: int) -> np.ndarray:
    """Like ``_banded_pairs`` but only pairs with one side in each set: sort the base once per band
    subset and look each query's masked key up in it, so base-base pairs are never enumerated.
    The caller passes the smaller set as ``base``: sorting it is the per-pass cost."""
    bands = choose_bands(len(base), radius, queries=len(queries))
    found: list[np.ndarray] = []
    for subset in combinations(_band_ranges(bands), bands - radius):
        order, lo, counts = _lookup(base, queries, subset)
        if not counts.any():
            continue
        q = np.repeat(np.arange(len(queries)), counts)
        b = order[
            np.repeat(lo, counts)
            + np.arange(int(counts.sum()))
            - np.repeat(np.cumsum(counts) - counts, counts)
        ]
        dist = _popcount(queries[q] ^ base[b])
        ok = dist <= radius
        if ok.any():
            found.append(np.column_stack([q[ok], b[ok], dist[ok]]))
    if not found:
        return np.zeros((0, 3), np.int64)
    return np.unique(np.concatenate(found), axis=0)


def near_duplicate_cross_pairs(
    queries: np.ndarray, base: np.ndarray, radius: int, *, brute_max: int = 1 << 22
) -> np.ndarray:
    """Every (q, b, distance) with Hamming(queries[q], base[b]) <= radius, sorted, exactly.

    For matching new samples against an index of earlier releases, or training samples against an
    evaluation set, without re-deriving the pairs inside ``base``. Cost grows with
    ``len(queries) + len(base)`` per band subset, not with their product.
    """
    queries = np.asarray(queries, dtype=np.uint64)
    base = np.asarray(base, dtype=np.uint64)
    if not 0 <= radius < 64:
        raise ValueError(f"radius must be in [0, 63], got {radius}")
    if not len(queries) or not len(base):
        return np.zeros((0, 3), np.int64)
    if len(queries) * len(base) <= brute_max:  # every pair at once, a few MB
        q = np.repeat(np.arange(len(queries)), len(base))
        b = np.tile(np.arange(len(base)), len(queries))
        dist = _popcount(queries[q] ^ base[b])
        ok = dist <= radius
        out = np.column_stack([q[ok], b[ok], dist[ok]]).astype(np.int64)
    elif len(queries) < len(base):  # sort the smaller side in each pass
        out = _banded_cross_pairs(base, queries, radius)[:, [1, 0, 2]]
    else:
        out = _banded_cross_pairs(queries, base, radius)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def view_hashes(stage: str, sample_id: str, variants: list[dict] | None, view: str) -> tuple[str, str]:
    """(phash, fine phash) of one view (e.g. ``hflip``) from a record's ``image.phash_variants``;
    a view the stage is configured for but normalize did not hash is a config mistake, named."""
    for entry in variants or []:
        if entry["transform"] == view:
            return entry["phash"], entry["phash_fine"]
    raise ValueError(
        f"{stage}: variant {view!r} is missing on {sample_id}; add it to normalize's hash_variants"
    )


def groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label (0..k-1) of each of ``n`` items linked by ``pairs`` (single link)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def components(hashes: np.ndarray, radius: int, *, flat_max: int = FLAT_MAX) -> np.ndarray:
    """``groups`` of ``near_duplicate_pairs`` without expanding identical hashes into their n² pairs."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    uniq, inverse = np.unique(hashes, return_inverse=True)
    labels = groups(len(uniq), near_duplicate_pairs(uniq, radius, flat_max=flat_max))
    return labels[inverse.reshape(-1)]
