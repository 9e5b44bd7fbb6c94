"""License normalisation for PubMed Central Open Access articles.

A sample may only enter a release whose terms it allows, so every article's license has to be reduced
to one comparable id. PMC states it in many shapes: a Creative Commons URL in ``<license xlink:href>``
or ``<ali:license_ref>``, a short code in the OA file list (``CC BY-NC``, ``NO-CC CODE``), or free
prose in ``<license-p>``. Anything we cannot read confidently becomes ``"other"`` (treated as the most
restrictive) rather than being guessed into a permissive bucket.
"""

from __future__ import annotations

import re

#: License ids, from least to most restrictive. ``other`` is anything we could not identify.
LICENSE_IDS: tuple[str, ...] = (
    "cc0",
    "pd",
    "cc-by",
    "cc-by-sa",
    "cc-by-nd",
    "cc-by-nc",
    "cc-by-nc-sa",
    "cc-by-nc-nd",
    "other",
)
_RANK = {license_id: rank for rank, license_id in enumerate(LICENSE_IDS)}
_COMMERCIAL = frozenset({"cc0", "pd", "cc-by", "cc-by-sa", "cc-by-nd"})

# creativecommons.org/<kind>/<code>[/<version>][/<jurisdiction port>] ; "legalcode" and "deed.xx" are
# presentation variants of the same license, not ports, so they are excluded from the port group.
_CC_URL = re.compile(
    r"creativecommons\.org/(?P<kind>licenses|publicdomain)/(?P<code>[a-z0-9-]+)"
    r"(?:/(?P<version>\d+(?:\.\d+)?))?"
    r"(?:/(?!legalcode|deed)(?P<port>[a-z]{2,}(?:-[a-z]+)?)(?![a-z.]))?",
)
# "CC BY", "CC-BY-NC-ND 4.0", "cc by-nc-sa", "CC BY NC ND": the element list after "by".
_CC_CODE = re.compile(
    r"\bcc[\s_-]*by\b(?P<flags>(?:[\s_-]*(?:nc|sa|nd)\b)*)|(?<![\w/.-])by(?P<bare>(?:-(?:nc|sa|nd))+)\b"
)
_CC0 = re.compile(r"\bcc[\s_-]?0\b|\bcc[\s_-]?zero\b|publicdomain/zero|public\s+domain\s+dedication")
_NO_CC = re.compile(r"\bno[\s_-]*cc\b")
_PUBLIC_DOMAIN = re.compile(r"\bpublic[\s-]+domain\b|publicdomain/mark|licenses/publicdomain")
# Prose naming a Creative Commons license: "Creative Commons Attribution License",
# "Attribution-NonCommercial-NoDerivatives 4.0 International".
_CC_PROSE = re.compile(
    r"creative\s*commons|\battribution\b(?=[\s-]*(?:non|no[\s-]?deriv|share|\d|international|unported"
    r"|generic|licen[cs]e|\())"
)
_NONCOMMERCIAL = re.compile(r"non[\s-]?commercial")
_NODERIVS = re.compile(r"no[\s-]?deriv")
_SHAREALIKE = re.compile(r"share[\s-]?alike")


def _cc_id(nc: bool, sa: bool, nd: bool) -> str:
    """The id for a CC BY license with these elements; an impossible SA+ND pair resolves to ND."""
    if nc:
        return "cc-by-nc-nd" if nd else "cc-by-nc-sa" if sa else "cc-by-nc"
    return "cc-by-nd" if nd else "cc-by-sa" if sa else "cc-by"


def _from_cc_url(match: re.Match[str]) -> tuple[str, str | None]:
    """Id and canonical https URL from a parsed creativecommons.org URL."""
    kind, code, version, port = match["kind"], match["code"], match["version"], match["port"]
    if kind == "publicdomain":
        license_id = {"zero": "cc0", "mark": "pd"}.get(code)
        if license_id is None:
            return "other", None
    elif code == "publicdomain":  # the retired "Public Domain Certification" (licenses/publicdomain/)
        license_id = "pd"
    else:
        parts = code.split("-")
        if not parts or parts[0] != "by" or not set(parts[1:]) <= {"nc", "sa", "nd"}:
            return "other", None
        flags = set(parts[1:])
        license_id = _cc_id("nc" in flags, "sa" in flags, "nd" in flags)
    url = f"https://creativecommons.org/{kind}/{code}/"
    if version:
        url += f"{version}/"
        if port:
            url += f"{port}/"
    return license_id, url


def normalize_license(value: str | None) -> tuple[str | None, str | None]:
    """``(license id, canonical URL)`` from a URL, an OA file-list code or license prose.

    The URL is only given when the input held a creativecommons.org URL (file-list codes and prose do
    not say which version applies). Empty input gives ``(None, None)``; anything non-empty that we do
    not recognise gives ``("other", None)``.
    """
    if value is None:
        return None, None
    text = " ".join(value.split()).lower()
    if not text:
        return None, None
    if text in _RANK:  # already an id (idempotent)
        return text, None
    url_match = _CC_URL.search(text)
    if url_match is not None:
        return _from_cc_url(url_match)
    if _NO_CC.search(text):
        return "other", None
    if _CC0.search(text):
        return "cc0", None
    code = _CC_CODE.search(text)
    if code is not None:
        flags = set(re.findall(r"nc|sa|nd", code["flags"] or code["bare"] or ""))
        return _cc_id("nc" in flags, "sa" in flags, "nd" in flags), None
    if _CC_PROSE.search(text):
        nc = bool(_NONCOMMERCIAL.search(text))
        nd = bool(_NODERIVS.search(text))
        sa = bool(_SHAREALIKE.search(text))
        return _cc_id(nc, sa, nd), None
    if _PUBLIC_DOMAIN.search(text):
        return "pd", None
    return "other", None


def most_restrictive(*ids: str | None) -> str | None:
    """The most restrictive of ``ids`` (unknown ids count as ``other``); None when all are None."""
    present = [i if i in _RANK else "other" for i in ids if i is not None]
    if not present:
        return None
    return max(present, key=_RANK.__getitem__)


def allows_commercial_use(license_id: str | None) -> bool:
    """Whether a release that may be used commercially can include content under ``license_id``."""
    return license_id in _COMMERCIAL
