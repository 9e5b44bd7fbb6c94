"""Append-only keyed rows in the lake: one immutable parquet file per batch, found through a key index.

Both the model result cache (``models.cache``) and the vector store (``dedup.vectors``) keep values
keyed by what determines them. Each batch is written once, as a file named by a hash of its keys, so
writers on different executors never collide and a crash loses at most the batch in flight; a key
written once is never rewritten. Lookups read the ``key`` column of each file once per process (an
index from key to file), then only the files holding what was asked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from typing import Generic, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from medcurate.hashing import sha256_json
from medcurate.lake.store import Lake


class KeyedFiles:
    """The files of one folder and the index from key to the first file holding it; thread-safe."""

    def __init__(self, lake: Lake, folder: str, prefix: str):
        self.lake = lake
        self.folder = folder
        self.prefix = prefix  # file names: <prefix>-<hash of keys>.parquet
        self._index: dict[str, str] = {}
        self._indexed_files: set[str] = set()
        self._loaded = False
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        """Index the files not indexed yet: all of them the first time, then only what others wrote."""
        for rel in self.lake.walk_files(self.folder, suffix=".parquet"):
            if rel not in self._indexed_files:
                for key in self.lake.read_parquet(rel, columns=["key"]).column("key").to_pylist():
                    self._index.setdefault(key, rel)
                self._indexed_files.add(rel)
        self._loaded = True

    def index(self, keys: Collection[str] = (), *, refresh_on_miss: bool = False) -> dict[str, str]:
        """Key -> file. Read from the lake on first use; with ``refresh_on_miss``, again when one of
        ``keys`` is unknown (another process may have written it: executors write, the driver reads)."""
        with self._lock:
            if not self._loaded or (refresh_on_miss and any(k not in self._index for k in keys)):
                self._refresh()
            return self._index

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._index)

    def tables(self, keys: Collection[str], *, refresh_on_miss: bool = False) -> Iterator[pa.Table]:
        """The rows of ``keys`` that exist, one filtered table per file, files in name order."""
        index = self.index(keys, refresh_on_miss=refresh_on_miss)
        by_file: dict[str, list[str]] = {}
        for key in set(keys):
            if key in index:
                by_file.setdefault(index[key], []).append(key)
        for rel, wanted in sorted(by_file.items()):
            table = self.lake.read_parquet(rel)
            yield table.filter(pc.is_in(table.column("key"), pa.array(sorted(wanted), pa.string())))

    def write(self, table: pa.Table) -> str:
        """Write ``table`` (distinct keys) as one immutable file named by its keys; index it; return it."""
        keys = sorted(table.column("key").to_pylist())
        rel = f"{self.folder}/{self.prefix}-{sha256_json(keys)[:20]}.parquet"
        if not self.lake.exists(rel):
            self.lake.write_parquet(rel, table.sort_by("key"))
        with self._lock:
            for key in keys:
                self._index.setdefault(key, rel)
            self._indexed_files.add(rel)
        return rel


T = TypeVar("T")


class PerProcess(Generic[T]):
    """One store object per (lake, namespace) in this process, so each index is read once per
    process however many stages, batches or threads ask; thread-safe."""

    def __init__(self, make: Callable[[Lake, str], T]):
        self._make = make
        self._objects: dict[tuple[str, str], T] = {}
        self._lock = threading.Lock()

    def get(self, lake_uri: str, namespace: str) -> T:
        with self._lock:
            key = (lake_uri, namespace)
            if key not in self._objects:
                self._objects[key] = self._make(Lake(lake_uri), namespace)
            return self._objects[key]

    def forget(self) -> None:
        """Drop in-memory indexes (tests that delete a lake, or a long-lived worker between runs)."""
        with self._lock:
            self._objects.clear()
