"""``wids.json``: the shard-list descriptor that ``wids.ShardListDataset`` opens for random access.

The format is wids' ``wids-shard-index-v1`` (what ``widsindex create`` writes and
``wids.wids_specs.resolve_dsdesc`` reads): ``wids_version`` 1 and a ``shardlist`` of ``{"url",
"nsamples"}`` (plus ``filesize``, which wids only reports). URLs are relative (``shards/<name>.tar``);
wids resolves them against the folder the descriptor was opened from, so a release folder can move.
Shards are listed in manifest order, so ``ShardListDataset(folder / "wids.json")[i]`` is manifest row
``i``: rows must come grouped by shard, in tar order, which is checked here.

Can wids use the manifest's offsets instead of scanning the tars? Not through ``ShardListDataset``
(wids 0.1.11): each shard it opens goes to ``IndexedTarSamples(use_mmap=True)``, whose ``MMIndexedTar``
walks every tar header again (through mmap: headers only, no member data is read). The other reader,
``TarFileReader`` (``use_mmap=False``), can load a precomputed ``<shard>.tar.index``, but that file is a
pickle (unsafe to load from a shared folder) and ``ShardListDataset`` never selects that reader, so none
is written. The manifest itself is the precomputed index: ``members[].data_offset`` and ``size`` give
every member's bytes with one seek and read, no library needed.

wids notes: it copies each shard into its cache (``cache_dir``, default ``$WIDS_CACHE`` or
``/tmp/_wids_cache``) before reading it; its default ``PIL`` transformation also gunzips members whose
extension ends in ``.gz`` (a ``.nii.gz`` volume comes back decompressed under the same key); pass
``transformations=[]`` for the raw member bytes.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pyarrow as pa

WIDS_FILE = "wids.json"
WIDS_KIND = "wids-shard-index-v1"


def wids_descriptor(folder: Path, manifest: pa.Table, name: str | None = None) -> dict:
    """The descriptor for the shards of ``folder`` that ``manifest`` lists, in manifest order."""
    shards: list[str] = []
    counts: dict[str, int] = {}
    last_offset = -1
    for shard, offset in zip(
        manifest.column("shard").to_pylist(), manifest.column("offset").to_pylist(), strict=True
    ):
        if not shards or shards[-1] != shard:
            if shard in counts:
                raise ValueError(f"manifest rows of {shard} are not contiguous: wids indexes would not match")
            path = PurePosixPath(shard)
            if path.is_absolute() or ".." in path.parts:
                raise ValueError(f"shard path {shard!r} is not relative to the release folder")
            shards.append(shard)
            counts[shard] = 0
            last_offset = -1
        if offset <= last_offset:
            raise ValueError(f"manifest rows of {shard} are not in tar order: wids indexes would not match")
        last_offset = offset
        counts[shard] += 1
    if name is None and shards:
        name = PurePosixPath(shards[0]).stem.rsplit("-", 1)[0]
    descriptor: dict = {"__kind__": WIDS_KIND, "wids_version": 1}
    if name:
        descriptor["name"] = name
    descriptor["shardlist"] = [
        {"url": shard, "nsamples": counts[shard], "filesize": (folder / shard).stat().st_size}
        for shard in shards
    ]
    return descriptor


def write_wids_index(folder: Path, manifest: pa.Table, *, name: str | None = None) -> Path:
    """Write ``folder/wids.json`` for the release's shards; return its path.

    ``name`` defaults to the shard prefix (``<name>-000000.tar``). The bytes depend only on the
    manifest and shard sizes, so a rebuilt or re-pulled release gets the same file. Write it before
    the checksums so that it is listed there.
    """
    target = folder / WIDS_FILE
    target.write_text(json.dumps(wids_descriptor(folder, manifest, name), indent=2) + "\n")
    return target
