"""What a release changed against its parent, per input, and why.

A researcher updating to a new version and an auditor asking "where did this sample go?" both need
more than two sample counts. Samples are compared by key and by a content hash that leaves out
lineage (run ids change every run) and image bytes (their sha256 stays in). Each difference is
explained from the current run: the input is no longer listed (withdrawn or retracted upstream), it
was re-read because its bytes or index facts changed (superseded), or a stage excluded the sample
now (its status reason, e.g. ``license_not_allowed``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

#: Manifest columns compared to say *what* changed in a sample that kept its key.
COMPARED = (
    "license",
    "final_caption",
    "source_uri",
    "source_sha256",
    "image_sha256",
    "split",
    "labels",
    "modality",
    "figure_kind",
)


@dataclass
class CurrentFacts:
    """What the current run knows about inputs and samples, to explain differences."""

    #: catalogue keys of every input listed now.
    listed_keys: set[str] = field(default_factory=set)
    #: (dataset, input uri) -> {"input_key": ..., "facts": {...}} for every input listed now.
    listed_by_uri: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: (dataset, input key) -> the uri that input was read from (the catalogue knows old inputs too).
    input_uri: Callable[[str, str], str | None] = lambda dataset, key: None
    #: sample_id -> status reason of samples excluded in this run (ingest, stages, dedup).
    excluded: dict[str, str] = field(default_factory=dict)

    def why(self, dataset: str, key: str, parent_input: str | None) -> str:
        """The reason a sample of the parent release is gone or different now."""
        if key in self.excluded:
            return self.excluded[key]
        if parent_input is None or parent_input in self.listed_keys:
            return "changed: a stage or its configuration gave a different result"
        uri = self.input_uri(dataset, parent_input)
        listed = self.listed_by_uri.get((dataset, uri)) if uri else None
        if listed is None:
            return f"withdrawn: {uri or parent_input} is no longer listed by source {dataset}"
        facts = ", ".join(f"{k}={v}" for k, v in sorted(listed["facts"].items()) if v is not None)
        return f"superseded: {uri} changed and was read again ({facts or 'new bytes'})"


def _by_key(rows: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {row["key"]: row for row in rows}


def compute_changes(
    parent: pa.Table | None,
    current: Iterable[Mapping[str, Any]],
    facts: CurrentFacts,
    parent_version: str | None,
) -> dict[str, Any]:
    """Added, removed and changed samples against the parent manifest, grouped per input with reasons."""
    now = _by_key(current)
    before = _by_key(parent.to_pylist()) if parent is not None else {}
    groups: dict[tuple[str, str], dict[str, Any]] = {}

    def group(row: Mapping[str, Any]) -> dict[str, Any]:
        ident = (row["dataset"], row.get("article_id") or row["source_uri"])
        if ident not in groups:
            groups[ident] = {
                "dataset": row["dataset"],
                "article_id": row.get("article_id"),
                "uri": row["source_uri"],
                "reasons": set(),
                "added": [],
                "removed": [],
                "changed": [],
            }
        return groups[ident]

    for key in sorted(now.keys() - before.keys()):
        entry = group(now[key])
        entry["added"].append(key)
        entry["reasons"].add("added: new input or newly kept sample")
    for key in sorted(before.keys() - now.keys()):
        row = before[key]
        reason = facts.why(row["dataset"], key, row.get("input_key"))
        entry = group(row)
        entry["removed"].append({"key": key, "reason": reason})
        entry["reasons"].add(reason)
    for key in sorted(before.keys() & now.keys()):
        old, new = before[key], now[key]
        if old.get("content_sha256") == new["content_sha256"]:
            continue
        fields = [name for name in COMPARED if old.get(name) != new.get(name)]
        reason = facts.why(new["dataset"], key, old.get("input_key"))
        if "license" in fields:
            reason = f"relicensed: {old['license']} -> {new['license']}; {reason}"
        entry = group(new)
        entry["changed"].append({"key": key, "fields": fields, "reason": reason})
        entry["reasons"].add(reason)

    inputs = []
    for ident in sorted(groups):
        entry = groups[ident]
        entry["reasons"] = sorted(entry["reasons"])
        inputs.append(entry)
    counts: dict[str, int] = defaultdict(int)
    for entry in inputs:
        for kind in ("added", "removed", "changed"):
            counts[kind] += len(entry[kind])
    return {
        "parent": parent_version,
        "added": counts["added"],
        "removed": counts["removed"],
        "changed": counts["changed"],
        "inputs": inputs,
    }


def removed_samples(changes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The samples a ``changes.json`` lists as removed, each with its key, reason, input uri and
    dataset, in the order listed."""
    return [
        {
            "key": removed["key"],
            "reason": removed["reason"],
            "uri": entry.get("uri"),
            "dataset": entry.get("dataset"),
        }
        for entry in (changes or {}).get("inputs", [])
        for removed in entry.get("removed", [])
    ]
