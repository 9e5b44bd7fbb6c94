"""Per-file facts learned at listing (hash plus a few header fields), kept so a nightly re-list skips them.

The catalogue's stat cache knows one file per input. A DICOM series is one input made of hundreds of
files, and grouping files into series needs a header read of each: without a cache every nightly run
would open every file of an unchanged archive. This cache maps (uri, size, mtime_ns) to the file's
sha256 and the facts the source derived from it. Sources store only facts that are safe to keep in
the lake (pseudonyms and geometry, never raw identifiers), keyed by pseudonymous uris.

Entries are append-only parquet parts under ``state/files/<source>/``; a part's name hashes its rows,
so committing the same facts twice writes the same file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from medcurate.hashing import sha256_json
from medcurate.lake.store import Lake

FACTS_SCHEMA = pa.schema(
    [
        ("uri", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha256", pa.string()),
        ("facts", pa.string()),  # canonical JSON
    ]
)


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    facts: dict[str, Any]


@dataclass
class FileFactsCache:
    """Known facts by (uri, size, mtime_ns); new ones are held until ``commit``."""

    known: dict[tuple[str, int, int], FileFacts] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, lake: Lake, source: str) -> FileFactsCache:
        cache = cls()
        for rel in lake.walk_files(f"state/files/{source}", suffix=".parquet"):
            for row in lake.read_parquet(rel).to_pylist():
                key = (row["uri"], row["size"], row["mtime_ns"])
                cache.known[key] = FileFacts(row["sha256"], json.loads(row["facts"]))
        return cache

    def get(self, uri: str, size: int, mtime_ns: int) -> FileFacts | None:
        return self.known.get((uri, size, mtime_ns))

    def put(self, uri: str, size: int, mtime_ns: int, sha256: str, facts: dict[str, Any]) -> None:
        key = (uri, size, mtime_ns)
        if key in self.known:
            return
        self.known[key] = FileFacts(sha256, facts)
        self.pending.append(
            {"uri": uri, "size": size, "mtime_ns": mtime_ns, "sha256": sha256, "facts": json.dumps(facts)}
        )

    def commit(self, lake: Lake, source: str) -> None:
        """Write what was learned since the last commit (nothing when nothing is new)."""
        if not self.pending:
            return
        rows = sorted(self.pending, key=lambda row: (row["uri"], row["size"], row["mtime_ns"]))
        name = sha256_json(rows)[:16]
        table = pa.Table.from_pylist(rows, FACTS_SCHEMA)
        lake.write_parquet(f"state/files/{source}/part-{name}.parquet", table)
        self.pending = []
