"""What earlier releases hold, for dedup stages that must not undo them.

Two facts from the lake, both relative to the release this run will publish (``StageContext.release``):

- **Released samples.** A sample in the latest release of that name (made by another run) ranks first
  under the keep criterion ``released``: a later, better copy of a published sample is the one removed,
  so researchers never see a sample vanish from the next version because a duplicate arrived.
- **Settled samples** (``settled_index``): the samples a dedup stage kept in the run that published the
  latest release, with the hashes it matched them by. No two of them were duplicates then, so under
  the same matching params a nightly run matches only its new (or changed) samples against them and
  each other, instead of re-deriving every pair of a million-sample corpus. Each run writes its own
  index (``runs/<run_id>/<stage>-index.parquet``); the next run reads the one of the released run.

"The latest release made by another run": a resumed or repeated run (same run id) must decide exactly
as it did the first time, whether or not its own release was already published.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medcurate.lake.store import Lake
from medcurate.release.catalog import ReleaseRef, list_releases
from medcurate.stages.base import StageContext

#: Parquet metadata key that holds what an index was matched under.
_FINGERPRINT_KEY = b"medcurate.match_fingerprint"
_COUNTS_KEY = b"medcurate.counts"


def previous_release(ctx: StageContext | None) -> tuple[Lake, ReleaseRef] | None:
    """The latest release of ``ctx.release`` not made by this run, with its lake."""
    if ctx is None or ctx.lake_uri is None or ctx.release is None:
        return None
    lake = Lake(ctx.lake_uri)
    earlier = [r for r in list_releases(lake, ctx.release) if r.info.get("run_id") != ctx.run_id]
    return (lake, earlier[-1]) if earlier else None  # list_releases sorts by version


@functools.lru_cache(maxsize=4)
def _manifest_keys(manifest_path: str) -> frozenset[str]:
    return frozenset(pq.read_table(manifest_path, columns=["key"]).column("key").to_pylist())


def released_flags(ctx: StageContext | None, sample_ids: Sequence[str]) -> list[bool]:
    """Whether each sample is in the previous release (all False without one)."""
    found = previous_release(ctx)
    if found is None:
        return [False] * len(sample_ids)
    lake, release = found
    keys = _manifest_keys(str(lake.local_path(release.path, "manifest.parquet")))
    return [sample_id in keys for sample_id in sample_ids]


def index_rel(run_id: str, stage: str) -> str:
    return f"runs/{run_id}/{stage}-index.parquet"


def write_settled_index(
    ctx: StageContext | None, stage: str, table: pa.Table, fingerprint: str, **counts: int
) -> None:
    """Record the samples ``stage`` kept in this run (one row each, with the hashes it matched), and
    ``counts`` (e.g. how many were settled before and how many searched) for whoever audits the run."""
    if ctx is None or ctx.lake_uri is None:
        return
    meta = {_FINGERPRINT_KEY: fingerprint.encode(), _COUNTS_KEY: json.dumps(counts, sort_keys=True).encode()}
    Lake(ctx.lake_uri).write_parquet(index_rel(ctx.run_id, stage), table.replace_schema_metadata(meta))


def settled_index(ctx: StageContext | None, stage: str, fingerprint: str) -> dict[str, str] | None:
    """sample_id -> the ``signature`` of the hashes ``stage`` kept it with in the released run, if
    that run matched under the same ``fingerprint`` (None otherwise: a changed radius may join samples
    that were apart)."""
    found = previous_release(ctx)
    if found is None:
        return None
    lake, release = found
    rel = index_rel(str(release.info.get("run_id")), stage)
    if not lake.exists(rel):
        return None
    table = pq.read_table(lake.local_path(rel))
    if (table.schema.metadata or {}).get(_FINGERPRINT_KEY, b"").decode() != fingerprint:
        return None
    ids = table.column("sample_id").to_pylist()
    rest = [name for name in table.column_names if name != "sample_id"]
    values = zip(*(table.column(name).to_pylist() for name in rest), strict=True)
    return {sample_id: signature(value) for sample_id, value in zip(ids, values, strict=True)}


def index_counts(lake: Lake, run_id: str, stage: str) -> dict[str, int]:
    """The counts a run's index was written with (``{}`` when it has none)."""
    meta = pq.read_schema(lake.local_path(index_rel(run_id, stage))).metadata or {}
    return json.loads(meta.get(_COUNTS_KEY, b"{}"))


def signature(values: Sequence[Any]) -> str:
    """The hashes a sample was matched by, comparable between an index row and a current record."""
    return json.dumps(list(values), sort_keys=True)


def with_released(columns: dict[str, list[Any]], ctx: StageContext | None) -> dict[str, list[Any]]:
    """``columns`` (a stage's fit columns, with ``sample_id``) plus the keep policy's ``released``."""
    columns["released"] = released_flags(ctx, columns["sample_id"])
    return columns
