"""Find a sample anywhere in a lake and show its record and lineage, and check its source.

Released samples are read straight from their shard's ``.json`` member through the manifest's offsets
(no tar scan); samples that never made it are found among the runs' excluded parts, with the reason.

``check_source`` hashes the input a record was born from again and compares it with the sha256 the
record carries: a local path (labeled images, PMC packages), or for clinical sources the real path of
the pseudonymous uri from the restricted path map (a zip member ``archive.zip!member`` is hashed
inside its archive). The real path is never printed: the answer says only whether the bytes match.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from medcurate.hashing import sha256_stream
from medcurate.lake.catalogue import Catalogue
from medcurate.lake.restricted import reveal
from medcurate.lake.store import Lake
from medcurate.release.catalog import list_releases
from medcurate.release.shards import read_member


@dataclass
class AuditResult:
    sample_id: str
    where: str  # "release <name> <version>" or the excluded part's path
    record: dict[str, Any]
    source_check: dict[str, str] | None = None  # ``check_source``, when asked for


def _from_releases(lake: Lake, sample_id: str) -> AuditResult | None:
    for release in reversed(list_releases(lake)):
        manifest = pq.read_table(lake.path(release.path, "manifest.parquet"), filesystem=lake.fs)
        rows = manifest.filter(pc.equal(manifest.column("key"), sample_id)).to_pylist()
        if not rows:
            continue
        row = rows[0]
        member = next(m for m in row["members"] if m["ext"] == "json")
        with lake.fs.open_input_file(lake.path(release.path, row["shard"])) as shard:
            record = json.loads(read_member(shard, sample_id, member))
        return AuditResult(sample_id, f"release {release.name} {release.version} ({row['shard']})", record)
    return None


def _from_exclusions(lake: Lake, sample_id: str) -> AuditResult | None:
    for rel in lake.walk_files("runs", suffix=".parquet"):
        if "/excluded/" not in rel:
            continue
        table = lake.read_parquet(rel)
        rows = table.filter(pc.equal(table.column("sample_id"), sample_id)).to_pylist()
        if rows:
            record = rows[0]
            record["image"] = {k: v for k, v in (record["image"] or {}).items() if k != "bytes"}
            return AuditResult(sample_id, rel, record)
    return None


def find_sample(lake: Lake, sample_id: str) -> AuditResult | None:
    return _from_releases(lake, sample_id) or _from_exclusions(lake, sample_id)


def _deid_lines(record: dict[str, Any]) -> list[str]:
    """How patient data was removed: DICOM header de-identification and report scrubbing methods."""
    scan = record.get("scan") or {}
    lines = []
    if scan.get("deid_method"):
        lines.append(f"  deid:      {scan['deid_method']} (header kept: de-identified DICOM JSON)")
    if scan.get("report_method"):
        lines.append(f"  report:    scrubbed by {scan['report_method']}")
    return lines


def render_text(result: AuditResult) -> str:
    record = result.record
    source = record["source"]
    lines = [
        f"sample {result.sample_id}",
        f"  found in:  {result.where}",
        f"  status:    {record['status']}"
        + (f" ({record['status_reason']})" if record["status_reason"] else ""),
        f"  source:    {source['kind']} / {source['dataset']}",
        f"  uri:       {source['uri']}" + (f" [{source['member']}]" if source.get("member") else ""),
        f"  sha256:    {source['sha256']}"
        + (
            f"  [{result.source_check['status']}"
            + (f": {result.source_check['why']}" if result.source_check["why"] else "")
            + "]"
            if result.source_check
            else ""
        ),
        f"  manifest:  {source.get('manifest_uri')} line {source.get('manifest_line')}",
        f"  license:   {source.get('license')}",
        f"  caption:   {(record.get('text') or {}).get('final_caption')}",
        f"  author:    {(record.get('text') or {}).get('final_caption_author')}",
        f"  split:     {record.get('split')}",
        *_deid_lines(record),
        "  lineage:",
    ]
    for event in record["lineage"]:
        extra = " ".join(
            f"{k}={event[k]}"
            for k in ("model", "prompt_id", "prompt_sha256", "reason", "details")
            if event.get(k)
        )
        lines.append(
            f"    - {event['stage']}@{event['stage_version']} {event['decision']} "
            f"(config {event['config_hash']}, run {event['run_id']}) {extra}".rstrip()
        )
    return "\n".join(lines)


def _sha256_location(location: str) -> str | None:
    """sha256 of a file, or of ``archive.zip!member`` inside its archive; None when it is gone."""
    path, _, member = location.partition("!")
    if not Path(path).is_file():
        return None
    if not member:
        with Path(path).open("rb") as stream:
            return sha256_stream(stream)
    with zipfile.ZipFile(path) as archive:
        try:
            with archive.open(member) as stream:
                return sha256_stream(stream)
        except KeyError:
            return None


def check_source(lake: Lake, record: dict[str, Any]) -> dict[str, str]:
    """Whether the input a record was born from still has the bytes it had: ``status`` is
    ``matches``, ``changed``, ``missing`` or ``unverifiable`` (with ``why``), ``via`` how it was found."""
    source = record["source"]
    uri, expected = source["uri"], source.get("sha256")
    if not expected:
        return {"status": "unverifiable", "why": "the record carries no source sha256", "via": ""}
    if uri.startswith("file://") or uri.startswith("/"):
        locations, via = [uri.removeprefix("file://")], "path"
    elif "://" in uri:
        mapped = reveal(lake, uri) if lake.exists("restricted/paths") else []
        locations, via = [loc for _, loc in mapped], "restricted path map"
        if not locations:
            return {"status": "unverifiable", "why": "not in the restricted path map", "via": via}
    else:
        return {"status": "unverifiable", "why": f"no local location for {uri}", "via": ""}
    digests = [_sha256_location(location) for location in locations]
    if all(d is None for d in digests):
        return {"status": "missing", "why": "the input is no longer there", "via": via}
    if expected in digests:
        return {"status": "matches", "why": "", "via": via}
    return {"status": "changed", "why": "the input's bytes differ from those read", "via": via}


def samples_of_source(lake: Lake, uri: str) -> list[dict[str, Any]]:
    """Every sample born from ``uri`` (an input uri as the catalogue lists it, or a record's
    ``source.uri``, e.g. one DICOM instance of a series): id, status, reason, stage and where.

    Released samples come from each release name's latest manifest; dropped ones from the runs'
    excluded parts (the latest release's run first, since dataset stages decide again every run);
    the catalogue adds per-input outcomes of inputs no run shows otherwise.
    """
    found: dict[str, dict[str, Any]] = {}

    def note(sample_id: str, status: str, reason: str | None, stage: str | None, where: str) -> None:
        found.setdefault(
            sample_id,
            {"sample_id": sample_id, "status": status, "reason": reason, "stage": stage, "where": where},
        )

    latest = {release.name: release for release in list_releases(lake)}
    for release in latest.values():
        table = pq.read_table(lake.path(release.path, "manifest.parquet"), filesystem=lake.fs)
        for key in table.filter(pc.equal(table.column("source_uri"), uri)).column("key").to_pylist():
            note(key, "released", None, None, f"release {release.name} {release.version}")
    first_runs = {str(r.info.get("run_id")) for r in latest.values()}
    parts = [rel for rel in lake.walk_files("runs", suffix=".parquet") if "/excluded/" in rel]
    parts.sort(key=lambda rel: (rel.split("/")[1] not in first_runs, rel))
    for rel in parts:
        table = lake.read_parquet(rel, columns=["sample_id", "status", "status_reason", "source", "lineage"])
        for row in table.to_pylist():
            if row["source"]["uri"] == uri:
                stage = (row["lineage"] or [{}])[-1].get("stage")
                note(row["sample_id"], row["status"], row["status_reason"], stage, rel)
    for source in lake.listdir("state/catalogue") if lake.exists("state/catalogue") else []:
        catalogue = Catalogue(lake, source)
        for input_key in catalogue.keys_at(uri):
            for entry in catalogue.entries([input_key]):
                where = f"catalogue {source} (run {entry.run_id})"
                note(entry.sample_id, entry.status, entry.status_reason, entry.status_stage, where)
    return [found[k] for k in sorted(found)]
