"""``read_package``: one forward pass over a real .tar.gz, refusing every hostile or broken package.

Every package here is a real gzip-compressed tar written with ``tarfile``/``gzip`` into ``tmp_path`` (or
built in memory); nothing is mocked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import struct
import tarfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from medcurate.sources.pmc.archive import (
    ArchiveError,
    Limits,
    Package,
    _GzipStream,
    _HashingReader,
    read_package,
)

MiB = 2**20


class _Zeros:
    """A readable source of ``n`` zero bytes, so a 50 MB member never exists in memory while writing."""

    def __init__(self, n: int):
        self.left = n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    info.mtime, info.mode = 0, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def file_entry(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    return _info(name, size=len(data)), io.BytesIO(data)


def special_entry(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    return _info(name, kind, link=link), None


def write_tar_gz(path: Path, entries: Iterable[tuple[tarfile.TarInfo, object]], level: int = 6) -> Path:
    with (
        gzip.GzipFile(path, mode="wb", mtime=0, compresslevel=level) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for info, data in entries:
            tar.addfile(info, data)  # type: ignore[arg-type]
    return path


def read_path(path: Path, **kwargs: object) -> Package:
    with path.open("rb") as stream:
        return read_package(stream, **kwargs)  # type: ignore[arg-type]


def refusal(path_or_bytes: Path | bytes, **kwargs: object) -> ArchiveError:
    stream = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes.open("rb")
    with stream, pytest.raises(ArchiveError) as caught:
        read_package(stream, **kwargs)  # type: ignore[arg-type]
    return caught.value


def peak_memory(call: Callable[[], object]) -> tuple[int, object]:
    """Peak traced Python allocation (bytes) while ``call`` runs, and what it returned or raised."""
    tracemalloc.start()
    try:
        try:
            result: object = call()
        except ArchiveError as exc:
            result = exc
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def noise(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# -- a good package ------------------------------------------------------------------------------------

GOOD = {
    "PMC1/art.nxml": b'<?xml version="1.0"?><article><body><p>text</p></body></article>',
    "PMC1/art.pdf": b"%PDF-1.4\n" + noise(3000, 1),
    "PMC1/art-g001.jpg": b"\xff\xd8\xff" + noise(2000, 2),
    "PMC1/art-g001.gif": b"GIF89a" + noise(300, 3),
    "PMC1/art-g002.png": b"\x89PNG\r\n" + noise(1500, 4),
    "PMC1/art-g003.TIF": b"II*\x00" + noise(700, 5),
    "PMC1/supp.docx": b"PK" + noise(400, 6),
    "PMC1/meta.xml": b"<meta/>",
}


@pytest.fixture
def good_package(tmp_path: Path) -> Path:
    entries = [(_info("PMC1/", tarfile.DIRTYPE), None)]
    entries += [file_entry(name, data) for name, data in GOOD.items()]
    return write_tar_gz(tmp_path / "PMC1.tar.gz", entries)


def test_valid_package_keeps_xml_and_images_only(good_package: Path) -> None:
    package = read_path(good_package)
    # every regular member in stream order; the directory is not a member
    assert package.members == list(GOOD)
    kept = {"PMC1/art.nxml", "PMC1/meta.xml", "PMC1/art-g001.jpg", "PMC1/art-g001.gif"}
    kept |= {"PMC1/art-g002.png", "PMC1/art-g003.TIF"}
    assert set(package.kept) == kept
    assert "PMC1/art.pdf" not in package.kept and "PMC1/supp.docx" not in package.kept
    for name in kept:
        assert package.kept[name] == GOOD[name]
    assert package.uncompressed_bytes == sum(map(len, GOOD.values()))


def test_sha256_and_size_are_of_the_compressed_file(good_package: Path) -> None:
    data = good_package.read_bytes()
    package = read_path(good_package)
    assert package.sha256 == hashlib.sha256(data).hexdigest()
    assert package.size == len(data)
    # the same from an in-memory stream
    assert read_package(io.BytesIO(data)).sha256 == hashlib.sha256(data).hexdigest()


def test_custom_wanted_predicate(good_package: Path) -> None:
    package = read_path(good_package, wanted=lambda name: name.endswith(".pdf"))
    assert list(package.kept) == ["PMC1/art.pdf"]
    assert package.kept["PMC1/art.pdf"] == GOOD["PMC1/art.pdf"]
    assert package.members == list(GOOD)


def test_kept_names_are_normalised(tmp_path: Path) -> None:
    path = write_tar_gz(tmp_path / "p.tar.gz", [file_entry("./PMC2//a.nxml", b"<a/>")])
    package = read_path(path)
    assert package.kept == {"PMC2/a.nxml": b"<a/>"}


def test_empty_regular_members_are_kept(tmp_path: Path) -> None:
    path = write_tar_gz(
        tmp_path / "p.tar.gz", [file_entry("P/empty.jpg", b""), file_entry("P/a.nxml", b"<a/>")]
    )
    package = read_path(path)
    assert package.kept == {"P/empty.jpg": b"", "P/a.nxml": b"<a/>"}


# -- unsafe members ------------------------------------------------------------------------------------

UNSAFE: dict[str, Callable[[], tuple[tarfile.TarInfo, io.BytesIO | None]]] = {
    "parent": lambda: file_entry("../x.nxml", b"<a/>"),
    "nested_parent": lambda: file_entry("PMC1/../../x.jpg", b"x"),
    "absolute": lambda: file_entry("/abs/x.nxml", b"<a/>"),
    "backslash_absolute": lambda: file_entry("\\evil.jpg", b"x"),
    "drive_letter": lambda: file_entry("C:evil.jpg", b"x"),
    "backslash_parent": lambda: file_entry("PMC1\\..\\..\\evil.jpg", b"x"),
    "parent_dir": lambda: (_info("../d/", tarfile.DIRTYPE), None),
    "symlink": lambda: special_entry("PMC1/link.jpg", tarfile.SYMTYPE, "../../../../etc/passwd"),
    "hardlink": lambda: special_entry("PMC1/hard.jpg", tarfile.LNKTYPE, "PMC1/art.nxml"),
    "char_device": lambda: special_entry("PMC1/tty", tarfile.CHRTYPE),
    "block_device": lambda: special_entry("PMC1/sda", tarfile.BLKTYPE),
    "fifo": lambda: special_entry("PMC1/pipe", tarfile.FIFOTYPE),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_member_refuses_the_whole_package(tmp_path: Path, case: str) -> None:
    info, data = UNSAFE[case]()
    entries = [file_entry("PMC1/art.nxml", b"<article/>"), file_entry("PMC1/g1.jpg", b"jpg"), (info, data)]
    path = write_tar_gz(tmp_path / "p.tar.gz", entries)
    error = refusal(path)
    assert error.code == "archive_unsafe_member"
    assert repr(info.name.rstrip("/")) in error.detail
    assert str(error).startswith("archive_unsafe_member: ")


def test_unsafe_member_reasons_name_the_kind(tmp_path: Path) -> None:
    details = {}
    for case in ("parent", "absolute", "symlink", "hardlink", "char_device", "fifo"):
        path = write_tar_gz(tmp_path / f"{case}.tar.gz", [UNSAFE[case]()])
        details[case] = refusal(path).detail
    assert details["parent"].startswith("path traversal")
    assert details["absolute"].startswith("absolute path")
    assert details["symlink"].startswith("link member") and "/etc/passwd" in details["symlink"]
    assert details["hardlink"].startswith("link member")
    assert details["char_device"].startswith("device or fifo member")
    assert details["fifo"].startswith("device or fifo member")


# -- member count and size caps --------------------------------------------------------------------------


def test_member_count_cap(tmp_path: Path) -> None:
    def entries(n: int) -> list[tuple[tarfile.TarInfo, io.BytesIO]]:
        return [file_entry(f"P/f{i}.txt", b"x") for i in range(n)]

    at_cap = write_tar_gz(tmp_path / "three.tar.gz", entries(3))
    assert len(read_path(at_cap, limits=Limits(max_members=3)).members) == 3
    over = write_tar_gz(tmp_path / "four.tar.gz", entries(4))
    error = refusal(over, limits=Limits(max_members=3))
    assert error.code == "archive_too_many_members"
    assert "3" in error.detail


def test_directory_members_count_towards_the_member_cap(tmp_path: Path) -> None:
    entries = [(_info(f"P/d{i}/", tarfile.DIRTYPE), None) for i in range(50)]
    path = write_tar_gz(tmp_path / "dirs.tar.gz", entries)
    assert refusal(path, limits=Limits(max_members=10)).code == "archive_too_many_members"


def test_member_larger_than_member_cap_is_a_bomb(tmp_path: Path) -> None:
    at_cap = write_tar_gz(tmp_path / "ok.tar.gz", [file_entry("P/a.bin", bytes(1000))])
    assert read_path(at_cap, limits=Limits(max_member_bytes=1000)).uncompressed_bytes == 1000
    over = write_tar_gz(tmp_path / "big.tar.gz", [file_entry("P/a.jpg", bytes(1001))])
    error = refusal(over, limits=Limits(max_member_bytes=1000))
    assert error.code == "archive_bomb"
    assert "'P/a.jpg'" in error.detail and "1001" in error.detail


@pytest.fixture(scope="module")
def zero_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny .tar.gz holding one 50 MB zero-filled member with a name that is not wanted."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.gz"
    entries = [file_entry("P/a.nxml", b"<a/>"), (_info("P/zeros.bin", size=50 * MiB), _Zeros(50 * MiB))]
    return write_tar_gz(path, entries, level=9)


def test_decompression_bomb_beyond_total_cap(zero_bomb: Path) -> None:
    assert zero_bomb.stat().st_size < 200_000  # a few hundred KB at most inflate to 50 MB
    limits = Limits(max_total_bytes=10 * MiB)
    peak, result = peak_memory(lambda: read_path(zero_bomb, limits=limits))
    assert isinstance(result, ArchiveError)
    assert result.code == "archive_bomb"
    assert str(10 * MiB) in result.detail
    assert peak < 4 * MiB


def test_unwanted_large_member_is_streamed_past_not_kept(zero_bomb: Path) -> None:
    limits = Limits(max_total_bytes=64 * MiB)
    peak, result = peak_memory(lambda: read_path(zero_bomb, limits=limits))
    assert isinstance(result, Package)
    assert result.members == ["P/a.nxml", "P/zeros.bin"]
    assert result.kept == {"P/a.nxml": b"<a/>"}
    assert result.uncompressed_bytes == 50 * MiB + 4
    assert result.sha256 == hashlib.sha256(zero_bomb.read_bytes()).hexdigest()
    assert peak < 4 * MiB  # the 50 MB member was never held


def test_many_members_adding_up_beyond_total_cap(tmp_path: Path) -> None:
    entries = [(_info(f"P/z{i}.bin", size=2 * MiB), _Zeros(2 * MiB)) for i in range(6)]
    path = write_tar_gz(tmp_path / "six.tar.gz", entries)
    five = Limits(max_total_bytes=10 * MiB)
    assert refusal(path, limits=five).code == "archive_bomb"
    assert read_path(path, limits=Limits(max_total_bytes=12 * MiB)).uncompressed_bytes == 12 * MiB


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE])
def test_oversized_extended_header_is_a_bomb(tmp_path: Path, kind: bytes) -> None:
    size = 16 * MiB
    path = tmp_path / "header-bomb.tar.gz"
    with gzip.GzipFile(path, mode="wb", mtime=0) as gz:
        gz.write(_info("././@LongLink", kind, size=size).tobuf(tarfile.GNU_FORMAT))
        chunk = b"a" * MiB
        for _ in range(size // MiB):
            gz.write(chunk)
        gz.write(_info("P/x.bin", size=3).tobuf(tarfile.GNU_FORMAT) + b"abc" + bytes(509) + bytes(1024))
    assert path.stat().st_size < 100_000
    limits = Limits(max_member_bytes=MiB, max_total_bytes=4 * MiB)
    peak, result = peak_memory(lambda: read_path(path, limits=limits))
    assert getattr(result, "code", type(result).__name__) == "archive_bomb"
    assert peak < 8 * MiB


def test_kept_bytes_cap(tmp_path: Path) -> None:
    entries = [
        file_entry("P/big.bin", bytes(300_000)),  # not kept: does not count
        file_entry("P/a.jpg", noise(60_000, 7)),
        file_entry("P/b.png", noise(60_000, 8)),
    ]
    path = write_tar_gz(tmp_path / "kept.tar.gz", entries)
    assert set(read_path(path, limits=Limits(max_kept_bytes=120_000)).kept) == {"P/a.jpg", "P/b.png"}
    error = refusal(path, limits=Limits(max_kept_bytes=100_000))
    assert error.code == "archive_too_large"


def test_data_after_the_end_of_archive_is_capped(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(*file_entry("P/a.nxml", b"<a/>"))
    tar_bytes = raw.getvalue()
    small = tmp_path / "small-tail.tar.gz"
    small.write_bytes(gzip.compress(tar_bytes + bytes(MiB), mtime=0))
    assert read_path(small).kept == {"P/a.nxml": b"<a/>"}
    huge = tmp_path / "huge-tail.tar.gz"
    with gzip.GzipFile(huge, mode="wb", mtime=0) as gz:
        gz.write(tar_bytes)
        for _ in range(20):
            gz.write(bytes(MiB))
    error = refusal(huge)
    assert error.code == "archive_bomb" and "after the end of the archive" in error.detail


# -- truncation and garbage --------------------------------------------------------------------------------


@pytest.fixture
def compressed(good_package: Path) -> bytes:
    return good_package.read_bytes()


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda n: n - 1, id="last-byte"),
        pytest.param(lambda n: n - 4, id="gzip-isize"),
        pytest.param(lambda n: n - 8, id="gzip-trailer"),
        pytest.param(lambda n: n - 9, id="deflate-end"),
        pytest.param(lambda n: n // 2, id="middle"),
        pytest.param(lambda n: 40, id="first-header"),
        pytest.param(lambda n: 10, id="after-gzip-header"),
        pytest.param(lambda n: 5, id="inside-gzip-header"),
    ],
)
def test_truncated_stream(compressed: bytes, cut: Callable[[int], int]) -> None:
    error = refusal(compressed[: cut(len(compressed))])
    assert error.code == "archive_truncated"


def test_every_cut_point_is_refused_as_truncated(compressed: bytes) -> None:
    n = len(compressed)
    codes = {end: refusal(compressed[:end]).code for end in {*range(2, n, 5), *range(n - 24, n)}}
    assert {end for end, code in codes.items() if code != "archive_truncated"} == set()


@pytest.mark.parametrize("wanted_member", [True, False])
def test_tar_cut_inside_a_member_in_an_intact_gzip(tmp_path: Path, wanted_member: bool) -> None:
    raw = io.BytesIO()
    big = "P/a.jpg" if wanted_member else "P/a.pdf"
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(*file_entry("P/a.nxml", b"<a/>"))
        tar.addfile(*file_entry(big, noise(20_000, 9)))
        tar.addfile(*file_entry("P/b.jpg", b"jpg"))
    cut = raw.getvalue()[: 512 * 3 + 6_000]  # header+data of a.nxml, header of big, part of its data
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(gzip.compress(cut, mtime=0))
    assert refusal(path).code == "archive_truncated"


def test_garbage_is_malformed() -> None:
    assert refusal(b"this is not a gzip file at all" * 10).code == "archive_malformed"
    assert refusal(b"").code == "archive_malformed"


def test_gzip_of_something_that_is_not_a_tar_is_malformed() -> None:
    error = refusal(gzip.compress(b"hello world, no tar header here\n" * 40, mtime=0))
    assert error.code == "archive_malformed"


def test_corrupt_gzip_checksum_is_refused(compressed: bytes) -> None:
    crc_flipped = bytearray(compressed)
    crc_flipped[-8] ^= 0xFF
    assert refusal(bytes(crc_flipped)).code == "archive_malformed"
    length_flipped = bytearray(compressed)
    length_flipped[-1] ^= 0x01
    assert refusal(bytes(length_flipped)).code == "archive_malformed"


def test_trailing_garbage_after_gzip_is_malformed(compressed: bytes) -> None:
    assert refusal(compressed + b"junk!").code == "archive_malformed"


def test_archive_error_carries_code_and_detail() -> None:
    error = ArchiveError("archive_bomb", "too big")
    assert isinstance(error, ValueError)
    assert (error.code, error.detail, str(error)) == ("archive_bomb", "too big", "archive_bomb: too big")


# -- the gzip layer reads exactly as gzip.GzipFile does ----------------------------------------------------


def _member(data: bytes, flags: int = 0) -> bytes:
    """One gzip member with the optional header fields ``flags`` asks for (RFC 1952)."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    header = b"\x1f\x8b\x08" + bytes([flags]) + bytes(6)
    header += b"\x05\x00extra" if flags & 4 else b""
    header += b"name.tar\x00" if flags & 8 else b""
    header += b"a comment\x00" if flags & 16 else b""
    header += b"\x12\x34" if flags & 2 else b""
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return header + deflate.compress(data) + deflate.flush() + trailer


def _reads(stream: object) -> tuple[list[bytes], str | None]:
    """Every ``read(RECORDSIZE)`` until the end, and the exception that stopped it early, if any."""
    pieces = []
    try:
        while piece := stream.read(tarfile.RECORDSIZE):  # type: ignore[attr-defined]
            pieces.append(piece)
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        return pieces, f"{type(exc).__name__}: {exc}"
    return pieces, None


TEXT = b"".join(b"line %d of the article\n" % i for i in range(3000))
GZIP_VARIANTS = {
    "text": gzip.compress(TEXT, mtime=0),
    "noise": gzip.compress(noise(150_000, 11), mtime=0),  # more than one input chunk
    "zeros": gzip.compress(bytes(3 * MiB), mtime=0),  # a few KiB that inflate to MiBs
    "multi-member": _member(TEXT[:5000]) + _member(b"") + _member(TEXT[5000:]),
    "header-fields": b"".join(_member(TEXT[:20_000], flags) for flags in (2, 4, 8, 16, 30)),
    "zero-padding": gzip.compress(TEXT, mtime=0) + bytes(100),
    "padding-then-garbage": gzip.compress(TEXT, mtime=0) + bytes(5) + b"junk",
    "garbage": gzip.compress(TEXT, mtime=0) + b"x",
    "not-deflate": b"\x1f\x8b\x07" + gzip.compress(TEXT, mtime=0)[3:],
}


@pytest.mark.parametrize("name", sorted(GZIP_VARIANTS))
def test_gzip_stream_reads_what_gzipfile_reads(name: str) -> None:
    """Same chunks, and the same error at the same read, for whole, cut and corrupted streams."""
    data = GZIP_VARIANTS[name]
    rng = random.Random(name)
    cases = [data[:cut] for cut in {*range(0, 40), *range(len(data) - 40, len(data) + 1)}]
    cases += [data[: rng.randrange(len(data))] for _ in range(40)]
    for _ in range(60):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        cases.append(bytes(flipped))
    for case in cases:
        expected = _reads(gzip.GzipFile(fileobj=io.BytesIO(case), mode="rb"))
        assert _reads(_GzipStream(_HashingReader(io.BytesIO(case)))) == expected


def test_multi_member_padded_package_reads_like_one_stream(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in GOOD.items():
            tar.addfile(*file_entry(name, data))
    tar_bytes = raw.getvalue()
    path = tmp_path / "multi.tar.gz"
    path.write_bytes(_member(tar_bytes[:3000], flags=8) + _member(tar_bytes[3000:], flags=16) + bytes(64))
    package = read_path(path)
    assert package.members == list(GOOD)
    assert package.kept["PMC1/art-g001.jpg"] == GOOD["PMC1/art-g001.jpg"]
    cut = path.read_bytes()[:-80]  # the second member ends early
    assert refusal(cut).code == "archive_truncated"
