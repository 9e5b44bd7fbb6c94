"""Compound-figure captions: split "(A) Axial CT ... (B) Coronal ..." into per-panel sub-captions.

Many PMC figures are grids of panels; pairing each panel's sub-caption with its crop is far better
training text than the whole caption. A false split is worse than none (it cuts a sentence about
"vitamin A" in half), so a caption only counts as compound when it carries at least two labels in
sequence starting at A/a/1 (or Left/Right, Top/Bottom), written in one consistent style.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Panel", "is_compound", "lead_in", "split_panels"]


@dataclass(frozen=True)
class Panel:
    """One panel's label ("A", "A-C", "Left") and its sub-caption (label and separators removed)."""

    label: str
    text: str


@dataclass(frozen=True)
class _Mark:
    """One label occurrence: ``caption[start:end]`` is the label itself, the panel text follows."""

    family: str
    start: int
    end: int
    ranks: tuple[int, ...]  # positions in the family's sequence (A=0, B=1 ...), ascending
    label: str
    strong: bool  # at a label position (caption start, after ".;:,") rather than mid-sentence


_ITEM = r"(?:[A-Za-z]|\d{1,2})"
_SEP = r"(?:[-–—,&]|and|to)"
_PAREN = re.compile(rf"\(\s*(?P<lab>{_ITEM}(?:\s*{_SEP}\s*{_ITEM})*)\s*\)")
_BARE = re.compile(r"(?<![\w(\[\-])(?P<lab>[A-Z](?:\s*[-–—]\s*[A-Z])?)(?P<p>[,:.)])(?=\s+\S)")
_LOWER = re.compile(r"(?<![\w(\[\-])(?P<lab>[a-z](?:\s*(?:,|[-–—]|and)\s*[a-z])*)(?=\s+[A-Z])")
#: Label occurrences considered per style: real figures have at most a few dozen panels.
_MAX_MARKS = 120
_POSITION_WORDS = "left|right|top|bottom|middle|center|centre|upper|lower"
_PANEL_NOUN = r"(?:\s+(?:panels?|images?|rows?|columns?|sides?|figures?))?"
_POSITION_COLON = re.compile(rf"(?<![\w-])(?P<lab>{_POSITION_WORDS}){_PANEL_NOUN}\s*:", re.I)
_POSITION_PAREN = re.compile(rf"\(\s*(?P<lab>{_POSITION_WORDS}){_PANEL_NOUN}\s*\)", re.I)
_POSITION_RANKS = {
    "lr": {"left": 0, "middle": 1, "center": 1, "centre": 1, "right": 2},
    "tb": {"top": 0, "upper": 0, "middle": 1, "center": 1, "centre": 1, "bottom": 2, "lower": 2},
}
#: Which character may precede a bare label ("" = caption start), per punctuation style.
_BARE_AFTER = {".": {"", ".", ";", "!", "?"}, ",": {"", ".", ";", ","}, ":": {"", ".", ";", ","}}
_BARE_AFTER[")"] = _BARE_AFTER[":"]
_CONNECTOR = re.compile(r"(?:[\s,;:.&]|[-–—]|\band\b|\bto\b)*", re.I)
_LEADING = re.compile(r"^[\s:,.;–—\-]+")
_RANGE_GLUE = re.compile(r"\s*(?:[-–—]|to)\s*", re.I)
_LEADING_WORD = re.compile(r"^[\s,;]*(?:and|or)\b", re.I)
_TRAILING = re.compile(r"(?:[\s,;:]|\b(?:and|or)\b)+$", re.I)
_GROUP_SEP = re.compile(r"\s*(?:,|&|\band\b)\s*")
_RANGE_SEP = re.compile(r"\s*(?:[-–—]|\bto\b)\s*")
_ITEM_RE = re.compile(_ITEM)


def _previous_char(caption: str, index: int) -> str:
    stripped = caption[:index].rstrip()
    return stripped[-1:] if stripped else ""


def _rank(item: str) -> tuple[str, int]:
    """The sequence family and position of one label item: "A" → ("upper", 0), "3" → ("digit", 2)."""
    if item.isdigit():
        return "digit", int(item) - 1
    return ("upper" if item.isupper() else "lower"), ord(item.lower()) - ord("a")


def _parse_items(body: str) -> tuple[str, tuple[int, ...], str] | None:
    """Family, covered ranks and display label of "A", "A–C", "A, B", "a and b"; None if not a label."""
    groups = _GROUP_SEP.split(body.strip())
    family = None
    ranks: list[int] = []
    shown = []
    for group in groups:
        ends = _RANGE_SEP.split(group)
        if len(ends) > 2 or not all(_ITEM_RE.fullmatch(e) for e in ends):
            return None
        (fam_a, first), (fam_b, last) = _rank(ends[0]), _rank(ends[-1])
        if fam_a != fam_b or (family is not None and fam_a != family) or last < first:
            return None
        family = fam_a
        ranks.extend(range(first, last + 1))
        shown.append(f"{ends[0]}-{ends[-1]}" if len(ends) == 2 else ends[0])
    if family is None or ranks != list(range(ranks[0], ranks[0] + len(ranks))):
        return None
    return family, tuple(ranks), ",".join(shown)


def _marks(caption: str) -> list[_Mark]:
    """Every label-like occurrence in ``caption``, tagged with its style family."""
    found: list[_Mark] = []
    # Patterns that need a character the caption lacks are not run (most captions have no colon).
    paren = "(" in caption
    for match in _PAREN.finditer(caption) if paren else ():
        parsed = _parse_items(match["lab"])
        if parsed is not None:
            family, ranks, label = parsed
            strong = _previous_char(caption, match.start()) in {"", ".", ";", ":", ",", "!", "?"}
            found.append(_Mark(f"paren-{family}", match.start(), match.end(), ranks, label, strong))
    for match in _BARE.finditer(caption):
        punct = match["p"]
        if _previous_char(caption, match.start()) not in _BARE_AFTER[punct]:
            continue
        following = caption[match.end() :].lstrip()[:1]
        if punct == "." and not (following.isupper() or following.isdigit() or following == "("):
            continue  # "A. baumannii" is a genus abbreviation, not panel A
        parsed = _parse_items(match["lab"])
        if parsed is not None:
            _, ranks, label = parsed
            found.append(_Mark(f"bare{punct}", match.start(), match.end(), ranks, label, True))
    for match in _LOWER.finditer(caption):
        if _previous_char(caption, match.start()) not in {"", ".", ";"}:
            continue
        parsed = _parse_items(match["lab"])
        if parsed is not None:
            _, ranks, label = parsed
            found.append(_Mark("bare-lower", match.start(), match.end(), ranks, label, True))
    for pattern, colon in ((_POSITION_COLON, True), (_POSITION_PAREN, False)):
        if ":" not in caption if colon else not paren:
            continue
        for match in pattern.finditer(caption):
            if colon and _previous_char(caption, match.start()) not in {"", ".", ";", ",", ")"}:
                continue
            word = match["lab"].lower()
            for family, table in _POSITION_RANKS.items():
                if word in table:
                    style = "colon" if colon else "paren"
                    mark = _Mark(f"pos-{family}-{style}", match.start(), match.end(), (table[word],),
                                 word.capitalize(), True)  # fmt: skip
                    found.append(mark)
    found.sort(key=lambda m: (m.start, m.family))
    return found


def _chain(caption: str, marks: list[_Mark]) -> list[_Mark]:
    """The sequential run of labels A, B, C ... (one family), preferring labels at label positions.

    "(A) CT shows the mass seen in (B). (B) MRI ..." has two "(B)": the first is a cross-reference
    mid-sentence, the second starts the panel, so a strong occurrence wins over an earlier weak one
    unless the next label in sequence comes between them.
    """
    positional = marks[0].family.startswith("pos-")
    chain: list[_Mark] = []
    expected, pos = 0, 0
    while True:
        if positional:
            candidates = [m for m in marks if m.start >= pos and m.ranks[0] >= expected]
            candidates = candidates[:1]
        else:
            candidates = [m for m in marks if m.start >= pos and m.ranks[0] == expected]
        if not candidates:
            break
        pick = candidates[0]
        if not pick.strong:
            later = [m for m in marks if m.strong and m.start > pick.start and m.ranks[0] > expected]
            limit = later[0].start if later else len(caption)
            strong = [m for m in candidates if m.strong and m.start < limit]
            if strong:
                pick = strong[0]
        if not chain and pick.ranks[0] != 0:
            break
        chain.append(pick)
        expected, pos = pick.ranks[-1] + 1, pick.end
        if positional:
            continue
        # "(A)–(C) Axial slices": a label joined to a later one by a dash opens a range.
        closing = next((m for m in marks if m.start >= pos and m.ranks[0] > expected), None)
        if closing is not None and _RANGE_GLUE.fullmatch(caption[pos : closing.start]):
            chain.append(closing)
            expected, pos = closing.ranks[-1] + 1, closing.end
    if positional and (len(chain) < 2 or chain[-1].ranks[-1] != 2):
        return []
    return chain


def _best_chain(caption: str) -> list[_Mark]:
    by_family: dict[str, list[_Mark]] = {}
    for mark in _marks(caption):
        family = by_family.setdefault(mark.family, [])
        if len(family) < _MAX_MARKS:  # bounds the quadratic chain search on hostile captions
            family.append(mark)
    best: list[_Mark] = []
    for marks in by_family.values():  # families in order of first appearance: ties go to the earliest
        chain = _chain(caption, marks)
        if len(chain) > len(best):
            best = chain
    return best


def _first_item(label: str) -> str:
    return re.split(r"[-,]", label)[0]


def _last_item(label: str) -> str:
    return re.split(r"[-,]", label)[-1]


def _entries(caption: str, chain: list[_Mark]) -> list[tuple[str, int, int]]:
    """``(label, text start, text end)`` per panel; labels with no text of their own share the next
    one's ("(A) and (B) Axial CT" is one entry "A,B"; "(A)–(C) Axial CT" is one entry "A-C")."""
    entries: list[tuple[str, int, int]] = []
    pending: list[_Mark] = []
    ranged = False
    for index, mark in enumerate(chain):
        end = chain[index + 1].start if index + 1 < len(chain) else len(caption)
        between = caption[mark.end : end]
        pending.append(mark)
        if index + 1 < len(chain) and _CONNECTOR.fullmatch(between):
            ranged = ranged or bool(re.search(r"[-–—]|\bto\b", between, re.I))
            continue
        if len(pending) == 1:
            label = mark.label
        elif ranged:
            label = f"{_first_item(pending[0].label)}-{_last_item(pending[-1].label)}"
        else:
            label = ",".join(m.label for m in pending)
        entries.append((label, mark.end, end))
        pending, ranged = [], False
    return entries


def _clean(text: str) -> str:
    return _TRAILING.sub("", _LEADING.sub("", text)).strip()


def _postfix_start(caption: str, chain: list[_Mark]) -> int:
    """Start of the sentence holding the first label of a caption that writes labels after the text."""
    before = caption[: chain[0].start]
    cut = max(before.rfind(". "), before.rfind("; "), before.rfind(": "))
    return 0 if cut < 0 else cut + 2


def _postfix_panels(caption: str, chain: list[_Mark]) -> list[Panel]:
    """Panels of "Axial CT (A) and coronal MRI (B) showing the mass": each label closes its text.

    The words after the last label ("showing the mass") go to the last panel; a label with no text of
    its own ("CT (A) and (B)") shares the previous one's.
    """
    panels: list[Panel] = []
    start = _postfix_start(caption, chain)
    for mark in chain:
        text = _clean(_LEADING_WORD.sub("", caption[start : mark.start]))
        if panels and not text:
            panels[-1] = Panel(f"{panels[-1].label},{mark.label}", panels[-1].text)
        else:
            panels.append(Panel(mark.label, text))
        start = mark.end
    rest = _clean(caption[start:])
    if panels and rest:
        panels[-1] = Panel(panels[-1].label, f"{panels[-1].text} {rest}".strip())
    return panels


def _panels(caption: str) -> tuple[tuple[Panel, ...], str]:
    """Panels and lead-in of ``caption`` (``((), "")`` when it is not compound)."""
    chain = _best_chain(caption)
    if len(chain) < 2:
        return (), ""
    if chain[0].strong:
        entries = _entries(caption, chain)
        lead = caption[: chain[0].start]
        panels = tuple(Panel(label, _clean(caption[start:end])) for label, start, end in entries)
    else:
        panels = tuple(_postfix_panels(caption, chain))
        lead = caption[: _postfix_start(caption, chain)]
    if len(panels) < 2:
        return (), ""
    return panels, _clean(lead)


def split_panels(caption: str) -> tuple[Panel, ...]:
    """Per-panel sub-captions of a multi-panel figure's caption, in order; ``()`` when not compound.

    Labels usually open their panel's text ("(A) Axial CT ..."); when the first label sits
    mid-sentence ("Axial CT (A) and coronal MRI (B)") they close it instead.
    """
    return _panels(caption)[0]


def lead_in(caption: str) -> str:
    """Text shared by all panels before the first label ("Figure title." in "Figure title. (A) ...").

    "" when the caption is not compound (then the whole caption is the figure's text).
    """
    return _panels(caption)[1]


def is_compound(caption: str) -> bool:
    """Whether ``caption`` describes a multi-panel figure with at least two labelled panels."""
    return bool(split_panels(caption))
