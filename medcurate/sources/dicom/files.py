"""Finding DICOM files under a root: plain files (any suffix) and members of zip archives, safely.

A file is DICOM when it carries the Part 10 preamble marker (``DICM`` at byte 128); the suffix is not
trusted either way (many archives have none, some ``.dcm`` files are not DICOM). DICOMDIR index files
are skipped: they describe the files next to them and hold no image.

Zip archives come from PACS exports and hospital transfers, so they are hostile until proven
otherwise: members with absolute paths, ``..``, links, encryption, too many entries, or an
uncompressed size out of proportion to their compressed size (zip bombs) make the whole archive
refused, before any member is decompressed. Symbolic links in the folder are refused too (they could
point anywhere on the machine).
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PREAMBLE_END = 132
ZIP_SUFFIXES = (".zip",)
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


@dataclass(frozen=True)
class ZipLimits:
    max_members: int = 100_000
    max_member_bytes: int = 2 * 2**30
    max_total_bytes: int = 64 * 2**30
    max_ratio: float = 200.0  # uncompressed / compressed, per member; DICOM rarely exceeds 20


@dataclass(frozen=True)
class Location:
    """Where a file is: a path relative to the root, and a member inside it when it is a zip.

    The path is real and may carry names and record numbers: it goes only to the restricted path map.
    """

    rel: str
    member: str | None = None

    def label(self) -> str:
        return self.rel if self.member is None else f"{self.rel}!{self.member}"


@dataclass(frozen=True)
class Found:
    """A candidate file with its stat, or a problem found while walking (``error`` set)."""

    location: Location
    size: int
    mtime_ns: int
    error: str | None = None


def is_dicom_header(head: bytes) -> bool:
    return len(head) >= PREAMBLE_END and head[128:PREAMBLE_END] == b"DICM"


def is_dicomdir(location: Location) -> bool:
    name = PurePosixPath(location.member or location.rel).name
    return name.upper() == "DICOMDIR"


def walk(root: Path) -> Iterator[Found]:
    """Every regular file below ``root`` in sorted order; links become problems, never followed."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        base = Path(folder)
        for name in sorted(files) + sorted(d for d in dirs if (base / d).is_symlink()):
            path = base / name
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                yield Found(Location(rel), 0, 0, "unsafe_path: symbolic link (not followed)")
            elif stat.S_ISREG(info.st_mode):
                yield Found(Location(rel), info.st_size, info.st_mtime_ns)
            else:
                yield Found(Location(rel), 0, 0, "unsafe_path: not a regular file")
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]


class ZipRefused(ValueError):
    """The archive as a whole is unsafe or unreadable; the message is the quarantine reason."""


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "path outside the archive"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # no type bits: a plain file
        return "special file"
    if info.flag_bits & 0x1:
        return "encrypted member"
    return None


def zip_members(archive: zipfile.ZipFile, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """The archive's file members in name order, after checking every entry; ZipRefused otherwise.

    Only the central directory is read here; sizes are checked again while decompressing (a lying
    directory cannot make ``read_member`` return more than it declared).
    """
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise ZipRefused(f"archive_unsafe: {len(infos)} entries exceed limit {limits.max_members}")
    names, total, members = set(), 0, []
    for index, info in enumerate(infos):
        problem = _unsafe_member(info)
        if problem:
            raise ZipRefused(f"archive_unsafe_member: entry {index + 1} is a {problem}")
        if info.filename in names:
            raise ZipRefused(f"archive_unsafe_member: entry {index + 1} repeats an earlier name")
        names.add(info.filename)
        if info.is_dir():
            continue
        if info.file_size > limits.max_member_bytes:
            raise ZipRefused(f"archive_bomb: entry {index + 1} declares {info.file_size} bytes")
        if info.file_size > 1_000_000 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise ZipRefused(f"archive_bomb: entry {index + 1} expands {ratio:.0f}x")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ZipRefused(f"archive_bomb: entries declare more than {limits.max_total_bytes} bytes")
        members.append(info)
    return sorted(members, key=lambda info: info.filename)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int | None = None) -> bytes:
    """A member's bytes, never more than it declared; CRC checked by zipfile at the end."""
    limit = info.file_size if limit is None else min(limit, info.file_size)
    with archive.open(info) as stream:
        data = stream.read(limit + 1)
    if len(data) > info.file_size:
        raise ZipRefused("archive_bomb: a member holds more bytes than it declares")
    return data[:limit]
