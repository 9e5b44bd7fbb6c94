"""Read a PMC article package (a ``.tar.gz``) as one forward stream, refusing anything hostile.

Nothing is unpacked to disk: members are read in order from the decompressing stream and only the
ones we need (the article XML and image files) are kept in memory, within caps. A package is all or
nothing: an unsafe member (absolute path, ``..``, link, device, FIFO), too many members, a member or a
total beyond the caps (a decompression bomb), or a stream that ends early (a truncated download) refuses
the whole package with a reason code, so no half-read article ever produces samples.

The package's sha256 is computed from the same bytes as they are read, so the caller can tell whether
the file changed since it was listed without a second pass.
"""

from __future__ import annotations

import gzip
import hashlib
import posixpath
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

#: Extensions of members worth keeping: the article XML and figure images.
XML_EXTENSIONS = (".nxml", ".xml")
MAX_TRAILING_BYTES = 16 * 2**20
MAX_EXTENDED_HEADER_BYTES = 64 * 2**10
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".bmp", ".webp")


class ArchiveError(ValueError):
    """A package that cannot be read safely; ``code`` goes into the quarantine reason."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.sha256: str | None = None  # of the whole input, when known


@dataclass(frozen=True)
class Limits:
    """Caps that bound memory and refuse bombs; defaults fit real PMC packages with room to spare."""

    max_members: int = 2_000
    max_member_bytes: int = 256 * 2**20  # uncompressed size of any one member
    max_total_bytes: int = 2 * 2**30  # uncompressed size of the whole package
    max_kept_bytes: int = 512 * 2**20  # XML and images held in memory at once


@dataclass
class Package:
    """What a package holds that we need, plus the facts an auditor wants about the rest."""

    sha256: str
    size: int  # compressed bytes read
    members: list[str] = field(default_factory=list)  # every regular member, in stream order
    kept: dict[str, bytes] = field(default_factory=dict)  # member name -> bytes (XML and images)
    uncompressed_bytes: int = 0


class _HashingReader:
    """A read-only stream wrapper that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


class _ForwardStream:
    """The forward-only stream tarfile's stream mode (``r|``) reads through, without its copying.

    ``tarfile._Stream`` copies what is left of its buffer on every read, and tarfile reads each
    512-byte header and each member through it. This keeps an offset into the buffer instead, and
    otherwise does the same: it pulls ``RECORDSIZE`` chunks from the decompressor exactly when
    ``_Stream`` would (so a broken stream is noticed at the same point of a package), seeks only
    forward by reading on, and refuses to seek backwards with the same ``StreamError``.
    """

    def __init__(self, raw: BinaryIO, chunk: int = tarfile.RECORDSIZE):
        self.raw = raw
        self.chunk = chunk
        self.buf = b""  # fetched and not yet consumed from self.start on
        self.start = 0
        self.pos = 0  # bytes consumed

    def tell(self) -> int:
        return self.pos

    def read(self, size: int) -> bytes:
        buf, start = self.buf, self.start
        if size < 0:  # _Stream's answer to a negative size (a hostile header can ask for one)
            rest = buf[start:]
            data, self.buf, self.start = rest[:size], rest[size:], 0
            self.pos += len(data)
            return data
        end = start + size
        if end <= len(buf):
            self.start = end
            self.pos += size
            return buf[start:end]
        pieces, have = [buf[start:]], len(buf) - start
        while have < size:
            chunk = self.raw.read(self.chunk)
            if not chunk:
                break
            pieces.append(chunk)
            have += len(chunk)
        joined = b"".join(pieces)
        data, self.buf, self.start = joined[:size], joined[size:], 0  # keep only the small rest
        self.pos += len(data)
        return data

    def seek(self, pos: int) -> int:
        if pos < self.pos:
            raise tarfile.StreamError("seeking backwards is not allowed")
        skip = pos - self.pos
        buffered = len(self.buf) - self.start
        if skip <= buffered:
            self.start += skip
            self.pos = pos
            return pos
        self.pos += buffered
        self.buf, self.start = b"", 0
        while self.pos < pos:  # chunk by chunk: a skipped member is never held whole
            chunk = self.raw.read(self.chunk)
            if not chunk:
                break
            if self.pos + len(chunk) > pos:
                self.buf, self.start = chunk, pos - self.pos
                self.pos = pos
            else:
                self.pos += len(chunk)
        return self.pos

    def member(self, info: tarfile.TarInfo) -> bytes:
        """The data of a regular, non-sparse member whose header was just read: what
        ``TarFile.extractfile(info).read()`` returns, with the same error when the data ends early."""
        if info.size <= 0:
            return b""
        self.seek(info.offset_data)
        data = self.read(info.size)
        if len(data) != info.size:
            raise tarfile.ReadError("unexpected end of data")
        return data


def unsafe_member_reason(info: tarfile.TarInfo) -> str | None:
    """Why a member must not be accepted, or None; checked before its data is read."""
    name = info.name
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return f"path traversal {name!r}"
    if info.issym() or info.islnk():
        return f"link member {name!r} -> {info.linkname!r}"
    if info.ischr() or info.isblk() or info.isfifo() or info.isdev():
        return f"device or fifo member {name!r}"
    if not (info.isfile() or info.isdir()):
        return f"member {name!r} of unsupported type {info.type!r}"
    return None


def _normpath(name: str) -> str:
    """``posixpath.normpath(name)``, skipping the work for the usual name that is already normal
    (no empty, ``.`` or ``..`` component, so nothing for normpath to drop or resolve)."""
    parts = name.split("/")
    if name and "" not in parts and "." not in parts and ".." not in parts:
        return name
    return posixpath.normpath(name)


def _wanted(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(XML_EXTENSIONS) or lower.endswith(IMAGE_EXTENSIONS)


class _CappedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses oversized extended headers before tarfile reads them into memory.

    GNU long-name/long-link and PAX headers are read whole by tarfile before any member is returned,
    so the member caps below never see them; real ones are a few hundred bytes.
    """

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_HEADER_TYPES and self.size > MAX_EXTENDED_HEADER_BYTES:
            raise ArchiveError(
                "archive_bomb",
                f"extended tar header of {self.size} bytes (limit {MAX_EXTENDED_HEADER_BYTES})",
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc]


_EXTENDED_HEADER_TYPES = {
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_SPARSE,
}


def _stream_members(reader: _HashingReader, limits: Limits, wanted: Callable[[str], bool]) -> Package:
    package = Package(sha256="", size=0)
    kept_bytes = entries = 0
    # gzip is read by hand, not by tarfile, so the stream is decompressed to its very end: the CRC
    # and length trailer are checked, and a cut after the last tar block is still caught.
    gz = gzip.GzipFile(fileobj=reader, mode="rb")  # type: ignore[arg-type]
    stream = _ForwardStream(gz)  # type: ignore[arg-type]
    with tarfile.TarFile(fileobj=stream, mode="r", tarinfo=_CappedTarInfo) as tar:  # type: ignore[arg-type]
        for info in tar:
            reason = unsafe_member_reason(info)
            if reason:
                raise ArchiveError("archive_unsafe_member", reason)
            entries += 1  # directories too: tarfile keeps every header in memory
            if entries > limits.max_members:
                raise ArchiveError("archive_too_many_members", f"more than {limits.max_members} members")
            if info.isdir():
                continue
            package.members.append(info.name)
            if info.size > limits.max_member_bytes:
                raise ArchiveError("archive_bomb", f"member {info.name!r} unpacks to {info.size} bytes")
            package.uncompressed_bytes += info.size
            if package.uncompressed_bytes > limits.max_total_bytes:
                raise ArchiveError(
                    "archive_bomb", f"package unpacks to more than {limits.max_total_bytes} bytes"
                )
            if not wanted(info.name):
                continue  # the stream skips its data without keeping it
            kept_bytes += info.size
            if kept_bytes > limits.max_kept_bytes:
                raise ArchiveError(
                    "archive_too_large", f"XML and images exceed {limits.max_kept_bytes} bytes"
                )
            if info.sparse is None:
                data = stream.member(info)
            else:  # tarfile fills the holes of a sparse member
                member = tar.extractfile(info)
                data = member.read() if member is not None else b""
            if len(data) != info.size:
                raise ArchiveError("archive_truncated", f"member {info.name!r} ends early")
            package.kept[_normpath(info.name)] = data
    trailing = 0
    while chunk := gz.read(1 << 20):  # the end-of-archive padding, then the gzip trailer
        trailing += len(chunk)
        if trailing > MAX_TRAILING_BYTES:
            raise ArchiveError("archive_bomb", "more than 16 MiB of data after the end of the archive")
    return package


def _as_archive_error(exc: Exception) -> ArchiveError:
    if isinstance(exc, ArchiveError):
        return exc
    if isinstance(exc, gzip.BadGzipFile):
        return ArchiveError("archive_malformed", f"not a gzip stream ({exc})")
    if isinstance(exc, EOFError | zlib.error):
        return ArchiveError("archive_truncated", f"compressed stream ends early or is corrupt ({exc})")
    message = str(exc)
    if isinstance(exc, tarfile.ReadError) and ("unexpected end" in message or "truncated" in message):
        return ArchiveError("archive_truncated", f"not a readable tar.gz ({message})")
    return ArchiveError("archive_malformed", f"not a readable tar.gz ({message})")


def read_package(
    stream: BinaryIO, limits: Limits = Limits(), wanted: Callable[[str], bool] = _wanted
) -> Package:
    """Stream a gzip-compressed tar; keep the wanted members; raise ArchiveError on anything unsafe.

    A refused package's error still carries the sha256 of the whole file (the rest of the stream is
    hashed, not parsed), so a caller can tell a broken input from one that changed since listing.
    """
    reader = _HashingReader(stream)
    try:
        package = _stream_members(reader, limits, wanted)
    except (ArchiveError, tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        error = _as_archive_error(exc)
        while reader.read(1 << 20):
            pass
        error.sha256 = reader.digest.hexdigest()
        raise error from (None if exc is error else exc)
    package.sha256 = reader.digest.hexdigest()
    package.size = reader.size
    return package
