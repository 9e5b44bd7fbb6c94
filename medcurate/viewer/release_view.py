"""Read-only access to one release folder for the audit viewer: its files, samples and search.

Every byte the viewer sends comes through here, and only from files the release itself lists in
``checksums.sha256`` (plus that listing): a request names a file by the exact relative path written
there, never by a path that is joined and resolved, so ``..``, absolute paths, encoded separators and
symlinks leading out of the folder all find nothing. Sample members are read from those files through
the manifest's offsets and checked against their own tar headers, so a doctored manifest cannot read
past a shard or hand out another member's bytes.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medcurate.release.catalog import CHECKSUMS
from medcurate.release.shards import ShardMemberError, read_member

# Media types of the members and release files the viewer sends; anything else goes as a download.
MEDIA_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "cls": "text/plain; charset=utf-8",
    "md": "text/plain; charset=utf-8",
    "sha256": "text/plain; charset=utf-8",
}
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
# The manifest columns the viewer keeps in memory: what search matches and the pages show (a sample's
# full record is its shard's .json member, read when its page is asked for).
VIEW_COLUMNS = (
    "key", "shard", "offset", "members", "source_kind", "dataset", "source_uri", "source_sha256",
    "article_id", "labels", "class_name", "modality", "body_part", "view", "final_caption",
    "image_format", "width", "height", "image_sha256",
)  # fmt: skip
# Search fields by the name the form shows: each is a case-insensitive substring match on the manifest
# (any: sample id, source uri or sha256, PMCID, label or class, source kind, dataset, modality).
SEARCH_FIELDS = {
    "any": "any field",
    "id": "sample id",
    "source": "source uri or sha256",
    "pmcid": "PMCID",
    "label": "label or class",
    "kind": "source kind",
}


class ReleaseError(Exception):
    """The folder is not a readable release."""


@dataclass(frozen=True)
class Hit:
    key: str
    source_kind: str
    dataset: str
    modality: str | None
    labels: str
    caption: str
    image_ext: str | None


def _column(table: pa.Table, column: str) -> pa.Array:
    """A string column as it is (a null matches nothing), or all nulls when the manifest lacks it."""
    if column not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    return table.column(column).combine_chunks().cast(pa.string())


def _joined(*columns: pa.Array, separator: str = " ") -> pa.Array:
    """Columns joined, nulls as empty strings: one text a query matches for several fields. (Not
    ``null_handling="skip"``: pyarrow 26 drops the rows where one input column is all null.)"""
    return pc.binary_join_element_wise(*(pc.fill_null(c, "") for c in columns), separator)


def _labels_text(table: pa.Table) -> pa.Array:
    """``name=value`` of each row's labels, space-joined, plus its class name."""
    labels = table.column("labels").combine_chunks()
    flat = labels.flatten()
    pairs = _joined(flat.field("name"), flat.field("value"), separator="=")
    per_row = pc.binary_join(pa.ListArray.from_arrays(labels.offsets, pairs), " ")
    return _joined(per_row, _column(table, "class_name"))


class ReleaseView:
    """One release folder, opened once: its info, card, manifest, and the files it may serve."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        if not (self.folder / "release.json").is_file():
            raise ReleaseError(f"{folder} is not a release folder (no release.json)")
        self.info: dict[str, Any] = json.loads((self.folder / "release.json").read_text())
        self.files = self._listed_files()
        manifest = self.file_path("manifest.parquet")
        if manifest is None:
            raise ReleaseError(f"{folder} has no manifest.parquet listed in {CHECKSUMS}")
        present = set(pq.read_schema(manifest).names)
        self.manifest = pq.read_table(manifest, columns=[c for c in VIEW_COLUMNS if c in present])
        self.keys = self.manifest.column("key").combine_chunks()
        # Each field's text, matched in turn for "any" (rather than one joined copy of all: less memory).
        self._search_text = {
            "id": self.keys,
            "source": _joined(_column(self.manifest, "source_uri"), _column(self.manifest, "source_sha256")),
            "pmcid": _column(self.manifest, "article_id"),
            "label": _labels_text(self.manifest),
            "kind": _column(self.manifest, "source_kind"),
            "dataset": _column(self.manifest, "dataset"),
            "modality": _column(self.manifest, "modality"),
        }

    def _listed_files(self) -> dict[str, Path]:
        """The release's own files by relative path: those in its checksum listing, and the listing."""
        listing = self.folder / CHECKSUMS
        names = [CHECKSUMS] if listing.is_file() else []
        if listing.is_file():
            names += [line.partition("  ")[2] for line in listing.read_text().splitlines() if "  " in line]
        return {name: self.folder / name for name in names}

    def file_path(self, name: str) -> Path | None:
        """The file ``name`` names if the release lists it and it really lies inside the folder."""
        path = self.files.get(name)
        if path is None or path.is_symlink() or not path.is_file():
            return None
        if not path.resolve().is_relative_to(self.folder):
            return None
        return path

    def read_text(self, name: str) -> str | None:
        path = self.file_path(name)
        return path.read_text(encoding="utf-8", errors="replace") if path else None

    # --- samples ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.manifest.num_rows

    def row(self, key: str) -> dict[str, Any] | None:
        """The manifest row of ``key`` (a scan: about 7 ms at a million rows, and no index in memory)."""
        index = pc.index(self.keys, key).as_py()
        return None if index < 0 else self.manifest.slice(index, 1).to_pylist()[0]

    def member(self, row: dict[str, Any], ext: str) -> bytes | None:
        """The bytes of a sample's member (``json``, ``png``, ...) at the manifest's offsets, checked
        against the member's own tar header (``shards.read_member``); None if they do not lead to it."""
        member = next((m for m in row["members"] if m["ext"] == ext), None)
        shard = self.file_path(row["shard"])
        if member is None or shard is None:
            return None
        with shard.open("rb") as stream:
            try:
                return read_member(stream, row["key"], member)
            except ShardMemberError:
                return None

    def record(self, row: dict[str, Any]) -> dict[str, Any] | None:
        data = self.member(row, "json")
        return None if data is None else json.loads(data)

    def image_ext(self, row: dict[str, Any]) -> str | None:
        return next((m["ext"] for m in row["members"] if m["ext"] in IMAGE_EXTENSIONS), None)

    def hit(self, row: dict[str, Any]) -> Hit:
        labels = ", ".join(f"{label['name']} ({label['value']})" for label in row["labels"] or [])
        return Hit(
            key=row["key"],
            source_kind=row["source_kind"],
            dataset=row["dataset"],
            modality=row["modality"],
            labels=labels or (row["class_name"] or ""),
            caption=row["final_caption"] or "",
            image_ext=self.image_ext(row),
        )

    def search(
        self, query: str, field: str = "any", limit: int = 100, offset: int = 0
    ) -> tuple[int, list[Hit]]:
        """How many samples match ``query`` in ``field``, and ``limit`` of them from ``offset``, by key."""
        if field not in SEARCH_FIELDS:
            raise ValueError(f"unknown search field {field!r}; one of {', '.join(SEARCH_FIELDS)}")
        query = query.strip()
        if not query:
            return 0, []
        texts = self._search_text.values() if field == "any" else [self._search_text[field]]
        matches = (pc.match_substring(t, query, ignore_case=True) for t in texts)
        indices = pc.indices_nonzero(pc.fill_null(functools.reduce(pc.or_kleene, matches), False))
        by_key = pc.sort_indices(self.keys.take(indices))
        page = indices.take(by_key[offset : offset + limit])  # only the shown rows' columns are copied
        return len(indices), [self.hit(row) for row in self.manifest.take(page).to_pylist()]

    @functools.cached_property
    def examples(self) -> dict[str, tuple[int, Hit]]:
        """For each source kind, its sample count and its first sample by key (the release page's
        way in to one sample of every kind)."""
        found: dict[str, tuple[int, Hit]] = {}
        kinds = self.manifest.column("source_kind")
        for kind in sorted(set(kinds.to_pylist())):
            mask = pc.equal(kinds, kind)
            subset = self.manifest.filter(mask)
            first = subset.take(pc.sort_indices(subset.column("key"))[:1]).to_pylist()[0]
            found[kind] = (len(subset), self.hit(first))
        return found
