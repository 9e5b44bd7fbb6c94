"""Which slices of a volume become 2D samples: shared by the DICOM series and NIfTI sources.

A volume of 300 CT slices gives 300 near-identical images if exported whole, which floods a corpus
with duplicates; the common choices are the middle slice, a few evenly spaced ones, or all of them
(then deduplication decides). The choice is a pure function of the slice count and the params, so it
is reproducible and recorded in each sample.
"""

from __future__ import annotations

MODES = ("middle", "even", "all")


def slice_selection(params: dict, kind: str) -> tuple[str, int]:
    """``(mode, count)`` from a source's ``slices`` and ``slice_count`` params, checked."""
    mode = params.get("slices", "middle")
    if mode not in MODES:
        raise ValueError(f"{kind} source: slices must be one of {MODES}, got {mode!r}")
    return mode, int(params.get("slice_count", 5))


def select_indices(n_slices: int, mode: str = "middle", count: int = 5) -> list[int]:
    """Indices (ascending, distinct) of the slices to export from a volume of ``n_slices``.

    ``even`` takes ``count`` slices at the centres of ``count`` equal bins, so the first and last
    slices (often outside the anatomy) are skipped and ``count=1`` equals ``middle``.
    """
    if n_slices < 1:
        return []
    if mode == "middle":
        return [n_slices // 2]
    if mode == "all":
        return list(range(n_slices))
    if mode == "even":
        if count < 1:
            raise ValueError(f"slice count must be >= 1, got {count}")
        count = min(count, n_slices)
        return sorted({int((2 * i + 1) * n_slices // (2 * count)) for i in range(count)})
    raise ValueError(f"unknown slice selection {mode!r}; known: {', '.join(MODES)}")
