"""Remove training samples whose image is in an evaluation set (a global stage).

A benchmark score means little when the test images were trained on. ``fit`` loads (or builds and
caches, see ``medcurate.dedup.evalsets``) a fingerprint index of each configured evaluation set and
matches every active record against it: first the same ``pixel_sha256`` (an identical or losslessly
re-encoded copy), then a ``phash`` within ``radius`` bits (a resized or re-compressed copy), exactly,
with ``near_duplicate_cross_pairs``, confirmed like ``near_dedup`` does by the 256-bit ``phash_fine``
within ``fine_radius`` (64-bit hashes of different chest films often sit a few bits apart). A pair
where either side lacks the fine hash (an eval manifest from an older release) is kept unconfirmed:
here removing a look-alike costs one training sample, missing a copy costs a benchmark.

The first set in config order that matches a sample claims it, and within a set an exact match beats
a near one. Matched samples are filtered as ``eval_overlap`` with the set and member in their lineage.

Per-set counts (images indexed, unreadable, training samples removed) are written by ``fit`` to
``runs/<run_id>/decontaminate.json``: the ledger only counts reason codes, and ``fit`` is the one
place, on the driver of either engine, that knows every match. The release card reads that file.

With no ``eval_sets`` the stage matches nothing, so pipelines can ship it always.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from medcurate.dedup import near_duplicate_cross_pairs
from medcurate.dedup.evalsets import EvalIndex, EvalSetSpec, listing, load_index
from medcurate.hashing import sha256_json
from medcurate.lake.store import Lake
from medcurate.stages.base import Filter, GlobalStage, RecordStage, StageContext

DEFAULTS: dict[str, Any] = {"eval_sets": [], "radius": 6, "fine_radius": 24, "normalize": None}
EXACT, NEAR = "exact_pixels", "phash"

#: sample_id -> (eval set, eval member, method, Hamming distance in bits)
Matches = dict[str, tuple[str, str, str, int]]


def summary_rel(run_id: str) -> str:
    """Where ``fit`` leaves its per-set counts for the release card."""
    return f"runs/{run_id}/decontaminate.json"


class DecontaminateStage(GlobalStage):
    name = "decontaminate"
    version = "1"
    known_params = ("eval_sets", "radius", "fine_radius", "normalize")
    fit_columns = ("image.pixel_sha256", "image.phash", "image.phash_fine")

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
        self._config_hash: str | None = None
        self._listings: list[list[Any]] | None = None

    def listings(self) -> list[list[Any]]:
        """Each set's listing (file stats), made once: the config hash and the index key share it."""
        if self._listings is None:
            self._listings = [listing(spec) for spec in self.specs]
        return self._listings

    @property
    def config_hash(self) -> str:
        """Params plus each set's listing, so a changed evaluation set changes the run id.

        Without this a resumed run (same config, same inputs) would keep map outputs made against
        the old set, since finished parts are never redone within a run.
        """
        if self._config_hash is None:
            self._config_hash = sha256_json(
                {
                    "stage": self.name,
                    "version": self.version,
                    "params": dict(self.params),
                    "eval_sets": [sha256_json(facts) for facts in self.listings()],
                }
            )[:16]
        return self._config_hash

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
        if indexes and table.num_rows:
            ids = table.column("sample_id").to_pylist()
            pixels = table.column("image.pixel_sha256").to_pylist()
            phashes = table.column("image.phash").to_pylist()
            fine = table.column("image.phash_fine").to_pylist()
            for index in indexes:
                _match_exact(index, ids, pixels, matches)
                _match_near(index, ids, phashes, fine, (self.radius, self.fine_radius), matches)
        if lake is not None and ctx is not None:
            lake.write_json(summary_rel(ctx.run_id), self.summary(indexes, matches))
        return matches

    def summary(self, indexes: list[EvalIndex], matches: Matches) -> dict[str, Any]:
        """Per set: images indexed, not indexed, training samples removed and eval images they hit."""
        removed = Counter(entry[0] for entry in matches.values())
        hit: dict[str, set[str]] = {}
        for set_name, member, _, _ in matches.values():
            hit.setdefault(set_name, set()).add(member)
        return {
            index.name: {
                **index.summary(),
                "removed": removed.get(index.name, 0),
                "eval_images_matched": len(hit.get(index.name, ())),
                "radius": self.radius,
                "fine_radius": self.fine_radius,
            }
            for index in indexes
        }

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
) -> None:
    """Claim unclaimed samples with a phash within ``radius`` of one in the set, confirmed by the
    fine hash when both sides have one (nearest, then first in listing order)."""
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
        matches[sample_id] = (index.name, members[b_pos[b]], NEAR, int(distance))


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
        """The fitted stage's hash (with its eval-set listings), so lineage names what was matched."""
        return self._fitted_hash

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        entry = self.matches.get(record["sample_id"])
        if entry is None:
            return record, {}
        set_name, member, method, distance = entry
        record["dedup"] = {**(record["dedup"] or {}), "method": method, "distance": float(distance)}
        how = "same pixels as" if method == EXACT else f"{distance} bits from"
        raise Filter(
            "eval_overlap",
            f"{how} {set_name}:{member}",
            eval_set=set_name,
            eval_member=member,
            method=method,
            distance=distance,
        )
