"""Fingerprint indexes of evaluation sets, for removing their images from training releases.

An evaluation set is configured as ``{name, kind, uri, ...}``; ``kind`` is one of

- ``images``: a folder of image files, walked recursively in sorted order (hidden entries skipped);
- ``webdataset``: one ``.tar`` shard or a folder of them; image members are read in memory with
  ``tarfile`` (never extracted), and links, devices, absolute or ``..`` names and oversized members
  are skipped and counted;
- ``manifest``: a parquet or CSV file that either lists ``pixel_sha256``/``phash`` columns (a
  medcurate release's ``manifest.parquet`` does) or a column of image paths relative to the manifest.

Every image goes through ``NormalizeStage.apply`` exactly like a training image, so its
``pixel_sha256`` and ``phash`` are comparable with training records normalised with the same params
(a hash computed any other way would differ after the resize and mode conversion). Unreadable images
and decompression bombs are not fatal: they become rows with an ``error`` and are counted.

Indexes are cached in the lake under ``state/evalsets/<name>/<key>.parquet``; the key hashes the
listing (relative paths, sizes and content sha256) and the fingerprint params, so a nightly run
hashes the set's files and reads one parquet file instead of decoding every image again.

The index holds hashes, never image bytes: its ``sha256`` (of the normalized image, as a training
record's ``image.sha256``) keys the image's embedding in the lake's vector store, and
``normalized_images`` reads chosen members again, through the same normalize params, when an
embedding model needs their bytes.
"""

from __future__ import annotations

import csv
import os
import re
import stat
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medcurate.hashing import sha256_json, sha256_stream
from medcurate.lake.store import Lake
from medcurate.schemas.record import new_record
from medcurate.stages.base import Exclude, StageContext
from medcurate.stages.normalize import DEFAULTS as NORMALIZE_DEFAULTS
from medcurate.stages.normalize import NormalizeStage

#: Bump when the index layout or the way members are read changes: old cache files stop matching.
INDEX_VERSION = "2"  # 2: sha256 of the normalized image (the vector store key)
KINDS = ("images", "webdataset", "manifest")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"})
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # it names a lake folder
PATH_COLUMNS = ("path", "image", "image_path", "file", "filename", "filepath")
INDEX_SCHEMA = pa.schema(
    [
        ("eval_set", pa.string()),
        ("member", pa.string()),  # relative path, "<shard>/<member>" or the manifest's key
        ("pixel_sha256", pa.string()),
        ("phash", pa.string()),
        ("phash_fine", pa.string()),  # 256-bit, confirms phash matches (absent in older manifests)
        ("sha256", pa.string()),  # of the normalized image bytes, as training records' image.sha256
        ("error", pa.string()),  # "code: detail" when the image was not fingerprinted
    ]
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
#: Codes of members that were refused before decoding (not images we failed to read).
SKIP_CODES = frozenset({"unsafe_member", "not_a_file", "file_too_large", "unsafe_path", "missing_file"})

#: member, pixel_sha256, phash, phash_fine, sha256, error
Row = tuple[str, str | None, str | None, str | None, str | None, str | None]


@dataclass(frozen=True)
class EvalSetSpec:
    """One configured evaluation set, its ``uri`` made absolute."""

    name: str
    kind: str
    uri: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> EvalSetSpec:
        """Validate one ``eval_sets`` entry; relative uris resolve against the working directory,
        as source uris do (``steps.plan_run``)."""
        missing = {"name", "kind", "uri"} - set(cfg)
        if missing:
            raise ValueError(f"eval set {dict(cfg)!r} lacks {sorted(missing)}")
        name, kind, uri = str(cfg["name"]), str(cfg["kind"]), str(cfg["uri"])
        if not NAME_PATTERN.match(name):
            raise ValueError(f"eval set name {name!r} must match {NAME_PATTERN.pattern}")
        if kind not in KINDS:
            raise ValueError(f"eval set {name!r}: kind must be one of {KINDS}, not {kind!r}")
        if "://" in uri:
            raise ValueError(f"eval set {name!r}: only local paths are supported, not {uri!r}")
        options = {k: v for k, v in cfg.items() if k not in ("name", "kind", "uri")}
        return cls(name, kind, str(Path(uri).expanduser().resolve()), options)


@dataclass
class EvalIndex:
    """The fingerprints of one evaluation set (``INDEX_SCHEMA``) and whether they came from cache."""

    name: str
    table: pa.Table
    cache_rel: str | None = None
    cached: bool = False

    @property
    def errors(self) -> Counter:
        """Not-fingerprinted members by reason code."""
        return Counter(e.split(":", 1)[0] for e in self.table.column("error").to_pylist() if e)

    @property
    def images(self) -> int:
        return self.table.num_rows - sum(self.errors.values())

    def summary(self) -> dict[str, Any]:
        errors = self.errors
        return {
            "images": self.images,
            "unreadable": sum(n for code, n in errors.items() if code not in SKIP_CODES),
            "skipped": sum(n for code, n in errors.items() if code in SKIP_CODES),
            "errors": dict(sorted(errors.items())),
            "cached": self.cached,
        }


# -- fingerprints ----------------------------------------------------------------------------------


def fingerprint_params(normalize: Mapping[str, Any] | None) -> dict[str, Any]:
    """The normalize params used for eval images: the pipeline's, with ``min_side`` lifted to 1.

    ``min_side`` only filters, it never changes a hash; an eval set of 28-pixel images (MedMNIST)
    must still be indexed, since an upscaled training copy of one is exactly what we look for.
    """
    return {**NORMALIZE_DEFAULTS, **(normalize or {}), "min_side": 1}


class Fingerprinter:
    """``pixel_sha256`` and ``phash`` of image bytes, by the normalize stage itself."""

    def __init__(self, normalize: Mapping[str, Any] | None):
        self.params = fingerprint_params(normalize)
        self.stage = NormalizeStage(self.params)
        self._ctx = StageContext(run_id="evalsets")
        self.calls = 0  # images decoded, for tests and logs

    @property
    def max_bytes(self) -> int:
        return int(self.params["max_file_bytes"])

    def normalized(self, raw: bytes) -> dict[str, Any]:
        """The normalized image (bytes and hashes) as a training record holds it; raises ``Exclude``."""
        self.calls += 1
        record, _ = self.stage.apply(new_record("eval", image={"bytes": raw}), self._ctx)
        return record["image"]

    def __call__(self, member: str, raw: bytes) -> Row:
        try:
            image = self.normalized(raw)
        except Exclude as exc:  # corrupt, bomb, unsupported mode: counted, not fatal
            return _failed(member, exc.reason)
        self.seen(member, image)
        return member, image["pixel_sha256"], image["phash"], image.get("phash_fine"), image["sha256"], None

    def seen(self, member: str, image: dict[str, Any]) -> None:
        """Called with each normalized image; the index needs only the row."""


class _Rereader(Fingerprinter):
    """Keeps the normalized bytes of the chosen members (other members are not decoded)."""

    def __init__(self, normalize: Mapping[str, Any] | None, members: set[str]):
        super().__init__(normalize)
        self.members = members
        self.found: list[tuple[str, str, bytes]] = []

    def __call__(self, member: str, raw: bytes) -> Row:
        return super().__call__(member, raw) if member in self.members else _failed(member, "not_wanted")

    def seen(self, member: str, image: dict[str, Any]) -> None:
        self.found.append((member, image["sha256"], image["bytes"]))


def _failed(member: str, error: str) -> Row:
    return member, None, None, None, None, error


# -- listings and readers, per kind -----------------------------------------------------------------


def _walk(root: Path, suffixes: frozenset[str]) -> list[str]:
    """Relative posix paths of files below ``root`` with one of ``suffixes``, sorted; no hidden
    entries, and symlinked folders are not entered (a loop or an escape would be)."""
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath).relative_to(root)
        for filename in filenames:
            if not filename.startswith(".") and _suffix(filename) in suffixes:
                rels.append((base / filename).as_posix())
    return sorted(rels)


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _file_facts(path: Path) -> tuple[int, str] | str:
    """(size, sha256) of a regular file, or why it cannot be read (code: detail).

    Content, not mtime: the listing names the run (through the stage's config hash), and a copy of
    the same set on another machine must give the same run and release hash. Hashing is cheap next
    to fingerprinting (decoding every image), which the cached index still saves.
    """
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return "not_a_file: not a regular file"
        with path.open("rb") as stream:
            return st.st_size, sha256_stream(stream)
    except OSError as exc:
        return f"missing_file: {exc.strerror}"


def _unsafe_name(name: str) -> str | None:
    """Why a relative name must not be followed (absolute, ``..``, NUL), or None when it is fine."""
    windows = PureWindowsPath(name)
    if "\x00" in name:
        return "contains a NUL byte"
    if PurePosixPath(name).is_absolute() or windows.is_absolute() or windows.drive:
        return "is absolute"
    if ".." in windows.parts:  # splits on both / and \
        return "contains '..'"
    return None


def _read_file(path: Path, rel: str, facts: tuple[int, int] | str, fp: Fingerprinter) -> Row:
    if isinstance(facts, str):
        return _failed(rel, facts)
    if facts[0] > fp.max_bytes:
        return _failed(rel, f"file_too_large: {facts[0]} bytes (limit {fp.max_bytes})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return _failed(rel, f"missing_file: {exc.strerror}")
    return fp(rel, raw)


def _images_listing(spec: EvalSetSpec) -> list[Any]:
    root = Path(spec.uri)
    if not root.is_dir():
        raise FileNotFoundError(f"eval set {spec.name!r}: {root} is not a folder")
    return [[rel, _file_facts(root / rel)] for rel in _walk(root, IMAGE_EXTENSIONS)]


def _images_rows(spec: EvalSetSpec, listing: list[Any], fp: Fingerprinter) -> Iterator[Row]:
    root = Path(spec.uri)
    for rel, facts in listing:
        yield _read_file(root / rel, rel, facts if isinstance(facts, str) else tuple(facts), fp)


def _shards(spec: EvalSetSpec) -> tuple[Path, list[str]]:
    """The folder the shard names are relative to, and the shard names."""
    path = Path(spec.uri)
    if path.is_file():
        return path.parent, [path.name]
    if path.is_dir():
        return path, _walk(path, frozenset({".tar"}))
    raise FileNotFoundError(f"eval set {spec.name!r}: {path} is neither a .tar file nor a folder")


def _webdataset_listing(spec: EvalSetSpec) -> list[Any]:
    root, names = _shards(spec)
    return [[name, _file_facts(root / name)] for name in names]


def _member_problem(info: tarfile.TarInfo, max_bytes: int) -> str | None:
    """Why a tar member must not be read, as ``code: detail``; None when it is a safe regular file."""
    if not info.isreg():
        kind = "link" if info.issym() or info.islnk() else "device or special file"
        return f"unsafe_member: {info.name!r} is a {kind}"
    unsafe = _unsafe_name(info.name)
    if unsafe:
        return f"unsafe_member: {info.name!r} {unsafe}"
    if info.size > max_bytes:
        return f"file_too_large: {info.size} bytes (limit {max_bytes})"
    return None


def _tar_rows(path: Path, shard: str, fp: Fingerprinter) -> Iterator[Row]:
    """Fingerprint the image members of one shard without writing anything to disk.

    Only ``extractfile`` of regular members is used: it reads the member's bytes from the archive
    and never creates files, follows links or looks at the member's name as a path.
    """
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for info in tar:
                if info.isdir() or _suffix(info.name) not in IMAGE_EXTENSIONS:
                    continue  # labels, captions, json: part of a sample, not an image
                member = f"{shard}/{info.name}"
                problem = _member_problem(info, fp.max_bytes)
                if problem:
                    yield _failed(member, problem)
                    continue
                stream = tar.extractfile(info)
                yield fp(member, stream.read(fp.max_bytes + 1) if stream else b"")
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield _failed(shard, f"corrupt_shard: {type(exc).__name__}: {exc}")


def _webdataset_rows(spec: EvalSetSpec, listing: list[Any], fp: Fingerprinter) -> Iterator[Row]:
    root, _ = _shards(spec)
    for shard, facts in listing:
        if isinstance(facts, str):
            yield _failed(shard, facts)
        else:
            yield from _tar_rows(root / shard, shard, fp)


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    """Rows of a parquet or CSV manifest (CSV cells are strings; empty cells become None)."""
    if _suffix(path.name) in (".parquet", ".pq"):
        schema = pq.read_schema(path)
        wanted = [n for n in schema.names if n not in ("members", "labels", "scores", "quality_flags")]
        return pq.read_table(path, columns=wanted).to_pylist()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        delimiter = "\t" if _suffix(path.name) == ".tsv" else ","
        return [
            {k: (v or None) for k, v in row.items()} for row in csv.DictReader(handle, delimiter=delimiter)
        ]


def _manifest_columns(spec: EvalSetSpec, rows: list[dict[str, Any]]) -> dict[str, str | None]:
    """Which columns hold hashes, paths and member names (options override the usual names)."""
    names = set(rows[0]) if rows else set()
    opts = spec.options

    def pick(option: str, candidates: tuple[str, ...]) -> str | None:
        if opts.get(option):
            if opts[option] not in names and rows:
                raise ValueError(f"eval set {spec.name!r}: manifest has no column {opts[option]!r}")
            return opts[option]
        return next((c for c in candidates if c in names), None)

    cols = {
        "pixel_sha256": pick("pixel_sha256_column", ("pixel_sha256",)),
        "phash": pick("phash_column", ("phash",)),
        "phash_fine": pick("phash_fine_column", ("phash_fine",)),
        "path": pick("path_column", PATH_COLUMNS),
    }
    cols["member"] = pick("member_column", ("key", "id", "sample_id")) or cols["path"]
    if rows and not (cols["pixel_sha256"] or cols["phash"] or cols["path"]):
        raise ValueError(
            f"eval set {spec.name!r}: manifest needs pixel_sha256/phash columns or a path column "
            f"(one of {PATH_COLUMNS}, or path_column)"
        )
    return cols


def _manifest_listing(spec: EvalSetSpec) -> list[Any]:
    path = Path(spec.uri)
    facts = _file_facts(path)
    if isinstance(facts, str):
        raise FileNotFoundError(f"eval set {spec.name!r}: manifest {path}: {facts}")
    listing: list[Any] = [[path.name, facts]]
    rows = _read_manifest(path)
    cols = _manifest_columns(spec, rows)
    if not (cols["pixel_sha256"] or cols["phash"]):  # images by path: their facts are the listing
        for row in rows:
            rel = str(row.get(cols["path"]) or "")
            listing.append([rel, _path_facts(path.parent, rel)])
    return listing


def _path_facts(root: Path, rel: str) -> tuple[int, int] | str:
    if not rel:
        return "missing_file: empty path"
    unsafe = _unsafe_name(rel)
    return f"unsafe_path: {rel!r} {unsafe}" if unsafe else _file_facts(root / rel)


def _hash_row(member: str, pixel: Any, phash: Any, fine: Any) -> Row:
    pixel, phash, fine = (str(v).lower() if v else None for v in (pixel, phash, fine))
    bad = (
        (pixel and not _HEX64.match(pixel))
        or (phash and not _HEX16.match(phash))
        or (fine and not _HEX64.match(fine))
    )
    if bad:
        return _failed(member, "bad_hash: not a 64-hex pixel_sha256 / 16-hex phash / 64-hex phash_fine")
    if not (pixel or phash):
        return _failed(member, "bad_hash: no hash")
    return member, pixel, phash, fine if phash else None, None, None  # no image: no sha256 to embed


def _manifest_rows(spec: EvalSetSpec, listing: list[Any], fp: Fingerprinter) -> Iterator[Row]:
    path = Path(spec.uri)
    rows = _read_manifest(path)
    cols = _manifest_columns(spec, rows)
    for line, row in enumerate(rows, start=1):
        member = str(row.get(cols["member"]) or f"line {line}") if cols["member"] else f"line {line}"
        if cols["pixel_sha256"] or cols["phash"]:
            yield _hash_row(
                member, *(row.get(cols[c] or "") for c in ("pixel_sha256", "phash", "phash_fine"))
            )
            continue
        rel, facts = listing[line]
        yield _read_file(path.parent / rel, member, facts if isinstance(facts, str) else tuple(facts), fp)


_LISTINGS: dict[str, Callable[[EvalSetSpec], list[Any]]] = {
    "images": _images_listing,
    "webdataset": _webdataset_listing,
    "manifest": _manifest_listing,
}
_READERS: dict[str, Callable[[EvalSetSpec, list[Any], Fingerprinter], Iterator[Row]]] = {
    "images": _images_rows,
    "webdataset": _webdataset_rows,
    "manifest": _manifest_rows,
}


# -- the cached index -------------------------------------------------------------------------------


def listing(spec: EvalSetSpec) -> list[Any]:
    """What identifies the set's current contents: relative names with (size, sha256)."""
    return _LISTINGS[spec.kind](spec)


def index_key(spec: EvalSetSpec, facts: list[Any], normalize: Mapping[str, Any] | None) -> str:
    """The cache key: listing, kind options and fingerprint params (not the absolute root, so a
    moved folder keeps its cache)."""
    return sha256_json(
        {
            "version": INDEX_VERSION,
            "normalize_version": NormalizeStage.version,
            "kind": spec.kind,
            "options": dict(spec.options),
            "listing": facts,
            "normalize": fingerprint_params(normalize),
        }
    )


def cache_rel(spec: EvalSetSpec, key: str) -> str:
    return f"state/evalsets/{spec.name}/{key}.parquet"


def build_index(spec: EvalSetSpec, facts: list[Any], fp: Fingerprinter) -> pa.Table:
    rows = list(_READERS[spec.kind](spec, facts, fp))
    names = INDEX_SCHEMA.names[1:]
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    data = {"eval_set": [spec.name] * len(rows), **{n: list(c) for n, c in zip(names, columns, strict=True)}}
    return pa.table(data, schema=INDEX_SCHEMA)


def normalized_images(
    spec: EvalSetSpec,
    normalize: Mapping[str, Any] | None,
    members: Iterable[str],
    facts: list[Any] | None = None,
) -> Iterator[tuple[str, str, bytes]]:
    """(member, sha256, normalized bytes) of the given members, read again from the set one at a time.

    The index holds hashes only; what needs the image itself (an embedding model) reads it again
    here, through the same normalize params, so the bytes and their sha256 are those the index holds.
    Members that cannot be read now (gone, corrupt) are left out.
    """
    facts = listing(spec) if facts is None else facts
    reader = _Rereader(normalize, set(members))
    for _ in _READERS[spec.kind](spec, facts, reader):
        while reader.found:
            yield reader.found.pop(0)


def load_index(
    spec: EvalSetSpec,
    normalize: Mapping[str, Any] | None,
    lake: Lake | None = None,
    fingerprinter: Fingerprinter | None = None,
    facts: list[Any] | None = None,
) -> EvalIndex:
    """The set's index: read from the lake cache when the listing is unchanged, else built and cached.

    ``facts``: the set's ``listing`` when the caller already made it (the stage's config hash did).
    """
    facts = listing(spec) if facts is None else facts
    rel = cache_rel(spec, index_key(spec, facts, normalize))
    if lake is not None and lake.exists(rel):
        return EvalIndex(spec.name, lake.read_parquet(rel).cast(INDEX_SCHEMA), rel, cached=True)
    table = build_index(spec, facts, fingerprinter or Fingerprinter(normalize))
    if lake is not None:
        lake.write_parquet(rel, table)
    return EvalIndex(spec.name, table, rel if lake is not None else None, cached=False)


__all__ = [
    "INDEX_SCHEMA",
    "KINDS",
    "EvalIndex",
    "EvalSetSpec",
    "Fingerprinter",
    "build_index",
    "cache_rel",
    "fingerprint_params",
    "index_key",
    "listing",
    "load_index",
    "normalized_images",
]
