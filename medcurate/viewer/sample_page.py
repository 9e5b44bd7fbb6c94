"""What the sample page shows of a record: its texts with who wrote each, its lineage as a timeline.

Kept apart from the web layer so the shaping (which author wrote which text, what a lineage event's
``details`` JSON says) is plain Python, tested without a browser.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Text fields in the order a sample's text is made: the source's words, then derived and model text.
TEXT_FIELDS = (
    ("source_caption", "Source caption"),
    ("citing_context", "Citing text"),
    ("label_text", "Label text"),
    ("generated_caption", "Generated caption"),
    ("paraphrases", "Paraphrases"),
    ("panel_captions", "Panel captions"),
    ("final_caption", "Final caption (the shard's .txt)"),
)


@dataclass(frozen=True)
class Text:
    field: str
    title: str
    lines: list[str]
    authors: list[dict[str, Any]]


@dataclass(frozen=True)
class Event:
    number: int
    stage: str
    stage_version: str
    decision: str
    reason: str | None
    run_id: str | None
    config_hash: str | None
    model: str | None
    prompt_id: str | None
    prompt_sha256: str | None
    details: list[tuple[str, str]] = field(default_factory=list)


def texts(record: dict[str, Any]) -> list[Text]:
    """Every text field the record has, each with the authors that wrote it (several when a later
    stage rewrote it: all are shown, in the order written)."""
    text = record.get("text") or {}
    authors = text.get("authors") or []
    shown = []
    for name, title in TEXT_FIELDS:
        value = text.get(name)
        if not value:
            continue
        if name == "panel_captions":
            lines = [f"{panel.get('label') or '?'}: {panel.get('text') or ''}" for panel in value]
        elif isinstance(value, list):
            lines = [str(item) for item in value]
        else:
            lines = [str(value)]
        written_by = [a for a in authors if a.get("field") == name]
        if name == "final_caption" and not written_by and text.get("final_caption_author"):
            written_by = [{"author": text["final_caption_author"]}]
        shown.append(Text(name, title, lines, written_by))
    return shown


def _details(raw: Any) -> list[tuple[str, str]]:
    """A lineage event's ``details`` (a JSON object as text, or free text) as name/value rows."""
    if not raw:
        return []
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return [("details", str(raw))]
    if not isinstance(parsed, dict):
        return [("details", json.dumps(parsed, sort_keys=True))]
    return [
        (str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True))
        for k, v in sorted(parsed.items())
    ]


def timeline(record: dict[str, Any]) -> list[Event]:
    """The lineage events in the order they happened (the order the record lists them)."""
    return [
        Event(
            number=i,
            stage=str(event.get("stage")),
            stage_version=str(event.get("stage_version")),
            decision=str(event.get("decision")),
            reason=event.get("reason"),
            run_id=event.get("run_id"),
            config_hash=event.get("config_hash"),
            model=event.get("model"),
            prompt_id=event.get("prompt_id"),
            prompt_sha256=event.get("prompt_sha256"),
            details=_details(event.get("details")),
        )
        for i, event in enumerate(record.get("lineage") or [], start=1)
    ]


def display_size(width: int | None, height: int | None, box: int = 512) -> tuple[int, int] | None:
    """The size to draw an image at: small scans scaled up by a whole factor (pixels stay square and
    sharp), large ones scaled down to fit ``box``."""
    if not width or not height:
        return None
    longest = max(width, height)
    if longest <= box:
        factor = max(1, box // longest)
        return width * factor, height * factor
    return round(width * box / longest), round(height * box / longest)


def run_times(lake_root: Path | None, run_ids: set[str]) -> dict[str, str]:
    """When each run last finished, from ``runs/<run_id>/attempts/<time>.json`` (written as an attempt
    ends): lineage events carry the run id, the lake knows the time."""
    found = {}
    for run_id in sorted(run_ids):
        attempts = lake_root / "runs" / run_id / "attempts" if lake_root and run_id else None
        if attempts is None or "/" in run_id or not attempts.is_dir():
            continue
        stamps = sorted(path.stem for path in attempts.glob("*.json"))
        if stamps:
            try:
                when = dt.datetime.strptime(stamps[-1], "%Y%m%dT%H%M%S%fZ")
            except ValueError:
                continue
            found[run_id] = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return found
