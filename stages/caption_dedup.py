"""Near-duplicate captions across all sources (a global stage): keep one sample per group.

In a literature corpus two different images rarely carry near-identical captions unless something
is off: one boilerplate legend pasted under many figures, or a figure re-published with a lightly
edited caption (and a re-cropped, re-toned image that ``near_dedup``'s phash radius misses). The
caption is then weak evidence on its own and strong evidence with a look-alike image, so the rule
combines both. Two samples are linked when neither caption is template-authored and

1. **caption + image**: caption similarity >= ``threshold`` and both image phashes are within
   ``image_radius`` bits (default 12, twice ``near_dedup``'s 6: two unrelated 64-bit phashes are
   ~32 bits apart, and the caption already vouches for the pair), or
2. **verbatim**: caption similarity >= ``verbatim_threshold``, both captions have at least
   ``min_words`` words and both were written by an author kind in ``verbatim_authors`` (default
   ``["author"]``: figure legends of articles), whatever the images. Short captions ("Chest X-ray.")
   repeat legitimately across distinct images; they are a quality signal (``caption_repeats``), not
   a duplication. So do clinical reports ("report:..."): "Lungs are clear. No pneumothorax." is the
   same finding on two patients' studies, and model captions ("model:...") are formulaic by nature;
   both are still linked by rule 1 when their images match.

Template-authored captions (``text.final_caption_author`` starting with "template:", e.g. label
sentences of a classification dataset) repeat by design and are never compared; neither are empty
captions. Links form single-link groups; the ``keep`` policy (``medcurate.dedup.keep``) picks one
record per group and the others are filtered with ``caption_duplicate``, lineage naming the kept
record, the rule that links them directly ("chain" when only through other members), similarity,
phash bits and ``dedup.distance`` = 1 - similarity to the kept record.

Similarity (``method``):

- ``minhash`` (default): Jaccard of word ``shingle_size``-shingles of the normalised caption (the
  normalisation ``caption_repeats`` counts with), candidates by MinHash LSH, every pair verified by
  exact Jaccard. Lexical, which is what "a copy" means, and cheap: 0.6 s per 1k captions on a busy
  2-core machine, no model on the driver. Defaults: threshold 0.5, verbatim 0.7 (3-shingles: one
  word changed in an L-word caption gives (L - 5) / (L + 1), 0.71 at 20 words, 0.81 at 30).
- ``minilm``: cosine of the packaged all-MiniLM-L6-v2 sentence embeddings (``medcurate.dedup.text``),
  pairs by ``semantic.semantic_duplicate_pairs``. It also links paraphrases, and costs a CPU model
  pass per caption on the driver (~30 s per 1k on the same machine, 50x minhash). Defaults:
  threshold 0.9, verbatim 0.95 (on 10k generated captions, 0.95 found 70% of planted 0-3-word
  edits with 7 other pairs; minhash's 0.7 found 64% with 55 others, some of them copies of copies).

Run it after ``caption_policy`` (it reads ``text.final_caption``), and after ``judge`` when the keep
policy should prefer the better-scored copy. Deterministic: sorted inputs, fixed seeds, sorted pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from medcurate.dedup import components, groups, near_duplicate_cross_pairs
from medcurate.dedup import text as textsim
from medcurate.dedup.keep import DEFAULT_KEEP, DEFAULT_QUALITY_SCORE, KEEP_COLUMNS, check_keep, kept_members
from medcurate.dedup.released import with_released
from medcurate.stages.base import Filter, GlobalStage, RecordStage, StageContext

METHODS = ("minhash", "minilm")
TEMPLATE_PREFIX = "template:"
DEFAULTS: dict[str, Any] = {
    "method": "minhash",
    "shingle_size": textsim.DEFAULT_SHINGLE,
    "num_perm": textsim.DEFAULT_NUM_PERM,
    "image_radius": 12,
    "min_words": 10,
    "verbatim_authors": ["author"],
    "keep": DEFAULT_KEEP,
    "quality_score": DEFAULT_QUALITY_SCORE,
}
#: (threshold, verbatim_threshold) per method: Jaccard of 3-shingles, or MiniLM cosine.
METHOD_THRESHOLDS = {"minhash": (0.5, 0.7), "minilm": (0.9, 0.95)}

#: sample_id -> (kept sample_id, similarity to it, phash bits to it or None, rule, group size).
State = dict[str, tuple[str, float, int | None, str, int]]


class CaptionDedupStage(GlobalStage):
    name = "caption_dedup"
    version = "1"
    known_params = (
        "method",
        "threshold",
        "verbatim_threshold",
        "shingle_size",
        "num_perm",
        "image_radius",
        "min_words",
        "verbatim_authors",
        "keep",
        "quality_score",
    )
    fit_columns = ("text.final_caption", "text.final_caption_author", "image.phash", *KEEP_COLUMNS)

    def _params(self) -> dict[str, Any]:
        """Defaults, then the method's thresholds, then the config; refused by name when invalid."""
        method = self.params.get("method", DEFAULTS["method"])
        if method not in METHODS:
            raise ValueError(f"{self.name}: method must be one of {list(METHODS)}, got {method!r}")
        threshold, verbatim = METHOD_THRESHOLDS[method]
        p = {**DEFAULTS, "threshold": threshold, "verbatim_threshold": verbatim, **self.params}
        check_keep(p["keep"], self.name)
        for key in ("threshold", "verbatim_threshold"):
            if not 0 < float(p[key]) <= 1:
                raise ValueError(f"{self.name}: {key} must be in (0, 1], got {p[key]}")
        if not 0 <= int(p["image_radius"]) < 64:
            raise ValueError(f"{self.name}: image_radius must be in [0, 63], got {p['image_radius']}")
        if isinstance(p["verbatim_authors"], str) or not all(
            isinstance(a, str) for a in p["verbatim_authors"]
        ):
            raise ValueError(f"{self.name}: verbatim_authors must be a list of author kinds, e.g. ['author']")
        if int(p["shingle_size"]) < 1 or int(p["min_words"]) < 1 or int(p["num_perm"]) < 1:
            raise ValueError(f"{self.name}: shingle_size, min_words and num_perm must be >= 1")
        return p

    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> State:
        """Group the active records whose captions (and images) duplicate each other; see the module."""
        p = self._params()
        if not table.num_rows:
            return {}
        cols = {name: table.column(name).to_pylist() for name in ("sample_id", *self.fit_columns)}
        with_released(cols, ctx)
        rows, texts, authors = _comparable(cols)
        if len(rows) < 2:
            return {}
        uniq = sorted(set(texts))  # distinct texts, sorted: the order every pair search sees
        index = {text: u for u, text in enumerate(uniq)}
        inverse = np.array([index[text] for text in texts], np.int64)
        pairs, sims, similarity = _similarity(p, uniq)
        hashes = _phashes([cols["image.phash"][r] for r in rows])
        verbatim_ok = np.array([_kind(a) in set(p["verbatim_authors"]) for a in authors], bool)
        links = _links(p, uniq, inverse, hashes, verbatim_ok, pairs, sims)
        if not len(links):
            return {}
        labels = groups(len(rows), links)
        sizes = np.bincount(labels)
        grouped = np.flatnonzero(sizes[labels] > 1)
        kept = kept_members(cols, rows[grouped], labels[grouped], p["keep"], p["quality_score"])
        position = {int(r): i for i, r in enumerate(rows.tolist())}
        state: State = {}
        for g, kept_row in zip(grouped.tolist(), kept.tolist(), strict=True):
            k = position[kept_row]
            sim = 1.0 if inverse[g] == inverse[k] else similarity(int(inverse[g]), int(inverse[k]))
            bits = _bits(hashes, g, k)
            verbatim = bool(verbatim_ok[g] and verbatim_ok[k])
            rule = _rule(p, sim, bits, verbatim, uniq[inverse[g]], uniq[inverse[k]])
            size = int(sizes[labels[g]])
            state[cols["sample_id"][rows[g]]] = (cols["sample_id"][kept_row], sim, bits, rule, size)
        return state

    def bind(self, state: State) -> ApplyCaptionDedup:
        return ApplyCaptionDedup(self.params, groups=state)


def _kind(author: str | None) -> str:
    """ "author", "report", "model", "template", ... (the part before the colon), "" when unknown."""
    return (author or "").split(":", 1)[0]


def _comparable(cols: Mapping[str, Sequence[Any]]) -> tuple[np.ndarray, list[str], list[str | None]]:
    """Rows whose caption may be compared (not template-authored, not empty): their normalised text
    and caption author."""
    rows, texts, authors = [], [], []
    for row, (caption, author) in enumerate(
        zip(cols["text.final_caption"], cols["text.final_caption_author"], strict=True)
    ):
        if (author or "").startswith(TEMPLATE_PREFIX):
            continue
        normalised = textsim.normalise(caption)
        if normalised:
            rows.append(row)
            texts.append(normalised)
            authors.append(author)
    return np.array(rows, np.int64), texts, authors


def _phashes(values: Sequence[str | None]) -> np.ndarray:
    """phash hex strings as uint64; all ones marks a missing phash (never compared).

    A real phash is never all ones (its bits are DCT coefficients above their median, about half),
    so the sentinel keeps the hashes one plain array for ``components`` and the cross search.
    """
    missing = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    return np.array([int(v, 16) if v else missing for v in values], dtype=np.uint64)


def _has_hash(hashes: np.ndarray) -> np.ndarray:
    return hashes != np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def _bits(hashes: np.ndarray, a: int, b: int) -> int | None:
    if not (_has_hash(hashes[a]) and _has_hash(hashes[b])):
        return None
    return int(hashes[a] ^ hashes[b]).bit_count()


def _similarity(
    p: Mapping[str, Any], uniq: list[str]
) -> tuple[np.ndarray, np.ndarray, Callable[[int, int], float]]:
    """(pairs of distinct texts at or above the lower threshold, their similarity, sim(u, v))."""
    lower = min(float(p["threshold"]), float(p["verbatim_threshold"]))
    if p["method"] == "minilm":
        pairs, sims, vectors = textsim.minilm_pairs(uniq, lower)
        return pairs, sims, lambda u, v: float(min(1.0, vectors[u] @ vectors[v]))
    k = int(p["shingle_size"])
    pairs, sims = textsim.minhash_pairs(uniq, lower, k=k, num_perm=int(p["num_perm"]))

    def jaccard(u: int, v: int) -> float:
        a, b = textsim.shingle_sets([uniq[u], uniq[v]], k)
        return textsim.jaccard(a, b)

    return pairs, sims, jaccard


def _members(inverse: np.ndarray) -> list[np.ndarray]:
    """Positions (into the comparable rows) of each distinct text, in row order."""
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.cumsum(np.bincount(inverse))[:-1])


def _star(members: np.ndarray) -> np.ndarray:
    """Links that put ``members`` in one group without listing their n² pairs."""
    return np.column_stack([np.full(len(members) - 1, members[0]), members[1:], np.zeros(len(members) - 1)])


def _image_pairs(hashes: np.ndarray, a: np.ndarray, b: np.ndarray | None, radius: int) -> np.ndarray:
    """Links between members whose phashes are within ``radius`` bits: inside ``a`` when ``b`` is
    None (identical captions: exact ``components`` search), else across ``a`` and ``b``."""
    a = a[_has_hash(hashes[a])]
    if b is None:
        if len(a) < 2:
            return np.zeros((0, 3), np.int64)
        labels = components(hashes[a], radius)
        return np.concatenate(
            [np.zeros((0, 3), np.int64)] + [_star(a[labels == c]) for c in np.unique(labels)]
        )
    b = b[_has_hash(hashes[b])]
    if not len(a) or not len(b):
        return np.zeros((0, 3), np.int64)
    found = near_duplicate_cross_pairs(hashes[a], hashes[b], radius)
    return np.column_stack([a[found[:, 0]], b[found[:, 1]], found[:, 2]])


def _links(
    p: Mapping[str, Any],
    uniq: list[str],
    inverse: np.ndarray,
    hashes: np.ndarray,
    verbatim_ok: np.ndarray,
    pairs: np.ndarray,
    sims: np.ndarray,
) -> np.ndarray:
    """(a, b, _) links between comparable rows by the two rules (see the module docstring).

    Identical texts are similarity 1: their rows are linked by image, and those that may be verbatim
    copies (long, author kind allowed) all at once. A pair of distinct texts links its rows by image
    when at or above ``threshold``, and its first verbatim-eligible rows when at or above
    ``verbatim_threshold``.
    """
    long = np.array([len(text.split()) >= int(p["min_words"]) for text in uniq])
    members = _members(inverse)
    eligible = [group[verbatim_ok[group]] if long[u] else group[:0] for u, group in enumerate(members)]
    radius = int(p["image_radius"])
    links = [np.zeros((0, 3), np.int64)]
    for u, group in enumerate(members):
        if len(group) > 1:
            links.append(_image_pairs(hashes, group, None, radius))
        if len(eligible[u]) > 1:
            links.append(_star(eligible[u]))
    for (u, v), sim in zip(pairs.tolist(), sims.tolist(), strict=True):
        if sim >= float(p["threshold"]):
            links.append(_image_pairs(hashes, members[u], members[v], radius))
        if sim >= float(p["verbatim_threshold"]) and len(eligible[u]) and len(eligible[v]):
            links.append(np.array([[eligible[u][0], eligible[v][0], 0]]))
    return np.concatenate(links).astype(np.int64)


def _rule(
    p: Mapping[str, Any], sim: float, bits: int | None, verbatim_ok: bool, text: str, kept_text: str
) -> str:
    """Which rule links a record directly to the kept one ("chain": only through other members)."""
    long = min(len(text.split()), len(kept_text.split())) >= int(p["min_words"])
    if sim >= float(p["verbatim_threshold"]) and long and verbatim_ok:
        return "verbatim"
    if sim >= float(p["threshold"]) and bits is not None and bits <= int(p["image_radius"]):
        return "caption+image"
    return "chain"


class ApplyCaptionDedup(RecordStage):
    name = CaptionDedupStage.name
    version = CaptionDedupStage.version

    def __init__(self, params: Mapping[str, Any], groups: State):
        super().__init__(params)
        self.groups = groups
        self.method = params.get("method", DEFAULTS["method"])

    def lineage_extras(self) -> dict[str, Any]:
        """The embedding model's identity on every event when MiniLM decided the pairs."""
        return {"model": textsim.minilm_identity()} if self.method == "minilm" else {}

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        entry = self.groups.get(record["sample_id"])
        if entry is None:
            return record, {}
        kept, similarity, bits, rule, size = entry
        if kept == record["sample_id"]:
            return record, {"caption_group_size": size}
        distance = round(1.0 - similarity, 6)
        record["dedup"] = {**(record["dedup"] or {}), "duplicate_of": kept, "method": self.method}
        record["dedup"]["distance"] = distance
        raise Filter(
            "caption_duplicate",
            f"{rule}, similarity {similarity:.3f} to {kept}",
            **self.lineage_extras(),
            duplicate_of=kept,
            method=self.method,
            distance=distance,
            similarity=round(similarity, 6),
            image_bits=bits,
            rule=rule,
        )


__all__ = ["CaptionDedupStage", "METHODS"]
