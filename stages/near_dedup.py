"""Near duplicates by 64-bit perceptual hash (``image.phash``), across all sources (a global stage).

A resized, re-encoded or slightly re-toned copy of a figure has a different pixel hash (so
``exact_dedup`` misses it) but a phash a few bits away. ``fit`` finds every pair within ``radius`` bits
exactly (``medcurate.dedup``), links them into single-link groups and picks one record per group by
the ``keep`` policy; the others are filtered with lineage naming the kept one and their distance.

With ``variants`` (e.g. ``[hflip]``, hashed by normalize's ``hash_variants``), a record whose flipped
view is within ``radius`` of another's phash joins its group too; its lineage says ``phash:hflip``.

Single link chains: in A~B~C, C may be more than ``radius`` bits from A; the distance stored is the
real one to the kept record, so such chains are visible in the lineage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from medcurate.dedup import components, groups, near_duplicate_cross_pairs
from medcurate.dedup.keep import DEFAULT_KEEP, DEFAULT_QUALITY_SCORE, KEEP_COLUMNS, check_keep, kept_members
from medcurate.stages.base import Filter, GlobalStage, RecordStage, StageContext

DEFAULTS: dict[str, Any] = {
    "radius": 6,
    "variants": [],
    "keep": DEFAULT_KEEP,
    "quality_score": DEFAULT_QUALITY_SCORE,
}

#: sample_id -> (group id, kept sample_id, bits from the kept one, method: "phash" or "phash:<view>").
NearState = dict[str, tuple[str, str, int, str]]


def _hex(value: str) -> int:
    return int(value, 16)


class NearDedupStage(GlobalStage):
    name = "near_dedup"
    version = "2"  # 2: shared keep policy with "oldest"; flipped/rotated views
    known_params = ("radius", "variants", "keep", "quality_score")
    # ``scores`` is a top-level list column: both engines fetch it by name like the dotted paths.
    fit_columns = ("image.phash", "image.phash_variants", *KEEP_COLUMNS)

    def _params(self) -> dict[str, Any]:
        p = {**DEFAULTS, **self.params}
        check_keep(p["keep"], self.name)
        return p

    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> NearState:
        """Group records whose phash (or a configured view's phash) is within ``radius`` of another's."""
        p = self._params()
        radius = int(p["radius"])
        cols = {name: table.column(name).to_pylist() for name in ("sample_id", *self.fit_columns)}
        rows = np.array([i for i, h in enumerate(cols["image.phash"]) if h], dtype=np.int64)
        if len(rows) < 2:
            return {}
        hashes = np.array([_hex(cols["image.phash"][i]) for i in rows], dtype=np.uint64)
        views = self._views(cols, rows, p["variants"])
        labels = components(hashes, radius)
        # A flipped copy is near the original's flipped view: link those components too.
        links = [near_duplicate_cross_pairs(view, hashes, radius)[:, :2] for view in views.values()]
        links = np.concatenate([np.zeros((0, 2), np.int64), *links])
        if len(links):
            pairs = np.column_stack(
                [labels[links[:, 0]], labels[links[:, 1]], np.zeros(len(links), np.int64)]
            )
            labels = groups(int(labels.max()) + 1, pairs)[labels]
        grouped = np.flatnonzero(np.bincount(labels)[labels] > 1)
        if not len(grouped):
            return {}
        kept = kept_members(cols, rows[grouped], labels[grouped], p["keep"], p["quality_score"])
        position = {int(row): k for k, row in enumerate(rows.tolist())}
        state: NearState = {}
        for k, kept_row in zip(grouped.tolist(), kept.tolist(), strict=True):
            target = hashes[position[kept_row]]
            method, distance = "phash", int(np.bitwise_count(hashes[k] ^ target))
            for view, view_hashes in views.items():
                d = int(np.bitwise_count(view_hashes[k] ^ target))
                if d < distance:
                    method, distance = f"phash:{view}", d
            kept_id = cols["sample_id"][kept_row]
            state[cols["sample_id"][rows[k]]] = (kept_id, kept_id, distance, method)
        return state

    @staticmethod
    def _views(cols: dict[str, list[Any]], rows: np.ndarray, variants: list[str]) -> dict[str, np.ndarray]:
        """Per configured view, the hash of each row's view; normalize must have computed them."""
        views = {}
        for view in variants:
            found = []
            for i in rows.tolist():
                by_name = {v["transform"]: v["phash"] for v in cols["image.phash_variants"][i] or []}
                if view not in by_name:
                    raise ValueError(
                        f"near_dedup: variant {view!r} is missing on {cols['sample_id'][i]}; "
                        f"add it to normalize's hash_variants"
                    )
                found.append(_hex(by_name[view]))
            views[view] = np.array(found, dtype=np.uint64)
        return views

    def bind(self, state: NearState) -> ApplyNearDedup:
        return ApplyNearDedup(self.params, groups=state)


class ApplyNearDedup(RecordStage):
    name = NearDedupStage.name
    version = NearDedupStage.version

    def __init__(self, params: dict[str, Any], groups: NearState):
        super().__init__(params)
        self.groups = groups

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        entry = self.groups.get(record["sample_id"])
        if entry is None:
            return record, {}
        group, kept, distance, method = entry
        record["dedup"] = {**(record["dedup"] or {}), "near_group": group}
        if kept != record["sample_id"]:
            record["dedup"].update(duplicate_of=kept, method=method, distance=float(distance))
            raise Filter(
                "near_duplicate",
                f"{distance} bits from {kept}",
                duplicate_of=kept,
                method=method,
                distance=distance,
            )
        return record, {}
