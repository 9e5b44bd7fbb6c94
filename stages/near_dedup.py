"""Near duplicates by 64-bit perceptual hash (``image.phash``), across all sources (a global stage).

A resized, re-encoded or slightly re-toned copy of a figure has a different pixel hash (so
``exact_dedup`` misses it) but a phash a few bits away. ``fit`` finds every pair within ``radius`` bits
exactly (``medcurate.dedup``), links them into single-link groups and picks one record per group by
the ``keep`` policy; the others are filtered with lineage naming the kept one and their distance.

Single link chains: in A~B~C, C may be more than ``radius`` bits from A; the distance stored is the
real one to the kept record, so such chains are visible in the lineage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from medcurate.dedup import components
from medcurate.schemas.record import get_score
from medcurate.stages.base import Filter, GlobalStage, RecordStage, StageContext

#: Most to least permissive; None and unknown ids rank after all of these.
LICENSE_ORDER = ("cc0", "pd", "cc-by", "cc-by-sa", "cc-by-nd", "cc-by-nc", "cc-by-nc-sa", "cc-by-nc-nd")
KEEP_CRITERIA = ("quality", "license", "resolution", "sample_id")
DEFAULTS: dict[str, Any] = {"radius": 6, "keep": list(KEEP_CRITERIA), "quality_score": "judge.quality"}


def _score(scores: list[dict[str, Any]] | None, name: str) -> float:
    """The score, or nan when absent (nan sorts after every score, so unscored records lose ties)."""
    value = get_score({"scores": scores}, name)
    return np.nan if value is None else value


class NearDedupStage(GlobalStage):
    name = "near_dedup"
    version = "1"
    # ``scores`` is a top-level list column: both engines fetch it by name like the dotted paths.
    fit_columns = ("image.phash", "image.source_width", "image.source_height", "source.license", "scores")

    def _params(self) -> dict[str, Any]:
        p = {**DEFAULTS, **self.params}
        unknown = set(p["keep"]) - set(KEEP_CRITERIA)
        if unknown:
            raise ValueError(f"near_dedup: unknown keep criteria {sorted(unknown)}; known: {KEEP_CRITERIA}")
        return p

    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> dict[str, tuple[str, str, int]]:
        """sample_id -> (group id, kept sample_id, bits from the kept one), for grouped records only."""
        p = self._params()
        cols = {name: table.column(name).to_pylist() for name in ("sample_id", *self.fit_columns)}
        rows = [i for i, h in enumerate(cols["image.phash"]) if h]
        if len(rows) < 2:
            return {}
        hashes = np.array([int(cols["image.phash"][i], 16) for i in rows], dtype=np.uint64)
        labels = components(hashes, int(p["radius"]))
        sizes = np.bincount(labels)
        grouped = np.flatnonzero(sizes[labels] > 1)
        if not len(grouped):
            return {}
        ids = np.array([cols["sample_id"][rows[k]] for k in grouped])
        lic_rank = {lic: r for r, lic in enumerate(LICENSE_ORDER)}
        keys = {
            "quality": np.array([-_score(cols["scores"][rows[k]], p["quality_score"]) for k in grouped]),
            "license": np.array(
                [lic_rank.get(cols["source.license"][rows[k]], len(lic_rank)) for k in grouped]
            ),
            "resolution": -np.array(
                [
                    (cols["image.source_width"][rows[k]] or 0) * (cols["image.source_height"][rows[k]] or 0)
                    for k in grouped
                ],
                dtype=np.int64,
            ),
            "sample_id": np.argsort(np.argsort(ids, kind="stable"), kind="stable"),
        }
        criteria = [*p["keep"], "sample_id"]  # sample_id last always, so the choice is deterministic
        order = np.lexsort(tuple(keys[c] for c in reversed(criteria)) + (labels[grouped],))
        lab = labels[grouped][order]
        first = np.r_[True, lab[1:] != lab[:-1]]
        kept_of = dict(zip(lab[first].tolist(), order[first].tolist(), strict=True))
        state = {}
        for pos, k in enumerate(grouped.tolist()):
            kept = kept_of[int(labels[k])]
            distance = int(np.bitwise_count(hashes[k] ^ hashes[grouped[kept]]))
            state[str(ids[pos])] = (str(ids[kept]), str(ids[kept]), distance)
        return state

    def bind(self, state: dict[str, tuple[str, str, int]]) -> ApplyNearDedup:
        return ApplyNearDedup(self.params, groups=state)


class ApplyNearDedup(RecordStage):
    name = NearDedupStage.name
    version = NearDedupStage.version

    def __init__(self, params: dict[str, Any], groups: dict[str, tuple[str, str, int]]):
        super().__init__(params)
        self.groups = groups

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        entry = self.groups.get(record["sample_id"])
        if entry is None:
            return record, {}
        group, kept, distance = entry
        record["dedup"] = {**(record["dedup"] or {}), "near_group": group}
        if kept != record["sample_id"]:
            record["dedup"].update(duplicate_of=kept, method="phash", distance=float(distance))
            raise Filter(
                "near_duplicate",
                f"{distance} bits from {kept}",
                duplicate_of=kept,
                method="phash",
                distance=distance,
            )
        return record, {}
