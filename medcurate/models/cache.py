"""Model results in the lake, keyed by what determines them, so nothing is computed twice.

Layout: ``state/model_cache/<namespace>/batch-<hash>.parquet``. The namespace is the model's identity
(name and revision) plus the task; the key inside it hashes the image sha256, the prompt's sha256, the
rendered prompt and the sampling parameters. Each batch of results is written as one file the moment
it is computed, so a crash mid-stage loses at most the batch in flight; files are immutable and named
by their keys, so writers on different Spark executors never collide.

Lookups read only the key column of the namespace once per process (an index from key to file), then
the rows they hit, so a large cache costs one small scan, not a full read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from medcurate.lake.keyed_files import KeyedFiles, PerProcess
from medcurate.lake.store import Lake

CACHE_ROOT = "state/model_cache"

CACHE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("value", pa.string()),  # canonical JSON of the result; null when it failed
        ("error", pa.string()),  # why there is no value (invalid_json: ..., schema_mismatch: ...)
        ("raw", pa.string()),  # the model's raw answer, for failures and audits
        ("attempts", pa.int32()),
        ("prompt_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("run_id", pa.string()),  # the run that computed it
    ]
)


class ResultCache:
    """Append-only results of one model on one task; safe to share between processes."""

    def __init__(self, lake: Lake, namespace: str):
        self.lake = lake
        self.folder = f"{CACHE_ROOT}/{namespace}"
        self._files = KeyedFiles(lake, self.folder, "batch")

    def __bool__(self) -> bool:
        """A cache is there even when empty (``__len__`` alone would make an empty one falsy)."""
        return True

    def __len__(self) -> int:
        return len(self._files.index())

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Cached rows for the keys that have one."""
        found: dict[str, dict[str, Any]] = {}
        for table in self._files.tables(set(keys)):
            for row in table.to_pylist():
                found.setdefault(row["key"], row)
        return found

    def put(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write one batch of results as one immutable file (atomically) and index it."""
        if rows:
            self._files.write(pa.Table.from_pylist([dict(row) for row in rows], CACHE_SCHEMA))


_CACHES = PerProcess(ResultCache)


def result_cache(lake_uri: str, namespace: str) -> ResultCache:
    """The process's cache object for a namespace (its index is read once per process)."""
    return _CACHES.get(lake_uri, namespace)


def forget_caches() -> None:
    """Drop in-memory indexes (tests that delete a lake, or a long-lived worker between runs)."""
    _CACHES.forget()
