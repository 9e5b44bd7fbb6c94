"""PNG plots for the release card: what is in a release, drawn small and byte for byte reproducible.

Each plot is a 6 x 3.5 in figure at 100 dpi drawn with Matplotlib's Agg canvas on a ``Figure`` of its
own (no pyplot, so no global figure state), under a local ``rc_context`` reset to Matplotlib's
defaults and a fixed font, and saved without the ``Software`` PNG text chunk: the same manifest,
ledger and release info give the same bytes, so a rebuilt release keeps its checksums. A plot with
nothing to show is not drawn. Matplotlib is imported only when plots are written.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

PLOTS_DIR = "plots"
SIZE_IN = (6.0, 3.5)
DPI = 100
MAX_BARS = 14  # categories beyond these fold into one "other (n)" bar
MAX_LABEL = 30  # characters of a category name shown on an axis
UNKNOWN = "unknown"
# Filter reasons that are deduplication or decontamination (card.DEDUP_CODES), drawn in their own colour.
DEDUP_CODES = ("exact_duplicate", "near_duplicate", "semantic_duplicate", "caption_duplicate", "eval_overlap")
COLORS = (
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
)
RC = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # ships with Matplotlib: no system font decides the bytes
    "font.size": 8,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "svg.hashsalt": "medcurate",
    "path.simplify": True,
}


@dataclass(frozen=True)
class Plot:
    title: str
    path: str  # relative to the release folder, e.g. ``plots/by_source_modality.png``


# -- what to draw (plain data) -------------------------------------------------------------------


def _known(manifest: pa.Table, column: str) -> pa.Array:
    """A string column with null and empty values as ``unknown``."""
    if column not in manifest.column_names:
        return pa.array([UNKNOWN] * manifest.num_rows, pa.string())
    values = pc.fill_null(manifest.column(column).combine_chunks().cast(pa.string()), UNKNOWN)
    return pc.if_else(pc.equal(values, ""), UNKNOWN, values)


def _counts(*columns: pa.Array) -> Counter:
    """Rows per value (one column) or per tuple of values (several), counted by Arrow."""
    names = [f"c{i}" for i in range(len(columns))]
    grouped = pa.table(dict(zip(names, columns, strict=True))).group_by(names).aggregate([([], "count_all")])
    keys = [grouped.column(name).to_pylist() for name in names]
    counts = grouped.column("count_all").to_pylist()
    if len(columns) == 1:
        return Counter(dict(zip(keys[0], counts, strict=True)))
    return Counter(dict(zip(zip(*keys, strict=True), counts, strict=True)))


def _short(name: Any) -> str:
    text = str(name)
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "\u2026"


def _fold(counts: Counter, keep: int = MAX_BARS) -> list[tuple[str, int]]:
    """Categories by count (largest first, ties by name), the tail folded into one ``other`` bar."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    if len(ranked) <= keep:
        return [(str(k), v) for k, v in ranked]
    head, tail = ranked[: keep - 1], ranked[keep - 1 :]
    return [(str(k), v) for k, v in head] + [(f"other ({len(tail)})", sum(v for _, v in tail))]


def _band_key(band: str) -> tuple[int, float, str]:
    """Age bands in age order ("0-9" < "10-19" < "90+"), ``unknown`` and the unparsable after."""
    match = re.match(r"\s*(\d+)", band)
    if band == UNKNOWN or not match:
        return (1, 0.0, band)
    return (0, float(match.group(1)), band)


def _caption_words(manifest: pa.Table):
    """Words (whitespace-separated) of every non-empty final caption."""
    if "final_caption" not in manifest.column_names:
        return []
    captions = pc.utf8_trim_whitespace(manifest.column("final_caption").combine_chunks().drop_null())
    captions = captions.filter(pc.greater(pc.utf8_length(captions), 0))
    if len(captions) == 0:
        return []
    return pc.list_value_length(pc.utf8_split_whitespace(captions)).to_numpy(zero_copy_only=False)


def _score_values(manifest: pa.Table) -> dict[str, Any]:
    """Score name -> its values (a numpy array), NaN and null values left out."""
    if "scores" not in manifest.column_names or manifest.num_rows == 0:
        return {}
    flat = pc.list_flatten(manifest.column("scores").combine_chunks())
    if len(flat) == 0:
        return {}
    names = pc.struct_field(flat, "name")
    values = pc.struct_field(flat, "value").cast(pa.float64())
    valid = pc.and_(pc.is_valid(names), pc.is_valid(values))
    valid = pc.and_(valid, pc.invert(pc.is_nan(pc.fill_null(values, 0.0))))
    names, values = names.filter(valid), values.filter(valid)
    found = {}
    for name in sorted(pc.unique(names).to_pylist()):
        found[name] = values.filter(pc.equal(names, name)).to_numpy(zero_copy_only=False)
    return found


def _ledger_reasons(ledger: dict[str, Any]) -> dict[str, Counter]:
    """Samples per reason code, summed over sources: dedup filters, other filters, quarantines."""
    out = {"dedup / decontamination": Counter(), "other filters": Counter(), "quarantined": Counter()}
    for source in (ledger.get("sources") or {}).values():
        for code, n in (source.get("filtered") or {}).items():
            out["dedup / decontamination" if code in DEDUP_CODES else "other filters"][code] += n
        out["quarantined"].update(source.get("quarantined") or {})
    return out


def _file_name(stem: str, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "plot"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return f"{candidate}.png"


# -- drawing -------------------------------------------------------------------------------------

# Margins are computed from the label lengths, not by a layout engine: one draw per plot, not two.
CHAR_W = 0.0105  # of the figure width, one 8 pt DejaVu Sans character (about 0.063 in of 6 in)


def _figure(
    *, ylabels: list[str] | None = None, legend: list[str] | None = None, rotated: list[str] | None = None
):
    """A figure with one axes, its margins fitted to the y tick labels (None: numbers), a legend
    outside on the right, and x tick labels rotated by 30 degrees."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=SIZE_IN, dpi=DPI)
    FigureCanvasAgg(figure)
    left = 0.04 + CHAR_W * max(len(_short(label)) for label in ylabels) if ylabels else 0.1
    right = 0.97 - (0.06 + CHAR_W * 0.9 * max(len(label) for label in legend) if legend else 0)
    bottom = 0.13 + (CHAR_W * 6 / 3.5 * 0.5 * max(len(_short(label)) for label in rotated) if rotated else 0)
    figure.subplots_adjust(left=min(left, 0.45), right=max(right, 0.6), bottom=min(bottom, 0.4), top=0.9)
    return figure, figure.add_subplot()


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _legend(figure, ax, title: str | None = None) -> None:
    position = ax.get_position()
    figure.legend(
        loc="upper left", bbox_to_anchor=(position.x1 + 0.02, position.y1), title=title, title_fontsize=7
    )


def _hbars(
    labels: list[str], segments: dict[str, list[int]], title: str, xlabel: str, legend: str | None = None
):
    """Horizontal bars, the first label on top, stacked by ``segments`` (name -> count per label),
    the total written at each bar's end; a legend of the segments when ``legend`` titles it."""
    figure, ax = _figure(ylabels=labels, legend=[*segments, legend or ""] if legend is not None else None)
    positions = list(range(len(labels)))[::-1]
    left = [0] * len(labels)
    for i, (name, counts) in enumerate(segments.items()):
        ax.barh(positions, counts, left=left, color=COLORS[i % len(COLORS)], label=name, height=0.7)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    for y, total in zip(positions, left, strict=True):
        ax.annotate(
            f"{total:,}", (total, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7
        )
    ax.set_yticks(positions, [_short(label) for label in labels])
    ax.set_xlim(0, max(left) * 1.15 if max(left) else 1)
    _integer_ticks(ax.xaxis)
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.tick_params(axis="y", length=0)
    if legend is not None:
        _legend(figure, ax, legend or None)
    return figure


def _vbars(labels: list[str], counts: list[int], title: str, ylabel: str):
    rotate = len(labels) > 6 or max(len(label) for label in labels) > 10
    figure, ax = _figure(rotated=labels if rotate else None)
    colors = [COLORS[7] if label == UNKNOWN else COLORS[0] for label in labels]  # unknown in grey
    bars = ax.bar(range(len(labels)), counts, color=colors, width=0.7)
    ax.bar_label(bars, labels=[f"{n:,}" for n in counts], padding=2, fontsize=7)
    ax.set_xticks(range(len(labels)), [_short(label) for label in labels])
    if rotate:
        ax.tick_params(axis="x", labelrotation=30)
        for text in ax.get_xticklabels():
            text.set_horizontalalignment("right")
    ax.set_ylim(0, max(counts) * 1.15 if max(counts) else 1)
    _integer_ticks(ax.yaxis)
    ax.set_title(title, loc="left")
    ax.set_ylabel(ylabel)
    return figure


def _histogram(values: Any, title: str, xlabel: str, integer: bool):
    import numpy as np

    figure, ax = _figure()
    data = np.asarray(values, dtype=np.float64)
    low, high = float(data.min()), float(data.max())
    if integer:
        step = max(1, -(-(int(high - low) + 1) // 40))
        bins = np.arange(low, high + step + 1, step) - 0.5
    else:
        bins = np.linspace(low, high, 31) if high > low else np.array([low - 0.5, low + 0.5])
    counts, edges = np.histogram(data, bins=bins)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=COLORS[0], edgecolor="white")
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.set_ylim(0, counts.max() * 1.12)
    _integer_ticks(ax.yaxis)
    ax.text(
        0.99,
        0.97,
        f"n = {data.size:,}\nmedian {np.median(data):.3g}\nmean {data.mean():.3g}\n"
        f"min {low:.3g}, max {high:.3g}",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7,
    )
    return figure


def _grouped_hbars(labels: list[str], groups: dict[str, list[int]], title: str, xlabel: str):
    """Per label one bar of each group, side by side, each with its count."""
    figure, ax = _figure(ylabels=labels, legend=list(groups))
    width = 0.8 / len(groups)
    positions = list(range(len(labels)))[::-1]
    for i, (name, counts) in enumerate(groups.items()):
        ys = [y + 0.4 - width * (i + 0.5) for y in positions]
        bars = ax.barh(ys, counts, height=width, color=COLORS[i % len(COLORS)], label=name)
        ax.bar_label(bars, labels=[f"{n:,}" for n in counts], padding=3, fontsize=7)
    ax.set_yticks(positions, [_short(label) for label in labels])
    ax.set_xlim(0, max(max(c) for c in groups.values()) * 1.15)
    _integer_ticks(ax.xaxis)
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.tick_params(axis="y", length=0)
    _legend(figure, ax)
    return figure


# -- the plots -----------------------------------------------------------------------------------


Draw = Callable[[], Any]  # returns the drawn Figure


def _plans(info: dict[str, Any], manifest: pa.Table, ledger: dict[str, Any]) -> list[tuple[str, str, Draw]]:
    """(file stem, title, draw) of every plot that has something to show, in card order."""
    plans: list[tuple[str, str, Draw]] = []
    rows = manifest.num_rows

    if rows:
        datasets, modalities = _known(manifest, "dataset"), _known(manifest, "modality")
        by_dataset, by_modality = _counts(datasets), _counts(modalities)
        shown = [name for name, _ in _fold(by_dataset)]
        other = shown[-1] if len(shown) < len(by_dataset) else None
        kinds = [name for name, _ in _fold(by_modality, keep=len(COLORS))]
        other_kind = kinds[-1] if len(kinds) < len(by_modality) else None
        pairs: Counter = Counter()
        for (dataset, modality), n in _counts(datasets, modalities).items():
            dataset = dataset if dataset in shown else other
            modality = modality if modality in kinds else other_kind
            pairs[dataset, modality] += n
        segments = {kind: [pairs[name, kind] for name in shown] for kind in kinds}
        title = "Samples by source and modality"
        plans.append(
            (
                "by_source_modality",
                title,
                lambda title=title: _hbars(shown, segments, title, "samples", legend="modality"),
            )
        )

    words = _caption_words(manifest)
    if len(words):
        plans.append(
            (
                "caption_length",
                "Caption length (words of the final caption)",
                lambda: _histogram(words, "Caption length", "words in the final caption", True),
            )
        )

    for name, values in _score_values(manifest).items():
        plans.append(
            (
                f"score_{name}",
                f"Score: {name}",
                lambda name=name, values=values: _histogram(values, f"Score: {name}", name, False),
            )
        )

    def bars(stem: str, title: str, counts: Counter, order: Callable[[str], Any] | None = None) -> None:
        if not counts:
            return
        items = _fold(counts) if order is None else sorted(counts.items(), key=lambda kv: order(kv[0]))
        labels, values = [k for k, _ in items], [v for _, v in items]
        if order is None:  # ranked categories read best as horizontal bars, largest on top
            plans.append((stem, title, lambda: _hbars(labels, {"samples": values}, title, "samples")))
        else:
            plans.append((stem, title, lambda: _vbars(labels, values, title, "samples")))

    if rows:
        bars("license", "License mix", _counts(_known(manifest, "license")))
        split_order = {"train": 0, "val": 1, "validation": 1, "test": 2}
        bars(
            "split",
            "Split sizes",
            _counts(_known(manifest, "split")),
            lambda s: (split_order.get(s, 3), s),
        )
        sexes = _counts(_known(manifest, "sex"))
        if set(sexes) != {UNKNOWN}:
            bars("sex", "Sex (where known)", sexes, lambda s: (s == UNKNOWN, s))
        bands = _counts(_known(manifest, "age_band"))
        if set(bands) != {UNKNOWN}:
            bars("age_band", "Age band (where known)", bands, _band_key)

    reasons = _ledger_reasons(ledger)
    codes: Counter = Counter()
    for counts in reasons.values():
        codes.update(counts)
    codes = Counter({code: n for code, n in codes.items() if n})
    if codes:
        ranked = [code for code, _ in _fold(codes)]
        folded = len(ranked) < len(codes)
        groups = {}
        for group, counts in reasons.items():
            per = [counts.get(code, 0) for code in ranked]
            if folded:  # the last bar is "other (n)"
                per[-1] = sum(n for code, n in counts.items() if code not in ranked[:-1])
            if any(per):
                groups[group] = per
        ledger_title = "Not released: filtered and quarantined by reason"
        plans.append(
            (
                "ledger_reasons",
                ledger_title,
                lambda: _hbars(ranked, groups, ledger_title, "samples (this run's ledger)", legend=""),
            )
        )

    sets = info.get("decontamination") or {}
    names = sorted(sets)
    removed = [int((sets[n] or {}).get("removed") or 0) for n in names]
    matched = [int((sets[n] or {}).get("eval_images_matched") or 0) for n in names]
    if any(removed) or any(matched):
        decon_title = "Decontamination per evaluation set"
        plans.append(
            (
                "decontamination",
                decon_title,
                lambda: _grouped_hbars(
                    names,
                    {"training samples removed": removed, "eval images matched": matched},
                    decon_title,
                    "samples / images",
                ),
            )
        )
    return plans


def write_plots(info: dict[str, Any], manifest: pa.Table, ledger: dict[str, Any], folder: Path) -> list[Plot]:
    """Draw the card's plots into ``folder/plots`` and return them (title, release-relative path),
    in the order the card shows them. Nothing is written when there is nothing to draw."""
    plans = _plans(info, manifest, ledger or {})
    if not plans:
        return []
    import matplotlib

    out = Path(folder) / PLOTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    plots = []
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # reverted on leaving the context, as RC is
        matplotlib.rcParams.update(RC)
        for stem, title, draw in plans:
            name = _file_name(stem, taken)
            figure = draw()
            figure.savefig(out / name, format="png", dpi=DPI, metadata={"Software": None})
            plots.append(Plot(title, f"{PLOTS_DIR}/{name}"))
    return plots
