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
import io
import posixpath
import re
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

#: Extensions of members worth keeping: the article XML and figure images.
XML_EXTENSIONS = (".nxml", ".xml")
MAX_TRAILING_BYTES = 16 * 2**20
MAX_EXTENDED_HEADER_BYTES = 64 * 2**10
#: Compressed bytes read (and hashed) at a time: a typical package in one or two reads, and below
#: the size from which malloc maps fresh pages for every buffer (measured: 256 KiB reads were slower).
INPUT_CHUNK = 64 * 2**10
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


# gzip header flags (RFC 1952)
_FEXTRA, _FNAME, _FCOMMENT, _FHCRC = 4, 8, 16, 2
_GZIP_MAGIC = b"\037\213"
_TRUNCATED = "Compressed file ended before the end-of-stream marker was reached"
#: ``GzipFile``'s buffer size and the compressed bytes it gives zlib per call (``io.DEFAULT_BUFFER_SIZE``):
#: reading with the same sizes makes zlib meet corrupt data at the same reads. The small feed also
#: bounds the unconsumed tail zlib copies back on every call.
_BLOCK = _FEED = io.DEFAULT_BUFFER_SIZE
_NONZERO = re.compile(rb"[^\0]")


class _GzipStream:
    """The decompressed bytes of a gzip file, read the way ``gzip.GzipFile`` reads them, with zlib
    directly.

    ``GzipFile`` passes every 8 KiB of input through a padded-file wrapper, a decompress reader and a
    ``BufferedReader`` (and here through the hashing reader, one call each). This reads the input in
    ``INPUT_CHUNK`` pieces and keeps only the zlib calls, made with exactly the sizes ``GzipFile``
    would use, so every input is refused with the same exception at the same read (the tests compare
    the two read by read): members are concatenated (multi-member gzip); each member's CRC and
    length trailer is checked once its data has been read to the end (a cut inside the 8-byte trailer
    is an ``EOFError``, a wrong CRC or length a ``BadGzipFile``); zero padding between or after
    members is skipped; anything else after a member must be another gzip header (else
    ``BadGzipFile``, "Not a gzipped file"); the input ending inside a member is an ``EOFError``,
    corrupt deflate data a ``zlib.error``. The header CRC (FHCRC) is skipped unchecked, as gzip does.
    """

    def __init__(self, raw: _HashingReader, chunk: int = INPUT_CHUNK):
        self.raw = raw
        self.chunk = chunk
        self.input = b""  # compressed bytes read from raw; those before self.pos are consumed
        self.pos = 0
        self.inflate: zlib._Decompress | None = None  # the current member's; None between members
        self.crc = 0  # of the current member's data so far
        self.length = 0
        self.input_ended = False  # raw has returned b"": asking again would only cost another read
        self.ahead = b""  # decompressed bytes read ahead by the emulated buffer, not returned yet
        self.finished = False  # the input ended cleanly after a member (or was empty)

    # -- compressed input ----------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Append the next chunk of the input (dropping what is consumed); False at its end."""
        data = b"" if self.input_ended else self.raw.read(self.chunk)
        if not data:
            self.input_ended = True
            return False
        self.input = self.input[self.pos :] + data if self.pos < len(self.input) else data
        self.pos = 0
        return True

    def _take(self, n: int) -> bytes:
        """Up to ``n`` input bytes, fewer only at the end of the input."""
        while len(self.input) - self.pos < n and self._fill():
            pass
        data = self.input[self.pos : self.pos + n]
        self.pos += len(data)
        return data

    def _exact(self, n: int) -> bytes:
        """Exactly ``n`` input bytes; EOFError when the input ends first (gzip's ``_read_exact``)."""
        data = self._take(n)
        if len(data) < n:
            raise EOFError(_TRUNCATED)
        return data

    def _skip_past(self, pattern: re.Pattern[bytes] | bytes, keep: bool) -> None:
        """Skip input up to the first match of ``pattern`` (and past it unless ``keep``), or to the
        end of the input when there is none: running out is not an error here."""
        while True:
            if isinstance(pattern, bytes):
                found = self.input.find(pattern, self.pos)
            else:
                match = pattern.search(self.input, self.pos)
                found = match.start() if match else -1
            if found >= 0:
                self.pos = found if keep else found + 1
                return
            self.pos = len(self.input)
            if not self._fill():
                return

    # -- members ---------------------------------------------------------------------------------------

    def _member_header(self) -> bool:
        """Read a member's header (``gzip._read_gzip_header``); False when the input has ended."""
        magic = self._take(2)
        if not magic:
            return False
        if magic != _GZIP_MAGIC:
            raise gzip.BadGzipFile(f"Not a gzipped file ({magic!r})")
        method, flags = struct.unpack("<BBIxx", self._exact(8))[:2]
        if method != 8:
            raise gzip.BadGzipFile("Unknown compression method")
        if flags & _FEXTRA:
            (extra,) = struct.unpack("<H", self._exact(2))
            self._exact(extra)
        if flags & _FNAME:  # NUL-terminated; gzip stops at the end of the input without complaint
            self._skip_past(b"\0", keep=False)
        if flags & _FCOMMENT:
            self._skip_past(b"\0", keep=False)
        if flags & _FHCRC:
            self._exact(2)
        return True

    def _member_trailer(self) -> None:
        """Check the ended member's CRC and length, then skip zero padding (``_GzipReader._read_eof``)."""
        crc, length = struct.unpack("<II", self._exact(8))
        if crc != self.crc:
            raise gzip.BadGzipFile(f"CRC check failed {hex(crc)} != {hex(self.crc)}")
        if length != self.length & 0xFFFFFFFF:
            raise gzip.BadGzipFile("Incorrect length of data produced")
        self._skip_past(_NONZERO, keep=True)

    def read(self, size: int) -> bytes:
        """``GzipFile.read(size)``: ``size`` bytes, fewer only at the clean end of the data.

        ``GzipFile`` reads through an ``io.BufferedReader`` with an 8 KiB buffer; this asks the
        decompressor for the same amounts in the same order (whole blocks straight through, then the
        buffer filled ahead), so corrupt data is met by the same read as before and a broken package
        is refused with the same reason.
        """
        ahead = self.ahead
        if size <= len(ahead):
            self.ahead = ahead[size:]
            return ahead[:size]
        pieces, remaining = [ahead], size - len(ahead)
        self.ahead = b""
        while (block := remaining - remaining % _BLOCK) > 0:  # whole blocks, straight through
            piece = self._read_some(block)
            if not piece:
                return b"".join(pieces)
            pieces.append(piece)
            remaining -= len(piece)
        buffer, used = b"", 0  # then the rest through the buffer, which reads ahead up to a block
        while remaining > 0 and len(buffer) < _BLOCK:
            piece = self._read_some(_BLOCK - len(buffer))
            if not piece:
                break
            take = min(remaining, len(piece))
            pieces.append(piece[:take])
            buffer += piece
            used += take
            remaining -= take
        self.ahead = buffer[used:]
        return b"".join(pieces)

    def _read_some(self, size: int) -> bytes:
        """Up to ``size`` (> 0) decompressed bytes from the first inflate call that gives any; b"" only
        at the clean end. As in gzip, a member's trailer is checked on the read after its last data,
        and the next header is read only when more data is asked for."""
        while True:
            if self.inflate is not None and self.inflate.eof:
                self._member_trailer()
                self.inflate = None
            if self.inflate is None:
                if self.finished or not self._member_header():
                    self.finished = True
                    return b""
                self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                self.crc = self.length = 0
            if self.pos + _FEED > len(self.input):
                self._fill()
            feed = self.input[self.pos : self.pos + _FEED]
            inflate = self.inflate
            out = inflate.decompress(feed, size)
            # What zlib left of the feed, by gzip's rule: the tail cut off by ``size``, else (the
            # member ended) what follows it. At a member's end zlib may report it as both.
            self.pos += len(feed) - len(inflate.unconsumed_tail or inflate.unused_data)
            if out:
                self.crc = zlib.crc32(out, self.crc)
                self.length += len(out)
                return out
            if not feed:  # nothing left to give zlib, and no output: the member never ended
                raise EOFError(_TRUNCATED)


class _ForwardStream:
    """The forward-only stream tarfile's stream mode (``r|``) reads through, without its copying.

    ``tarfile._Stream`` copies what is left of its buffer on every read, and tarfile reads each
    512-byte header and each member through it. This keeps an offset into the buffer instead, and
    otherwise does the same: it pulls ``RECORDSIZE`` chunks from the decompressor exactly when
    ``_Stream`` would (so a broken stream is noticed at the same point of a package), seeks only
    forward by reading on, and refuses to seek backwards with the same ``StreamError``.
    """

    def __init__(self, raw: BinaryIO | _GzipStream, chunk: int = tarfile.RECORDSIZE):
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


_LINK_TYPES = frozenset({tarfile.SYMTYPE, tarfile.LNKTYPE})
_DEVICE_TYPES = frozenset({tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE})
#: What ``TarInfo.isfile()`` or ``isdir()`` accepts.
_ACCEPTED_TYPES = frozenset({*tarfile.REGULAR_TYPES, tarfile.DIRTYPE})


def unsafe_member_reason(info: tarfile.TarInfo) -> str | None:
    """Why a member must not be accepted, or None; checked before its data is read.

    The type tests are ``TarInfo.issym()``, ``islnk()``, ``isdev()``, ``isfile()`` and ``isdir()``
    written as set lookups, since every member of every package comes through here.
    """
    name = info.name
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    if ".." in name and ".." in name.replace("\\", "/").split("/"):
        return f"path traversal {name!r}"
    kind = info.type
    if kind in _LINK_TYPES:
        return f"link member {name!r} -> {info.linkname!r}"
    if kind in _DEVICE_TYPES:
        return f"device or fifo member {name!r}"
    if kind not in _ACCEPTED_TYPES:
        return f"member {name!r} of unsupported type {kind!r}"
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
    gz = _GzipStream(reader)
    stream = _ForwardStream(gz)
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
