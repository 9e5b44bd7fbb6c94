"""Find a sample anywhere in a lake and show its record and lineage.

Released samples are read straight from their shard's ``.json`` member through the manifest's offsets
(no tar scan); samples that never made it are found among the runs' excluded parts, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from medcurate.lake.store import Lake
from medcurate.release.catalog import list_releases


@dataclass
class AuditResult:
    sample_id: str
    where: str  # "release <name> <version>" or the excluded part's path
    record: dict[str, Any]


def _from_releases(lake: Lake, sample_id: str) -> AuditResult | None:
    for release in reversed(list_releases(lake)):
        manifest = pq.read_table(lake.path(release.path, "manifest.parquet"), filesystem=lake.fs)
        rows = manifest.filter(pc.equal(manifest.column("key"), sample_id)).to_pylist()
        if not rows:
            continue
        row = rows[0]
        member = next(m for m in row["members"] if m["ext"] == "json")
        with lake.fs.open_input_file(lake.path(release.path, row["shard"])) as shard:
            shard.seek(member["data_offset"])
            record = json.loads(shard.read(member["size"]))
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
        f"  sha256:    {source['sha256']}",
        f"  manifest:  {source.get('manifest_uri')} line {source.get('manifest_line')}",
        f"  license:   {source.get('license')}",
        f"  caption:   {(record.get('text') or {}).get('final_caption')}",
        f"  author:    {(record.get('text') or {}).get('final_caption_author')}",
        f"  split:     {record.get('split')}",
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
