"""Radiology report text for DICOM studies: loading, section splitting and PHI scrubbing.

Report corpora (MIMIC-CXR, CheXpert Plus, hospital exports) ship as one CSV or JSONL file keyed by
accession number or study UID, separate from the images. A source loads the file once at listing time
(``ReportIndex.load``), looks each study up by its *original* identifiers before de-identification,
and scrubs the text with the study's known PHI values before any of it can reach a sample.

Scrubbing is a documented, versioned regex method (``SCRUB_METHOD``; see
``docs/decisions/0007-report-phi-scrubbing.md``). It is a first line of defence, not a proof: a
separate fail-closed scanner checks afterwards that no known PHI value remains.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from medcurate.hashing import sha256_json

#: Changes whenever a pattern changes, so scrubbed text can be traced to the rules that made it.
SCRUB_METHOD = "regex-v1"

ACCESSION = "accession"
STUDY_UID = "study_uid"
KEY_KINDS = (ACCESSION, STUDY_UID)

# ---------------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------------

#: Normalised column name (lower case, alphanumerics only) -> key kind.
KEY_COLUMNS = {
    "accessionnumber": ACCESSION,
    "accession": ACCESSION,
    "accessionno": ACCESSION,
    "studyuid": STUDY_UID,
    "studyinstanceuid": STUDY_UID,
}
#: Normalised names of columns holding the whole report.
FULL_TEXT_COLUMNS = frozenset({"report", "text", "reporttext"})
#: Bare section columns (``section_*`` columns are always sections).
SECTION_COLUMNS = frozenset({"findings", "impression"})

#: Section header (lower case, single spaces) -> canonical section name, after MIMIC-CXR's normaliser.
SECTION_ALIASES = {
    "findings": "findings",
    "finding": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "findings and impression": "impression",
    "findings/impression": "impression",
    "indication": "indication",
    "clinical indication": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "history": "history",
    "clinical history": "history",
    "patient history": "history",
    "clinical information": "history",
    "technique": "technique",
    "comparison": "comparison",
    "comparisons": "comparison",
    "comparison exam": "comparison",
    "examination": "examination",
    "exam": "examination",
    "type of examination": "examination",
    "recommendation": "recommendations",
    "recommendations": "recommendations",
    "recommendation(s)": "recommendations",
    "notification": "notification",
    "addendum": "addendum",
    "wet read": "wet_read",
}


class ReportError(ValueError):
    """A report file that cannot be used at all (unknown format, no key or text column, broken CSV)."""


@dataclass(frozen=True, slots=True)
class RawReport:
    """One report as read from the file, before scrubbing: never put this text in a sample.

    ``key_kind``/``key`` say how the report was found (``lookup`` sets them to the key that matched);
    ``keys`` holds every key the row has. ``sha256`` covers keys, text and sections, so a corrected
    report changes the input key of the study it is paired with.
    """

    key_kind: str
    key: str
    text: str
    sections: dict[str, str]
    line: int
    sha256: str
    keys: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A row whose key was already taken by an earlier row; the earlier row wins.

    The later row is not indexed under any of its keys, so a lookup never returns a report that
    another lookup of the same study would not.

    ``same_content`` tells harmless repeats (CheXpert Plus repeats a report once per image) from
    conflicting reports, which the caller should surface.
    """

    key_kind: str
    key: str
    line: int
    first_line: int
    same_content: bool


@dataclass(frozen=True)
class _Columns:
    """Roles of a row's columns, resolved once per header (per key set for JSONL)."""

    keys: tuple[tuple[str, int], ...]
    full_text: tuple[int, ...]
    sections: tuple[tuple[str, int], ...]

    @property
    def has_text(self) -> bool:
        return bool(self.full_text or self.sections)


def _normalise_column(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def section_name(header: str) -> str:
    """Canonical section name for a header or ``section_*`` column (``"clinical history"`` -> history)."""
    spaced = " ".join(re.sub(r"[_:]", " ", header.lower()).split())
    return SECTION_ALIASES.get(spaced) or re.sub(r"[^a-z0-9()/]+", "_", spaced).strip("_")


@functools.lru_cache(maxsize=64)
def _columns(header: tuple[str, ...]) -> _Columns:
    """Column roles; the first column of a kind wins, so a stray duplicate header cannot override it."""
    keys: dict[str, int] = {}
    full: list[int] = []
    sections: list[tuple[str, int]] = []
    for index, name in enumerate(header):
        norm = _normalise_column(name)
        if norm in KEY_COLUMNS:
            keys.setdefault(KEY_COLUMNS[norm], index)
        elif norm in FULL_TEXT_COLUMNS:
            full.append(index)
        elif norm in SECTION_COLUMNS:
            sections.append((section_name(norm), index))
        elif norm.startswith("section") and len(norm) > len("section"):
            sections.append((section_name(re.sub(r"(?i)^\s*section[\s_-]*", "", name)), index))
    return _Columns(tuple(keys.items()), tuple(full), tuple(sections))


def _has_surrogates(text: str) -> bool:
    """True when the text holds bytes that were not UTF-8 (decoded with ``surrogateescape``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _clean_key(value: str | None) -> str:
    """Keys compare after trimming spaces and DICOM's NUL padding; nothing else is normalised."""
    return (value or "").strip().strip("\x00").strip()


def _squash(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------

_HEADERS = sorted(SECTION_ALIASES, key=len, reverse=True)
_HEADER_RE = re.compile(
    r"^[ \t]*(?P<header>" + "|".join(re.escape(h).replace(r"\ ", r"[ \t]+") for h in _HEADERS) + r")[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_FINAL_REPORT_RE = re.compile(r"^[ \t]*FINAL[ \t]+REPORT[ \t]*$", re.IGNORECASE | re.MULTILINE)


def split_sections(text: str) -> dict[str, str]:
    """Split free text at known headers (``FINDINGS:``, ``IMPRESSION:``...) that start a line.

    Only known headers split, so an incidental ``Note:`` or ``Dr. X:`` inside a section does not cut
    it. Text before the first header becomes ``preamble`` (MIMIC's ``FINAL REPORT`` title is dropped);
    a header seen twice has its texts joined; empty sections are left out; whitespace inside each
    section is collapsed to single spaces. Text without any header is all ``preamble``.
    """
    text = _FINAL_REPORT_RE.sub("", text)
    parts: dict[str, list[str]] = {}
    matches = list(_HEADER_RE.finditer(text))
    bounds = [0, *[m.start() for m in matches], len(text)]
    names = ["preamble", *[section_name(m.group("header")) for m in matches]]
    starts = [0, *[m.end() for m in matches]]
    for name, start, end in zip(names, starts, bounds[1:], strict=True):
        body = _squash(text[start:end])
        if body:
            parts.setdefault(name, []).append(body)
    return {name: " ".join(bodies) for name, bodies in parts.items()}


def _assemble(sections: Mapping[str, str]) -> str:
    """Full text for files that only have section columns, in the file's column order."""
    return "\n\n".join(f"{name.replace('_', ' ').upper()}: {body}" for name, body in sections.items())


# ---------------------------------------------------------------------------------------------------
# Index
# ---------------------------------------------------------------------------------------------------


class ReportIndex:
    """Reports of one file, indexed by accession number and by study UID.

    Built by one streamed pass (``load``). Rows that cannot be used are not dropped silently: they
    are listed in ``problems`` as ``(line, reason)`` and repeated keys in ``duplicates``, for the
    caller to report. ``line`` is the 1-based physical line where the row starts.
    """

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[tuple[int, str]] = []
        self.duplicates: list[Duplicate] = []
        self._by: dict[str, dict[str, RawReport]] = {kind: {} for kind in KEY_KINDS}
        self._columns_seen: dict[str, None] = {}
        self._key_column_seen = False
        self._text_column_seen = False
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[RawReport]:
        """Every indexed report once, in file order within each key kind."""
        seen: set[int] = set()
        for kind in KEY_KINDS:
            for report in self._by[kind].values():
                if id(report) not in seen:
                    seen.add(id(report))
                    yield report

    @classmethod
    def load(cls, path: str | Path) -> ReportIndex:
        """Read a ``.csv`` or ``.jsonl`` report file; ReportError if the file cannot be used at all."""
        index = cls(Path(path))
        suffix = index.path.suffix.lower()
        if suffix == ".csv":
            index._load_csv()
        elif suffix in (".jsonl", ".ndjson"):
            index._load_jsonl()
        else:
            raise ReportError(f"{index.path}: unknown report format {suffix!r} (expected .csv or .jsonl)")
        return index

    def lookup(self, accession: str | None, study_uid: str | None) -> RawReport | None:
        """The report of a study, by accession number first, then study UID.

        A row that names the *other* key with a different value contradicts the study and is not
        returned: pairing an image with another patient's report is worse than pairing none.
        """
        wanted = {ACCESSION: _clean_key(accession), STUDY_UID: _clean_key(study_uid)}
        for kind in KEY_KINDS:
            key = wanted[kind]
            report = self._by[kind].get(key) if key else None
            if report is None or self._contradicts(report, wanted):
                continue
            return report if report.key_kind == kind else replace(report, key_kind=kind, key=key)
        return None

    @staticmethod
    def _contradicts(report: RawReport, wanted: Mapping[str, str]) -> bool:
        return any(wanted[kind] and report.keys.get(kind, wanted[kind]) != wanted[kind] for kind in KEY_KINDS)

    # -- reading -----------------------------------------------------------------------------------

    def _load_csv(self) -> None:
        with self.path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            reader = csv.reader(handle)
            try:
                header = next(reader, None)
                if header is None:
                    raise ReportError(f"{self.path}: empty CSV file (no header row)")
                header = tuple(name.strip() for name in header)
                self._check_columns(header)
                start = reader.line_num + 1
                for cells in reader:
                    line, start = start, reader.line_num + 1
                    if not cells:
                        continue
                    if len(cells) != len(header):
                        self.problems.append(
                            (line, f"{len(cells)} fields where the header has {len(header)}")
                        )
                        continue
                    self._add(header, cells, line)
            except csv.Error as exc:
                raise ReportError(f"{self.path}: line {reader.line_num}: unreadable CSV ({exc})") from exc

    def _load_jsonl(self) -> None:
        with self.path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
            for line, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                obj = self._json_object(raw, line)
                if obj is None:
                    continue
                header = tuple(obj)
                self._note_columns(header)
                self._add(header, [_json_cell(value) for value in obj.values()], line)
        if self._columns_seen and not (self._key_column_seen and self._text_column_seen):
            self._check_columns(list(self._columns_seen))

    def _json_object(self, raw: str, line: int) -> dict[str, object] | None:
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            self.problems.append((line, f"invalid JSON ({exc.msg})"))
            return None
        if not isinstance(obj, dict):
            self.problems.append((line, f"not a JSON object ({type(obj).__name__})"))
            return None
        return obj

    def _note_columns(self, header: Sequence[str]) -> None:
        for name in header:
            self._columns_seen.setdefault(name, None)
        roles = _columns(tuple(header))
        self._key_column_seen |= bool(roles.keys)
        self._text_column_seen |= roles.has_text

    def _check_columns(self, header: Sequence[str]) -> None:
        """ReportError naming the columns found when no key or no text column is recognisable."""
        roles = _columns(tuple(header))
        missing = []
        if not roles.keys:
            missing.append("key column (accession_number / AccessionNumber / study_uid / StudyInstanceUID)")
        if not roles.has_text:
            missing.append("text column (report / text / report_text / findings / impression / section_*)")
        if missing:
            found = ", ".join(repr(name) for name in header[:40]) or "none"
            more = f" (+{len(header) - 40} more)" if len(header) > 40 else ""
            raise ReportError(f"{self.path}: no {' and no '.join(missing)}; columns found: {found}{more}")

    def _add(self, header: tuple[str, ...], cells: Sequence[str], line: int) -> None:
        report = self._parse_row(_columns(header), cells, line)
        if report is None:
            return
        for kind, key in report.keys.items():
            first = self._by[kind].get(key)
            if first is not None:
                same = first.sha256 == report.sha256
                self.duplicates.append(Duplicate(kind, key, line, first.line, same))
                return
        for kind, key in report.keys.items():
            self._by[kind][key] = report
        self._count += 1

    def _parse_row(self, roles: _Columns, cells: Sequence[str], line: int) -> RawReport | None:
        """A report from one row, or None with the reason recorded in ``problems``."""
        keys = {kind: _clean_key(cells[index]) for kind, index in roles.keys}
        keys = {kind: key for kind, key in keys.items() if key}
        full = next((cells[i] for i in roles.full_text if cells[i].strip()), "")
        sections: dict[str, str] = {}
        for name, index in roles.sections:
            body = _squash(cells[index])
            if body:
                sections[name] = f"{sections[name]} {body}" if name in sections else body
        text = full.strip() or _assemble(sections)
        reason = self._row_problem(keys, text, [*keys.values(), text, *sections.values()])
        if reason:
            self.problems.append((line, reason))
            return None
        if not sections:
            sections = split_sections(text)
        kind = ACCESSION if ACCESSION in keys else STUDY_UID
        digest = sha256_json({"keys": keys, "text": text, "sections": sections})
        return RawReport(kind, keys[kind], text, sections, line, digest, keys)

    @staticmethod
    def _row_problem(keys: Mapping[str, str], text: str, values: Iterable[str]) -> str | None:
        if any(_has_surrogates(value) for value in values):
            return "undecodable bytes (the file is not UTF-8)"
        if not keys:
            return "no accession number or study UID"
        if not text:
            return "no report text"
        return None


def _json_cell(value: object) -> str:
    """JSON values as cells: strings and integers (numeric accession numbers) only."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


# ---------------------------------------------------------------------------------------------------
# Scrubbing
# ---------------------------------------------------------------------------------------------------

PLACEHOLDERS = {
    "redacted": "[REDACTED]",
    "name": "[NAME]",
    "date": "[DATE]",
    "id": "[ID]",
    "phone": "[PHONE]",
    "email": "[EMAIL]",
    "url": "[URL]",
    "address": "[ADDRESS]",
    "age": "[AGE>89]",
}


@dataclass(frozen=True)
class Scrubbed:
    """Scrubbed text, how many spans of each category were replaced, and the method's id."""

    text: str
    replacements: dict[str, int]
    method: str = SCRUB_METHOD


Span = Callable[[re.Match[str]], "tuple[int, int] | None"]


def _phi_span(match: re.Match[str]) -> tuple[int, int] | None:
    """The ``phi`` group when the pattern has one (context such as ``MRN:`` stays), else the match."""
    if "phi" in match.re.groupindex and match.start("phi") >= 0:
        return match.span("phi")
    return match.span()


@dataclass(frozen=True)
class _Pass:
    category: str
    pattern: re.Pattern[str]
    span: Span = _phi_span


def _run(text: str, step: _Pass, counts: dict[str, int]) -> str:
    replaced = 0

    def substitute(match: re.Match[str]) -> str:
        nonlocal replaced
        span = step.span(match)
        if span is None:
            return match.group(0)
        replaced += 1
        offset, whole = match.start(), match.group(0)
        return whole[: span[0] - offset] + PLACEHOLDERS[step.category] + whole[span[1] - offset :]

    out = step.pattern.sub(substitute, text)
    if replaced:
        counts[step.category] = counts.get(step.category, 0) + replaced
    return out


# -- dates -------------------------------------------------------------------------------------------

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_MONTH = (
    r"(?P<month>(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?)(?![A-Za-z]))"
)
#: Month names that are also English words: without a year, lower-case ones are not taken as dates.
_MONTH_WORDS = frozenset({"may", "march", "mar"})
_ORD = r"(?:st|nd|rd|th)?"
_YEAR4 = r"(?:19|20)\d{2}"
_CLOCK = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:\s*(?:[AaPp]\.[Mm]\.|[AaPp][Mm]\b))?"
#: A time right after a date ("03/12/2024 10:45", "... at 10:45 a.m.", ISO "T10:45:00Z") is part of it.
_TIME_AFTER = (
    rf"(?:(?:,\s*|\s+)(?:at\s+)?{_CLOCK}"
    r"|T(?:[01]\d|2[0-3]):?[0-5]\d(?::?[0-5]\d(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
#: ... and so is one right before it ("10:45 on 3/12/2024").
_TIME_BEFORE = rf"(?:{_CLOCK},?\s+(?:on\s+)?)?"
#: A date (or its time) ends at a word boundary that is not a decimal, range or fraction going on.
_END = r"(?![\w/]|[.-]\d)"
#: What follows a number that is a quantity, not a day ("May 5 mm", "3/4 views", "on 1/2 dose").
_NOT_DAY = (
    r"(?!\s*(?:mm|cm|ml|mg|kg|g|mcg|mgy|cc|m|%|x|views?|strength|doses?|tabs?|tablets?|times|of)\b)"
    r"(?![\d/%]|[.-]\d)"
)


def _valid_date(year: int | None, first: int, second: int) -> bool:
    """Month/day in either order (US and European dates look alike); the year, when given, is real."""
    for month, day in ((first, second), (second, first)):
        try:
            dt.date(year or 2000, month, day)
        except ValueError:
            continue
        return True
    return False


def _numeric_date(match: re.Match[str]) -> tuple[int, int] | None:
    groups = match.groupdict()
    year_text = groups.get("y")
    if year_text and len(year_text) == 2 and groups.get("sep") in ("-", "."):
        return None  # "3-12-24" reads as levels or ribs, "1.5.20" as a version, more often than a date
    year = None if not year_text else int(year_text) + (2000 if len(year_text) == 2 else 0)
    first, second = int(groups["m"]), int(groups.get("d") or 1)
    return _phi_span(match) if _valid_date(year, first, second) else None


def _named_date(match: re.Match[str]) -> tuple[int, int] | None:
    """Month-name dates; ``may 5``/``march 12`` in lower case without a year are English, not dates."""
    groups = match.groupdict()
    if not groups.get("y") and groups["month"].rstrip(".") in _MONTH_WORDS:
        return None
    day = groups.get("d")
    if day and not 1 <= int(day) <= 31:
        return None
    return _phi_span(match)


def _date_passes() -> list[_Pass]:
    flags = re.IGNORECASE
    context = (
        r"(?i:\b(?:on|dated|dates?|from|since|until|through|prior|compared\s+(?:to|with)|comparison|dos)"
        r"\b:?\s+)"
    )
    numeric = [
        # ISO and DICOM-like: 2024-03-12, 2024/3/12, 2024.03.12
        rf"(?<![\w./-]){_TIME_BEFORE}(?P<y>{_YEAR4})(?P<sep>[-/.])(?P<m>\d{{1,2}})(?P=sep)(?P<d>\d{{1,2}})"
        rf"(?!\d){_TIME_AFTER}{_END}",
        # compact DA/DT: 20240312, 20240312093015
        rf"(?<![\w.]){_TIME_BEFORE}(?P<y>{_YEAR4})(?P<m>0[1-9]|1[0-2])(?P<d>0[1-9]|[12]\d|3[01])"
        rf"(?:[01]\d[0-5]\d(?:[0-5]\d(?:\.\d+)?)?)?{_END}",
        # US / European: 3/12/2024, 03-12-2024, 12.03.2024, 3/12/24
        rf"(?<![\w./-]){_TIME_BEFORE}(?P<m>\d{{1,2}})(?P<sep>[-/.])(?P<d>\d{{1,2}})(?P=sep)"
        rf"(?P<y>{_YEAR4}|\d{{2}})(?!\d){_TIME_AFTER}{_END}",
        # month/year: 03/2024
        rf"(?<![\w./-])(?P<m>0?[1-9]|1[0-2])/(?P<y>{_YEAR4}){_END}",
        # month/day without a year only after a date-ish word, or with a time: "on 3/12", "3/12 10:45"
        rf"{context}(?P<phi>{_TIME_BEFORE}(?P<m>\d{{1,2}})/(?P<d>\d{{1,2}}){_NOT_DAY}{_TIME_AFTER})",
        rf"(?<![\w./-])(?P<m>\d{{1,2}})/(?P<d>\d{{1,2}})(?=(?:,\s*|\s+)(?:at\s+)?{_CLOCK}){_TIME_AFTER}",
    ]
    named = [
        # March 12, 2024 / Mar. 12th 2024 / MARCH 12 2024
        rf"(?<![\w]){_TIME_BEFORE}{_MONTH}\s+(?P<d>\d{{1,2}}){_ORD},?\s+(?P<y>{_YEAR4}|'\d{{2}})(?!\d)"
        rf"{_TIME_AFTER}",
        # 12 March 2024 / 12th of March, 2024 / 12-Mar-2024 / 12-MAR-24
        rf"(?<![\w.-]){_TIME_BEFORE}(?P<d>\d{{1,2}}){_ORD}(?:\s+(?:of\s+)?|-){_MONTH}(?:,?\s+|-)"
        rf"(?P<y>{_YEAR4}|(?<=-)\d{{2}})(?!\d){_TIME_AFTER}",
        # March 2024
        rf"(?<![\w]){_MONTH}\.?,?\s+(?P<y>{_YEAR4})(?!\d)",
        # March 12 / Mar 12th (no year)
        rf"(?<![\w]){_TIME_BEFORE}{_MONTH}\s+(?P<d>\d{{1,2}}){_ORD}(?!\w){_NOT_DAY}{_TIME_AFTER}",
        # 12 March / 12th of March (no year)
        rf"(?<![\w./-]){_TIME_BEFORE}(?P<d>\d{{1,2}}){_ORD}\s+(?:of\s+)?{_MONTH}{_TIME_AFTER}",
    ]
    return [_Pass("date", re.compile(p, flags), _numeric_date) for p in numeric] + [
        _Pass("date", re.compile(p, flags), _named_date) for p in named
    ]


# -- contact details, identifiers, ages, addresses ---------------------------------------------------


def _url_span(match: re.Match[str]) -> tuple[int, int]:
    """URLs end before trailing sentence punctuation."""
    start, end = match.span()
    while end > start and match.string[end - 1] in ".,;:!?)]}'\"":
        end -= 1
    return start, end


def _phone_span(match: re.Match[str]) -> tuple[int, int] | None:
    """International and labelled numbers need 7-15 digits (E.164 allows 15)."""
    digits = sum(ch.isdigit() for ch in match.group("phi"))
    return _phi_span(match) if 7 <= digits <= 15 else None


def _labelled_phone_span(match: re.Match[str]) -> tuple[int, int] | None:
    digits = sum(ch.isdigit() for ch in match.group("phi"))
    return _phi_span(match) if 4 <= digits <= 15 else None


_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC"
    "|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC|PR"
)
_CITY_STATE_ZIP = (
    rf"[A-Z][A-Za-z.'-]+(?:\s+[A-Z][A-Za-z.'-]+){{0,2}},\s*(?:{_STATES})\s+\d{{5}}(?:-\d{{4}})?\b"
)
#: Title-case suffixes; upper-case only where the word cannot be clinical ("ST" segment, "CT", "DR").
_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Place|Pl|Way|Terrace|Parkway"
    r"|Pkwy|Highway|Hwy|Circle|Square|STREET|AVENUE|AVE|ROAD|BOULEVARD|BLVD|LANE|DRIVE|COURT|PLACE"
    r"|TERRACE|PARKWAY|HIGHWAY)\b"
)
_ID_LABEL = (
    r"(?i:\b(?:MRN|MR\s?#|medical\s+record(?:\s+(?:number|no\.?|#))?|accession(?:\s+(?:number|no\.?|#))?"
    r"|acc(?:ession)?\.?\s*(?:#|no\.?)|acc|patient\s+id|pt\.?\s+id|study\s+id|exam\s+id|order\s+(?:number|no\.?|#)"
    r"|requisition(?:\s+(?:number|no\.?|#))?|encounter(?:\s+(?:number|no\.?|#|id))?|CSN|FIN|SSN|ID)"
    r"(?![\w]))"
)


def _contact_passes() -> list[_Pass]:
    return [
        _Pass(
            "email", re.compile(r"(?<![\w.+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
        ),
        _Pass("url", re.compile(r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"]+"), _url_span),
    ]


def _phone_passes() -> list[_Pass]:
    extension = r"(?:\s*(?:x|ext\.?|extension)\s*\d{1,6})?"
    us = (
        r"(?<![\w+])(?:\+?1[\s.-]?)?"
        r"(?:\(\d{3}\)\s?\d{3}[\s.-]\d{4}|\d{3}(?P<sep>[.-])\d{3}(?P=sep)\d{4})(?!\d)" + extension
    )
    international = r"(?<![\w+])(?P<phi>\+\d{1,3}(?:[\s.-]?(?:\(\d{1,4}\)|\d{1,5})){2,6})(?!\d)" + extension
    labelled = (
        r"(?i:\b(?:phone|telephone|tel|fax|pager|beeper|mobile|cell\s+phone)\b\.?\s*(?:no\.?|number|#)?\s*[:#]?\s*)"
        r"(?P<phi>\+?\(?\d[\d\s().-]{2,}\d)(?!\d)"
    )
    return [
        _Pass("id", re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")),  # SSN
        _Pass("phone", re.compile(us)),
        _Pass("phone", re.compile(international), _phone_span),
        _Pass("phone", re.compile(labelled), _labelled_phone_span),
    ]


def _id_passes() -> list[_Pass]:
    labelled = (
        _ID_LABEL + r"\s*(?:#|no\.?|number)?\s*[:#=]?\s*"
        r"(?P<phi>(?=[A-Za-z0-9-]*\d)[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?![\w])"
    )
    return [
        _Pass("id", re.compile(labelled)),
        _Pass("id", re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?!\.?\d)")),  # DICOM UIDs and the like
        _Pass("id", re.compile(r"(?<![\w-])[A-Za-z]{1,4}-?\d{5,}[A-Za-z0-9]*(?![\w])")),  # A1234567
        _Pass("id", re.compile(r"(?<![\w.,])\d{6,}(?![\w]|[.,]\d)")),
    ]


def _age_passes() -> list[_Pass]:
    age = r"(?P<phi>9\d|1[0-2]\d)"
    patterns = [
        rf"(?<![\w.]){age}(?:\s*-\s*|\s+)(?:years?|yrs?|y)(?:\s*-\s*|\s+)old\b",
        rf"(?<![\w.]){age}\s+(?:years?|yrs?)\s+of\s+age\b",
        rf"(?<![\w.]){age}\s*(?:yo|y/o|y\.o\.)(?![\w])",
        rf"\b(?:age|aged)\s*:?\s*{age}(?![\w%]|\.\d)",
    ]
    return [_Pass("age", re.compile(p, re.IGNORECASE)) for p in patterns]


def _address_passes() -> list[_Pass]:
    unit = r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|#)\.?\s*#?\s*[A-Za-z0-9-]+)?"
    street = (
        rf"(?<![\w.-])\d{{1,6}}[A-Za-z]?\s+(?:[NSEW]\.?\s+)?(?:[A-Z][A-Za-z'.-]*\s+){{1,4}}{_STREET_SUFFIX}"
        rf"{unit}(?:,\s*{_CITY_STATE_ZIP})?"
    )
    return [
        _Pass("address", re.compile(street)),
        _Pass("address", re.compile(r"(?i)\bP\.?\s?O\.?\s*Box\s+\d+\b")),
        _Pass("address", re.compile(rf"(?<![\w\[]){_CITY_STATE_ZIP}")),
    ]


# -- names -------------------------------------------------------------------------------------------

#: Capitalised words that follow titles and roles but are not names: articles, departments, report
#: vocabulary and credentials. Each name token is checked against it, so "discussed with the ED" or
#: "DISCUSSED WITH DR. SMITH BY TELEPHONE" keep their other words.
_NOT_NAMES_TEXT = """
    an and or the of on at in to for with by from via as is was were be has had have who which that this
    these those it we he she they his her their no not there here again also all any per re regarding
    about over after before during today tonight yesterday time date am pm a.m. p.m. md m.d. m.d do d.o.
    rn r.n. np n.p. pa pa-c phd ph.d. mbbs frcr frcpc dr mr mrs ms mx prof doctor miss attending
    resident fellow physician physicians radiologist radiologists technologist nurse nursing staff team
    service services department dept clinic clinician hospital house officer on-call call covering
    referring ordering primary care provider emergency ed er icu micu sicu ccu pacu or ir ct cta mri mr
    us pet pacs radiology surgery surgical medicine oncology cardiology pulmonary neurology urology
    orthopedics assistant patient pt family findings finding impression indication history technique
    comparison examination exam conclusion recommendation recommendations notification addendum report
    results result study images image telephone phone pager person verbal verbally left right bilateral
    stable unchanged normal new chest out off up
"""
NOT_NAMES = frozenset(_NOT_NAMES_TEXT.split())
_STOP = "|".join(re.escape(word) for word in sorted(NOT_NAMES, key=len, reverse=True))
#: An initial ("J.", or "J" before another capitalised word) or a capitalised word of two letters or
#: more, hyphens and apostrophes inside ("O'Brien", "Smith-Jones") but not a possessive "'s"; never one
#: of NOT_NAMES.
_NAME_TOKEN = (
    rf"(?!(?i:{_STOP})(?![A-Za-z'’-]))"
    r"(?:[A-Z]\.|[A-Z][A-Za-z]+(?:['’-](?!s\b)[A-Za-z]+)*|[A-Z](?:['’-](?!s\b)[A-Za-z]+)+"
    r"|[A-Z](?=[ \t]+[A-Z][A-Za-z]))"
)
_NAMES = rf"(?<![\w\[]){_NAME_TOKEN}(?:(?:[ \t]+|,[ \t]*){_NAME_TOKEN}){{0,3}}"
_TITLE = r"(?:(?:Drs|Dr|Mr|Mrs|Ms|Mx|Prof)\.?|Miss|Doctor|DRS?\.|PROF\.|DOCTOR)"
_ROLE = (
    r"(?i:\b(?:discussed\s+with|reported\s+by|signed(?:\s+by)?|dictated\s+by|reviewed\s+by|read\s+by|verified\s+by"
    r"|approved\s+by|transcribed\s+by|communicated\s+to|conveyed\s+to|spoke\s+with|spoken\s+to|notified"
    r"|paged|attending|resident|fellow|physician|radiologist|technologist|provider)\b)"
)


def _name_passes() -> list[_Pass]:
    credentials = r"(?:M\.D\.|MD|D\.O\.|Ph\.D\.|PhD|MBBS|FRCR|FRCPC|R\.N\.|N\.P\.|PA-C)(?![\w])"
    return [
        _Pass(
            "name", re.compile(rf"{_ROLE}[ \t]*[:,-]?\s*(?:(?i:dr|mr|mrs|ms|prof)\.?\s+)?(?P<phi>{_NAMES})")
        ),
        _Pass(
            "name", re.compile(rf"(?<![\w.])(?:Drs|DRS)\.?\s*(?P<phi>{_NAMES}(?:\s*(?:,|and|&)\s*{_NAMES})+)")
        ),
        _Pass("name", re.compile(rf"(?<![\w.]){_TITLE}\s*(?P<phi>{_NAMES})")),
        _Pass("name", re.compile(rf"(?P<phi>{_NAMES}),\s*{credentials}")),
    ]


_PASSES: tuple[_Pass, ...] = (
    *_contact_passes(),
    *_date_passes(),
    *_phone_passes(),
    *_id_passes(),
    *_age_passes(),
    *_address_passes(),
    *_name_passes(),
)
_REDACTED = _Pass("redacted", re.compile(r"_{3,}"))


# -- known values ------------------------------------------------------------------------------------

_DICOM_DATE = re.compile(r"((?:19|20)\d{2})(\d{2})(\d{2})(?:\d{2,6}(?:\.\d+)?)?(?:[+-]\d{4})?")
_ISO_DATE = re.compile(r"((?:19|20)\d{2})[-/.](\d{1,2})[-/.](\d{1,2})")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/((?:19|20)\d{2})")
_EU_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.((?:19|20)\d{2})")


def parse_known_date(value: str) -> dt.date | None:
    """A header value that is a date (DICOM DA/DT, ISO, US ``M/D/YYYY``, European ``D.M.YYYY``)."""
    value = value.strip()
    for pattern, order in ((_DICOM_DATE, "ymd"), (_ISO_DATE, "ymd"), (_US_DATE, "mdy"), (_EU_DATE, "dmy")):
        match = pattern.fullmatch(value)
        if match:
            parts = dict(zip(order, map(int, match.groups()), strict=True))
            try:
                return dt.date(parts["y"], parts["m"], parts["d"])
            except ValueError:
                return None
    return None


def date_renderings(day: dt.date) -> set[str]:
    """The ways a report may write one date, so a known DICOM date is found whatever its format."""
    y, m, d, yy = day.year, day.month, day.day, day.year % 100
    name = MONTHS[m - 1]
    numeric = {
        f"{y:04d}{m:02d}{d:02d}", f"{y}-{m:02d}-{d:02d}", f"{y}-{m}-{d}", f"{y}/{m:02d}/{d:02d}",
        f"{y}.{m:02d}.{d:02d}", f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y}", f"{m:02d}/{d:02d}/{yy:02d}",
        f"{m}/{d}/{yy:02d}", f"{m:02d}-{d:02d}-{y}", f"{m}-{d}-{y}", f"{d:02d}.{m:02d}.{y}", f"{d}.{m}.{y}",
        f"{d:02d}/{m:02d}/{y}", f"{d}/{m}/{y}",
    }  # fmt: skip
    named = set()
    for month in {name, name[:3], name[:3] + "."}:
        named |= {f"{month} {d}, {y}", f"{month} {d} {y}", f"{d} {month} {y}", f"{d}-{month}-{y}"}
    return numeric | named


def _known_groups(known: Iterable[str]) -> dict[str, set[str]]:
    """Known values by placeholder: dates (with all renderings), values with digits as IDs, else names.

    DICOM person names are split at ``^`` and ``=`` so each component is found on its own; other
    multi-word values (an institution) are matched whole, since their words alone are common.
    """
    groups: dict[str, set[str]] = {"date": set(), "id": set(), "name": set()}
    for value in known:
        for part in re.split(r"[\^=]", value):
            part = " ".join(part.split())
            if len(part) < 2 or not any(ch.isalnum() for ch in part):
                continue
            day = parse_known_date(part)
            if day is not None:
                groups["date"] |= date_renderings(day) | {part}
            elif any(ch.isdigit() for ch in part):
                groups["id"] |= _id_variants(part)
            else:
                groups["name"].add(part)
    return groups


def _id_variants(value: str) -> set[str]:
    """An ID also as written without separators or leading zeros (``ACC-00123`` -> ``ACC00123``)."""
    variants = {value}
    compact = re.sub(r"[\s./-]", "", value)
    unpadded = value.lstrip("0")
    variants |= {v for v in (compact, unpadded) if len(v) >= 4}
    return variants


def _alternation(values: Iterable[str]) -> str:
    """Longest first, and whitespace inside a value matches any whitespace in the text."""
    ordered = sorted(set(values), key=lambda v: (-len(v), v))
    return "|".join(r"\s+".join(re.escape(word) for word in value.split()) for value in ordered)


@functools.lru_cache(maxsize=256)
def _known_passes(known: tuple[str, ...]) -> tuple[_Pass, ...]:
    """Passes for one study's known values; cached because every section of a study repeats them."""
    passes = []
    for category, values in _known_groups(known).items():
        if not values:
            continue
        token = rf"(?:{_alternation(values)})(?!\w)"
        # a run of known names ("Doe, John", "JOHN DOE") becomes one placeholder
        joined = rf"(?<!\w){token}(?:(?:\s+|,\s*){token})*" if category == "name" else rf"(?<!\w){token}"
        passes.append(_Pass(category, re.compile(joined, re.IGNORECASE)))
    return tuple(passes)


def scrub(text: str, known: Iterable[str] = ()) -> Scrubbed:
    """Replace PHI in report text with bracketed placeholders (method ``SCRUB_METHOD``).

    Order: MIMIC ``___`` marks -> the study's known values -> emails, URLs -> dates (with adjacent
    times) -> SSNs, phone numbers -> labelled and unlabelled IDs -> ages over 89 -> street addresses
    -> names after titles, roles and before credentials. Earlier passes leave placeholders that later
    passes cannot match, so one span is counted once. Clinical text (measurements, vertebral levels,
    fractions, years) is left as it was; see docs/decisions/0007 for what is and is not caught.
    """
    counts: dict[str, int] = {}
    out = _run(text or "", _REDACTED, counts)
    values = tuple(str(value) for value in known if value is not None)  # pydicom PersonName -> str
    for step in (*_known_passes(values), *_PASSES):
        out = _run(out, step, counts)
    return Scrubbed(out, counts, SCRUB_METHOD)


__all__ = [
    "ACCESSION",
    "PLACEHOLDERS",
    "SCRUB_METHOD",
    "STUDY_UID",
    "Duplicate",
    "RawReport",
    "ReportError",
    "ReportIndex",
    "Scrubbed",
    "date_renderings",
    "parse_known_date",
    "scrub",
    "section_name",
    "split_sections",
]
