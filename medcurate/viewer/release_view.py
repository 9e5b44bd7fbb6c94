"""Read-only access to one release folder for the audit viewer: its files, samples and search.

Every byte the viewer sends comes through here, and only from files the release itself lists in
``checksums.sha256`` (plus that listing): a request names a file by the exact relative path written
there, never by a path that is joined and resolved, so ``..``, absolute paths, encoded separators and
symlinks leading out of the folder all find nothing. Sample members are read from those files through
the manifest's offsets, bounded by the file's size, so a doctored manifest cannot read past a shard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medcurate.release.catalog import CHECKSUMS

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


def _member_text(table: pa.Table, column: str) -> pa.Array:
    """A string column with nulls as empty strings, for concatenating into one search text."""
    return pc.fill_null(table.column(column).combine_chunks().cast(pa.string()), "")


def _labels_text(table: pa.Table) -> pa.Array:
    """``name=value`` of each row's labels, space-joined, plus its class name."""
    labels = table.column("labels").combine_chunks()
    flat = labels.flatten()
    pairs = pc.binary_join_element_wise(
        pc.fill_null(flat.field("name"), ""), pc.fill_null(flat.field("value"), ""), "="
    )
    joined = pa.ListArray.from_arrays(labels.offsets, pairs)
    text = pc.fill_null(pc.binary_join(joined, " "), "")
    return pc.binary_join_element_wise(text, _member_text(table, "class_name"), " ")


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
        self.manifest = pq.read_table(manifest)
        keys = self.manifest.column("key").to_pylist()
        self.row_of = {key: i for i, key in enumerate(keys)}
        self._search_text = {
            "id": _member_text(self.manifest, "key"),
            "source": pc.binary_join_element_wise(
                _member_text(self.manifest, "source_uri"), _member_text(self.manifest, "source_sha256"), " "
            ),
            "pmcid": _member_text(self.manifest, "article_id"),
            "label": _labels_text(self.manifest),
            "kind": _member_text(self.manifest, "source_kind"),
        }
        self._search_text["any"] = pc.binary_join_element_wise(
            *self._search_text.values(),
            _member_text(self.manifest, "dataset"),
            _member_text(self.manifest, "modality"),
            "\n",
        )

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

    def row(self, key: str) -> dict[str, Any] | None:
        index = self.row_of.get(key)
        return None if index is None else self.manifest.slice(index, 1).to_pylist()[0]

    def member(self, key: str, ext: str) -> bytes | None:
        """The bytes of a sample's member (``json``, ``png``, ...), read at the manifest's offsets."""
        row = self.row(key)
        if row is None:
            return None
        member = next((m for m in row["members"] if m["ext"] == ext), None)
        shard = self.file_path(row["shard"])
        if member is None or shard is None:
            return None
        start, size = member["data_offset"], member["size"]
        if start < 0 or size < 0 or start + size > shard.stat().st_size:
            return None
        with shard.open("rb") as stream:
            stream.seek(start)
            return stream.read(size)

    def record(self, key: str) -> dict[str, Any] | None:
        data = self.member(key, "json")
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
        mask = pc.match_substring(self._search_text[field], query, ignore_case=True)
        indices = pc.indices_nonzero(mask)
        matched = self.manifest.take(indices)
        order = pc.sort_indices(matched.column("key"))
        total = len(order)
        page = matched.take(order[offset : offset + limit]).to_pylist() if total else []
        return total, [self.hit(row) for row in page]

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
