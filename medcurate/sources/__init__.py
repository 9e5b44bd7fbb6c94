"""Sources: readers of raw inputs, looked up by the ``kind`` a pipeline config names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medcurate.sources.base import InputItem, Source, SourceContext
from medcurate.sources.dicom.source import DicomSource
from medcurate.sources.labeled import LabeledSource
from medcurate.sources.nifti.source import NiftiSource
from medcurate.sources.pmc.source import PmcSource

SOURCES: dict[str, type[Source]] = {
    "dicom": DicomSource,
    "labeled": LabeledSource,
    "nifti": NiftiSource,
    "pmc": PmcSource,
}


def make_source(kind: str, name: str, uri: str, params: Mapping[str, Any], ctx: SourceContext) -> Source:
    """The source of ``kind`` for dataset ``name`` at ``uri``; ValueError naming the known kinds."""
    try:
        cls = SOURCES[kind]
    except KeyError:
        raise ValueError(f"unknown source kind {kind!r}; known: {', '.join(sorted(SOURCES))}") from None
    return cls(name, uri, params, ctx)


__all__ = [
    "SOURCES",
    "DicomSource",
    "InputItem",
    "LabeledSource",
    "NiftiSource",
    "PmcSource",
    "Source",
    "SourceContext",
    "make_source",
]
