"""Safe parsing of PubMed Central JATS articles (``.nxml``) into metadata and figures.

Threat model: the XML comes from a public mirror and millions of files; any one of them may be
broken or hostile, and the parser runs inside batch workers that hold credentials and local files.

* Entity expansion is never performed. An internal DTD subset that declares entities (billion
  laughs, external entities such as ``SYSTEM "file:///etc/passwd"``, parameter entities that pull in a
  remote DTD) is refused with ``xml_entities``; so is any entity reference left unexpanded in the
  tree. Three independent checks back each other up: a scan of the raw bytes for ``<!ENTITY``
  (in UTF-8/16/32), the parsed internal subset's entity declarations, and a walk for entity nodes.
* No DTD is loaded and nothing is fetched (``load_dtd=False``, ``no_network=True``). The
  ``<!DOCTYPE article PUBLIC "-//NLM//DTD JATS ..." "JATS-archivearticle1.dtd">`` line every PMC file
  carries is accepted: it names a DTD without loading it.
* Size is bounded: input over ``max_bytes`` is refused before parsing (``xml_too_large``), and
  ``huge_tree=False`` keeps libxml2's limits on text-node size and nesting depth.
* Everything else that is not well-formed XML is ``xml_malformed``, and a well-formed document whose
  root is not ``<article>`` is ``xml_not_article``. Callers quarantine the input with ``code: detail``.

Beyond that the module is lenient: missing metadata becomes None, odd markup is rendered as text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from lxml import etree

from medcurate.sources.pmc.licenses import normalize_license
from medcurate.sources.pmc.panels import Panel, split_panels
from medcurate.sources.pmc.text import element_text, local_name, render_spans, sentences_at

__all__ = [
    "ERROR_CODES",
    "MAX_CITING",
    "Article",
    "CitingSentence",
    "Figure",
    "JatsError",
    "figure_by_id",
    "parse_article",
]

ERROR_CODES = frozenset({"xml_malformed", "xml_entities", "xml_too_large", "xml_not_article"})
#: Citing sentences kept per figure: enough context, bounded record size.
MAX_CITING = 20
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
ALI_LICENSE_REF = "{http://www.niso.org/schemas/ali/1.0/}license_ref"
_DETAIL_CHARS = 300
_ENTITY_MARKERS = tuple(
    "<!ENTITY".encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)
#: Where a figure sits, nearest enclosing element first wins.
_CONTAINERS = {
    "fig-group": "fig-group",
    "boxed-text": "boxed-text",
    "supplementary-material": "supplementary-material",
    "floats-group": "floats-group",
    "app": "app",
    "app-group": "app",
    "body": "body",
    "back": "back",
    "front": "front",
}
#: Elements whose text is one "paragraph" for locating a citing sentence.
_CONTEXTS = frozenset({"p", "td", "th", "list-item", "def", "title"})
#: An xref inside one of these is part of a float (a caption, a table), not running text.
_FLOATS = frozenset({"fig", "fig-group", "table-wrap", "table-wrap-group", "supplementary-material", "media"})
_RANGE_GLUE = re.compile(r"\s*(?:[-–—]|to|through)\s*", re.I)
#: Largest range "Figs. 2–N" we expand (a bigger gap means the xrefs were not a range).
_MAX_RANGE = 30
_PMCID = re.compile(r"(?:PMC)?\s*0*(\d+)", re.I)
_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.I)
_DIGITS = re.compile(r"\d+")
_FOUR_DIGITS = re.compile(r"\d{4}")


class JatsError(ValueError):
    """A JATS document we refuse to read; ``code`` is one of ``ERROR_CODES``."""

    def __init__(self, code: str, detail: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown JatsError code {code!r}")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    def __reduce__(self) -> tuple[type[JatsError], tuple[str, str]]:
        # Workers (Spark, multiprocessing) pickle exceptions; the default would call cls(message).
        return type(self), (self.code, self.detail)


@dataclass(frozen=True)
class CitingSentence:
    """A sentence of the running text that cites a figure, with the title of its section."""

    section: str | None
    text: str


@dataclass(frozen=True)
class Figure:
    id: str | None
    label: str | None
    title: str | None
    caption: str  # clean caption text: title + paragraphs joined with a space ("" when none)
    graphics: tuple[str, ...]  # xlink:href of each <graphic>, document order, as PMC writes them
    panels: tuple[Panel, ...]
    compound: bool
    citing: tuple[CitingSentence, ...]
    container: str  # body, fig-group, floats-group, boxed-text, supplementary-material, app, back, front


@dataclass(frozen=True)
class Article:
    pmcid: str | None  # always "PMC" + digits
    pmid: str | None
    doi: str | None
    title: str | None
    journal: str | None
    year: int | None
    article_type: str | None
    keywords: tuple[str, ...]
    license: str | None
    license_url: str | None
    copyright: str | None
    figures: tuple[Figure, ...]

    def figure(self, fig_id: str) -> Figure | None:
        """The figure with ``id == fig_id`` (None if absent)."""
        return figure_by_id(self, fig_id)


def figure_by_id(article: Article, fig_id: str) -> Figure | None:
    """The figure of ``article`` whose ``id`` is ``fig_id``, or None."""
    return next((f for f in article.figures if f.id == fig_id), None)


# --- safe parsing -------------------------------------------------------------------------------------


def _truncate(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= _DETAIL_CHARS else message[: _DETAIL_CHARS - 1] + "…"


_PARSERS = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's parser (settings in the module docstring).

    Reused because setting up a fresh libxml2 parser context costs about as much as parsing a
    typical article; one per thread because lxml advises against sharing a parser between threads
    (they would take turns). Each parse starts from a clean state (lxml resets the context and its
    error log), so nothing carries over from one document to the next.
    """
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
    return parser


class _Parsed(NamedTuple):
    """The root and, from the same walk that looks for entity references, what the rest needs."""

    root: etree._Element
    figs: list[etree._Element]
    bodies: list[etree._Element]
    backs: list[etree._Element]


def _parse(xml: bytes, max_bytes: int) -> _Parsed:
    """The parsed document, or JatsError; see the module docstring for what is refused."""
    if isinstance(xml, str):
        data = xml.encode("utf-8")
    elif isinstance(xml, bytes | bytearray | memoryview):
        data = bytes(xml)
    else:
        raise TypeError(f"parse_article needs bytes, not {type(xml).__name__}")
    if len(data) > max_bytes:
        raise JatsError("xml_too_large", f"{len(data)} bytes exceeds the limit of {max_bytes} bytes")
    # The UTF-16/32 markers hold NUL bytes, so they can only occur in data that has one: most
    # documents need one byte scan and one search, not five searches.
    nul = b"\x00" in data
    if any(marker in data for marker in _ENTITY_MARKERS if nul or b"\x00" not in marker):
        raise JatsError(
            "xml_entities",
            "the document declares entities (<!ENTITY ...>); entity declarations are refused "
            "(entity expansion and external entities are attack vectors)",
        )
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        message = str(exc)
        if re.search(r"Entity '[^']*' not defined|EntityRef|entity reference loop", message):
            raise JatsError(
                "xml_entities", f"undeclared or looping entity reference: {_truncate(message)}"
            ) from None
        raise JatsError("xml_malformed", _truncate(message) or "not well-formed XML") from None
    except ValueError as exc:  # lxml refuses some inputs before libxml2 sees them
        raise JatsError("xml_malformed", _truncate(str(exc))) from None
    if root is None:
        raise JatsError("xml_malformed", "no root element")
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None:
        names = [entity.name for entity in dtd.iterentities()]
        if names:
            raise JatsError(
                "xml_entities", f"the internal DTD subset declares entities: {', '.join(names[:5])}"
            )
    # One walk of the tree finds entity references (refused at the first) and collects the figures
    # and running-text containers, instead of one walk for each.
    found: dict[str, list[etree._Element]] = {"fig": [], "body": [], "back": []}
    for node in root.iter(etree.Entity, "{*}fig", "{*}body", "{*}back"):
        if node.tag is etree.Entity:
            raise JatsError("xml_entities", f"unexpanded entity reference &{node.name}; in the document")
        found[local_name(node)].append(node)
    if local_name(root) != "article":
        raise JatsError("xml_not_article", f"root element is <{local_name(root) or root.tag}>, not <article>")
    return _Parsed(root, found["fig"], found["body"], found["back"])


# --- metadata -----------------------------------------------------------------------------------------


def _text(el: etree._Element | None) -> str | None:
    text = element_text(el) if el is not None else ""
    return text or None


def _normalize_pmcid(value: str) -> str | None:
    match = _PMCID.fullmatch(value.strip())
    return f"PMC{match.group(1)}" if match and int(match.group(1)) > 0 else None


def _normalize_doi(value: str) -> str | None:
    value = _DOI_PREFIX.sub("", value.strip())
    return value or None


def _article_ids(meta: etree._Element | None) -> tuple[str | None, str | None, str | None]:
    """(pmcid, pmid, doi) from ``article-meta/article-id``."""
    ids: dict[str, str] = {}
    if meta is not None:
        for node in meta.findall("{*}article-id"):
            kind = (node.get("pub-id-type") or "").strip().lower()
            value = "".join(node.itertext()).strip()
            if value and kind not in ids:
                ids[kind] = value
    pmcid = None
    for kind in ("pmcid", "pmc", "pmc-uid"):
        if kind in ids and (pmcid := _normalize_pmcid(ids[kind])):
            break
    pmid = ids.get("pmid") if _DIGITS.fullmatch(ids.get("pmid", "")) else None
    doi = _normalize_doi(ids["doi"]) if "doi" in ids else None
    return pmcid, pmid, doi


def _journal(front: etree._Element | None) -> str | None:
    journal_meta = front.find("{*}journal-meta") if front is not None else None
    if journal_meta is None:
        return None
    for path in ("{*}journal-title-group/{*}journal-title", "{*}journal-title"):
        if title := _text(journal_meta.find(path)):
            return title
    ids = {
        (n.get("journal-id-type") or ""): "".join(n.itertext()).strip()
        for n in journal_meta.findall("{*}journal-id")
    }
    return ids.get("nlm-ta") or ids.get("iso-abbrev") or None


def _date_rank(date: etree._Element) -> int:
    """Preference of a ``pub-date``: electronic publication, then print, then the issue, then any."""
    kind = (date.get("pub-type") or date.get("date-type") or "").lower()
    form = (date.get("publication-format") or "").lower()
    if kind == "epub" or (kind == "pub" and form == "electronic"):
        return 0
    if kind in ("ppub", "epub-ppub") or (kind == "pub" and form == "print"):
        return 1
    if kind == "collection":
        return 2
    return 3


def _year(meta: etree._Element | None) -> int | None:
    if meta is None:
        return None
    dates = sorted(meta.findall("{*}pub-date"), key=_date_rank)  # stable: document order within a rank
    for date in dates:
        year = date.find("{*}year")
        match = _FOUR_DIGITS.search("".join(year.itertext())) if year is not None else None
        if match and 1500 <= int(match.group(0)) <= 2200:
            return int(match.group(0))
    return None


def _dedupe(values: Iterable[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    kept = []
    for value in values:
        key = value.casefold()
        if value and key not in seen:
            seen.add(key)
            kept.append(value)
    return tuple(kept)


def _keywords(meta: etree._Element | None) -> tuple[str, ...]:
    """Author keywords and MeSH terms (``kwd``), then typed subject terms (not section headings)."""
    if meta is None:
        return ()
    values = [element_text(kwd) for kwd in meta.iter("{*}kwd")]
    categories = meta.find("{*}article-categories")
    if categories is not None:
        for subject in categories.iter("{*}subject"):
            group = subject.getparent()
            kind = (group.get("subj-group-type") or "").lower() if group is not None else ""
            if kind and kind != "heading":
                values.append(element_text(subject))
    return _dedupe(values)


def _license(permissions: etree._Element | None) -> tuple[str | None, str | None]:
    """(license id, URL) from ``<license>``: its xlink:href, then ``<ali:license_ref>``, then its prose.

    The first candidate we can identify wins; if none is identifiable but one is present the
    license is "other"; with no ``<license>`` (or an empty one) the answer is (None, None).
    """
    if permissions is None:
        return None, None
    candidates: list[str] = []
    licenses = permissions.findall("{*}license")
    for lic in licenses:
        candidates.append(lic.get(XLINK_HREF) or lic.get("href") or "")
    refs = permissions.iter("{*}license_ref")
    candidates.extend("".join(ref.itertext()) for ref in refs)
    for lic in licenses:  # a CC URL linked from the prose: <ext-link xlink:href="...">CC BY</ext-link>
        candidates.extend(link.get(XLINK_HREF) or "" for link in lic.iter("{*}ext-link", "{*}uri"))
    for lic in licenses:
        paragraphs = lic.findall("{*}license-p")
        candidates.extend(element_text(p) for p in paragraphs)
        if not paragraphs:
            candidates.append(element_text(lic))
        kind = (lic.get("license-type") or "").strip()
        if kind.lower().replace("_", "-") not in ("", "open-access", "openaccess"):
            candidates.append(kind)
    results = [normalized_license(c) for c in candidates if c and c.strip()]
    results = [r for r in results if r[0] is not None]
    if not results:
        return None, None
    chosen = next((r for r in results if r[0] != "other"), results[0])
    url = chosen[1] or next((u for i, u in results if i == chosen[0] and u), None)
    return chosen[0], url


_REMEMBER_LICENSE_CHARS = 2048


@lru_cache(maxsize=1024)
def _remembered_license(value: str) -> tuple[str | None, str | None]:
    return normalize_license(value)


def normalized_license(value: str | None) -> tuple[str | None, str | None]:
    """``normalize_license``, remembered for exact strings: the same URLs, file-list codes and
    license paragraphs come back article after article, and each costs a dozen regex searches.
    Only short strings are remembered, so a hostile document cannot park megabytes in the cache."""
    if type(value) is str and len(value) <= _REMEMBER_LICENSE_CHARS:
        return _remembered_license(value)
    return normalize_license(value)


def _copyright(permissions: etree._Element | None) -> str | None:
    if permissions is None:
        return None
    if statement := _text(permissions.find("{*}copyright-statement")):
        return statement
    year = _text(permissions.find("{*}copyright-year"))
    holder = _text(permissions.find("{*}copyright-holder"))
    return " ".join(p for p in ("©", year, holder) if p) if (year or holder) else None


# --- figures ------------------------------------------------------------------------------------------


def _container(fig: etree._Element) -> str:
    for ancestor in fig.iterancestors():
        if (kind := _CONTAINERS.get(local_name(ancestor))) is not None:
            return kind
    return "body"


def _caption(caption: etree._Element | None) -> tuple[str | None, str]:
    """(title, full caption text): the title, then every other caption block, joined with a space."""
    if caption is None:
        return None, ""
    title = None
    parts: list[str] = []
    if caption.text and caption.text.strip():
        parts.append(" ".join(caption.text.split()))
    for child in caption:
        text = element_text(child) if local_name(child) else ""
        if local_name(child) == "title" and title is None:
            title = text or None
        if text:
            parts.append(text)
        if child.tail and child.tail.strip():
            parts.append(" ".join(child.tail.split()))
    return title, " ".join(parts)


def _graphics(fig: etree._Element) -> tuple[str, ...]:
    hrefs = []
    for graphic in fig.iter("{*}graphic"):
        href = (graphic.get(XLINK_HREF) or graphic.get("href") or "").strip()
        if href and href not in hrefs:
            hrefs.append(href)
    return tuple(hrefs)


@dataclass
class _Draft:
    element: etree._Element
    id: str | None
    label: str | None
    title: str | None
    caption: str
    graphics: tuple[str, ...]
    container: str


def _drafts(figs: list[etree._Element]) -> list[_Draft]:
    drafts = []
    for fig in figs:
        title, caption = _caption(fig.find("{*}caption"))
        if not caption:
            group = next((a for a in fig.iterancestors() if local_name(a) == "fig-group"), None)
            if group is not None:
                title, caption = _caption(group.find("{*}caption"))
        fig_id = (fig.get("id") or "").strip() or None
        label = _text(fig.find("{*}label"))
        drafts.append(_Draft(fig, fig_id, label, title, caption, _graphics(fig), _container(fig)))
    return drafts


# --- citing sentences ---------------------------------------------------------------------------------


def _section_title(context: etree._Element, titles: dict[etree._Element, str | None]) -> str | None:
    """Title of the nearest enclosing section-like element (``sec``, ``app``, ``boxed-text``).

    ``titles`` remembers each section's rendered title, since most sections hold several citing
    paragraphs.
    """
    for ancestor in context.iterancestors():
        name = local_name(ancestor)
        if name in ("sec", "app", "boxed-text", "ack"):
            if ancestor in titles:
                text = titles[ancestor]
            else:
                title = ancestor.find("{*}title")
                if title is None and name == "boxed-text":
                    title = ancestor.find("{*}caption/{*}title")
                text = titles[ancestor] = _text(title)
            if text:
                return text
        if name in ("body", "back", "article", "sub-article"):
            return None
    return None


def _context_of(xref: etree._Element) -> etree._Element | None:
    """The paragraph-like element whose text holds ``xref``; None inside a caption or a table."""
    for ancestor in xref.iterancestors():
        name = local_name(ancestor)
        if name in _FLOATS:
            return None
        if name in _CONTEXTS:
            return ancestor
    return None


def _scopes(bodies: list[etree._Element], backs: list[etree._Element]) -> Iterator[etree._Element]:
    """Running text that may cite figures: every ``<body>`` and the appendices in ``<back>``."""
    yield from bodies
    for back in backs:
        yield from (
            app for app in back.iter("{*}app") if not any(local_name(a) == "app" for a in app.iterancestors())
        )


def _label_number(label: str | None) -> tuple[str, int] | None:
    """("figure", 3) from "Figure 3" / "Fig. 3." ; ("supplementary figure s", 1) from "... S1"."""
    match = re.fullmatch(r"(.*?)\s*(\d+)\s*[.:]?", label or "")
    if match is None:
        return None
    prefix = re.sub(r"^fig(?:ure)?s?\.?(?=\s|$)", "figure", match.group(1).strip().lower())
    return prefix, int(match.group(2))


class _Ranges:
    """Resolves "Figs. 2–4" (two xrefs, to figures 2 and 4) to the figures strictly inside it."""

    def __init__(self, drafts: list[_Draft]) -> None:
        self.numbers = [_label_number(d.label) for d in drafts]
        self.by_number: dict[tuple[str, int], list[int]] = {}
        for index, number in enumerate(self.numbers):
            if number is not None:
                self.by_number.setdefault(number, []).append(index)

    def inside(self, low: int, high: int) -> list[int]:
        """By label number when both ends are numbered alike ("Figure 2" .. "Figure 4": a figure placed
        elsewhere, e.g. in ``floats-group``, still belongs), else by document order."""
        start, end = self.numbers[low], self.numbers[high]
        if start and end and start[0] == end[0]:
            if not 1 < end[1] - start[1] <= _MAX_RANGE:
                return []
            return [i for n in range(start[1] + 1, end[1]) for i in self.by_number.get((start[0], n), ())]
        return list(range(low + 1, high)) if 1 < high - low <= _MAX_RANGE else []


def _citations(parsed: _Parsed, drafts: list[_Draft]) -> list[list[CitingSentence]]:
    """Citing sentences per figure (index-aligned with ``drafts``), document order, deduplicated."""
    targets_by_id: dict[str, list[int]] = {}
    for index, draft in enumerate(drafts):
        if draft.id:
            targets_by_id.setdefault(draft.id, []).append(index)
        for group in (a for a in draft.element.iterancestors() if local_name(a) == "fig-group"):
            if group_id := (group.get("id") or "").strip():
                targets_by_id.setdefault(group_id, []).append(index)

    # Fig xrefs in document order, each with its figures and its paragraph.
    refs: list[tuple[etree._Element, list[int], etree._Element]] = []
    for scope in _scopes(parsed.bodies, parsed.backs):
        for xref in scope.iter("{*}xref"):
            ref_type = xref.get("ref-type")
            if ref_type not in (None, "fig"):
                continue
            targets = [i for rid in (xref.get("rid") or "").split() for i in targets_by_id.get(rid, ())]
            context = _context_of(xref) if targets else None
            if context is not None:
                refs.append((xref, list(dict.fromkeys(targets)), context))

    # Render each paragraph once, locating its xrefs by offset (never by searching the text).
    where: dict[etree._Element, tuple[int, int, str]] = {}  # xref -> (paragraph no, sentence start, text)
    extra: dict[etree._Element, list[int]] = {}  # xref closing a range "2–4" -> figures inside it
    targets_of = {xref: targets for xref, targets, _ in refs}
    ranges: _Ranges | None = None  # built on the first range: most articles have none
    paragraphs: dict[etree._Element, set[etree._Element]] = {}
    for xref, _, context in refs:
        paragraphs.setdefault(context, set()).add(xref)
    # Rendered first, all of them, then split: each loop keeps its own code and data warm.
    rendered = [render_spans(context, wanted.__contains__) for context, wanted in paragraphs.items()]
    # Only the sentences holding a reference are needed; one is known by its start offset.
    located = [sentences_at(text, [start for _, start, _ in anchors]) for text, anchors in rendered]
    for number, ((text, anchors), spans) in enumerate(zip(rendered, located, strict=True)):
        for (element, _, _), (start, end) in zip(anchors, spans, strict=True):
            where[element] = (number, start, text[start:end])
        for index in range(1, len(anchors)):
            (first, _, first_end), (second, second_start, _) = anchors[index - 1], anchors[index]
            if spans[index - 1][0] != spans[index][0] or not _RANGE_GLUE.fullmatch(
                text[first_end:second_start]
            ):
                continue
            if ranges is None:
                ranges = _Ranges(drafts)
            inside = ranges.inside(targets_of[first][-1], targets_of[second][0])
            if inside:
                extra.setdefault(second, []).extend(inside)

    # A paragraph's section title is found among its ancestors, so paragraphs with one parent share it.
    sections: dict[etree._Element | None, str | None] = {}
    titles: dict[etree._Element, str | None] = {}
    citing: list[list[CitingSentence]] = [[] for _ in drafts]
    seen: list[set[tuple[int, int]]] = [set() for _ in drafts]
    for xref, targets, context in refs:
        found = where.get(xref)
        if found is None or not found[2]:
            continue
        number, sentence, text = found
        parent = context.getparent()
        if parent not in sections:
            sections[parent] = _section_title(context, titles)
        section = sections[parent]
        for index in [*extra.get(xref, ()), *targets]:
            if (number, sentence) in seen[index] or len(citing[index]) >= MAX_CITING:
                continue
            seen[index].add((number, sentence))
            citing[index].append(CitingSentence(section, text))
    return citing


# --- entry point --------------------------------------------------------------------------------------


def parse_article(xml: bytes, *, max_bytes: int = 64 * 2**20) -> Article:
    """Metadata and every figure of a JATS article; JatsError for input we refuse (see module doc)."""
    parsed = _parse(xml, max_bytes)
    root = parsed.root
    front = root.find("{*}front")
    meta = front.find("{*}article-meta") if front is not None else None
    pmcid, pmid, doi = _article_ids(meta)
    permissions = meta.find("{*}permissions") if meta is not None else None
    license_id, license_url = _license(permissions)
    drafts = _drafts(parsed.figs)
    citing = _citations(parsed, drafts)
    figures = []
    for draft, sentences in zip(drafts, citing, strict=True):
        panels = split_panels(draft.caption)
        figures.append(
            Figure(
                id=draft.id,
                label=draft.label,
                title=draft.title,
                caption=draft.caption,
                graphics=draft.graphics,
                panels=panels,
                compound=bool(panels),
                citing=tuple(sentences),
                container=draft.container,
            )
        )
    article_type = (root.get("article-type") or "").strip() or None
    return Article(
        pmcid=pmcid,
        pmid=pmid,
        doi=doi,
        title=_text(meta.find("{*}title-group/{*}article-title")) if meta is not None else None,
        journal=_journal(front),
        year=_year(meta),
        article_type=article_type,
        keywords=_keywords(meta),
        license=license_id,
        license_url=license_url,
        copyright=_copyright(permissions),
        figures=tuple(figures),
    )
