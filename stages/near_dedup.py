"""Near duplicates by perceptual hash, across all sources (a global stage).

A resized, re-encoded or slightly re-toned copy of a figure has a different pixel hash (so
``exact_dedup`` misses it) but a 64-bit phash a few bits away. ``fit`` finds every pair within
``radius`` bits exactly (``medcurate.dedup``), then confirms each with the 256-bit phash
(``fine_radius``): medical images share their low-frequency layout, so 64-bit hashes of different
chest films often sit a few bits apart, while the finer hash separates copies (measured 4-6 of 256
bits on the sample corpus's resized and re-encoded copies) from look-alikes (38 and up).

With ``variants`` (e.g. ``[hflip]``, hashed by normalize's ``hash_variants``), a record whose flipped
view matches another's hash is a duplicate too; its lineage says ``phash:hflip``. Pairs within one
``ignore_within`` group (by default one scan series) are never duplicates. Survivors are chosen by the
shared keep policy, greedily: no removed record is farther than the radius from the one it names.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from medcurate.dedup import near_duplicate_cross_pairs, near_duplicate_pairs
from medcurate.dedup.hashes import view_hashes
from medcurate.dedup.keep import (
    DEFAULT_KEEP,
    DEFAULT_QUALITY_SCORE,
    KEEP_COLUMNS,
    check_keep,
    preference_order,
    star_groups,
)
from medcurate.dedup.released import settled_index, signature, with_released, write_settled_index
from medcurate.hashing import sha256_json
from medcurate.stages.base import Filter, GlobalStage, RecordStage, StageContext

DEFAULTS: dict[str, Any] = {
    "radius": 6,
    "fine_radius": 24,  # of 256 bits: copies measure under ~10, look-alike scans 38 and up
    "variants": [],
    # Pairs inside one of these groups are not duplicates: neighbouring slices of one series look alike
    # by design and are separate samples.
    "ignore_within": ["scan.series_pseudonym"],
    "keep": DEFAULT_KEEP,
    "quality_score": DEFAULT_QUALITY_SCORE,
}

#: sample_id -> (kept sample_id, which names the group; bits from it; method: "phash" or "phash:<view>").
NearState = dict[str, tuple[str, int, str]]


def _hex(value: str) -> int:
    return int(value, 16)


def _remap(pairs: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Pairs found among subsets, as positions of the whole: (left[a], right[b], bits)."""
    return np.column_stack([left[pairs[:, 0]], right[pairs[:, 1]], pairs[:, 2]]).astype(np.int64)


class NearDedupStage(GlobalStage):
    name = "near_dedup"
    version = "2"  # 2: shared keep policy with "oldest"; flipped/rotated views
    known_params = ("radius", "fine_radius", "variants", "ignore_within", "keep", "quality_score")

    @property
    def fit_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        # ``scores`` is a top-level list column: both engines fetch it by name like the dotted paths.
        extra = [c for c in self._params()["ignore_within"] if c not in KEEP_COLUMNS]
        return ("image.phash", "image.phash_fine", "image.phash_variants", *KEEP_COLUMNS, *extra)

    def _params(self) -> dict[str, Any]:
        p = {**DEFAULTS, **self.params}
        check_keep(p["keep"], self.name)
        return p

    def match_fingerprint(self) -> str:
        """What decides whether two records match (not which one stays): an index of kept records
        made under another fingerprint cannot be trusted to hold no matching pair."""
        p = self._params()
        match = {k: p[k] for k in ("radius", "fine_radius", "variants", "ignore_within")}
        return sha256_json({"stage": self.name, "version": self.version, **match})[:16]

    def fit(self, table: pa.Table, ctx: StageContext | None = None) -> NearState:
        """Candidates by 64-bit phash (or a view's), confirmed by the 256-bit phash, then star groups.

        Groups are stars, not chains: records are visited best first (the keep policy), and each
        unclaimed record claims its unclaimed confirmed neighbours. So every removed record is within
        the radius of the record it names as kept, and a run of look-alikes never collapses into one.

        Incremental: records the released run kept with the same hashes (``settled``) held no pair
        then, so only pairs with a new or changed record are searched (``released.settled_index``).
        """
        p = self._params()
        radius = int(p["radius"])
        cols = {name: table.column(name).to_pylist() for name in ("sample_id", *self.fit_columns)}
        with_released(cols, ctx)
        rows = np.array([i for i, h in enumerate(cols["image.phash"]) if h], dtype=np.int64)
        ids = [cols["sample_id"][i] for i in rows]
        hashes = np.array([_hex(cols["image.phash"][i]) for i in rows], dtype=np.uint64)
        fine = [self._fine(cols, i) for i in rows.tolist()]
        variants = cols["image.phash_variants"]
        views = {
            view: [view_hashes(self.name, cols["sample_id"][i], variants[i], view) for i in rows.tolist()]
            for view in p["variants"]
        }
        # Per record, its configured views as [name, phash, fine phash]: what the index keeps and compares.
        view_lists = [json.dumps([[view, *views[view][k]] for view in views]) for k in range(len(rows))]
        signatures = [
            signature([cols["image.phash"][i], cols["image.phash_fine"][i], by_view])
            for i, by_view in zip(rows.tolist(), view_lists, strict=True)
        ]
        fingerprint = self.match_fingerprint()
        known = settled_index(ctx, self.name, fingerprint) or {}
        settled = np.array([known.get(i) == s for i, s in zip(ids, signatures, strict=True)], dtype=bool)
        new, old = np.flatnonzero(~settled), np.flatnonzero(settled)
        pairs = np.concatenate(
            [
                _remap(near_duplicate_pairs(hashes[new], radius), new, new),
                _remap(near_duplicate_cross_pairs(hashes[new], hashes[old], radius), new, old),
            ]
        )
        edges = [self._confirmed(pairs, "phash", fine, fine, p)]
        everyone = np.arange(len(rows))
        for view, view_rows in views.items():
            view_bits = np.array([_hex(h) for h, _ in view_rows], dtype=np.uint64)
            cross = np.concatenate(
                [
                    _remap(near_duplicate_cross_pairs(view_bits[new], hashes, radius), new, everyone),
                    _remap(near_duplicate_cross_pairs(view_bits[old], hashes[new], radius), old, new),
                ]
            )
            cross = cross[cross[:, 0] != cross[:, 1]]
            view_fine = [_hex(f) for _, f in view_rows]
            edges.append(self._confirmed(cross, f"phash:{view}", view_fine, fine, p))
        edges = self._outside_groups([e for e in edges if e], cols, rows, p["ignore_within"])
        state: NearState = {}
        if edges:
            order = preference_order(cols, rows, p["keep"], p["quality_score"])
            for member, (centre, bits, method) in star_groups(order, edges).items():
                state[ids[member]] = (ids[centre], int(bits), method or "phash")
        kept = [k for k, sample_id in enumerate(ids) if state.get(sample_id, (sample_id,))[0] == sample_id]
        index = pa.table(
            {
                "sample_id": [ids[k] for k in kept],
                "phash": [cols["image.phash"][rows[k]] for k in kept],
                "phash_fine": [cols["image.phash_fine"][rows[k]] for k in kept],
                "variants": [view_lists[k] for k in kept],
            }
        )
        write_settled_index(ctx, self.name, index, fingerprint, settled=len(old), searched=len(new))
        return state

    @staticmethod
    def _fine(cols: dict[str, list[Any]], i: int) -> int:
        value = cols["image.phash_fine"][i]
        if not value:
            raise ValueError(f"near_dedup: {cols['sample_id'][i]} has no phash_fine; re-run normalize (v2+)")
        return _hex(value)

    @staticmethod
    def _confirmed(
        pairs: np.ndarray, method: str, left: list[int], right: list[int], p: dict[str, Any]
    ) -> list[tuple[int, int, int, str]]:
        """(a, b, bits, method) for candidate pairs whose fine hashes are within ``fine_radius`` too."""
        out = []
        for a, b, bits in pairs.tolist():
            if (left[a] ^ right[b]).bit_count() <= int(p["fine_radius"]):
                out.append((a, b, bits, method))
        return out

    @staticmethod
    def _outside_groups(
        edges: list[list[tuple[int, int, int, str]]], cols: dict[str, list[Any]], rows: np.ndarray, within
    ) -> list[tuple[int, int, int, str]]:
        """Edges whose ends share no ``ignore_within`` value (slices of one series are not copies)."""
        flat = [edge for group in edges for edge in group]
        for column in within:
            values = [cols[column][i] for i in rows.tolist()]
            flat = [e for e in flat if values[e[0]] is None or values[e[0]] != values[e[1]]]
        return flat

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
        kept, distance, method = entry
        record["dedup"] = {**(record["dedup"] or {}), "near_group": kept}
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
