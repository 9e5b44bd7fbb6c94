"""Remove training samples whose image is in an evaluation set (a global stage).

A benchmark score means little when the test images were trained on. ``fit`` loads (or builds and
caches, see ``medcurate.dedup.evalsets``) a fingerprint index of each configured evaluation set and
matches every active record against it:

1. the same ``pixel_sha256`` (an identical or losslessly re-encoded copy);
2. a ``phash`` within ``radius`` bits (a resized or re-compressed copy), exactly, with
   ``near_duplicate_cross_pairs``, confirmed like ``near_dedup`` does by the 256-bit ``phash_fine``
   within ``fine_radius`` (64-bit hashes of different chest films often sit a few bits apart). A pair
   where either side lacks the fine hash (an eval manifest from an older release) is kept unconfirmed:
   here removing a look-alike costs one training sample, missing a copy costs a benchmark;
3. with ``variants`` (e.g. ``[hflip]``, hashed by normalize's ``hash_variants``), each view's hash of
   the training image against the eval phash, confirmed by the view's fine hash (``phash:hflip``);
4. with an embed model attached (role ``embed``; optional, the steps above run without one), the
   training image's vector against the eval images' vectors: the nearest one at a cosine of at least
   ``semantic_threshold`` (``semantic:<model>``). Training vectors are those the ``embed`` stage wrote,
   so ``embed`` must run before this stage; eval images are read again, normalized and embedded on the
   driver into the same vector store (keyed by normalized image sha256), once per model.

The first set in config order that matches a sample claims it, and within a set the steps above go
in order (exact, phash, views, semantic). Matched samples are filtered as ``eval_overlap`` with the
set, member and method in their lineage (and the model, for a semantic match).

Per-set counts (images indexed, unreadable, training samples removed, by method) are written by ``fit``
to ``runs/<run_id>/decontaminate.json``: the ledger only counts reason codes, and ``fit`` is the one
place, on the driver of either engine, that knows every match. The release card reads that file.

With no ``eval_sets`` the stage matches nothing, so pipelines can ship it always.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from medcurate.dedup import near_duplicate_cross_pairs
from medcurate.dedup.evalsets import EvalIndex, EvalSetSpec, listing, load_index, normalized_images
from medcurate.dedup.hashes import view_hashes
from medcurate.dedup.semantic import best_matches
from medcurate.dedup.vectors import VectorStore, stored_vectors, vector_namespace, vector_store
from medcurate.hashing import sha256_json
from medcurate.lake.store import Lake
from medcurate.models.registry import load_embedder
from medcurate.stages.base import Filter, RecordStage, StageContext
from medcurate.stages.model_stage import GlobalModelStage

DEFAULTS: dict[str, Any] = {
    "eval_sets": [],
    "radius": 6,
    "fine_radius": 24,
    "normalize": None,
    "variants": [],
    "semantic_threshold": 0.95,
}
EXACT, NEAR, SEMANTIC = "exact_pixels", "phash", "semantic"
#: Eval images handed to the embedder (and stored) at a time: bounds the normalized bytes held at once.
EMBED_CHUNK = 256

#: sample_id -> (eval set, eval member, method, distance: Hamming bits, or 1 - cosine when semantic)
Matches = dict[str, tuple[str, str, str, float]]


def summary_rel(run_id: str) -> str:
    """Where ``fit`` leaves its per-set counts for the release card."""
    return f"runs/{run_id}/decontaminate.json"


class DecontaminateStage(GlobalModelStage):
    name = "decontaminate"
    version = "2"  # 2: flipped/rotated views, semantic matching with an embed model
    role = "embed"
    model_optional = True  # exact and phash matching need no model; only semantic matching waits for one
    known_params = (
        "eval_sets",
        "radius",
        "fine_radius",
        "normalize",
        "variants",
        "semantic_threshold",
        "role",
    )
    fit_columns = (
        "image.pixel_sha256",
        "image.phash",
        "image.phash_fine",
        "image.phash_variants",
        "image.sha256",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        p = {**DEFAULTS, **self.params}
        self.specs = [EvalSetSpec.from_config(cfg) for cfg in p["eval_sets"] or []]
        names = [spec.name for spec in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"decontaminate: eval set names must be unique, got {names}")
        self.radius = int(p["radius"])
        if not 0 <= self.radius < 64:
            raise ValueError(f"decontaminate: radius must be in [0, 63], got {self.radius}")
        self.fine_radius = int(p["fine_radius"])
        self.normalize = dict(p["normalize"] or {})
        variants = p["variants"] or []
        if isinstance(variants, str) or not all(isinstance(v, str) for v in variants):
            raise ValueError(f"decontaminate: variants must be a list of view names, got {variants!r}")
        self.variants = list(variants)
        self.semantic_threshold = float(p["semantic_threshold"])
        if not 0.0 < self.semantic_threshold <= 1.0:
            raise ValueError(
                f"decontaminate: semantic_threshold is a cosine in (0, 1], got {p['semantic_threshold']}"
            )
        self._listing_hashes: list[str] | None = None
        self._listings: list[list[Any]] | None = None

    def listings(self) -> list[list[Any]]:
        """Each set's listing (file stats), made once: the config hash and the index key share it."""
        if self._listings is None:
            self._listings = [listing(spec) for spec in self.specs]
        return self._listings

    @property
    def config_hash(self) -> str:
        """Params, the embed model's identity and each set's listing, so a changed evaluation set (or
        other weights) changes the run id.

        Without the listing a resumed run (same config, same inputs) would keep map outputs made
        against the old set, since finished parts are never redone within a run. The model is attached
        after the stage is made, so only the listings are kept between calls.
        """
        if self._listing_hashes is None:
            self._listing_hashes = [sha256_json(facts) for facts in self.listings()]
        return sha256_json(
            {
                "stage": self.name,
                "version": self.version,
                "params": dict(self.params),
                "model": self.model.identity() if self.model else None,
                "eval_sets": self._listing_hashes,
            }
        )[:16]

    @property
    def semantic_method(self) -> str | None:
        return f"{SEMANTIC}:{self.model.ref}" if self.model else None

    def methods(self) -> list[str]:
        """Every method this configuration can match by, in precedence order."""
        views = [f"{NEAR}:{view}" for view in self.variants]
        return [EXACT, NEAR, *views, *([self.semantic_method] if self.model else [])]

    def indexes(self, lake: Lake | None) -> list[EvalIndex]:
        return [
            load_index(spec, self.normalize, lake, facts=facts)
            for spec, facts in zip(self.specs, self.listings(), strict=True)
        ]

    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> Matches:
        """Match every active record against each set's index; write the per-set summary."""
        lake = Lake(ctx.lake_uri) if ctx is not None and ctx.lake_uri else None
        indexes = self.indexes(lake)
        matches: Matches = {}
        embedded: dict[str, int] = {}
        if indexes and table.num_rows:
            ids = table.column("sample_id").to_pylist()
            pixels = table.column("image.pixel_sha256").to_pylist()
            phashes = table.column("image.phash").to_pylist()
            fine = table.column("image.phash_fine").to_pylist()
            radii = (self.radius, self.fine_radius)
            views = {}
            if self.variants:
                variants = table.column("image.phash_variants").to_pylist()
                views = {view: _view_hashes(ids, phashes, variants, view) for view in self.variants}
            semantic = _SemanticSearch(self, table, ids, ctx, indexes) if self.model else None
            for index in indexes:
                _match_exact(index, ids, pixels, matches)
                _match_near(index, ids, phashes, fine, radii, matches, NEAR)
                for view, (view_phashes, view_fine) in views.items():
                    _match_near(index, ids, view_phashes, view_fine, radii, matches, f"{NEAR}:{view}")
                if semantic is not None:
                    embedded[index.name] = semantic.match(index, matches)
        if lake is not None and ctx is not None:
            lake.write_json(summary_rel(ctx.run_id), self.summary(indexes, matches, embedded))
        return matches

    def summary(
        self, indexes: list[EvalIndex], matches: Matches, embedded: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """Per set: images indexed, not indexed, training samples removed (all and by method) and
        eval images they hit; with a model, its ref, the threshold and the eval images embedded."""
        removed = Counter(entry[0] for entry in matches.values())
        by_method = Counter((entry[0], entry[2]) for entry in matches.values())
        hit: dict[str, set[str]] = {}
        for set_name, member, _, _ in matches.values():
            hit.setdefault(set_name, set()).add(member)
        out = {}
        for index in indexes:
            out[index.name] = {
                **index.summary(),
                "removed": removed.get(index.name, 0),
                "eval_images_matched": len(hit.get(index.name, ())),
                "radius": self.radius,
                "fine_radius": self.fine_radius,
                "variants": self.variants,
                "by_method": {method: by_method.get((index.name, method), 0) for method in self.methods()},
            }
            if self.model is not None:
                out[index.name].update(
                    model=self.model.ref,
                    semantic_threshold=self.semantic_threshold,
                    eval_images_embedded=(embedded or {}).get(index.name, 0),
                )
        return out

    def bind(self, state: Matches) -> ApplyDecontaminate:
        return ApplyDecontaminate(self.params, matches=state, config_hash=self.config_hash)


def _match_exact(index: EvalIndex, ids: list[str], pixels: list[str | None], matches: Matches) -> None:
    """Claim unclaimed samples whose pixel hash is in the set (its first member in listing order)."""
    members: dict[str, str] = {}
    for member, digest in zip(
        index.table.column("member").to_pylist(), index.table.column("pixel_sha256").to_pylist(), strict=True
    ):
        if digest:
            members.setdefault(digest, member)
    for sample_id, digest in zip(ids, pixels, strict=True):
        if sample_id not in matches and digest in members:
            matches[sample_id] = (index.name, members[digest], EXACT, 0)


def _view_hashes(
    ids: list[str], phashes: list[str | None], variants: list[Any], view: str
) -> tuple[list[str | None], list[str | None]]:
    """(phash, fine phash) of one view of each record; a hashed record must have the view."""
    pairs = [
        view_hashes(DecontaminateStage.name, sample_id, views, view) if phash else (None, None)
        for sample_id, phash, views in zip(ids, phashes, variants, strict=True)
    ]
    return [h for h, _ in pairs], [f for _, f in pairs]


def _hashes(values: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the usable 16-hex phashes and their values as uint64."""
    rows = [i for i, h in enumerate(values) if h]
    return np.array(rows, dtype=np.int64), np.array([int(values[i], 16) for i in rows], dtype=np.uint64)


def _fine_distance(a: str | None, b: str | None) -> int | None:
    return (int(a, 16) ^ int(b, 16)).bit_count() if a and b else None


def _match_near(
    index: EvalIndex,
    ids: list[str],
    phashes: list[str | None],
    fine: list[str | None],
    radii: tuple[int, int],
    matches: Matches,
    method: str,
) -> None:
    """Claim unclaimed samples with a phash (of the image or of one view of it) within ``radius`` of
    one in the set, confirmed by the fine hash when both sides have one (nearest, then first in
    listing order)."""
    radius, fine_radius = radii
    open_rows = [i for i, sample_id in enumerate(ids) if sample_id not in matches]
    q_pos, queries = _hashes([phashes[i] for i in open_rows])
    b_pos, base = _hashes(index.table.column("phash").to_pylist())
    pairs = near_duplicate_cross_pairs(queries, base, radius)
    eval_fine = index.table.column("phash_fine").to_pylist()
    confirmed = [
        (fd is None or fd <= fine_radius)
        for fd in (
            _fine_distance(fine[open_rows[q_pos[q]]], eval_fine[b_pos[b]]) for q, b, _ in pairs.tolist()
        )
    ]
    pairs = pairs[np.array(confirmed, dtype=bool)] if len(pairs) else pairs
    if not len(pairs):
        return
    order = np.lexsort((pairs[:, 1], pairs[:, 2], pairs[:, 0]))  # per query: nearest, then first
    pairs = pairs[order]
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
    members = index.table.column("member").to_pylist()
    for q, b, distance in pairs[first].tolist():
        sample_id = ids[open_rows[q_pos[q]]]
        matches[sample_id] = (index.name, members[b_pos[b]], method, int(distance))


class _SemanticSearch:
    """Training vectors (read once, from what ``embed`` stored) against each set's eval vectors."""

    def __init__(
        self,
        stage: DecontaminateStage,
        table: pa.Table,
        ids: list[str],
        ctx: StageContext | None,
        indexes: list[EvalIndex],
    ):
        self.stage = stage
        self.model = stage.require_model()
        self.method = stage.semantic_method
        self.lake_uri = ctx.lake_uri if ctx is not None else None
        self.ids = ids
        self.keys = table.column("image.sha256").to_pylist()
        self._vectors: np.ndarray | None = None
        self._position: dict[str, int] = {}
        if any(_eval_keys(index) for index in indexes):
            self._read_training_vectors()

    def _read_training_vectors(self) -> None:
        keys, labels = [], []
        for sample_id, key in zip(self.ids, self.keys, strict=True):
            if key and key not in self._position:
                self._position[key] = len(keys)
                keys.append(key)
                labels.append(sample_id)
        self._vectors = stored_vectors(self.stage.name, self.model, self.lake_uri, keys, labels)

    def store(self) -> VectorStore:
        assert self.lake_uri is not None  # the training vectors needed it already
        return vector_store(self.lake_uri, vector_namespace(self.model))

    def eval_vectors(self, index: EvalIndex) -> tuple[list[str], np.ndarray]:
        """The set's distinct images with a vector (first member of each, in listing order) and their
        vectors; images with none in the store yet are read again and embedded first."""
        keys = _eval_keys(index)
        store = self.store()
        missing = set(store.missing(list(keys)))
        if missing:
            spec = next(spec for spec in self.stage.specs if spec.name == index.name)
            facts = self.stage.listings()[self.stage.specs.index(spec)]
            self._embed(
                store, normalized_images(spec, self.stage.normalize, [keys[k] for k in missing], facts)
            )
        vectors, found = store.read(list(keys))
        members = [member for member, ok in zip(keys.values(), found.tolist(), strict=True) if ok]
        return members, vectors[found]

    def _embed(self, store: VectorStore, images) -> None:
        embedder = load_embedder(self.model)
        chunk: dict[str, bytes] = {}
        for _, key, data in images:
            chunk.setdefault(key, data)
            if len(chunk) >= EMBED_CHUNK:
                store.put(list(chunk), embedder.embed_images(list(chunk.values())))
                chunk = {}
        if chunk:
            store.put(list(chunk), embedder.embed_images(list(chunk.values())))

    def match(self, index: EvalIndex, matches: Matches) -> int:
        """Claim unclaimed samples whose image's nearest eval vector is within the threshold; returns
        how many of the set's images have a vector."""
        keys = _eval_keys(index)
        if not keys or self._vectors is None:
            return 0
        members, base = self.eval_vectors(index)
        open_keys = sorted(
            {k for sid, k in zip(self.ids, self.keys, strict=True) if k and sid not in matches}
        )
        if not members or not open_keys:
            return len(members)
        queries = self._vectors[[self._position[k] for k in open_keys]]
        best, cosines = best_matches(queries, base, self.stage.semantic_threshold)
        hit = {
            key: (members[b], min(1.0, float(c)))
            for key, b, c in zip(open_keys, best.tolist(), cosines.tolist(), strict=True)
            if b >= 0
        }
        for sample_id, key in zip(self.ids, self.keys, strict=True):
            if sample_id not in matches and key in hit:
                member, cosine = hit[key]
                matches[sample_id] = (index.name, member, self.method, 1.0 - cosine)
        return len(members)


def _eval_keys(index: EvalIndex) -> dict[str, str]:
    """Normalized image sha256 -> its first member, for the set's images read from files (in order)."""
    keys: dict[str, str] = {}
    for member, key in zip(
        index.table.column("member").to_pylist(), index.table.column("sha256").to_pylist(), strict=True
    ):
        if key:
            keys.setdefault(key, member)
    return keys


class ApplyDecontaminate(RecordStage):
    name = DecontaminateStage.name
    version = DecontaminateStage.version

    def __init__(self, params: dict[str, Any], matches: Matches, config_hash: str):
        # Not DecontaminateStage's __post_init__: executors need neither the specs nor the files.
        super().__init__(params)
        self.matches = matches
        self._fitted_hash = config_hash

    @property
    def config_hash(self) -> str:
        """The fitted stage's hash (with its eval-set listings and model), so lineage names what was
        matched."""
        return self._fitted_hash

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        entry = self.matches.get(record["sample_id"])
        if entry is None:
            return record, {}
        set_name, member, method, distance = entry
        record["dedup"] = {**(record["dedup"] or {}), "method": method, "distance": float(distance)}
        extras: dict[str, Any] = {}
        if method == EXACT:
            how = "same pixels as"
        elif method.startswith(f"{SEMANTIC}:"):
            how = f"cosine {1.0 - distance:.5f} to"
            extras["model"] = method.removeprefix(f"{SEMANTIC}:")
        else:
            view = method.partition(":")[2]
            how = f"{distance} bits ({view} view) from" if view else f"{distance} bits from"
        raise Filter(
            "eval_overlap",
            f"{how} {set_name}:{member}",
            eval_set=set_name,
            eval_member=member,
            method=method,
            distance=distance,
            **extras,
        )
