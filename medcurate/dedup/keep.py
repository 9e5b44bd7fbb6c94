"""Which copy of a duplicate group stays: one policy for exact, near and semantic dedup.

The policy is an ordered list of criteria from config; ``sample_id`` always closes it so the choice is
deterministic. Every dedup stage fetches ``KEEP_COLUMNS`` in its ``fit`` and calls ``kept_members``.

- ``released``: a sample in the previous release of this release name (``medcurate.dedup.released``)
  beats one that is not: a new copy never displaces a published sample. Leave it out to let the best
  copy win even when that changes what an earlier release held.
- ``quality``: the highest judge score (``quality_score``); unscored records lose. Only meaningful when
  the stage runs after the judge; before it every record is unscored and the next criterion decides.
- ``license``: the most permissive license (``LICENSE_ORDER``); unknown licenses lose.
- ``resolution``: the largest source image (before normalize resized it).
- ``oldest``: the earliest publication year (the original figure, not its reprint); unknown years lose.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from medcurate.schemas.record import get_score

#: Most to least permissive; None and unknown ids rank after all of these.
LICENSE_ORDER = ("cc0", "pd", "cc-by", "cc-by-sa", "cc-by-nd", "cc-by-nc", "cc-by-nc-sa", "cc-by-nc-nd")
KEEP_CRITERIA = ("released", "quality", "license", "resolution", "oldest", "sample_id")
DEFAULT_KEEP = list(KEEP_CRITERIA)
DEFAULT_QUALITY_SCORE = "judge.quality"
#: Record columns (dotted, as engines fetch them for ``fit``) the criteria read; ``released`` is not a
#: record column: stages add it with ``released.with_released`` (missing, no sample counts as released).
KEEP_COLUMNS = (
    "scores",
    "source.license",
    "image.source_width",
    "image.source_height",
    "article.year",
)


def check_keep(keep: Sequence[str], stage: str) -> list[str]:
    """The criteria as given, refused by name when one is unknown (a config mistake, not data)."""
    unknown = set(keep) - set(KEEP_CRITERIA)
    if unknown:
        raise ValueError(f"{stage}: unknown keep criteria {sorted(unknown)}; known: {list(KEEP_CRITERIA)}")
    return list(keep)


def _score(scores: list[dict[str, Any]] | None, name: str) -> float:
    value = get_score({"scores": scores}, name)
    return np.nan if value is None else value  # nan sorts after every score


def _sort_keys(columns: Mapping[str, Sequence[Any]], rows: np.ndarray, quality_score: str) -> dict:
    """One ascending numpy key per criterion (smaller wins) for the given rows."""
    lic_rank = {lic: r for r, lic in enumerate(LICENSE_ORDER)}
    ids = np.array([columns["sample_id"][k] for k in rows])
    years = [columns["article.year"][k] for k in rows]
    released = columns.get("released")
    return {
        "released": np.array([0 if released and released[k] else 1 for k in rows], np.int64),
        "quality": np.array([-_score(columns["scores"][k], quality_score) for k in rows]),
        "license": np.array([lic_rank.get(columns["source.license"][k], len(lic_rank)) for k in rows]),
        "resolution": -np.array(
            [
                (columns["image.source_width"][k] or 0) * (columns["image.source_height"][k] or 0)
                for k in rows
            ],
            dtype=np.int64,
        ),
        "oldest": np.array([y if y is not None else np.iinfo(np.int32).max for y in years], np.int64),
        "sample_id": np.argsort(np.argsort(ids, kind="stable"), kind="stable"),
    }


def _ranks(columns: Mapping[str, Sequence[Any]], rows: np.ndarray, keep: Sequence[str], quality_score: str):
    """Each row's place in the keep order (0: the copy to keep before all others)."""
    keys = _sort_keys(columns, rows, quality_score)
    order = np.lexsort(tuple(keys[c] for c in reversed([*keep, "sample_id"])))
    ranks = np.empty(len(rows), np.int64)
    ranks[order] = np.arange(len(rows))
    return ranks


def preference_order(
    columns: Mapping[str, Sequence[Any]],
    rows: np.ndarray,
    keep: Sequence[str] = DEFAULT_KEEP,
    quality_score: str = DEFAULT_QUALITY_SCORE,
) -> np.ndarray:
    """Positions into ``rows``, the copy to keep first: for stages that pick survivors greedily."""
    rows = np.asarray(rows, dtype=np.int64)
    return np.argsort(_ranks(columns, rows, keep, quality_score)) if len(rows) else rows


def kept_members(
    columns: Mapping[str, Sequence[Any]],
    rows: np.ndarray,
    labels: np.ndarray,
    keep: Sequence[str] = DEFAULT_KEEP,
    quality_score: str = DEFAULT_QUALITY_SCORE,
) -> np.ndarray:
    """For each of ``rows`` (indices into ``columns``), the row of its group's kept member.

    ``labels[i]`` is the group of ``rows[i]``; groups of one keep themselves.
    """
    rows = np.asarray(rows, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if not len(rows):
        return rows
    order = np.lexsort((_ranks(columns, rows, keep, quality_score), labels))
    sorted_labels = labels[order]
    first = np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]
    winner_of = dict(zip(sorted_labels[first].tolist(), rows[order[first]].tolist(), strict=True))
    return np.array([winner_of[int(label)] for label in labels], dtype=np.int64)


def star_groups(
    order: np.ndarray, edges: Iterable[tuple[int, int, float, Any]]
) -> dict[int, tuple[int, float, Any]]:
    """Groups as stars, not chains: position -> (kept position, distance to it, how they matched).

    Positions are visited in ``order`` (``preference_order``: the copy to keep first); each unclaimed
    one claims its unclaimed neighbours. So every removed item is one edge from the item it names, a run
    of look-alikes never collapses into one, and a new item linking two released ones (which rank
    first) cannot make one of them go. Of several edges between two items the shortest counts.
    Kept centres map to themselves with distance 0 and ``how`` None; items with no edge are absent.
    """
    best: dict[tuple[int, int], tuple[float, Any]] = {}
    for a, b, distance, how in edges:
        key = (min(a, b), max(a, b))
        if key not in best or distance < best[key][0]:
            best[key] = (distance, how)
    neighbours: dict[int, list[tuple[int, float, Any]]] = {}
    for (a, b), (distance, how) in sorted(best.items()):
        neighbours.setdefault(a, []).append((b, distance, how))
        neighbours.setdefault(b, []).append((a, distance, how))
    claimed: dict[int, tuple[int, float, Any]] = {}
    for centre in np.asarray(order).tolist():
        if centre in claimed or centre not in neighbours:
            continue
        free = [(n, distance, how) for n, distance, how in neighbours[centre] if n not in claimed]
        if free:
            claimed[centre] = (centre, 0, None)
            for n, distance, how in free:
                claimed[n] = (centre, distance, how)
    return claimed
