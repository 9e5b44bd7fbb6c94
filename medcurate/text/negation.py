"""A small NegEx-style checker: is a finding named in a sentence affirmed, negated or uncertain?

Model captions of labeled images must not contradict the labels they were written for ("no pleural
effusion" on an image labeled with one). A full clinical NLP pipeline is overkill for one-line
captions, so this follows NegEx (Chapman et al., 2001): cue phrases before a term (within a few words,
stopped by a clause break or a nearer cue) or right after it decide its status, within its sentence.
Pseudo-negations ("no change in") and uncertainty cues ("cannot be excluded") are matched before the
shorter negation cues they contain, so they never count as negations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

#: Words allowed between a pre-cue and the term it governs ("no focal consolidation, effusion or ...").
PRE_WINDOW = 5
#: Words allowed between a term and a post-cue ("pneumothorax has been ruled out").
POST_WINDOW = 3

NEG, UNCERTAIN, PSEUDO = "negated", "uncertain", "pseudo"
PRE, POST, BOTH = "pre", "post", "both"

_AUX = r"(?:(?:is|are|was|were|be|been|has been|have been|had been|has|have)\s+)"

#: (regex, kind, direction). Overlaps go to the leftmost, then longest cue; at equal spans, the first listed.
_CUES: tuple[tuple[str, str, str], ...] = (
    # pseudo-negations: contain a negation word but negate nothing that follows
    (
        r"no (?:significant |interval )?(?:change|increase|decrease)|without (?:significant )?change",
        PSEUDO,
        PRE,
    ),
    (r"not only|no doubt|gram negative", PSEUDO, PRE),
    # uncertainty
    (
        r"(?:cannot|can not) (?:be )?(?:excluded?|ruled? out)|not (?:be )?(?:excluded|ruled out)",
        UNCERTAIN,
        BOTH,
    ),
    (r"\?", UNCERTAIN, BOTH),
    (
        r"possible|possibly|probable|probably|questionable|(?:un)?likely|suspected|suspicious for",
        UNCERTAIN,
        PRE,
    ),
    (r"concerning for|worrisome for|suggestive of|compatible with|consistent with", UNCERTAIN, PRE),
    (
        r"(?:may|might|could) (?:represent|reflect|be|indicate)|rule out|r/o|differential includes",
        UNCERTAIN,
        PRE,
    ),
    (_AUX + r"(?:suspected|possible|questioned|(?:un)?likely)", UNCERTAIN, POST),
    # negation
    (r"no evidence of|no signs? of|without evidence of|negative for|free of|absence of", NEG, PRE),
    (r"no|not|without|neither|nor|denies", NEG, PRE),
    (_AUX + r"?(?:absent|ruled out|excluded|resolved)", NEG, POST),
    (_AUX + r"?not (?:seen|identified|present|visualized|visualised|demonstrated|evident)", NEG, POST),
)

#: Clause breaks: a cue's scope ends here (NegEx "termination" terms).
_BREAK = re.compile(
    r"\b(?:but|however|although|though|except|aside from|apart from|yet|whereas|which|while)\b", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"(?<=[.!;])\s+|(?<=\w\?)\s+|\n\s*\n|\n(?=\s*(?:[-*\u2022]|\d+[.)])\s)")
_WORD = re.compile(r"\w+")


def _cue_regex(pattern: str) -> re.Pattern[str]:
    words = pattern.replace(" ", r"\s+")
    return re.compile(words if pattern == r"\?" else rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)


_CUE_PATTERNS = tuple((_cue_regex(p), kind, direction) for p, kind, direction in _CUES)


@dataclass(frozen=True)
class Mention:
    """One occurrence of a term: character span in the text and what the cues around it say."""

    start: int
    end: int
    negated: bool
    uncertain: bool

    @property
    def affirmed(self) -> bool:
        return not (self.negated or self.uncertain)


@dataclass(frozen=True)
class _Cue:
    start: int
    end: int
    kind: str
    direction: str


def normalise_term(name: str) -> str:
    """A dataset label name as words: "Pleural_Effusion" -> "pleural effusion"."""
    return " ".join(name.replace("_", " ").lower().split())


@lru_cache(maxsize=512)
def term_regex(term: str) -> re.Pattern[str]:
    """The term with flexible spacing/hyphens and a simple plural of its last word."""
    words = normalise_term(term).split()
    if not words:
        raise ValueError("empty term")
    *head, last = (re.escape(w) for w in words)
    last = rf"{last[:-1]}(?:y|ies)" if re.search(r"[^aeiou]y$", last) else rf"{last}(?:s|es)?"
    return re.compile(r"(?<!\w)" + r"[\s\-]+".join([*head, last]) + r"(?!\w)", re.IGNORECASE)


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


def _cues(text: str, start: int, end: int) -> list[_Cue]:
    """Non-overlapping cues of one sentence, leftmost-longest (so "cannot be excluded" beats "excluded")."""
    found = [
        _Cue(m.start(), m.end(), kind, direction)
        for pattern, kind, direction in _CUE_PATTERNS
        for m in pattern.finditer(text, start, end)
    ]
    chosen, last_end = [], -1
    for cue in sorted(found, key=lambda c: (c.start, -c.end)):
        if cue.start >= last_end:
            chosen.append(cue)
            last_end = cue.end
    return chosen


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _governing(text: str, cues: list[_Cue], start: int, end: int) -> set[str]:
    """Kinds of the nearest pre-cue and nearest post-cue in scope of the term at [start, end)."""
    kinds = set()
    before = [c for c in cues if c.end <= start and c.direction in (PRE, BOTH)]
    if before:
        cue = before[-1]
        gap = text[cue.end : start]
        if _words(gap) <= PRE_WINDOW and not _BREAK.search(gap):
            kinds.add(cue.kind)
    after = [c for c in cues if c.start >= end and c.direction in (POST, BOTH)]
    if after:
        cue = after[0]
        gap = text[end : cue.start]
        if _words(gap) <= POST_WINDOW and not _BREAK.search(gap):
            kinds.add(cue.kind)
    return kinds


def mentions(text: str, term: str) -> list[Mention]:
    """Every mention of ``term`` (case-insensitive, whole words, simple plural) with its status."""
    pattern = term_regex(term)
    found = []
    for s_start, s_end in _sentences(text or ""):
        terms = list(pattern.finditer(text, s_start, s_end))
        if not terms:
            continue
        # cues inside a term ("No Finding") are part of its name, not cues
        cues = [
            c
            for c in _cues(text, s_start, s_end)
            if not any(c.start < t.end() and t.start() < c.end for t in terms)
        ]
        for t in terms:
            kinds = _governing(text, cues, t.start(), t.end())
            found.append(Mention(t.start(), t.end(), NEG in kinds, UNCERTAIN in kinds))
    return found


def contradictions(text: str, labels: Iterable[Mapping[str, Any]]) -> list[str]:
    """Why ``text`` contradicts ``labels`` (``{name, value}``); empty when it does not.

    A positive label is contradicted when every mention of it is plainly negated; a negative label
    when any mention affirms it. Unmentioned and uncertain labels are never contradicted: a caption
    need not list every label, and hedged wording asserts nothing.
    """
    reasons: list[str] = []
    for label in labels or ():
        term = normalise_term(str(label.get("name") or ""))
        value = label.get("value")
        if not term or value not in ("positive", "negative"):
            continue
        found = mentions(text, term)
        if not found:
            continue
        if value == "positive" and all(m.negated and not m.uncertain for m in found):
            reason = f"negates positive label {term!r}"
        elif value == "negative" and any(m.affirmed for m in found):
            reason = f"names negative label {term!r}"
        else:
            continue
        if reason not in reasons:
            reasons.append(reason)
    return reasons


__all__ = ["Mention", "contradictions", "mentions", "normalise_term", "term_regex"]
