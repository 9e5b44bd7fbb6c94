"""The release card: what is in a release, counted, in Markdown a reviewer can read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from medcurate.release.plots import Plot


def _table(title: str, counts: Counter) -> str:
    if not counts:
        return f"### {title}\n\n(none)\n"
    rows = "\n".join(
        f"| {key} | {value} |" for key, value in sorted(counts.items(), key=lambda kv: str(kv[0]))
    )
    return f"### {title}\n\n| value | samples |\n|---|---|\n{rows}\n"


def _changes(info: dict[str, Any]) -> str:
    changes = info.get("changes")
    if info.get("filter") and info.get("parent"):
        return "none: a pull selects, see Pull below\n"
    if not changes or not info.get("parent"):
        return "(first release)\n"
    return (
        f"{changes['added']} added, {changes['removed']} removed, {changes['changed']} changed; "
        "`changes.json` lists each sample with its reason.\n"
    )


def _author_kind(author: str | None) -> str:
    """``model:qwen@ab12`` -> ``model``; ``template:labels.generic@1`` -> ``template``."""
    return (author or "none").split(":", 1)[0]


def _models(info: dict[str, Any]) -> str:
    models = (info.get("config") or {}).get("models") or {}
    if not models:
        return "### Models\n\nnone attached (model stages were skipped)\n"
    lines = ["### Models\n", "| role | model | revision | backend |", "|---|---|---|---|"]
    for role, model in sorted(models.items()):
        lines.append(f"| {role} | {model['name']} | `{model['revision'][:16]}` | {model['backend']} |")
    return "\n".join(lines) + "\n"


def _scores(rows: list[dict[str, Any]]) -> str:
    values: dict[str, list[float]] = {}
    for row in rows:
        for score in row["scores"] or []:
            values.setdefault(score["name"], []).append(score["value"])
    if not values:
        return "### Scores\n\nnone\n"
    lines = ["### Scores\n", "| score | samples | min | mean | max |", "|---|--:|--:|--:|--:|"]
    for name, found in sorted(values.items()):
        mean = sum(found) / len(found)
        lines.append(f"| {name} | {len(found)} | {min(found):.3g} | {mean:.3g} | {max(found):.3g} |")
    return "\n".join(lines) + "\n"


DEDUP_CODES = ("exact_duplicate", "near_duplicate", "semantic_duplicate", "caption_duplicate", "eval_overlap")


def _dedup_section(info: dict[str, Any], ledger: dict[str, Any]) -> str:
    """Duplicates removed (ledger, summed over sources) and, per evaluation set, what was checked.

    The per-set numbers come from ``info["decontamination"]``: the ``decontaminate`` stage's summary
    of the run that built this release (the ledger only counts reason codes, not sets).
    """
    removed: Counter = Counter()
    for source in (ledger.get("sources") or {}).values():
        removed.update({code: (source.get("filtered") or {}).get(code, 0) for code in DEDUP_CODES})
    lines = ["## Deduplication and decontamination\n", "| reason | samples removed |", "|---|--:|"]
    lines += [f"| {code} | {removed[code]} |" for code in DEDUP_CODES]
    sets = info.get("decontamination")
    if sets is None:
        lines.append("\nEvaluation sets: not checked (no `decontaminate` stage in this run).")
    elif not sets:
        lines.append("\nEvaluation sets: none configured for the `decontaminate` stage.")
    else:
        # Summaries since decontaminate v2 also say by which method (exact, phash, a view, semantic).
        by_method = any("by_method" in s for s in sets.values())
        lines += [
            "\n### Evaluation sets\n",
            "| eval set | images indexed | not indexed | training samples removed | eval images matched |"
            + (" removed by method |" if by_method else ""),
            "|---|--:|--:|--:|--:|" + ("---|" if by_method else ""),
        ]
        models = set()
        for name, s in sorted(sets.items()):
            not_indexed = s.get("unreadable", 0) + s.get("skipped", 0)
            methods = ", ".join(f"{m} {n}" for m, n in (s.get("by_method") or {}).items() if n) or "-"
            lines.append(
                f"| {name} | {s.get('images', 0)} | {not_indexed} | {s.get('removed', 0)} "
                f"| {s.get('eval_images_matched', 0)} |" + (f" {methods} |" if by_method else "")
            )
            if s.get("model"):
                models.add((s["model"], s.get("semantic_threshold")))
        for model, threshold in sorted(models, key=str):
            lines.append(f"\nSemantic matches: image embeddings of `{model}`, cosine >= {threshold}.")
    return "\n".join(lines) + "\n"


def _plots_section(plots: Sequence[Plot]) -> str:
    """Markdown images of the PNGs ``write_plots`` drew beside the card (paths relative to it)."""
    lines = ["## Plots\n"]
    for plot in plots:
        alt = plot.title.replace("[", "(").replace("]", ")")
        lines.append(f"![{alt}]({plot.path})\n")
    return "\n".join(lines)


def render_card(
    info: dict[str, Any],
    manifest: pa.Table,
    ledger: dict[str, Any],
    plots: Sequence[Plot] | None = None,
) -> str:
    """The card's Markdown; with ``plots`` (from ``plots.write_plots``) a "Plots" section links them."""
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
        *([_plots_section(plots)] if plots else []),
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
        "## Captions and scores\n",
        _table(
            "Final caption written by", Counter(_author_kind(row["final_caption_author"]) for row in rows)
        ),
        _models(info),
        _scores(rows),
        _table("By caption language", Counter(row["language"] or "unknown" for row in rows)),
        "## Who and what is in it (fairness audit)\n",
        _table("By sex", Counter(row["sex"] or "unknown" for row in rows)),
        _table("By age band", Counter(row["age_band"] or "unknown" for row in rows)),
        _table(
            "By manufacturer (clinical sources)",
            Counter(r["manufacturer"] for r in rows if r["manufacturer"]),
        ),
        _table("By site (pseudonymous)", Counter(r["site_pseudonym"] for r in rows if r["site_pseudonym"])),
        _dedup_section(info, ledger),
        "## Changes since the parent release\n",
        _changes(info),
        "## What did not make it (this run's ledger)\n",
    ]
    for name, source in ledger.get("sources", {}).items():
        sections.append(
            f"- **{name}**: {source['candidates']} candidates"
            + (
                f" + {source['derived']} derived (model captions as their own samples)"
                if source.get("derived")
                else ""
            )
            + f", {source['released']} released, "
            f"filtered {source['filtered'] or '{}'}, quarantined {source['quarantined'] or '{}'}\n"
        )
    return "\n".join(sections)
