"""Build an immutable, versioned release from sorted records.

Everything is written into a hidden staging folder beside the final one; only when shards, manifest,
card, ``release.json`` and checksums are all there is it renamed to ``releases/<name>/<version>``. A
crash leaves at most an ``_tmp-*`` folder that no reader lists. When the content hash equals the
latest release's, nothing new is published: the same inputs and config keep the same release.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

import medcurate
from medcurate.hashing import sha256_json
from medcurate.lake.store import Lake
from medcurate.release.card import render_card
from medcurate.release.catalog import (
    ReleaseRef,
    bump,
    content_hash,
    file_sha256,
    latest_release,
    write_checksums,
)
from medcurate.release.changes import CurrentFacts, compute_changes
from medcurate.release.plots import write_plots
from medcurate.release.shards import member_offsets, write_shards
from medcurate.release.wids_index import write_wids_index
from medcurate.schemas.record import LABEL, SCHEMA_VERSION, SCORE, lineage_event

MEMBER = pa.struct(
    [("ext", pa.string()), ("offset", pa.int64()), ("data_offset", pa.int64()), ("size", pa.int64())]
)
MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("offset", pa.int64()),  # header offset of the sample's first member
        ("members", pa.list_(MEMBER)),
        ("source_kind", pa.string()),
        ("dataset", pa.string()),
        ("source_uri", pa.string()),
        ("source_sha256", pa.string()),
        ("license", pa.string()),
        ("modality", pa.string()),
        ("body_part", pa.string()),
        ("view", pa.string()),
        ("labels", pa.list_(LABEL)),
        ("class_name", pa.string()),
        ("split", pa.string()),
        ("final_caption", pa.string()),
        ("final_caption_author", pa.string()),
        ("scores", pa.list_(SCORE)),  # judge, CLIP and rule scores, each naming its model (filter on these)
        ("language", pa.string()),
        ("quality_flags", pa.list_(pa.string())),
        ("image_format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image_sha256", pa.string()),
        ("pixel_sha256", pa.string()),
        ("phash", pa.string()),
        ("patient_pseudonym", pa.string()),
        ("sex", pa.string()),  # sex, age band, manufacturer and site: for fairness audits and filters
        ("age_band", pa.string()),
        ("manufacturer", pa.string()),
        ("site_pseudonym", pa.string()),
        ("volume_format", pa.string()),  # npy / nii.gz when the sample carries a 3D payload
        ("article_id", pa.string()),  # PMCID for literature figures
        ("figure_kind", pa.string()),
        ("input_key", pa.string()),  # the catalogue input the sample was born from
        ("content_sha256", pa.string()),  # the record without lineage and image bytes (see changes.py)
    ]
)


@dataclass(frozen=True)
class ReleaseSettings:
    name: str
    initial_version: str
    bump: str
    shard_max_count: int
    shard_max_bytes: int


@dataclass(frozen=True)
class ReleaseOutcome:
    release: ReleaseRef
    published: bool  # False when the content equals the latest release's


def _manifest_row(record: dict[str, Any]) -> dict[str, Any]:
    source, image, medical, text = record["source"], record["image"], record["medical"], record["text"]
    return {
        "key": record["sample_id"],
        "source_kind": source["kind"],
        "dataset": source["dataset"],
        "source_uri": source["uri"],
        "source_sha256": source["sha256"],
        "license": source["license"],
        "modality": medical["modality"],
        "body_part": medical["body_part"],
        "view": medical["view"],
        "labels": medical["labels"],
        "class_name": medical["class_name"],
        "split": record["split"],
        "final_caption": text["final_caption"],
        "final_caption_author": text["final_caption_author"],
        "scores": record.get("scores") or [],
        "language": (record.get("quality") or {}).get("language"),
        "quality_flags": (record.get("quality") or {}).get("flags") or [],
        "image_format": image["format"],
        "width": image["width"],
        "height": image["height"],
        "image_sha256": image["sha256"],
        "pixel_sha256": image["pixel_sha256"],
        "phash": image["phash"],
        "patient_pseudonym": record["subject"]["patient_pseudonym"],
        "sex": record["subject"]["sex"],
        "age_band": record["subject"]["age_band"],
        "manufacturer": (record.get("scan") or {}).get("manufacturer"),
        "site_pseudonym": (record.get("scan") or {}).get("site_pseudonym"),
        "volume_format": (record.get("volume") or {}).get("format"),
        "article_id": (record.get("article") or {}).get("pmcid"),
        "figure_kind": (record.get("figure") or {}).get("kind"),
        "input_key": source["input_key"],
        "content_sha256": content_sha256(record),
    }


def content_sha256(record: dict[str, Any]) -> str:
    """What a sample *is*, for comparing releases: everything but lineage and raw image/volume bytes.

    Both byte groups carry their own sha256, so a changed payload still changes this hash.
    """
    lean = {k: v for k, v in record.items() if k != "lineage"}
    for group in ("image", "volume"):
        if lean.get(group):
            lean[group] = {k: v for k, v in lean[group].items() if k != "bytes"}
    return sha256_json(lean)


SHARD_STAGE_VERSION = "1"


def _shard_event(settings: ReleaseSettings, run_id: str) -> dict[str, Any]:
    """The lineage event of the shard stage; no version or time in it, so content stays comparable."""
    params = {"shard_max_count": settings.shard_max_count, "shard_max_bytes": settings.shard_max_bytes}
    return lineage_event("shard", SHARD_STAGE_VERSION, sha256_json(params)[:16], run_id, "released")


def code_version() -> dict[str, str | None]:
    """The package version and, when run from a git checkout, its commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(medcurate.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"medcurate": medcurate.__version__, "git_commit": commit}


def _run_json(lake: Lake, rel: str) -> Any:
    """A JSON file a stage of this run left for the release (its summary), or None when absent."""
    return lake.read_json(rel) if lake.exists(rel) else None


def manifest_rows_of(shards: list[Path], folder: Path, rows: dict[str, dict]) -> list[dict[str, Any]]:
    """Manifest rows in shard order, with each member's offsets read back from the tar headers."""
    manifest = []
    for shard in shards:
        shard_rel = shard.relative_to(folder).as_posix()
        current: dict[str, Any] | None = None
        for key, ext, offset, data_offset, size in member_offsets(shard):
            if current is None or current["key"] != key:
                current = {**rows[key], "shard": shard_rel, "offset": offset, "members": []}
                manifest.append(current)
            current["members"].append(
                {"ext": ext, "offset": offset, "data_offset": data_offset, "size": size}
            )
    return manifest


def write_manifest(folder: Path, manifest_rows: list[dict[str, Any]]) -> tuple[pa.Table, dict[str, int]]:
    """``manifest.parquet`` and ``shards/sizes.json`` (samples per shard, which open_clip's
    ``get_dataset_size`` reads) of a release folder; returns the manifest and samples per shard."""
    manifest = pa.Table.from_pylist(manifest_rows, MANIFEST_SCHEMA)
    pq.write_table(manifest, folder / "manifest.parquet", compression="zstd")
    per_shard: dict[str, int] = {}
    for row in manifest_rows:
        name = row["shard"].split("/")[-1]
        per_shard[name] = per_shard.get(name, 0) + 1
    (folder / "shards" / "sizes.json").write_text(
        "{" + ", ".join(f'"{name}": {count}' for name, count in sorted(per_shard.items())) + "}\n"
    )
    return manifest, per_shard


def build_release(
    lake: Lake,
    settings: ReleaseSettings,
    records: Iterable[dict[str, Any]],
    *,
    config: dict[str, Any],
    config_hash: str,
    run_id: str,
    ledger: Callable[[], dict[str, Any]],
    facts: Callable[[], CurrentFacts] | None = None,
) -> ReleaseOutcome:
    """Write shards and metadata for ``records`` (sorted by sample_id) and publish them if new.

    ``ledger`` is called after the shards are written, when the run's counts are complete;
    ``facts`` only when a new version is published, to explain its changes against the parent.
    """
    previous = latest_release(lake, settings.name)
    staging_rel = f"releases/{settings.name}/_tmp-{uuid.uuid4().hex[:12]}"
    folder = lake.local_path(staging_rel)
    try:
        rows: dict[str, dict] = {}

        event = _shard_event(settings, run_id)

        def remember(stream: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for record in stream:
                record["lineage"].append(event)
                rows[record["sample_id"]] = _manifest_row(record)
                yield record

        progress = tqdm(remember(records), desc="shards", unit="sample", leave=False, disable=None)
        shards = write_shards(
            progress, folder / "shards", settings.name, settings.shard_max_count, settings.shard_max_bytes
        )
        digests = [(shard.name, file_sha256(shard)) for shard in shards]
        digest = content_hash(digests)
        if previous is not None and previous.content_hash == digest:
            return ReleaseOutcome(previous, published=False)

        version = bump(previous.version, settings.bump) if previous else settings.initial_version
        manifest_rows = manifest_rows_of(shards, folder, rows)
        manifest, samples_per_shard = write_manifest(folder, manifest_rows)
        write_wids_index(folder, manifest, name=settings.name)
        parent_manifest = (
            pq.read_table(lake.local_path(previous.path, "manifest.parquet")) if previous else None
        )
        changes = compute_changes(
            parent_manifest,
            manifest_rows,
            facts() if facts else CurrentFacts(),
            previous.version if previous else None,
        )
        lake.write_json(f"{staging_rel}/changes.json", changes)
        info = {
            "name": settings.name,
            "version": version,
            "content_hash": digest,
            "sample_count": manifest.num_rows,
            "shards": [
                {"path": f"shards/{name}", "sha256": sha, "samples": samples_per_shard.get(name, 0)}
                for name, sha in digests
            ],
            "schema_version": SCHEMA_VERSION,
            "config": config,
            "config_hash": config_hash,
            "run_id": run_id,
            "code_version": code_version(),
            "parent": {"version": previous.version, "content_hash": previous.content_hash}
            if previous
            else None,
            "changes": {k: changes[k] for k in ("added", "removed", "changed")},
            "filter": None,
            # Per eval set counts of this run's ``decontaminate`` stage (None when it did not run).
            "decontamination": _run_json(lake, f"runs/{run_id}/decontaminate.json"),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        run_ledger = ledger()
        plots = write_plots(info, manifest, run_ledger, folder)  # under plots/, so checksums cover them
        (folder / "card.md").write_text(render_card(info, manifest, run_ledger, plots))
        lake.write_json(f"{staging_rel}/release.json", info)
        write_checksums(folder)
        final_rel = f"releases/{settings.name}/{version}"
        lake.move(staging_rel, final_rel)
        return ReleaseOutcome(ReleaseRef(settings.name, version, final_rel, info), published=True)
    finally:
        if folder.exists():
            shutil.rmtree(folder)
