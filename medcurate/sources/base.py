"""The source contract: list inputs cheaply, then read each new one into sample records.

Listing (stat, hash with a cache, parse an index) is separated from reading (bytes into records) so a
nightly run can tell from the catalogue which inputs are new without decoding anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from medcurate.hashing import sha256_json, sha256_stream
from medcurate.lake.file_facts import FileFactsCache
from medcurate.lake.restricted import PathMap
from medcurate.schemas.record import QUARANTINED, new_record

#: (uri, size, mtime_ns) -> sha256 known from an earlier run, or None.
StatCache = Callable[[str, int, int], "str | None"]
#: uri -> catalogue keys of inputs read earlier from that uri (so a source can say what it supersedes).
History = Callable[[str], "list[str]"]

#: A record may carry facts for its own ingest lineage event under this key; ingest removes it.
INGEST_DETAILS = "_ingest_details"


def _no_history(uri: str) -> list[str]:
    return []


@dataclass(frozen=True)
class InputItem:
    """One input as listed: enough to decide whether it is new, and to read it later.

    ``key`` identifies the input's *content* (its bytes plus what the index says about it), so a
    changed label or a replaced file is a new input while a re-listed unchanged one is not.
    ``error`` is set when listing already found the input bad (malformed row, missing or unsafe path):
    reading it then yields one quarantined record with that reason.
    """

    source: str
    key: str
    uri: str
    sha256: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class SourceContext:
    """What a source may use besides its params: caches from earlier runs and where to put secrets.

    ``file_facts`` and ``path_map`` are filled during listing and committed by the run afterwards:
    per-file facts (so unchanged files are not reopened) and, for clinical sources, the link from
    pseudonymous uris to real paths (kept only in the lake's access-restricted store).
    """

    stat_cache: StatCache
    pseudonym_key: str | None = None
    history: History = _no_history
    file_facts: FileFactsCache = field(default_factory=FileFactsCache)
    path_map: PathMap = field(default_factory=PathMap)


class Source(ABC):
    """A reader of one kind of raw input (labeled dataset, PMC mirror, DICOM folder, NIfTI volumes)."""

    kind: ClassVar[str]
    version: ClassVar[str]
    #: The params this source understands; any other is a config mistake, refused by name.
    known_params: ClassVar[frozenset[str] | None] = None

    def __init__(self, name: str, uri: str, params: Mapping[str, Any], ctx: SourceContext):
        self.name = name
        self.uri = uri
        self.params = dict(params)
        self.ctx = ctx
        unknown = set(self.params) - self.known_params if self.known_params is not None else set()
        if unknown:
            known = sorted(self.known_params)
            raise ValueError(f"{self.kind} source: unknown params {sorted(unknown)}; known: {known}")

    @abstractmethod
    def list_inputs(self) -> Iterator[InputItem]:
        """Every input, in a deterministic order. Must not decode images."""

    @abstractmethod
    def read(self, item: InputItem) -> list[dict[str, Any]]:
        """Records (``new_record`` dicts, raw image bytes in ``image.bytes``) born from ``item``.

        Bad input becomes a quarantined record (see ``quarantined_record``), never an exception.
        """

    def details(self, item: InputItem) -> dict[str, Any] | None:
        """Facts about ``item`` for the ingest lineage event of each of its records (index facts...)."""
        return None

    def file_sha256(self, path: Path) -> tuple[str, int, int]:
        """(sha256, size, mtime_ns) of a file, hashing only when the stat cache does not know it."""
        stat = path.stat()
        known = self.ctx.stat_cache(str(path), stat.st_size, stat.st_mtime_ns)
        if known is None:
            with path.open("rb") as stream:
                known = sha256_stream(stream)
        return known, stat.st_size, stat.st_mtime_ns

    def sample_id(self, *identity: Any) -> str:
        """Deterministic id from source identity (and image bytes hash); no dots, kind-prefixed."""
        return f"{self.kind}-{sha256_json([self.kind, *identity])[:24]}"

    def source_group(self, uri: str, sha256: str | None, size: int | None, **fields: Any) -> dict[str, Any]:
        """A record's ``source`` group: this source's kind and dataset, the file, and ``fields``."""
        return {"kind": self.kind, "dataset": self.name, "uri": uri, "sha256": sha256, "size": size, **fields}

    def quarantined_record(
        self, item: InputItem, reason: str, *identity: Any, **source_fields: Any
    ) -> dict[str, Any]:
        """The record that stands for an input (with ``identity``: a part of one) that could not be read."""
        record = new_record(
            self.sample_id("quarantined", item.key, *identity),
            status=QUARANTINED,
            status_reason=reason,
            status_stage=f"ingest.{self.kind}",
            source=self.source_group(item.uri, item.sha256, item.size, **source_fields),
        )
        return record
