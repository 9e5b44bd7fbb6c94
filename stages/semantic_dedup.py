"""Semantic duplicates by image embedding (SemDeDup), across all sources (a global model stage).

Two renderings of one figure at different crops, a screenshot of a slide and the slide, the same
scan exported with other window settings: their pixel hashes and phashes differ, their embeddings
hardly do. ``fit`` reads every active record's image vector from the lake's vector store (written by
the ``embed`` stage with the same embed model), finds every pair above ``threshold`` cosine
(``medcurate.dedup.semantic``: exact up to 20k images, clustered with border probes beyond), and
groups them as stars in the shared ``keep`` order (``keep.star_groups``): the best record claims
its neighbours above the threshold, and so on. The others are filtered with lineage naming the kept
one, the model, and their cosine distance to it.

Params: ``threshold`` (cosine, default 0.95), ``clusters`` (k-means clusters, default sqrt(n)),
``probes`` (clusters each image joins, default 2), ``keep``, ``quality_score``, ``role`` (``embed``).
The threshold is a property of the embedding model: 0.95 is conservative for CLIP-like models (see
docs/decisions/0009-semantic-dedup.md); tune it per model on a labelled sample of pairs.

Stars, not single-link chains: in A~B~C with C below the threshold to A, A claims B and C stays (or
claims its own neighbours), so every removed record is above the threshold to the one it names.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from medcurate.dedup.keep import (
    DEFAULT_KEEP,
    DEFAULT_QUALITY_SCORE,
    KEEP_COLUMNS,
    check_keep,
    preference_order,
    star_groups,
)
from medcurate.dedup.released import with_released
from medcurate.dedup.semantic import semantic_duplicate_pairs
from medcurate.dedup.vectors import stored_vectors
from medcurate.stages.base import Filter, RecordStage, StageContext
from medcurate.stages.model_stage import GlobalModelStage

DEFAULTS: dict[str, Any] = {
    "threshold": 0.95,
    "clusters": None,
    "probes": 2,
    "keep": DEFAULT_KEEP,
    "quality_score": DEFAULT_QUALITY_SCORE,
}
#: sample_id -> (group id, kept sample_id, cosine to the kept one), for grouped records only.
State = dict[str, tuple[str, str, float]]


class SemanticDedupStage(GlobalModelStage):
    name = "semantic_dedup"
    version = "1"
    role = "embed"
    known_params = ("threshold", "clusters", "probes", "keep", "quality_score", "role")
    fit_columns = ("image.sha256", *KEEP_COLUMNS)

    def _params(self) -> dict[str, Any]:
        p = {**DEFAULTS, **self.params}
        check_keep(p["keep"], self.name)
        if not 0.0 < float(p["threshold"]) <= 1.0:
            raise ValueError(f"{self.name}: threshold is a cosine in (0, 1], got {p['threshold']}")
        return p

    @property
    def method(self) -> str:
        return f"semantic:{self.require_model().ref}"

    def _vectors(self, keys: list[str], sample_ids: list[str], ctx: StageContext | None) -> np.ndarray:
        """The stored vector of each key; a missing one is a pipeline mistake, named with its fix."""
        lake_uri = ctx.lake_uri if ctx is not None else None
        return stored_vectors(self.name, self.require_model(), lake_uri, keys, sample_ids)

    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> State:
        p = self._params()
        cols = {name: table.column(name).to_pylist() for name in ("sample_id", *self.fit_columns)}
        with_released(cols, ctx)
        rows = np.array([i for i, h in enumerate(cols["image.sha256"]) if h], dtype=np.int64)
        if len(rows) < 2:
            return {}
        keys = [cols["image.sha256"][i] for i in rows]
        # Records sharing an image share a vector: search distinct images, then give both the label.
        uniq, inverse = np.unique(np.array(keys, dtype=object), return_inverse=True)
        inverse = inverse.reshape(-1)
        first = np.unique(inverse, return_index=True)[1]
        vectors = self._vectors(uniq.tolist(), [cols["sample_id"][rows[i]] for i in first], ctx)
        pairs = semantic_duplicate_pairs(
            vectors, float(p["threshold"]), clusters=p["clusters"], probes=int(p["probes"])
        )
        order = preference_order(cols, rows, p["keep"], p["quality_score"])
        ids = [cols["sample_id"][i] for i in rows.tolist()]
        state: State = {}
        for member, (centre, distance, _) in star_groups(order, _record_edges(inverse, pairs)).items():
            state[ids[member]] = (ids[centre], ids[centre], min(1.0, 1.0 - float(distance)))
        return state

    def bind(self, state: State) -> ApplySemanticDedup:
        return ApplySemanticDedup(self.params, groups=state, method=self.method, config_hash=self.config_hash)


def _record_edges(inverse: np.ndarray, pairs: np.ndarray) -> Iterator[tuple[int, int, float, None]]:
    """Edges between records (distance 1 - cosine) from pairs of their distinct images; records that
    share an image are at distance 0 from each other."""
    holders: dict[int, list[int]] = {}
    for position, image in enumerate(inverse.tolist()):
        holders.setdefault(image, []).append(position)
    for same in holders.values():
        for a, b in itertools.pairwise(same):
            yield a, b, 0.0, None
    for u, v, cosine in pairs.tolist():
        for a in holders[int(u)]:
            for b in holders[int(v)]:
                yield a, b, 1.0 - cosine, None


class ApplySemanticDedup(RecordStage):
    name = SemanticDedupStage.name
    version = SemanticDedupStage.version

    def __init__(self, params: dict[str, Any], groups: State, method: str, config_hash: str):
        super().__init__(params)
        self.groups = groups
        self.method = method
        self._config_hash = config_hash

    @property
    def config_hash(self) -> str:
        """The fitted stage's hash, which covers the embed model's identity."""
        return self._config_hash

    def lineage_extras(self) -> dict[str, Any]:
        return {"model": self.method.removeprefix("semantic:")}

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        entry = self.groups.get(record["sample_id"])
        if entry is None:
            return record, {}
        group, kept, cosine = entry
        record["dedup"] = {**(record["dedup"] or {}), "semantic_group": group}
        if kept != record["sample_id"]:
            distance = 1.0 - cosine
            record["dedup"].update(duplicate_of=kept, method=self.method, distance=distance)
            raise Filter(
                "semantic_duplicate",
                f"cosine {cosine:.3f} to {kept}",
                duplicate_of=kept,
                method=self.method,
                distance=distance,
                **self.lineage_extras(),
            )
        return record, {}


__all__ = ["ApplySemanticDedup", "SemanticDedupStage"]
