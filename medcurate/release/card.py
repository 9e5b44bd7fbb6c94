"""The release card: what is in a release, counted, in Markdown a reviewer can read."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa


def _table(title: str, counts: Counter) -> str:
    if not counts:
        return f"### {title}\n\n(none)\n"
    rows = "\n".join(
        f"| {key} | {value} |" for key, value in sorted(counts.items(), key=lambda kv: str(kv[0]))
    )
    return f"### {title}\n\n| value | samples |\n|---|---|\n{rows}\n"


def _changes(info: dict[str, Any]) -> str:
    changes = info.get("changes")
    if not changes or not info.get("parent"):
        return "(first release)\n"
    return (
        f"{changes['added']} added, {changes['removed']} removed, {changes['changed']} changed; "
        "`changes.json` lists each sample with its reason.\n"
    )


def render_card(info: dict[str, Any], manifest: pa.Table, ledger: dict[str, Any]) -> str:
    rows = manifest.to_pylist()
    labels: Counter = Counter()
    for row in rows:
        for label in row["labels"] or []:
            labels[f"{label['name']} ({label['value']})"] += 1
    sections = [
        f"# {info['name']} {info['version']}\n",
        f"- samples: {info['sample_count']}\n- shards: {len(info['shards'])}\n"
        f"- content hash: `{info['content_hash']}`\n- parent: {(info.get('parent') or {}).get('version')}\n"
        f"- schema version: {info['schema_version']}\n- config hash: `{info['config_hash']}`\n",
        "## Contents\n",
        _table("By source", Counter(row["dataset"] for row in rows)),
        _table("By source kind", Counter(row["source_kind"] for row in rows)),
        _table("By modality", Counter(row["modality"] for row in rows)),
        _table("By label", labels),
        _table("By split", Counter(row["split"] for row in rows)),
        _table("By license", Counter(row["license"] for row in rows)),
        _table(
            "By figure kind (literature figures)", Counter(r["figure_kind"] for r in rows if r["figure_kind"])
        ),
        "## Who and what is in it (fairness audit)\n",
        _table("By sex", Counter(row["sex"] or "unknown" for row in rows)),
        _table("By age band", Counter(row["age_band"] or "unknown" for row in rows)),
        _table(
            "By manufacturer (clinical sources)",
            Counter(r["manufacturer"] for r in rows if r["manufacturer"]),
        ),
        _table("By site (pseudonymous)", Counter(r["site_pseudonym"] for r in rows if r["site_pseudonym"])),
        "## Changes since the parent release\n",
        _changes(info),
        "## What did not make it (this run's ledger)\n",
    ]
    for name, source in ledger.get("sources", {}).items():
        sections.append(
            f"- **{name}**: {source['candidates']} candidates, {source['released']} released, "
            f"filtered {source['filtered'] or '{}'}, quarantined {source['quarantined'] or '{}'}\n"
        )
    return "\n".join(sections)
