"""Pairs of embeddings above a cosine threshold (SemDeDup): exact when small, clustered when large.

Exact all-pairs search is a matrix product, n² d: fine for 20k vectors, but faiss's exact kNN of
200k×512 takes 316 s on this project's 2-core machines and the cost quadruples with every doubling.
SemDeDup (Abbas et al., 2023) observes that near duplicates are close enough to always fall into the
same k-means cluster, so it clusters first and compares exhaustively within each cluster only. We do
the same with one addition: every vector joins its ``probes`` nearest clusters (2 by default), so a
pair that straddles a cluster border is still compared in the cluster they share. This is the only
approximation; recall is measured (``bench/dedup.py --part embeddings``, ``tests/test_semantic_dedup.py``)
rather than claimed, and nothing that is returned is approximate: every pair's cosine is recomputed in
float64 from the two vectors, so the output does not depend on which path found the pair.

Cost with ``k`` clusters and ``p`` probes: k-means training (on a seeded sample of 64 points per
centroid, so ~64 k² d per iteration), assigning n vectors (n k d), and p² n² d / 2k within clusters;
``k = sqrt(n)`` keeps every term near n^1.5 d and the whole at seconds for the sizes we curate.
"""

from __future__ import annotations

from collections.abc import Iterator
from math import isqrt

import numpy as np

#: Up to this many vectors the exact blocked product is cheap (~1.5 s at 20k×512 on 2 cores).
FLAT_MAX = 20_000
#: Similarity entries one block may hold (64 MiB of float32), whatever the size of a cluster.
BLOCK_ENTRIES = 1 << 24
#: float32 products of unit vectors err by ~1e-6; candidates within this of the threshold are
#: re-checked in float64, so a pair right at the threshold is kept or dropped the same on every path.
MARGIN = 1e-4
#: k-means iterations: cluster quality only moves work between clusters (and border pairs into probes).
NITER = 10
#: Training points per centroid (faiss samples them, seeded). faiss's default, 256, made training most of
#: the time at 50k (9 s of 14 s); 64 trains 4x faster and the partition still serves (recall measured).
POINTS_PER_CENTROID = 64


def default_clusters(n: int) -> int:
    """``sqrt(n)`` clusters: balances k-means training against the within-cluster products."""
    return max(1, isqrt(max(n, 1)))


def _block_pairs(vectors: np.ndarray, floor: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Local (i, j), i < j, whose float32 dot product is at least ``floor``, block of rows by block.

    Each block multiplies its rows only against themselves and the rows after them, so the whole
    costs half the full product and at most ``BLOCK_ENTRIES`` similarities are held at once.
    """
    n = len(vectors)
    step = max(1, BLOCK_ENTRIES // max(n, 1))
    for start in range(0, n, step):
        stop = min(n, start + step)
        sims = vectors[start:stop] @ vectors[start:].T
        r, c = np.nonzero(sims >= floor)
        keep = c > r  # column c is row start + c: only pairs after the diagonal
        if keep.any():
            yield start + r[keep], start + c[keep]


def _exact_candidates(vectors: np.ndarray, floor: float) -> np.ndarray:
    """Codes ``i * n + j`` of every candidate pair of the whole set."""
    n = len(vectors)
    found = [i * n + j for i, j in _block_pairs(vectors, floor)]
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def cluster_assignments(
    vectors: np.ndarray, clusters: int, probes: int, seed: int, niter: int = NITER
) -> np.ndarray:
    """``[n, probes]`` nearest centroids of each vector after seeded spherical k-means (GPU if any).

    faiss seeds its sampling and initialisation with ``seed``; its centroid update splits work by
    centroid, not by point, so the result does not depend on thread timing (checked in the tests).
    """
    import faiss

    n, dim = vectors.shape
    clusters = min(clusters, n)
    kmeans = faiss.Kmeans(
        dim,
        clusters,
        niter=niter,
        seed=seed,
        spherical=True,
        max_points_per_centroid=POINTS_PER_CENTROID,
        gpu=faiss.get_num_gpus() > 0,
        verbose=False,
    )
    kmeans.train(vectors)
    _, nearest = kmeans.index.search(vectors, min(probes, clusters))
    return nearest.astype(np.int64)


def _clustered_candidates(
    vectors: np.ndarray, floor: float, clusters: int, probes: int, seed: int
) -> np.ndarray:
    """Codes of candidate pairs that share at least one of their ``probes`` clusters."""
    n = len(vectors)
    nearest = cluster_assignments(vectors, clusters, probes, seed)
    flat = nearest.ravel()
    order = np.argsort(flat, kind="stable")  # rows ascending inside each cluster
    rows, labels = order // nearest.shape[1], flat[order]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    found = []
    for start, stop in zip(starts, np.r_[starts[1:], len(labels)], strict=True):
        members = rows[start:stop]
        if len(members) < 2:
            continue
        sub = np.ascontiguousarray(vectors[members])
        found.extend(members[i] * n + members[j] for i, j in _block_pairs(sub, floor))
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


def pair_cosines(vectors: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """float64 cosine of each (i, j) of unit rows, chunked so memory stays bounded."""
    out = np.empty(len(i), np.float64)
    for start in range(0, len(i), chunk):
        a = vectors[i[start : start + chunk]].astype(np.float64)
        b = vectors[j[start : start + chunk]].astype(np.float64)
        out[start : start + chunk] = np.einsum("ij,ij->i", a, b)
    return out


def semantic_duplicate_pairs(
    vectors: np.ndarray,
    threshold: float,
    *,
    clusters: int | None = None,
    probes: int = 2,
    seed: int = 0,
    flat_max: int = FLAT_MAX,
) -> np.ndarray:
    """Every (i, j, cosine) with i < j and cosine >= ``threshold``, as a float64 ``[m, 3]`` array
    sorted by (i, j) (indices are exact in float64; ``groups`` takes the array as it is).

    ``vectors`` are unit rows (an ``Embedder``'s output). Up to ``flat_max`` rows the search is exact;
    beyond, pairs are searched within ``clusters`` spherical k-means clusters (default sqrt(n)), each
    vector joining its ``probes`` nearest. Deterministic for a given ``seed``.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be [n, d], got shape {vectors.shape}")
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine in [-1, 1], got {threshold}")
    if probes < 1:
        raise ValueError(f"probes must be at least 1, got {probes}")
    n = len(vectors)
    floor = threshold - MARGIN
    if n <= flat_max:
        codes = _exact_candidates(vectors, floor)
    else:
        codes = _clustered_candidates(vectors, floor, clusters or default_clusters(n), probes, seed)
    codes = np.sort(codes)  # (i, j) order, since codes are i * n + j
    i, j = codes // max(n, 1), codes % max(n, 1)
    cosines = pair_cosines(vectors, i, j)
    keep = cosines >= threshold
    return np.column_stack([i[keep], j[keep], cosines[keep]]).astype(np.float64).reshape(-1, 3)


#: Query rows per ``best_matches`` search call (faiss blocks the product itself; this bounds our arrays).
QUERY_BLOCK = 16_384


def best_matches(
    queries: np.ndarray, base: np.ndarray, threshold: float, block: int = QUERY_BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the base row of highest cosine if it is at least ``threshold``.

    Returns (``[n]`` int64 base positions, -1 where none reaches the threshold; ``[n]`` float64 cosines,
    NaN there). Both are unit rows. Exact: an inner-product flat index over ``base`` (a small evaluation
    set) searched with k=1, ``block`` queries at a time; each hit's cosine is recomputed in float64 and
    compared to the threshold, as ``semantic_duplicate_pairs`` does, so a pair right at the threshold is
    decided the same whatever float32 rounding the search saw.
    """
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    if queries.ndim != 2 or base.ndim != 2:
        raise ValueError(f"vectors must be [n, d], got shapes {queries.shape} and {base.shape}")
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine in [-1, 1], got {threshold}")
    best = np.full(len(queries), -1, np.int64)
    cosines = np.full(len(queries), np.nan, np.float64)
    if not len(queries) or not len(base):
        return best, cosines
    if queries.shape[1] != base.shape[1]:
        raise ValueError(f"{queries.shape[1]}-d queries against {base.shape[1]}-d base vectors")
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    for start in range(0, len(queries), max(1, block)):
        sims, found = index.search(queries[start : start + block], 1)
        rows = np.flatnonzero((found[:, 0] >= 0) & (sims[:, 0] >= threshold - MARGIN))
        if not len(rows):
            continue
        hits = found[rows, 0].astype(np.int64)
        exact = np.einsum("ij,ij->i", queries[start + rows].astype(np.float64), base[hits].astype(np.float64))
        keep = exact >= threshold
        best[start + rows[keep]], cosines[start + rows[keep]] = hits[keep], exact[keep]
    return best, cosines


__all__ = [
    "FLAT_MAX",
    "best_matches",
    "cluster_assignments",
    "default_clusters",
    "pair_cosines",
    "semantic_duplicate_pairs",
]
