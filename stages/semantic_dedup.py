"""Semantic duplicates by image embedding (SemDeDup), across all sources (a global model stage).

Two renderings of one figure at different crops, a screenshot of a slide and the slide, the same
scan exported with other window settings: their pixel hashes and phashes differ, their embeddings
hardly do. ``fit`` reads every active record's image vector from the lake's vector store (written by
the ``embed`` stage with the same embed model), finds every pair above ``threshold`` cosine
(``medcurate.dedup.semantic``: exact up to 20k images, clustered with border probes beyond), links them
into single-link groups and keeps one record per group by the shared ``keep`` policy. The others are
filtered with lineage naming the kept one, the model, and their cosine distance to it.

Params: ``threshold`` (cosine, default 0.95), ``clusters`` (k-means clusters, default sqrt(n)),
``probes`` (clusters each image joins, default 2), ``keep``, ``quality_score``, ``role`` (``embed``).
The threshold is a property of the embedding model: 0.95 is conservative for CLIP-like models (see
docs/decisions/0009-semantic-dedup.md); tune it per model on a labelled sample of pairs.

Single link chains: in A~B~C, C may be further than the threshold from A; the cosine stored is the
real one to the kept record, so such chains are visible in the lineage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from medcurate.dedup.hashes import groups
from medcurate.dedup.keep import DEFAULT_KEEP, DEFAULT_QUALITY_SCORE, KEEP_COLUMNS, check_keep, kept_members
from medcurate.dedup.semantic import pair_cosines, semantic_duplicate_pairs
from medcurate.dedup.vectors import vector_namespace, vector_store
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
        if ctx is None or ctx.lake_uri is None:
            raise RuntimeError(f"stage {self.name!r} reads image vectors from the lake and needs one")
        model = self.require_model()
        vectors, found = vector_store(ctx.lake_uri, vector_namespace(model)).read(keys)
        if not found.all():
            missing = [sid for sid, ok in zip(sample_ids, found.tolist(), strict=True) if not ok]
            raise RuntimeError(
                f"{self.name}: {len(missing)} of {len(keys)} images have no vector from {model.ref} "
                f"(e.g. {missing[:3]}); run the 'embed' stage with the same embed model before "
                f"{self.name!r} in the pipeline"
            )
        return vectors

    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> State:
        p = self._params()
        cols = {name: table.column(name).to_pylist() for name in ("sample_id", *self.fit_columns)}
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
        labels = groups(len(uniq), pairs)[inverse]
        grouped = np.flatnonzero(np.bincount(labels)[labels] > 1)
        if not len(grouped):
            return {}
        kept = kept_members(cols, rows[grouped], labels[grouped], p["keep"], p["quality_score"])
        position = np.full(len(cols["sample_id"]), -1, np.int64)
        position[rows] = np.arange(len(rows))
        cosines = pair_cosines(vectors, inverse[grouped], inverse[position[kept]])
        state: State = {}
        ids = cols["sample_id"]
        for row, kept_row, cosine in zip(rows[grouped], kept, cosines.tolist(), strict=True):
            state[ids[row]] = (ids[kept_row], ids[kept_row], min(1.0, cosine))
        return state

    def bind(self, state: State) -> ApplySemanticDedup:
        return ApplySemanticDedup(self.params, groups=state, method=self.method, config_hash=self.config_hash)


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
