"""Write sorted records as WebDataset tar shards and index every member's offsets.

Shards are written with ``webdataset.ShardWriter`` with fixed tar metadata (mtime 0, fixed owner), in
``sample_id`` order, so the same records always give the same bytes. Offsets come from reading the
finished tars' headers back, which is what a random-access reader (``wids``, the manifest) needs.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import webdataset as wds

from medcurate.hashing import canonical_json

IMAGE_EXTENSIONS = {"png": "png", "jpeg": "jpg"}


def sample_members(record: dict[str, Any]) -> dict[str, bytes]:
    """The tar members of one sample: image, caption, the record as JSON, and a class index if any."""
    image = record["image"]
    members = {
        IMAGE_EXTENSIONS[image["format"]]: image["bytes"],
        "txt": (record["text"]["final_caption"] or "").encode("utf-8"),
        "json": record_json(record).encode("utf-8"),
    }
    if record["medical"].get("class_index") is not None:
        members["cls"] = str(record["medical"]["class_index"]).encode("ascii")
    volume = record.get("volume")
    if volume and volume.get("bytes"):
        members[volume["format"]] = volume["bytes"]  # "npy" or "nii.gz": the key has no dot, so this splits
    return members


def record_json(record: dict[str, Any]) -> str:
    """The whole record without image or volume bytes: provenance travels with the data."""
    image = {k: v for k, v in record["image"].items() if k != "bytes"}
    lean = {**record, "image": image}
    if record.get("volume"):
        lean["volume"] = {k: v for k, v in record["volume"].items() if k != "bytes"}
    return canonical_json(lean)


def write_shards(
    records: Iterable[dict[str, Any]], folder: Path, prefix: str, max_count: int, max_bytes: int
) -> list[Path]:
    """Write ``records`` (already sorted) into ``folder/prefix-NNNNNN.tar``; return the shard paths."""
    samples = ({"__key__": record["sample_id"], **sample_members(record)} for record in records)
    return write_member_shards(samples, folder, prefix, max_count, max_bytes)


def write_member_shards(
    samples: Iterable[dict[str, Any]], folder: Path, prefix: str, max_count: int, max_bytes: int
) -> list[Path]:
    """Write samples given as members (``__key__`` plus extension -> bytes) into size-bounded shards
    with fixed tar metadata (mtime 0, one owner), so the same samples give the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(
        str(folder / f"{prefix}-%06d.tar"),
        maxcount=max_count,
        maxsize=max_bytes,
        verbose=0,
        encoder=False,
        mtime=0,  # an int: a float mtime makes tarfile add a 1 KiB pax header ("mtime=0.0") to every member
        user="medcurate",
        group="medcurate",
    ) as sink:
        for sample in samples:
            sink.write(sample)
    return sorted(folder.glob(f"{prefix}-*.tar"))


def member_offsets(shard: Path) -> Iterator[tuple[str, str, int, int, int]]:
    """(key, extension, header offset, data offset, size) of every member, read from the tar headers."""
    with tarfile.open(shard, "r:") as tar:
        for info in tar:
            key, ext = info.name.split(".", 1)
            yield key, ext, info.offset, info.offset_data, info.size


class ShardMemberError(ValueError):
    """Manifest offsets that do not lead to the member they name."""


def read_member(stream: IO[bytes], key: str, member: dict[str, Any]) -> bytes:
    """One member's bytes at its manifest offsets (``members[]`` of a manifest row), with one seek and
    read; its own tar header must name ``<key>.<ext>`` with that size, so a stale or doctored manifest
    cannot hand back another member's bytes, or bytes past the end of the shard."""
    header = member["data_offset"] - member["offset"]
    expected = f"{key}.{member['ext']}"
    if member["offset"] < 0 or header < 512 or member["size"] < 0:
        raise ShardMemberError(f"manifest offsets of {expected} are not a tar member")
    if member["offset"] + header + member["size"] > stream.seek(0, io.SEEK_END):
        raise ShardMemberError(f"manifest offsets of {expected} lie past the end of the shard")
    stream.seek(member["offset"])
    blob = stream.read(header + member["size"])
    padded = blob + b"\0" * (-len(blob) % 512 + 1024)
    try:
        with tarfile.open(fileobj=io.BytesIO(padded), mode="r:") as tar:
            info = tar.next()
            if info is None or info.name != expected or not info.isreg() or info.size != member["size"]:
                found = "nothing" if info is None else repr(info.name)
                raise ShardMemberError(
                    f"shard member at offset {member['offset']} is {found}, not {expected!r}"
                )
            if info.offset_data != header:
                raise ShardMemberError(
                    f"{expected}: data offset in the manifest does not match its tar header"
                )
            data = tar.extractfile(info).read()
    except tarfile.TarError as exc:
        raise ShardMemberError(
            f"shard member at offset {member['offset']} is not a tar member: {exc}"
        ) from exc
    if len(data) != member["size"]:
        raise ShardMemberError(f"{expected}: truncated shard")
    return data
