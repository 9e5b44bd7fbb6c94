"""Where a PMC mirror keeps its articles: one small adapter per published layout.

Each adapter turns a mirror root into ``ArticleFiles`` (which files make up one article, plus what the
mirror's index says about it); everything after that is shared by all layouts.

* ``classic``: PMC's FTP layout, one ``.tar.gz`` package per article (``oa_package/xx/yy/PMCn.tar.gz``)
  and the OA file list CSV (File, Article Citation, Accession ID, Last Updated, PMID, License,
  Retracted). Only listed packages are inputs: a package on disk but not in the list was withdrawn.
* ``cloud``: the per-file layout of PMC's cloud service: article XML and media files, with
  ``<group>.filelist.csv`` lists (Key, ETag, Article Citation, AccessionID, Last Updated UTC, PMID,
  License, Retracted) per group (oa_comm, oa_noncomm, other). An article's media are the image files
  in its XML's folder (per-article folders), matched later by the graphic references.
* ``folder``: a plain folder of ``.tar.gz`` packages with no list (no license or update facts).
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from medcurate.sources.pmc.archive import IMAGE_EXTENSIONS

PACKAGE_SUFFIXES = (".tar.gz", ".tgz")
PMCID = re.compile(r"^PMC\d+$")
GROUPS = ("oa_comm", "oa_noncomm", "other", "phe_timebound")


@dataclass(frozen=True)
class ArticleFiles:
    """One article's files in the mirror (filesystem paths) and what the mirror's index says of it."""

    uri: str  # the input's identity: the package, or the article XML
    files: tuple[str, ...]  # package: (package,); files: (xml, *media)
    packaged: bool
    pmcid: str | None = None
    listing: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # set when the index names something unusable


class MirrorError(ValueError):
    """The mirror root itself cannot be read as the requested layout."""


def _column(header: list[str], *names: str) -> int | None:
    """Index of the first column whose name starts with one of ``names`` (PMC varies the suffixes)."""
    for name in names:
        for index, column in enumerate(header):
            if column.strip().lower().startswith(name.lower()):
                return index
    return None


def _safe_relative(path: str) -> bool:
    return bool(path) and not path.startswith(("/", "\\")) and ".." not in path.replace("\\", "/").split("/")


def _retracted(value: str | None) -> bool:
    return (value or "").strip().lower() in {"yes", "y", "true", "1", "retracted"}


def open_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's own filesystems (local, s3, gs, hdfs), else any fsspec protocol through pyarrow."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


class Mirror:
    """A mirror root on any pyarrow filesystem, with the listing helpers the adapters share."""

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.root = open_filesystem(uri)
        self.root = self.root.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        if self.fs.get_file_info(self.root).type != pafs.FileType.Directory:
            raise MirrorError(f"PMC mirror {uri} is not a folder")
        self._real_root = os.path.realpath(self.root) if self.is_local else None

    def path(self, relative: str) -> str:
        return posixpath.join(self.root, relative)

    def relative(self, path: str) -> str:
        return posixpath.relpath(path, self.root)

    def display_uri(self, path: str) -> str:
        """The URI an auditor can open: a local path as is, otherwise scheme://path."""
        if self.is_local:
            return path
        return f"{self.uri.split('://', 1)[0]}://{path}"

    def escapes(self, path: str) -> bool:
        """On local disks, whether a path resolves (through symlinks) outside the mirror root."""
        if not self.is_local:
            return False
        real = os.path.realpath(path)
        return os.path.commonpath([real, self._real_root]) != self._real_root

    def walk(self, folder: str = "") -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.path(folder) if folder else self.root, recursive=True)
        return sorted(
            (info for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File),
            key=lambda info: info.path,
        )

    def read_csv(self, path: str) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) of a CSV file, streamed (the full OA list is ~1 GB); line 1 is the header."""
        with self.fs.open_input_stream(path, compression=None) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
            yield from enumerate(csv.reader(text), start=1)


def _listing(row: list[str], manifest: str, line: int, **columns: int | None) -> dict[str, Any]:
    def get(name: str) -> str | None:
        index = columns.get(name)
        if index is None or index >= len(row):
            return None
        return row[index].strip() or None

    return {
        "citation": get("citation"),
        "last_updated": get("updated"),
        "pmid": get("pmid"),
        "license": get("license"),
        "retracted": _retracted(get("retracted")),
        "manifest_uri": manifest,
        "manifest_line": line,
    }


def classic_lists(mirror: Mirror, file_list: str | None) -> list[str]:
    if file_list:
        return [file_list if file_list.startswith("/") else mirror.path(file_list)]
    names = [info.path for info in mirror.fs.get_file_info(pafs.FileSelector(mirror.root))]
    return sorted(p for p in names if re.search(r"file_list.*\.csv$", posixpath.basename(p), re.I))


@dataclass(frozen=True)
class ListedRow:
    """One row of a file list: the file it names (relative to the root) and what it says of it."""

    relative: str
    uri: str
    accession: str | None
    listing: dict[str, Any]
    error: str | None


def read_file_list(
    mirror: Mirror, list_path: str, path_column: str, suffixes: tuple[str, ...]
) -> Iterator[ListedRow]:
    """Rows of a classic or cloud file list; malformed or unsafe rows carry an error, never raise."""
    rows = mirror.read_csv(list_path)
    header = next(rows, (1, []))[1]
    path_col = _column(header, path_column)
    if path_col is None:
        raise MirrorError(f"{list_path} has no {path_column!r} column: {header}")
    columns = {
        "citation": _column(header, "Article Citation"),
        "accession": _column(header, "Accession ID", "AccessionID"),
        "updated": _column(header, "Last Updated"),
        "pmid": _column(header, "PMID"),
        "license": _column(header, "License"),
        "retracted": _column(header, "Retracted"),
    }
    manifest = mirror.display_uri(list_path)
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        listing = _listing(row, manifest, line, **columns)
        acc_col = columns["accession"]
        accession = row[acc_col].strip() if acc_col is not None and len(row) > acc_col else None
        relative = row[path_col].strip() if len(row) > path_col else ""
        uri = mirror.display_uri(mirror.path(relative)) if relative else f"{manifest}#line={line}"
        if len(row) != len(header):
            error = f"manifest_malformed: line {line} has {len(row)} fields, expected {len(header)}"
        elif not _safe_relative(relative) or not relative.lower().endswith(suffixes):
            error = f"manifest_unsafe_path: line {line} names {relative!r}"
        elif accession is not None and not PMCID.match(accession):
            error = f"manifest_malformed: line {line} has accession {accession!r}"
        else:
            error = None
        yield ListedRow(relative, uri, accession, listing, error)


def list_classic(mirror: Mirror, file_lists: list[str]) -> Iterator[ArticleFiles]:
    """Packages named by the OA file list(s); unsafe or missing entries come back with an error."""
    for list_path in file_lists:
        for row in read_file_list(mirror, list_path, "File", PACKAGE_SUFFIXES):
            files = (mirror.path(row.relative),) if row.error is None else ()
            yield ArticleFiles(row.uri, files, True, row.accession, row.listing, row.error)


def list_folder(mirror: Mirror) -> Iterator[ArticleFiles]:
    """Every package below the root, with no index facts."""
    for info in mirror.walk():
        if info.base_name.endswith(PACKAGE_SUFFIXES):
            stem = info.base_name.split(".")[0]
            pmcid = stem if PMCID.match(stem) else None
            yield ArticleFiles(mirror.display_uri(info.path), (info.path,), True, pmcid, {})


def cloud_lists(mirror: Mirror) -> list[str]:
    return [info.path for info in mirror.walk() if info.base_name.endswith(".filelist.csv")]


def list_cloud(mirror: Mirror, file_lists: list[str]) -> Iterator[ArticleFiles]:
    """Articles named by per-group file lists; media are the image files beside each article XML."""
    folders: dict[str, list[str]] = {}

    def media_beside(xml_path: str) -> tuple[str, ...]:
        folder = posixpath.dirname(xml_path)
        if folder not in folders:
            selector = pafs.FileSelector(folder, allow_not_found=True)
            folders[folder] = sorted(
                info.path
                for info in mirror.fs.get_file_info(selector)
                if info.type == pafs.FileType.File and info.base_name.lower().endswith(IMAGE_EXTENSIONS)
            )
        return tuple(folders[folder])

    for list_path in file_lists:
        for row in read_file_list(mirror, list_path, "Key", (".xml", ".nxml")):
            group = row.relative.split("/", 1)[0]
            row.listing["group"] = group if group in GROUPS else None
            if row.error:
                yield ArticleFiles(row.uri, (), False, row.accession, row.listing, row.error)
                continue
            xml_path = mirror.path(row.relative)
            yield ArticleFiles(
                row.uri, (xml_path, *media_beside(xml_path)), False, row.accession, row.listing
            )


def detect_layout(mirror: Mirror, file_list: str | None) -> str:
    if file_list:
        return "cloud" if file_list.endswith(".filelist.csv") else "classic"
    if classic_lists(mirror, None):
        return "classic"
    if cloud_lists(mirror):
        return "cloud"
    return "folder"


def list_articles(
    mirror: Mirror, layout: str = "auto", file_list: str | None = None
) -> Iterator[ArticleFiles]:
    """Every article of the mirror in the given (or detected) layout, in index order."""
    if layout == "auto":
        layout = detect_layout(mirror, file_list)
    if layout == "classic":
        lists = classic_lists(mirror, file_list)
        if not lists:
            raise MirrorError(f"no OA file list (*file_list*.csv) at {mirror.uri}; use layout: folder")
        yield from list_classic(mirror, lists)
    elif layout == "cloud":
        lists = [mirror.path(file_list)] if file_list else cloud_lists(mirror)
        if not lists:
            raise MirrorError(f"no *.filelist.csv below {mirror.uri}")
        yield from list_cloud(mirror, lists)
    elif layout == "folder":
        yield from list_folder(mirror)
    else:
        raise ValueError(f"unknown PMC layout {layout!r}; use auto, classic, cloud or folder")
