"""Intensity windows shared by the clinical sources (DICOM and NIfTI).

A window maps physical values (Hounsfield units for CT after the modality LUT / NIfTI scaling, arbitrary
units for MR) onto the unit interval; ``to_uint8``/``to_uint16`` then quantise it for PNG. Keeping the
unit interval in between means 8-bit and 16-bit outputs of one window agree, and a window's output
never depends on the stored bit depth (pydicom's ``apply_voi_lut`` returns values in the *rescaled*
range instead, which is easy to misread as 0-255).

The functions follow DICOM PS3.3 C.11.2.1.2 (VOI LUT Function: LINEAR, LINEAR_EXACT, SIGMOID), so a
window from a DICOM header and one from a preset give the same picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: CT presets in Hounsfield units, (center, width): the common radiology reading windows.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 160.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
}

#: Default percentiles for modalities without calibrated units (MR, and anything without a window).
PERCENTILES = (0.5, 99.5)

FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class Window:
    """A VOI window and where it came from (recorded in the sample so it can be reproduced)."""

    center: float
    width: float
    function: str = "LINEAR"
    origin: str = "header"  # header, voi_lut, preset:<name>, percentile:<lo>-<hi>, range

    def __post_init__(self) -> None:
        if self.function not in FUNCTIONS:
            raise ValueError(f"unknown VOI LUT function {self.function!r}; known: {', '.join(FUNCTIONS)}")
        # PS3.3 C.11.2.1.2: LINEAR needs a width >= 1, LINEAR_EXACT and SIGMOID one > 0.
        valid = self.width >= 1.0 if self.function == "LINEAR" else self.width > 0.0  # False for NaN
        if not valid:
            raise ValueError(f"window width {self.width} is not valid for {self.function}")


def preset(name: str) -> Window:
    """The named CT preset; ValueError naming the known ones."""
    try:
        center, width = CT_PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(CT_PRESETS))
        raise ValueError(f"unknown CT window preset {name!r}; known: {known}") from None
    return Window(center, width, origin=f"preset:{name}")


def percentile_window(
    values: np.ndarray, low: float = PERCENTILES[0], high: float = PERCENTILES[1]
) -> Window:
    """A LINEAR_EXACT window spanning the ``low``..``high`` percentiles of ``values`` (MR normalisation).

    A constant image gets a width-1 window around its value, so it renders as one flat grey level
    instead of dividing by zero.
    """
    finite = values[np.isfinite(values)] if np.issubdtype(values.dtype, np.floating) else values
    if finite.size == 0:
        return Window(0.0, 1.0, "LINEAR_EXACT", f"percentile:{low:g}-{high:g}")
    lo, hi = (float(v) for v in np.percentile(finite, [low, high]))
    width = max(hi - lo, 1.0)
    return Window((lo + hi) / 2.0, width, "LINEAR_EXACT", f"percentile:{low:g}-{high:g}")


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """``values`` mapped through ``window`` onto [0, 1] as float32 (PS3.3 C.11.2.1.2 with y in [0, 1])."""
    x = np.asarray(values, dtype=np.float64)
    c, w = window.center, window.width
    if window.function == "LINEAR":
        out = (x - (c - 0.5)) / (w - 1.0) + 0.5 if w > 1.0 else np.where(x > c - 0.5, 1.0, 0.0)
    elif window.function == "LINEAR_EXACT":
        out = (x - c) / w + 0.5
    else:  # SIGMOID
        out = 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def to_uint8(unit: np.ndarray) -> np.ndarray:
    """Unit-interval values to 0..255, rounded half to even (deterministic on every platform)."""
    return np.rint(np.asarray(unit, dtype=np.float64) * 255.0).astype(np.uint8)


def to_uint16(unit: np.ndarray) -> np.ndarray:
    """Unit-interval values to 0..65535, for 16-bit PNG output of the same window."""
    return np.rint(np.asarray(unit, dtype=np.float64) * 65535.0).astype(np.uint16)
