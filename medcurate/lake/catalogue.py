"""The input catalogue: which inputs were read, what became of each record, and where it lies.

It is append-only (one small parquet file per committed part), so a crash can lose at most the part in
flight, and a nightly run learns from it which inputs are new without reading anything else.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from medcurate.lake.store import Lake

CATALOGUE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("input_key", pa.string()),
        ("sample_id", pa.string()),
        ("uri", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha256", pa.string()),
        ("status", pa.string()),
        ("status_reason", pa.string()),
        ("status_stage", pa.string()),
        ("part", pa.string()),  # lake-relative parquet file that holds the record
        ("run_id", pa.string()),
    ]
)


@dataclass(frozen=True)
class CatalogueEntry:
    source: str
    input_key: str
    sample_id: str
    uri: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    status: str
    status_reason: str | None
    status_stage: str | None
    part: str
    run_id: str


class Catalogue:
    """Read view of every committed entry of one source, plus commit of new ones."""

    def __init__(self, lake: Lake, source: str):
        self.lake = lake
        self.source = source
        self.folder = f"state/catalogue/{source}"
        self.by_input: dict[str, list[CatalogueEntry]] = defaultdict(list)
        self._stat: dict[tuple[str, int, int], str] = {}
        self._keys_by_uri: dict[str, list[str]] = defaultdict(list)
        for rel in lake.walk_files(self.folder, suffix=".parquet"):
            self._add(lake.read_parquet(rel).to_pylist())

    def _add(self, rows: Iterable[dict]) -> None:
        for row in rows:
            entry = CatalogueEntry(**row)
            if entry.input_key not in self.by_input:
                self._keys_by_uri[entry.uri].append(entry.input_key)
            self.by_input[entry.input_key].append(entry)
            if entry.sha256 and entry.size is not None and entry.mtime_ns is not None:
                self._stat[(entry.uri, entry.size, entry.mtime_ns)] = entry.sha256

    def known_sha256(self, uri: str, size: int, mtime_ns: int) -> str | None:
        """The stat cache: a file with the same path, size and mtime is not hashed again."""
        return self._stat.get((uri, size, mtime_ns))

    def keys_at(self, uri: str) -> list[str]:
        """Keys of every input ever read from ``uri``, oldest first (what a re-read supersedes)."""
        return list(self._keys_by_uri.get(uri, []))

    def __contains__(self, input_key: str) -> bool:
        return input_key in self.by_input

    def entries(self, input_keys: Iterable[str]) -> list[CatalogueEntry]:
        return [entry for key in input_keys for entry in self.by_input.get(key, [])]

    def commit(self, name: str, rows: list[dict]) -> None:
        """Append entries atomically; ``name`` is deterministic so a resumed part overwrites itself."""
        if not rows:
            return
        self.lake.write_parquet(f"{self.folder}/{name}.parquet", pa.Table.from_pylist(rows, CATALOGUE_SCHEMA))
        self._add(rows)
