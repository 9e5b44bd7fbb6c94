"""Which copy of a duplicate group stays: one policy for exact, near and semantic dedup.

The policy is an ordered list of criteria from config; ``sample_id`` always closes it so the choice is
deterministic. Every dedup stage fetches ``KEEP_COLUMNS`` in its ``fit`` and calls ``kept_members``.

- ``quality``: the highest judge score (``quality_score``); unscored records lose. Only meaningful when
  the stage runs after the judge; before it every record is unscored and the next criterion decides.
- ``license``: the most permissive license (``LICENSE_ORDER``); unknown licenses lose.
- ``resolution``: the largest source image (before normalize resized it).
- ``oldest``: the earliest publication year (the original figure, not its reprint); unknown years lose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medcurate.schemas.record import get_score

#: Most to least permissive; None and unknown ids rank after all of these.
LICENSE_ORDER = ("cc0", "pd", "cc-by", "cc-by-sa", "cc-by-nd", "cc-by-nc", "cc-by-nc-sa", "cc-by-nc-nd")
KEEP_CRITERIA = ("quality", "license", "resolution", "oldest", "sample_id")
DEFAULT_KEEP = list(KEEP_CRITERIA)
DEFAULT_QUALITY_SCORE = "judge.quality"
#: Record columns (dotted, as engines fetch them for ``fit``) the criteria read.
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
    return {
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
