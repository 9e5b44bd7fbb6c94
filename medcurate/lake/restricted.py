"""The access-restricted store that links pseudonymous clinical uris back to real paths, for auditors.

Paths of clinical files often carry patient names and record numbers (``DOE_JOHN_12345/CT/...``), so
records, the catalogue, ledgers and releases name a clinical file only by a keyed pseudonym of its
path. An auditor who must go from a shard member back to the exact source bytes needs the real
path: it lives here and nowhere else in the lake, in files only the owner may read (mode 0600 in a
0700 folder on local lakes; on object stores, put ``restricted/`` under its own access policy).

Entries are append-only JSON-lines files named by the hash of their content.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from medcurate.hashing import sha256_json
from medcurate.lake.store import Lake

FOLDER = "restricted/paths"


@dataclass
class PathMap:
    """Pseudonymous uri -> real location, collected during listing and written by ``commit``."""

    pending: dict[str, str] = field(default_factory=dict)

    def remember(self, pseudonymous_uri: str, real_location: str) -> None:
        self.pending[pseudonymous_uri] = real_location

    def commit(self, lake: Lake, source: str) -> None:
        """Append the new entries; only files the owner can read. Nothing new writes nothing."""
        if not self.pending:
            return
        known = dict(lookup_all(lake, source))
        rows = sorted((k, v) for k, v in self.pending.items() if known.get(k) != v)
        self.pending = {}
        if not rows:
            return
        rel = f"{FOLDER}/{source}/paths-{sha256_json(rows)[:16]}.jsonl"
        body = "".join(json.dumps({"uri": k, "location": v}, sort_keys=True) + "\n" for k, v in rows)
        if lake.is_local:
            _write_owner_only(lake, rel, body.encode())
        else:
            lake.write_bytes(rel, body.encode())


def _write_owner_only(lake: Lake, rel: str, data: bytes) -> None:
    """Write so that no other user can read the file at any moment (not even while it is written)."""
    path = lake.local_path(rel)
    top = lake.local_path("restricted")
    for folder in [top, *reversed([p for p in path.parents if top in p.parents])]:
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
    tmp = path.with_name(f"_tmp-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def lookup_all(lake: Lake, source: str) -> list[tuple[str, str]]:
    """Every (pseudonymous uri, real location) recorded for ``source``."""
    pairs = []
    for rel in lake.walk_files(f"{FOLDER}/{source}", suffix=".jsonl"):
        for line in lake.read_bytes(rel).decode().splitlines():
            entry = json.loads(line)
            pairs.append((entry["uri"], entry["location"]))
    return pairs


def reveal(lake: Lake, pseudonymous_uri: str) -> list[tuple[str, str]]:
    """(source, real location) of a pseudonymous uri, for an auditor with access to ``restricted/``."""
    found = []
    for source in lake.listdir(FOLDER):
        found += [(source, loc) for uri, loc in lookup_all(lake, source) if uri == pseudonymous_uri]
    return sorted(set(found))
