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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from lxml import etree

__all__ = [
    "Anchor",
    "RenderedText",
    "element_text",
    "local_name",
    "render",
    "sentence_spans",
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
#: Lookup tables over code points up to _LUT_TOP (every whitespace and zero-width character is below it).
_LUT_TOP = 0xFFFF
_SPACE_LUT = np.array([chr(c).isspace() for c in range(_LUT_TOP + 1)], dtype=bool)
_ZERO_WIDTH_LUT = np.zeros(_LUT_TOP + 1, dtype=bool)
_ZERO_WIDTH_LUT[[ord(c) for c in _ZERO_WIDTH]] = True
_SPACE_LUT[_LUT_TOP] = _ZERO_WIDTH_LUT[_LUT_TOP] = False  # where every higher code point lands

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


def _script(inner: str, table: dict[str, str], marker: str) -> str:
    """``inner`` as Unicode super/subscripts when every character has one, else ``^(inner)``."""
    inner = _collapse(inner)
    if not inner:
        return ""
    if all(ch in table for ch in inner):
        return "".join(table[ch] for ch in inner)
    if marker == "^" and (all(ch in _SUP_PASSTHROUGH for ch in inner) or inner.lower() in _ORDINALS):
        return inner
    return f"{marker}({inner})"


def superscript(inner: str) -> str:
    """``inner`` written as a superscript (``−3`` → ``⁻³``, ``ab`` → ``^(ab)``)."""
    return _script(inner, _SUPERSCRIPTS, "^")


def subscript(inner: str) -> str:
    """``inner`` written as a subscript (``2`` → ``₂``, ``max`` → ``_(max)``)."""
    return _script(inner, _SUBSCRIPTS, "_")


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


class _Renderer:
    """Writes raw text pieces and records raw offsets of tracked elements; normalised afterwards."""

    def __init__(
        self, *, drop_labels: bool, drop_citations: bool, track: Callable[[etree._Element], bool] | None
    ) -> None:
        self.drop_labels = drop_labels
        self.drop_citations = drop_citations
        self.track = track
        self.parts: list[str] = []
        self.pos = 0
        self.anchors: list[tuple[etree._Element, int, int]] = []

    def emit(self, text: str | None) -> None:
        if text:
            self.parts.append(text)
            self.pos += len(text)

    def is_dropped_citation(self, el: etree._Element) -> bool:
        """A numeric bibliography marker ("12", "3–5"); author-year citations are prose and stay."""
        if not self.drop_citations or local_name(el) != "xref" or el.get("ref-type") != "bibr":
            return False
        return _NUMERIC_CITATION.fullmatch("".join(el.itertext())) is not None

    def children(self, el: etree._Element) -> None:
        self.emit(el.text)
        kids = list(el)
        for index, child in enumerate(kids):
            self.node(child)
            tail = child.tail
            if tail and self.is_dropped_citation(child) and _CITATION_GLUE.fullmatch(tail):
                following = kids[index + 1] if index + 1 < len(kids) else None
                if following is not None and self.is_dropped_citation(following):
                    continue  # the ", " or "–" between two dropped markers goes with them
            self.emit(tail)

    def sub_render(self, el: etree._Element) -> tuple[str, list[etree._Element]]:
        inner = _Renderer(drop_labels=self.drop_labels, drop_citations=self.drop_citations, track=self.track)
        inner.children(el)
        return "".join(inner.parts), [a[0] for a in inner.anchors]

    def node(self, el: etree._Element, *, root: bool = False) -> None:
        name = local_name(el)
        if not name:  # comment, processing instruction, unexpanded entity: no text of its own
            return
        if not root and (name in _FLOATS or name in _SKIP):
            return
        if name == "label" and self.drop_labels:
            return
        if self.is_dropped_citation(el):
            return
        start = self.pos
        tracked = self.track is not None and self.track(el)
        if name in ("sup", "sub"):
            raw, inner_tracked = self.sub_render(el)
            self.emit(superscript(raw) if name == "sup" else subscript(raw))
            self.anchors.extend((inner, start, self.pos) for inner in inner_tracked)
        elif name in _FORMULAS or name in ("alternatives", "math", "tex-math"):
            formula = _formula_text(el)
            pad = " " if name == "disp-formula" else ""
            self.emit(pad)
            if formula is None:
                self.children(el)
            else:
                self.emit(formula)
            self.emit(pad)
        elif name in _BLOCKS:
            self.emit(" ")
            self.children(el)
            self.emit(" ")
        else:
            self.children(el)
        if tracked:
            self.anchors.append((el, start, self.pos))


def _as_codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _as_text(codes: np.ndarray) -> str:
    return codes.astype(np.uint32).tobytes().decode("utf-32-le")


def _delete(text: str, origins: np.ndarray, pattern: re.Pattern[str]) -> tuple[str, np.ndarray]:
    """Remove every match of ``pattern`` (its group 1 when it has one) from ``text`` and ``origins``."""
    keep = None
    group = 1 if pattern.groups else 0
    for match in pattern.finditer(text):
        start, end = match.span(group)
        if start < end:
            if keep is None:
                keep = np.ones(len(text), dtype=bool)
            keep[start:end] = False
    if keep is None:
        return text, origins
    return _as_text(_as_codes(text)[keep]), origins[keep]


_EMPTY_BRACKETS = re.compile(r"( ?(?:\([\s,;]*\)|\[[\s,;]*\]))")
_SPACE_BEFORE_PUNCT = re.compile(r"( )(?:[,;:!?)\]]|\.(?!\d))")
_SPACE_AFTER_OPEN = re.compile(r"[(\[]( )")
_DOUBLE_SPACE = re.compile(r"( )(?= )")
_EDGE_SPACE = re.compile(r"^( +)|( +)$")


_PATTERNS = (_EMPTY_BRACKETS, _EMPTY_BRACKETS, _DOUBLE_SPACE, _SPACE_BEFORE_PUNCT, _SPACE_AFTER_OPEN)
_WHITESPACE_RUN = re.compile(r"\s+")
_DROP_ZERO_WIDTH = dict.fromkeys(map(ord, _ZERO_WIDTH))


def _without_group(pattern: re.Pattern[str], text: str) -> str:
    if not pattern.groups:
        return pattern.sub("", text)

    def cut(match: re.Match[str]) -> str:
        whole, (start, end) = match.group(0), match.span(1)
        if start < 0:
            return whole
        offset = match.start()
        return whole[: start - offset] + whole[end - offset :]

    return pattern.sub(cut, text)


def _clean(raw: str) -> str:
    """``_normalize`` without offsets: the common case (no tracked element), all in C regex code."""
    text = _WHITESPACE_RUN.sub(" ", raw.translate(_DROP_ZERO_WIDTH))
    for pattern in _PATTERNS:
        text = _without_group(pattern, text)
    return text.strip(" ")


def _normalize(raw: str) -> tuple[str, np.ndarray]:
    """Clean ``raw`` and, for every kept character, the raw offset it came from.

    Vectorised with numpy over code points (a per-character Python loop was most of an article's
    reading time); only paragraphs with tracked elements (figure citations) need the offsets.
    """
    codes = _as_codes(raw)
    origins = np.arange(len(codes), dtype=np.int64)
    keep = ~_ZERO_WIDTH_LUT[np.minimum(codes, _LUT_TOP)]
    codes, origins = codes[keep], origins[keep]
    space = _SPACE_LUT[np.minimum(codes, _LUT_TOP)]
    repeated = np.zeros(len(codes), dtype=bool)
    repeated[1:] = space[1:] & space[:-1]
    keep = ~repeated
    codes = np.where(space, np.uint32(32), codes)[keep]
    origins = origins[keep]
    text = _as_text(codes)
    for pattern in _PATTERNS:
        text, origins = _delete(text, origins, pattern)
    start = len(text) - len(text.lstrip(" "))
    end = len(text.rstrip(" "))
    return text[start:end], origins[start:end]


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
    renderer = _Renderer(drop_labels=drop_labels, drop_citations=drop_citations, track=track)
    renderer.node(el, root=True)
    if not renderer.anchors:
        return RenderedText(_clean("".join(renderer.parts)), ())
    text, origins = _normalize("".join(renderer.parts))
    anchors = []
    for element, raw_start, raw_end in renderer.anchors:
        start = int(np.searchsorted(origins, raw_start))
        end = max(start, int(np.searchsorted(origins, raw_end)))
        anchors.append(Anchor(element, start, end))
    anchors.sort(key=lambda a: (a.start, a.end))
    return RenderedText(text, tuple(anchors))


def element_text(el: etree._Element | None, *, drop_labels: bool = False, drop_citations: bool = True) -> str:
    """The readable text of ``el`` ("" for None); see ``render``."""
    if el is None:
        return ""
    return render(el, drop_labels=drop_labels, drop_citations=drop_citations).text


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
_CANDIDATE = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+([\"'“‘(\[]?)(\S))")
_LOOKBACK = 64
_TOKEN_BEFORE = re.compile(r"(\S+)\s*$")


def _is_boundary(text: str, match: re.Match[str]) -> bool:
    following = match.group(2)
    if not (following.isupper() or following.isdigit() or match.group(1)):
        return False
    if match.group(0)[0] != ".":
        return True
    # Look back a bounded window only: an unbounded search would make long paragraphs quadratic.
    before = _TOKEN_BEFORE.search(text, max(0, match.start() - _LOOKBACK), match.start())
    if before is None:
        return True
    token = before.group(1).lstrip("([\"'“‘").lower()
    if token in _ABBREVIATIONS:
        return False
    if re.fullmatch(r"(?:[a-z]\.)+[a-z]", token):  # e.g, i.e, u.s
        return False
    if len(token) == 1 and token.isalpha() and before.group(1)[-1].isupper():
        # "J. Smith" vs "vitamin A. The": an initial unless it follows an ordinary lower-case word.
        after = _WORD_AFTER.match(text, match.end())
        if after is not None and after.group(1).lower() in _SENTENCE_STARTERS:
            return True
        previous = _TOKEN_BEFORE.search(text, max(0, before.start() - _LOOKBACK), before.start())
        if previous is None:
            return False
        word = previous.group(1)
        if word[0].isupper() or word.lower() in _BEFORE_INITIAL or re.fullmatch(r"[A-Z]\.", word):
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


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; robust to "Fig. 2", "et al.", "e.g.", decimals and initials."""
    return [text[s:e] for s, e in sentence_spans(text)]
