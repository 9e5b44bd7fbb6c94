"""Readable text from JATS elements, plus a sentence splitter for scientific prose.

Captions and citing sentences become training text, so they must read like what a person sees on the
page: markup dropped, every real character kept (PMC writes ``μm``, ``α`` and ``°C`` as characters),
``10<sup>−3</sup>`` as ``10⁻³`` rather than ``10−3`` (which silently changes the meaning), numeric
citation markers removed (they are noise without the reference list), and whitespace normalised.

``render`` also reports where chosen elements (figure ``<xref>``s) ended up in the clean text, because
the same visible text ("Fig. 2") can appear twice in a paragraph: locating a reference by searching
the string would attach the wrong sentence.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from operator import itemgetter

from lxml import etree

__all__ = [
    "Anchor",
    "RenderedText",
    "element_text",
    "local_name",
    "render",
    "render_spans",
    "sentence_spans",
    "sentences_at",
    "split_sentences",
    "subscript",
    "superscript",
]

_SUPERSCRIPTS = dict(zip("0123456789+-−–=()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁻⁼⁽⁾", strict=True))
_SUBSCRIPTS = dict(zip("0123456789+-−–=()", "₀₁₂₃₄₅₆₇₈₉₊₋₋₋₌₍₎", strict=True))
#: Characters that already read as superscripts (trademarks, footnote marks): kept as they are.
_SUP_PASSTHROUGH = frozenset("®™©°*†‡§#′″'")
_ORDINALS = frozenset({"st", "nd", "rd", "th"})

#: Floats nested in running text (a ``<fig>`` inside a ``<p>``) are not part of that text.
_FLOATS = frozenset(
    {"fig", "fig-group", "table-wrap", "table-wrap-group", "boxed-text", "supplementary-material", "media"}
)
#: Elements whose text is machine metadata, never reader-visible prose.
_SKIP = frozenset({"alt-text", "long-desc", "object-id", "graphic", "inline-graphic", "annotation-xml"})
#: Block elements: separated from their neighbours by a space so "Title" + "Text" never fuse.
_BLOCKS = frozenset(
    {
        "p", "title", "caption", "label", "list", "list-item", "sec", "td", "th", "tr", "table", "thead",
        "tbody", "def", "def-item", "def-list", "term", "disp-quote", "fn", "attrib", "license-p",
        "copyright-statement", "statement", "disp-formula", "kwd", "subject", "break", "permissions",
    }
)  # fmt: skip
_FORMULAS = frozenset({"inline-formula", "disp-formula"})
_NUMERIC_CITATION = re.compile(r"[\s\[\]()\d,;–—\-]*")
_CITATION_GLUE = re.compile(r"[\s,;–—\-]*")
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")

_TEX_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "upmu": "μ",
    "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ", "varphi": "φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ",
    "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω", "pm": "±", "times": "×", "le": "≤",
    "leq": "≤", "ge": "≥", "geq": "≥", "neq": "≠", "approx": "≈", "sim": "~", "cdot": "·",
    "degree": "°", "circ": "°", "infty": "∞", "rightarrow": "→", "to": "→", "prime": "′",
    "%": "%", ",": " ", ";": " ", "quad": " ", "qquad": " ", " ": " ",
}  # fmt: skip
_TEX_WRAPPERS = re.compile(
    r"\\(?:mathrm|text|textrm|mathit|mathbf|mathsf|boldsymbol|rm|it|bf|operatorname)\s*"
)
_TEX_COMMAND = re.compile(r"\\([A-Za-z]+|[%,; ])")
_TEX_SCRIPT = re.compile(r"([\^_])(?:\{([^{}]*)\}|(\S))")


_LOCAL_NAMES: dict[str, str] = {}


def local_name(el: etree._Element) -> str:
    """Element name without namespace ("" for comments, PIs and entities)."""
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = tag.rsplit("}", 1)[-1]
        if len(_LOCAL_NAMES) < 4096:  # hostile input may invent any number of tags
            _LOCAL_NAMES[tag] = name
    return name


def _collapse(text: str) -> str:
    return " ".join(text.split())


_SUPERSCRIPT_TABLE = str.maketrans(_SUPERSCRIPTS)
_SUBSCRIPT_TABLE = str.maketrans(_SUBSCRIPTS)


def _script(inner: str, table: dict[str, str], translation: dict[int, str], marker: str) -> str:
    """``inner`` as Unicode super/subscripts when every character has one, else ``^(inner)``.

    Set and ``str.translate`` operations rather than per-character generators: every ``<sup>`` of
    every rendered paragraph comes through here.
    """
    inner = _collapse(inner)
    if not inner:
        return ""
    if table.keys() >= set(inner):
        return inner.translate(translation)
    if marker == "^" and (_SUP_PASSTHROUGH.issuperset(inner) or inner.lower() in _ORDINALS):
        return inner
    return f"{marker}({inner})"


def superscript(inner: str) -> str:
    """``inner`` written as a superscript (``−3`` → ``⁻³``, ``ab`` → ``^(ab)``)."""
    return _script(inner, _SUPERSCRIPTS, _SUPERSCRIPT_TABLE, "^")


def subscript(inner: str) -> str:
    """``inner`` written as a subscript (``2`` → ``₂``, ``max`` → ``_(max)``)."""
    return _script(inner, _SUBSCRIPTS, _SUBSCRIPT_TABLE, "_")


def _tex_text(source: str) -> str:
    """Readable text from a ``<tex-math>`` body (PMC often wraps it in a whole LaTeX document)."""
    match = re.search(r"\\begin\{document\}(.*?)\\end\{document\}", source, re.S)
    body = match.group(1) if match else source
    body = re.sub(r"\\(?:documentclass|usepackage)(?:\[[^\]]*\])?\{[^}]*\}", " ", body)
    body = body.replace("$", " ").replace("\\[", " ").replace("\\]", " ")
    body = re.sub(r"\\(?:left|right)\b", "", body)
    body = _TEX_WRAPPERS.sub("", body)

    def script(m: re.Match[str]) -> str:
        inner = m.group(2) if m.group(2) is not None else m.group(3)
        inner = inner.replace("{", "").replace("}", "")
        return superscript(inner) if m.group(1) == "^" else subscript(inner)

    body = _TEX_COMMAND.sub(lambda m: _TEX_SYMBOLS.get(m.group(1), m.group(1)), body)
    body = _TEX_SCRIPT.sub(script, body)
    body = body.replace("{", "").replace("}", "").replace("\\", "")
    return _collapse(body)


def _wrap(text: str) -> str:
    return text if len(text) <= 1 or text.isalnum() else f"({text})"


def _math_text(el: etree._Element) -> str:
    """Readable text of MathML: scripts and fractions written out, annotations ignored."""
    name = local_name(el)
    if not name:
        return ""
    if name == "math":
        alt = _collapse(el.get("alttext") or "")
        if alt:
            return alt
    kids = [k for k in el if local_name(k)]
    if name in ("annotation", "annotation-xml"):
        return ""
    if name == "semantics":
        return _math_text(kids[0]) if kids else ""
    if name == "mspace":
        return " "
    parts = [_math_text(k) for k in kids]
    if name == "msup" and len(parts) == 2:
        return parts[0] + superscript(parts[1])
    if name == "msub" and len(parts) == 2:
        return parts[0] + subscript(parts[1])
    if name == "msubsup" and len(parts) == 3:
        return parts[0] + subscript(parts[1]) + superscript(parts[2])
    if name == "mfrac" and len(parts) == 2:
        return f"{_wrap(parts[0])}/{_wrap(parts[1])}"
    if name == "msqrt":
        return f"√{_wrap(''.join(parts))}"
    if name in ("mi", "mn", "mo", "mtext", "ms"):
        return _collapse("".join(el.itertext()))
    return "".join(parts)


def _formula_text(el: etree._Element) -> str | None:
    """Text of a formula: MathML (alttext first), then TeX; None when it has neither."""
    for node in el.iter():
        if local_name(node) == "math":
            return _math_text(node)
    for node in el.iter():
        if local_name(node) == "tex-math":
            return _tex_text("".join(node.itertext()))
    return None


@dataclass(frozen=True)
class Anchor:
    """Where a tracked element's text lies in the clean text: ``text[start:end]``."""

    element: etree._Element
    start: int
    end: int


@dataclass(frozen=True)
class RenderedText:
    text: str
    anchors: tuple[Anchor, ...]


# Render kinds: what the walker does with an element, decided once per tag (see ``_kind``).
_K_NONE, _K_FLOAT, _K_LABEL, _K_XREF, _K_SUP, _K_SUB, _K_FORMULA, _K_DISP, _K_BLOCK, _K_PLAIN = range(10)
_KINDS: dict[object, int] = {}


def _kind(tag: object) -> int:
    """The render kind of a tag (comments, PIs and entities have a factory function as their tag).

    Cached per tag, like ``local_name``: one dict lookup per node instead of several set tests is
    most of what keeps rendering every citing paragraph cheap.
    """
    kind = _KINDS.get(tag)
    if kind is not None:
        return kind
    if not isinstance(tag, str):
        kind = _K_NONE
    else:
        name = tag.rsplit("}", 1)[-1]
        if name in _FLOATS or name in _SKIP:
            kind = _K_FLOAT
        elif name == "label":
            kind = _K_LABEL
        elif name == "xref":
            kind = _K_XREF
        elif name == "sup":
            kind = _K_SUP
        elif name == "sub":
            kind = _K_SUB
        elif name == "disp-formula":
            kind = _K_DISP
        elif name in _FORMULAS or name in ("alternatives", "math", "tex-math"):
            kind = _K_FORMULA
        elif name in _BLOCKS:
            kind = _K_BLOCK
        else:
            kind = _K_PLAIN
    # Hostile input may invent any number of tags, and long ones: bounded in count and size.
    if len(_KINDS) < 4096 and (not isinstance(tag, str) or len(tag) <= 256):
        _KINDS[tag] = kind
    return kind


def _numeric_bibr(el: etree._Element) -> bool:
    """An ``<xref ref-type="bibr">`` whose text is a numeric marker ("12", "3–5"), not "Smith (2010)"."""
    if el.get("ref-type") != "bibr":
        return False
    text = "".join(el.itertext()) if len(el) else el.text or ""  # no child: its text is all of it
    return _NUMERIC_CITATION.fullmatch(text) is not None


class _Walker:
    """Collects the raw text pieces of a subtree; tracked elements are recorded by piece index.

    Recording piece indices (turned into character offsets once, at the end) keeps position
    bookkeeping out of the per-node path, which runs for every inline element of every citing
    paragraph. Floats, machine metadata, comments, dropped labels and numeric citation markers
    contribute nothing (their tails still do).
    """

    __slots__ = ("anchors", "drop_citations", "drop_labels", "parts", "track")

    def __init__(
        self, drop_labels: bool, drop_citations: bool, track: Callable[[etree._Element], bool] | None
    ) -> None:
        self.drop_labels = drop_labels
        self.drop_citations = drop_citations
        self.track = track
        self.parts: list[str] = []
        self.anchors: list[tuple[etree._Element, int, int]] = []

    def children(self, el: etree._Element) -> None:
        parts = self.parts
        text = el.text
        if text:
            parts.append(text)
        drop_labels, drop_citations, track = self.drop_labels, self.drop_citations, self.track
        glue = None  # the ", " or "–" after a dropped marker, kept unless another dropped marker follows
        for child in el:
            kind = _KINDS.get(child.tag)
            if kind is None:
                kind = _kind(child.tag)
            dropped = kind == _K_XREF and drop_citations and _numeric_bibr(child)
            if glue is not None:
                if not dropped:
                    parts.append(glue)
                glue = None
            if not (dropped or kind in (_K_NONE, _K_FLOAT) or (kind == _K_LABEL and drop_labels)):
                tracked = track is not None and track(child)
                # <italic>word</italic>, <xref>Table 1</xref>: its text is all a leaf contributes
                if kind in (_K_PLAIN, _K_XREF) and not tracked and not len(child):
                    text = child.text
                    if text:
                        parts.append(text)
                else:
                    self.node(child, kind, tracked)
            tail = child.tail
            if tail:
                if dropped and _CITATION_GLUE.fullmatch(tail):
                    glue = tail
                else:
                    parts.append(tail)
        if glue is not None:
            parts.append(glue)

    def node(self, el: etree._Element, kind: int, tracked: bool) -> None:
        """Render ``el`` itself (the caller has already left out what is not rendered and asked
        ``track`` about it)."""
        parts = self.parts
        start = len(parts)
        if kind in (_K_PLAIN, _K_XREF, _K_FLOAT):  # a float only ever reaches here as the root
            self.children(el)
        elif kind in (_K_BLOCK, _K_LABEL):
            parts.append(" ")
            self.children(el)
            parts.append(" ")
        elif kind in (_K_SUP, _K_SUB):
            if len(el):
                inner = _Walker(self.drop_labels, self.drop_citations, self.track)
                inner.children(el)
                raw, inner_anchors = "".join(inner.parts), inner.anchors
            else:  # 10<sup>9</sup>: nothing inside to walk or track
                raw, inner_anchors = el.text or "", []
            script = superscript(raw) if kind == _K_SUP else subscript(raw)
            if script:
                parts.append(script)
            if inner_anchors:
                end = len(parts)
                self.anchors.extend((element, start, end) for element, _, _ in inner_anchors)
        elif kind in (_K_FORMULA, _K_DISP):
            formula = _formula_text(el)
            if kind == _K_DISP:
                parts.append(" ")
            if formula is None:
                self.children(el)
            elif formula:
                parts.append(formula)
            if kind == _K_DISP:
                parts.append(" ")
        if tracked:
            self.anchors.append((el, start, len(parts)))


#: The clean-up rules, applied in this order after whitespace is collapsed, each deleting its group 1:
#: brackets a dropped citation left empty (twice: "( [] )" empties its outer pair too), spaces doubled
#: by that, a space before closing punctuation, and a space after an opening bracket.
_EMPTY_BRACKETS = re.compile(r"( ?(?:\([\s,;]*\)|\[[\s,;]*\]))")
_SPACE_BEFORE_PUNCT = re.compile(r"( )(?:[,;:!?)\]]|\.(?!\d))")
_SPACE_AFTER_OPEN = re.compile(r"[(\[]( )")
_DOUBLE_SPACE = re.compile(r"( )(?= )")
#: ``_EMPTY_BRACKETS`` without its optional leading space: a pattern that starts with a bracket lets
#: the regex engine skip ahead to the next bracket instead of trying a match at every position.
_EMPTY_BRACKET_PAIR = re.compile(r"\([\s,;]*\)|\[[\s,;]*\]")
_DROP_ZERO_WIDTH = dict.fromkeys(map(ord, _ZERO_WIDTH))
#: ``\s{2,}`` written to start with a character set, which the regex engine scans for quickly.
_LONG_WHITESPACE = re.compile(r"\s\s+")


def _collapse_whitespace(text: str) -> str:
    r"""``re.sub(r"\s+", " ", text)``: ``str.split`` (the same whitespace) without a regex pass that
    replaces every single space by itself."""
    inner = " ".join(text.split())
    if not inner:
        return " " if text else ""
    if text[0].isspace():
        inner = " " + inner
    if text[-1].isspace():
        inner += " "
    return inner


def _bracket_spans(text: str, pos: int = 0) -> list[tuple[int, int]]:
    """What ``_EMPTY_BRACKETS`` matches: each empty pair with the space before it, if any (from
    ``pos`` on, for a caller that knows there is no pair before it).

    The same matches, because that space can never end an earlier match (a match ends with a
    closing bracket), so the leftmost match with the space starts one before the pair's.
    """
    spans = []
    for match in _EMPTY_BRACKET_PAIR.finditer(text, pos):
        start, end = match.span()
        if start and text[start - 1] == " ":
            start -= 1
        spans.append((start, end))
    return spans


def _cut_points(spans: list[tuple[int, int]]) -> list[int]:
    """Where each of the sorted, disjoint ``spans`` was, in the text left after deleting them."""
    points, removed = [], 0
    for start, end in spans:
        points.append(start - removed)
        removed += end - start
    return points


def _pair_around(text: str, points: list[int]) -> bool:
    """Whether an empty bracket pair now encloses one of the cut ``points``.

    Only there can deleting empty pairs have made a new one ("( [] )"): a pair that encloses no cut
    point stood whole before the deletion, and the pass that made it found every such pair (pairs
    cannot overlap). So the second pass is needed only when this says so.
    """
    for point in points:
        left = right = point
        while left and (text[left - 1] in ",;" or text[left - 1].isspace()):  # [\s,;]* leftwards
            left -= 1
        while right < len(text) and (text[right] in ",;" or text[right].isspace()):
            right += 1
        if left and right < len(text) and text[left - 1] + text[right] in ("()", "[]"):
            return True
    return False


def _group_spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [span for match in pattern.finditer(text) if (span := match.span(1))[0] < span[1]]


def _shift(spans: list[tuple[int, int]], positions: list[int]) -> list[int]:
    """Each position ``p`` mapped to the number of characters before it that survive deleting the
    sorted, disjoint ``spans`` (so a position inside a deleted span lands where it was cut)."""
    if not positions:
        return positions
    starts = [start for start, _ in spans]
    removed = list(accumulate(end - start for start, end in spans))
    mapped = []
    for p in positions:
        k = bisect_left(starts, p)  # spans starting before p
        if k:
            p = p - removed[k - 1] + max(0, spans[k - 1][1] - p)
        mapped.append(p)
    return mapped


def _cut(text: str, spans: list[tuple[int, int]], positions: list[int]) -> tuple[str, list[int]]:
    """Delete the sorted, disjoint, non-empty ``spans`` from ``text``; ``_shift`` the positions."""
    if not spans:
        return text, positions
    pieces = []
    last = 0
    for start, end in spans:
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    return "".join(pieces), _shift(spans, positions)


def _normalize(raw: str, positions: list[int]) -> tuple[str, list[int]]:
    """Clean ``raw`` (zero-width characters dropped, whitespace collapsed, the rules above, edges
    stripped) and say where each raw offset in ``positions`` lands in the result.

    A raw offset maps to the number of kept characters that came from before it (clamped to the
    stripped text), so an element whose text was removed gets an empty span. Only the few offsets
    asked for are mapped, step by step, through the spans each step deletes, instead of carrying an
    origin for every character. Every step is first tested with a cheap check, since most text needs
    few of them.
    """
    text = raw
    # Every whitespace character but the space, and every zero-width one, is non-printable: text that
    # is printable and has no double space is already what the first two steps would make of it.
    if not (raw.isprintable() and "  " not in raw):
        if not raw.isascii() and any(char in raw for char in _ZERO_WIDTH):
            text = raw.translate(_DROP_ZERO_WIDTH)
            positions = [len(raw[:p].translate(_DROP_ZERO_WIDTH)) for p in positions]  # a prefix's count
        collapsed = _collapse_whitespace(text)
        if positions and len(collapsed) != len(text):  # a run of one character becomes a space: no cut
            # A run keeps its first character (as a space): the rest of it is what was deleted.
            spans = [(m.start() + 1, m.end()) for m in _LONG_WHITESPACE.finditer(text)]
            positions = _shift(spans, positions)
        text = collapsed
    first = _EMPTY_BRACKET_PAIR.search(text)
    if first is not None:
        spans = _bracket_spans(text, first.start())
        text, positions = _cut(text, spans, positions)
        if _pair_around(text, _cut_points(spans)):  # the pairs the first pass emptied: "( [] )"
            text, positions = _cut(text, _bracket_spans(text), positions)
    if "  " in text:
        text, positions = _cut(text, _group_spans(_DOUBLE_SPACE, text), positions)
    text, positions = _cut(text, _group_spans(_SPACE_BEFORE_PUNCT, text), positions)
    if "( " in text or "[ " in text:
        text, positions = _cut(text, _group_spans(_SPACE_AFTER_OPEN, text), positions)
    start = len(text) - len(text.lstrip(" "))
    end = max(start, len(text.rstrip(" ")))  # all spaces: start is past end
    return text[start:end], [min(max(p - start, 0), end - start) for p in positions]


#: Longest raw text whose clean form is remembered (4096 of them: a few MiB at worst); labels, section
#: titles, keywords and license boilerplate repeat across articles, paragraphs do not.
_REMEMBER_CHARS = 256


@lru_cache(maxsize=4096)
def _clean_remembered(raw: str) -> str:
    return _normalize(raw, [])[0]


def _clean(raw: str) -> str:
    """``_normalize`` without offsets: the common case (no tracked element)."""
    if len(raw) <= _REMEMBER_CHARS:
        return _clean_remembered(raw)
    return _normalize(raw, [])[0]


def _walk(
    el: etree._Element,
    drop_labels: bool,
    drop_citations: bool,
    track: Callable[[etree._Element], bool] | None,
) -> _Walker:
    """The raw pieces of ``el``'s text, with ``el`` itself as the root of the walk."""
    walker = _Walker(drop_labels, drop_citations, track)
    kind = _kind(el.tag)
    # A float is left out of its parent's text, not out of its own: only children check _K_FLOAT.
    skipped = kind == _K_NONE or (kind == _K_LABEL and drop_labels)
    if not skipped and not (kind == _K_XREF and drop_citations and _numeric_bibr(el)):
        walker.node(el, kind, track is not None and track(el))
    return walker


def render(
    el: etree._Element,
    *,
    drop_labels: bool = False,
    drop_citations: bool = True,
    track: Callable[[etree._Element], bool] | None = None,
) -> RenderedText:
    """Clean text of ``el`` and the positions of descendants for which ``track`` is true.

    Nested floats (a ``<fig>`` inside a ``<p>``) are left out of their parent's text; numeric
    ``<xref ref-type="bibr">`` markers are dropped with the brackets they leave empty, unless
    ``drop_citations`` is false. A tracked element whose text was removed gets an empty span.
    """
    text, spans = render_spans(el, track, drop_labels=drop_labels, drop_citations=drop_citations)
    return RenderedText(text, tuple(Anchor(element, start, end) for element, start, end in spans))


def render_spans(
    el: etree._Element,
    track: Callable[[etree._Element], bool] | None,
    *,
    drop_labels: bool = False,
    drop_citations: bool = True,
) -> tuple[str, list[tuple[etree._Element, int, int]]]:
    """``render`` as plain tuples: the clean text and ``(element, start, end)`` in anchor order.

    For the citing-sentence loop, which renders every paragraph that cites a figure and has no use
    for the frozen dataclasses.
    """
    walker = _walk(el, drop_labels, drop_citations, track)
    raw = "".join(walker.parts)
    if not walker.anchors:
        return _clean(raw), []
    offsets = list(accumulate(map(len, walker.parts), initial=0))
    positions = [offsets[i] for _, first, last in walker.anchors for i in (first, last)]
    text, mapped = _normalize(raw, positions)
    spans = []
    for index, (element, _, _) in enumerate(walker.anchors):
        start, end = mapped[2 * index], mapped[2 * index + 1]
        spans.append((element, start, max(start, end)))
    spans.sort(key=itemgetter(1, 2))  # stable, as the anchors were ordered before
    return text, spans


def element_text(el: etree._Element | None, *, drop_labels: bool = False, drop_citations: bool = True) -> str:
    """The readable text of ``el`` ("" for None); see ``render``."""
    if el is None:
        return ""
    if not len(el):
        raw = _leaf_raw(el, drop_labels, drop_citations)
        if raw is not None:
            return _clean(raw)
    return _clean("".join(_walk(el, drop_labels, drop_citations, None).parts))


def _leaf_raw(el: etree._Element, drop_labels: bool, drop_citations: bool) -> str | None:
    """The raw text ``_walk`` collects for ``el`` when it has no children; None for the kinds whose
    text needs more than copying (scripts, formulas), which go through the walker.

    Most titles, labels, keywords and license paragraphs are such leaves: their text is the string
    lxml already holds, with no walker to build and no children to look at.
    """
    kind = _kind(el.tag)
    if kind == _K_NONE or (kind == _K_LABEL and drop_labels):
        return ""
    text = el.text or ""
    if kind in (_K_PLAIN, _K_FLOAT):
        return text
    if kind == _K_XREF:
        return "" if drop_citations and _numeric_bibr(el) else text
    if kind in (_K_BLOCK, _K_LABEL):
        return f" {text} "
    return None


# --- sentences --------------------------------------------------------------------------------------

#: Lower-cased tokens that end with a period without ending a sentence.
_ABBREVIATIONS = frozenset(
    {
        "fig", "figs", "al", "e.g", "i.e", "vs", "approx", "ca", "no", "nos", "cf", "ref", "refs", "eq",
        "eqs", "suppl", "resp", "dr", "mr", "mrs", "ms", "prof", "st", "vol", "pp", "sec", "sect",
        "inc", "ltd", "co", "corp", "viz", "incl", "tab", "ch", "sp", "spp", "subsp", "var", "cv",
        "dept", "univ", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
        "dec", "ed", "eds",
    }
)  # fmt: skip
#: Lower-case words after which a capital letter + "." is still an initial ("by J. Smith").
_BEFORE_INITIAL = frozenset({"by", "and", "from", "with", "of", "to", "&"})
#: Words that start sentences far more often than they follow an initial ("vitamin A. The ...").
_SENTENCE_STARTERS = frozenset(
    {
        "the", "this", "these", "those", "that", "there", "in", "on", "at", "we", "our", "it", "its",
        "a", "an", "all", "however", "both", "after", "before", "when", "while", "note", "scale",
        "arrow", "arrows", "arrowhead", "arrowheads", "data", "each", "for", "results", "representative",
        "values", "error", "bars", "no", "patients", "to", "as", "such", "thus", "therefore", "moreover",
        "furthermore", "then", "here", "similarly", "finally", "overall", "one", "two", "three", "since",
    }
)  # fmt: skip
_WORD_AFTER = re.compile(r"\s+[\"'“‘(\[]?([A-Za-z]+)")
#: A sentence end followed by the next sentence's first character. ``[.!?][.!?]*`` rather than
#: ``[.!?]+`` (the same matches): a pattern that starts with a character set lets the regex engine
#: skip ahead to the next ``.``, ``!`` or ``?`` instead of trying a match at every position.
_CANDIDATE = re.compile(r"[.!?][.!?]*[\"'”’)\]]*(?=\s+([\"'“‘(\[]?)(\S))")
_LOOKBACK = 64
_DOTTED = re.compile(r"(?:[a-z]\.)+[a-z]")
_INITIAL = re.compile(r"[A-Z]\.")


def _token_before(text: str, lo: int, hi: int) -> tuple[str, int] | None:
    r"""The last whitespace-delimited token of ``text[lo:hi]`` and where it starts; None if blank.

    What ``re.search(r"(\S+)\s*$", text, lo, hi)`` finds, without the regex retrying every start
    position of the window (that was most of the splitter's time).
    """
    window = text[lo:hi].rstrip()
    if not window:
        return None
    token = window.rsplit(None, 1)[-1]
    return token, lo + len(window) - len(token)


def _is_boundary(text: str, match: re.Match[str]) -> bool:
    following = match.group(2)
    if not (following.isupper() or following.isdigit() or match.group(1)):
        return False
    if match.group(0)[0] != ".":
        return True
    # Look back a bounded window only: an unbounded search would make long paragraphs quadratic.
    before = _token_before(text, max(0, match.start() - _LOOKBACK), match.start())
    if before is None:
        return True
    raw_token, token_start = before
    token = raw_token.lstrip("([\"'“‘").lower()
    if token in _ABBREVIATIONS:
        return False
    if _DOTTED.fullmatch(token):  # e.g, i.e, u.s
        return False
    if len(token) == 1 and token.isalpha() and raw_token[-1].isupper():
        # "J. Smith" vs "vitamin A. The": an initial unless it follows an ordinary lower-case word.
        after = _WORD_AFTER.match(text, match.end())
        if after is not None and after.group(1).lower() in _SENTENCE_STARTERS:
            return True
        previous = _token_before(text, max(0, token_start - _LOOKBACK), token_start)
        if previous is None:
            return False
        word = previous[0]
        if word[0].isupper() or word.lower() in _BEFORE_INITIAL or _INITIAL.fullmatch(word):
            return False
    return True


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, without surrounding whitespace."""
    spans = []
    start = len(text) - len(text.lstrip())
    for match in _CANDIDATE.finditer(text):
        if match.end() <= start or not _is_boundary(text, match):
            continue
        spans.append((start, match.end()))
        start = match.end()
        while start < len(text) and text[start].isspace():
            start += 1
    if start < len(text) and text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def sentences_at(text: str, positions: Iterable[int]) -> list[tuple[int, int]]:
    """For each position, the span of ``sentence_spans(text)`` holding it: the last sentence starting at
    or before it (the first sentence for a position before any), or ``(0, len(text))`` for blank text.

    A citing paragraph needs only the sentences around its figure references, so boundaries are
    decided lazily outward from each position instead of for the whole paragraph. That gives the
    same spans because every candidate's verdict depends on the text alone, and the sentence after
    a boundary starts at the first non-space character after it (``group(1)`` of the candidate).
    """
    positions = list(positions)
    if not text or text.isspace():
        return [(0, len(text)) for _ in positions]
    # Candidates up to the first boundary after the last position: the rest can decide nothing.
    candidates: list[re.Match[str]] = []
    following: list[int] = []  # where the next sentence would start, per candidate
    verdicts: dict[int, bool] = {}
    limit = max(positions, default=-1)
    for match in _CANDIDATE.finditer(text):
        candidates.append(match)
        following.append(match.start(1))
        if following[-1] > limit:
            verdict = verdicts[len(candidates) - 1] = _is_boundary(text, match)
            if verdict:
                break
    first, last = len(text) - len(text.lstrip()), len(text.rstrip())
    found: dict[int, tuple[int, int]] = {}  # by how many candidates precede the position
    spans = []
    for position in positions:
        split = bisect_right(following, position)  # candidates whose next sentence starts by here
        span = found.get(split)
        if span is None:
            start, end = first, last
            for index in range(split - 1, -1, -1):
                verdict = verdicts.get(index)
                if verdict is None:
                    verdict = verdicts[index] = _is_boundary(text, candidates[index])
                if verdict:
                    start = following[index]
                    break
            for index in range(split, len(candidates)):
                verdict = verdicts.get(index)
                if verdict is None:
                    verdict = verdicts[index] = _is_boundary(text, candidates[index])
                if verdict:
                    end = candidates[index].end()
                    break
            span = found[split] = (start, end)
        spans.append(span)
    return spans


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; robust to "Fig. 2", "et al.", "e.g.", decimals and initials."""
    return [text[s:e] for s, e in sentence_spans(text)]
