"""What changed between any two releases: samples added, removed (and why) and changed (and how).

``changes.json`` already explains a release against its parent; researchers skipping versions and
auditors comparing a pull with its source need the same for any pair. Samples are compared by key
and ``content_sha256`` on the two manifests; only manifests and small run files are read, no tars.

Why a sample of A is not in B, first answer wins:

1. B's run excluded it: the status reason, the stage and its lineage detail (``duplicate_of``,
   ``eval_set``, ...), read from ``runs/<B's run>/excluded/`` in the lake that holds B.
2. A release between A and B (following B's ``parent`` links back to A) listed it as removed in its
   ``changes.json``, with that release's reason (withdrawn, superseded, ...).
3. Otherwise: ``not in B`` (e.g. B is a pull whose filter left it out: its ``filter`` is named).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medcurate.release.catalog import lake_of_release
from medcurate.release.changes import COMPARED, removed_samples

#: One row per added, removed or changed sample (``medcurate diff --out``).
DIFF_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("change", pa.string()),  # added | removed | changed
        ("dataset", pa.string()),
        ("source_uri", pa.string()),
        ("reason", pa.string()),
        ("stage", pa.string()),
        ("fields", pa.list_(pa.string())),
        ("before", pa.string()),  # JSON of the changed (or removed) manifest fields in A
        ("after", pa.string()),  # JSON of the changed (or added) manifest fields in B
    ]
)
#: Compared besides ``COMPARED``: what a researcher filters on.
EXTRA_COMPARED = ("scores", "quality_flags", "language")


def _manifest(folder: Path) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in pq.read_table(folder / "manifest.parquet").to_pylist()}


def _info(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "release.json").read_text())


def _exclusions(folder: Path, info: Mapping[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """sample_id -> (status reason, stage, lineage detail) of every record B's run excluded."""
    lake, run_id = lake_of_release(folder), info.get("run_id")
    if lake is None or not run_id:
        return {}
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for path in sorted((lake / "runs" / run_id / "excluded").glob("**/*.parquet")):
        for row in pq.read_table(path, columns=["sample_id", "status_reason", "lineage"]).to_pylist():
            last = (row["lineage"] or [{}])[-1]
            detail = json.loads(last.get("details") or "{}") if isinstance(last.get("details"), str) else {}
            found[row["sample_id"]] = (row["status_reason"] or "excluded", last.get("stage") or "", detail)
    return found


def _ancestors(b: Path, a_version: str, a_name: str) -> Iterator[dict[str, Any]]:
    """``changes.json`` of each release from B back to (not including) A along parent links."""
    folder, info = b, _info(b)
    while info.get("name") == a_name and info.get("version") != a_version:
        changes = folder / "changes.json"
        if changes.is_file():
            yield json.loads(changes.read_text())
        parent = (info.get("parent") or {}).get("version")
        if not parent or not (folder.parent / parent / "release.json").is_file():
            return
        folder = folder.parent / parent
        info = _info(folder)


def _removal_reasons(a_info: Mapping[str, Any], b: Path) -> dict[str, str]:
    reasons: dict[str, str] = {}
    for changes in _ancestors(b, a_info["version"], a_info["name"]):
        for removed in removed_samples(changes):
            reasons.setdefault(removed["key"], removed["reason"])
    return reasons


def _fields(row: Mapping[str, Any], names: list[str]) -> str:
    return json.dumps({name: row.get(name) for name in names}, sort_keys=True, default=str)


def diff_releases(a: Path, b: Path) -> pa.Table:
    """Rows of ``DIFF_SCHEMA``, sorted by change then key: what B has that A had not, and back."""
    before, after = _manifest(a), _manifest(b)
    a_info, b_info = _info(a), _info(b)
    excluded = _exclusions(b, b_info)
    chained = _removal_reasons(a_info, b)
    pull = b_info.get("filter")
    rows: list[dict[str, Any]] = []
    for key in sorted(after.keys() - before.keys()):
        row = after[key]
        shown = ["final_caption", "license", "split", "modality"]
        rows.append(_row(key, "added", row, "new in B", "", [], None, _fields(row, shown)))
    for key in sorted(before.keys() - after.keys()):
        row = before[key]
        stage, detail = "", {}
        if key in excluded:
            reason, stage, detail = excluded[key]
            reason = _with_detail(reason, detail)
        elif key in chained:
            reason = chained[key]
        elif pull:
            reason = f"not selected by the pull filter {pull.get('where')!r} (split {pull.get('split')})"
        else:
            reason = "not in B"
        rows.append(
            _row(key, "removed", row, reason, stage, [], _fields(row, ["final_caption", "license"]), None)
        )
    for key in sorted(before.keys() & after.keys()):
        old, new = before[key], after[key]
        if old.get("content_sha256") == new.get("content_sha256"):
            continue
        names = [n for n in (*COMPARED, *EXTRA_COMPARED) if old.get(n) != new.get(n)]
        reason = (
            f"relicensed: {old['license']} -> {new['license']}" if "license" in names else "content changed"
        )
        rows.append(_row(key, "changed", new, reason, "", names, _fields(old, names), _fields(new, names)))
    order = {"added": 0, "removed": 1, "changed": 2}
    rows.sort(key=lambda r: (order[r["change"]], r["key"]))
    return pa.Table.from_pylist(rows, DIFF_SCHEMA)


def _with_detail(reason: str, detail: Mapping[str, Any]) -> str:
    """The status reason plus what the lineage names (kept copy, eval set, distance)."""
    named = [
        f"{k}={detail[k]}"
        for k in ("duplicate_of", "eval_set", "eval_member", "method", "distance")
        if k in detail
    ]
    return f"{reason} ({', '.join(named)})" if named else reason


def _row(
    key: str,
    change: str,
    row: Mapping[str, Any],
    reason: str,
    stage: str,
    fields: list[str],
    before: str | None,
    after: str | None,
) -> dict[str, Any]:
    return {
        "key": key,
        "change": change,
        "dataset": row.get("dataset"),
        "source_uri": row.get("source_uri"),
        "reason": reason,
        "stage": stage or None,
        "fields": fields,
        "before": before,
        "after": after,
    }


def summary(table: pa.Table) -> dict[str, int]:
    counts = {"added": 0, "removed": 0, "changed": 0}
    for change in table.column("change").to_pylist():
        counts[change] += 1
    return counts
