"""The original identifying values of a DICOM header, and a scanner that finds them again in a record.

Why a second line of defence: de-identification follows a table (PS3.15 Table E.1-1), and a table can
be incomplete, misconfigured, or bypassed later, when a caption, a report excerpt or a JSON field is
built from the original header. So before a sample reaches a shard, every string of its record is
scanned for the header's original identifying values; a hit quarantines the sample (fail closed).

A hit names the attribute and the field, never the value: quarantine reasons go to lineage and logs,
which must stay free of PHI themselves. For the same reason ``PhiValues`` never prints its values.

Matching (``find_phi``) works on *normalised tokens*: text is case-folded, every run of punctuation,
whitespace, ``^`` or ``_`` becomes one space, and a ``T`` between digits (ISO date-times) is a space too.
A value matches only as a whole run of tokens, so the ID ``12`` matches ``series 12`` but not ``12x``
or ``120 kVp``. Per kind of value:

* names (every PN): the full name in DICOM order, ``GIVEN FAMILY``, ``GIVEN MIDDLE FAMILY``,
  ``FAMILY, GIVEN``, and each of family, given and middle name alone when it has >= 3 characters;
* dates (every DA, the date part of every DT): ``YYYYMMDD``, ``YYYY-MM-DD``, ``MM/DD/YYYY``,
  ``DD.MM.YYYY`` (any separators), also without zero padding, and the full original DT value;
* identifiers (patient, accession, study, order and device IDs): >= 2 characters, also with their
  separators removed (``ACC-123`` also as ``ACC123``); a 1-character ID cannot be told from noise;
* UIDs that de-identification remaps (everything but class, transfer-syntax and standard UIDs);
* free-text descriptions and comments: the whole value, only when it has >= 2 tokens and >= 8
  characters. One-word descriptions (``CHEST``, ``AXIAL``, ``LOCALIZER``) are the vocabulary of
  imaging, identify no one, and would quarantine every scout image that kept its ImageType;
* everything else collected (addresses, phone numbers, institution, department, station, locations,
  AE titles, age): the whole value when it has >= 3 characters.

Limits, accepted: a value re-spelled beyond these renderings (a name abbreviated to initials, a date
written out as "2 January 1970", a phone number regrouped) is not found; numbers stored as JSON numbers
and dict keys are not scanned (keys are schema, numeric header values are measurements); private
attributes are not collected (their values are mostly vendor noise that would cause false hits, and
de-identification drops them all); a shifted date that happens to equal another original date is a false
hit (a rare, fail-closed quarantine). Text burned into pixels is out of scope here: the source
quarantines BurnedInAnnotation=YES and secondary-capture/ultrasound images instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Root of every UID the DICOM standard itself defines (SOP classes, transfer syntaxes, context groups,
#: coding schemes, well-known frames of reference): such UIDs identify nothing and are never remapped.
DICOM_ROOT = "1.2.840.10008."
#: UI attributes that name a kind of thing, not an instance: kept as they are (they say nothing of a
#: patient, and training and decoding need them).
KEPT_UID_KEYWORDS = _words(
    "TransferSyntaxUID CodingSchemeUID ContextUID MappingResourceUID EncryptedContentTransferSyntaxUID"
)
REMAPPED_CLASS_UIDS = frozenset({"ManufacturerDeviceClassUID"})
#: Attributes kept on purpose whose values are public by nature (the vendor's name is printed on every
#: scanner). An identifying value that is contained in one of them, as whole tokens (InstitutionName
#: "TOSHIBA" beside Manufacturer "TOSHIBA_MEC", as in pydicom's MR_small.dcm), is not collected: it
#: identifies no one, and collecting it would flag the kept Manufacturer in every record.
PUBLIC_KEYWORDS = _words("Manufacturer ManufacturerModelName Modality BodyPartExamined")

#: Identifiers: matched as whole tokens from 2 characters on.
ID_KEYWORDS = _words(
    """
    PatientID OtherPatientIDs IssuerOfPatientID AccessionNumber StudyID StudyIDIssuer AdmissionID
    IssuerOfAdmissionID ServiceEpisodeID IssuerOfServiceEpisodeID MedicalRecordLocator
    InsurancePlanIdentification RequestedProcedureID ScheduledProcedureStepID PerformedProcedureStepID
    PlacerOrderNumberImagingServiceRequest FillerOrderNumberImagingServiceRequest
    PlacerOrderNumberProcedure FillerOrderNumberProcedure ClinicalTrialSubjectID
    ClinicalTrialSubjectReadingID ClinicalTrialProtocolID ClinicalTrialSiteID ClinicalTrialSeriesID
    ClinicalTrialTimePointID ClinicalTrialProtocolEthicsCommitteeApprovalNumber DeviceSerialNumber
    PlateID CassetteID GantryID GeneratorID DetectorID UniqueDeviceIdentifier SpecimenAccessionNumber
    ContainerIdentifier SpecimenIdentifier LocalNamespaceEntityID UniversalEntityID
    """
)

#: Free-text descriptions and comments: matched as a whole phrase of >= 2 tokens and >= 8 characters.
TEXT_KEYWORDS = _words(
    """
    StudyDescription SeriesDescription ImageComments AdditionalPatientHistory PatientComments
    StudyComments VisitComments RequestedProcedureDescription PerformedProcedureStepDescription
    ScheduledProcedureStepDescription ProtocolName ReasonForStudy ReasonForTheRequestedProcedure
    ReasonForTheImagingServiceRequest ReasonForVisit RequestedProcedureComments
    ImagingServiceRequestComments CommentsOnThePerformedProcedureStep CommentsOnRadiationDose
    AdmittingDiagnosesDescription DischargeDiagnosisDescription DerivationDescription
    AcquisitionComments IdentifyingComments FrameComments ImagePresentationComments MedicalAlerts
    Allergies AcquisitionDeviceProcessingDescription AcquisitionProtocolDescription
    RequestedSeriesDescription ServiceEpisodeDescription ClinicalTrialSeriesDescription
    ClinicalTrialTimePointDescription ClinicalTrialProtocolName TextString TextComments Arbitrary
    SpecialNeeds PatientState PatientTransportArrangements PreMedication ModifiedImageDescription
    OverlayComments ConfidentialityConstraintOnPatientDataDescription
    """
)

#: Other identifying values (addresses, phones, institution, places, organisations, age): >= 3 characters.
OTHER_KEYWORDS = _words(
    """
    PatientAddress PatientTelephoneNumbers PatientTelecomInformation RegionOfResidence PatientAge
    InstitutionName InstitutionAddress InstitutionalDepartmentName StationName ReferringPhysicianAddress
    ReferringPhysicianTelephoneNumbers PersonAddress PersonTelephoneNumbers PersonTelecomInformation
    OrderCallbackPhoneNumber OrderCallbackTelecomInformation PerformedStationName ScheduledStationName
    PerformedLocation ScheduledProcedureStepLocation ScheduledStudyLocation RequestedProcedureLocation
    CurrentPatientLocation PatientInstitutionResidence OrderEntererLocation RequestingService
    ClinicalTrialSponsorName ClinicalTrialSiteName ClinicalTrialCoordinatingCenterName
    ClinicalTrialProtocolEthicsCommitteeName ResponsibleOrganization VerifyingOrganization
    HumanPerformerOrganization
    """
)

#: Values that stand for "nothing here" in real headers; collecting them would flag our own dummies.
PLACEHOLDERS = frozenset(
    {"", "anonymous", "anonymized", "anonymised", "unknown", "none", "null", "removed", "n a", "na", "nil"}
)

MIN_ID_CHARS = 2
MIN_TEXT_CHARS = 8
MIN_TEXT_TOKENS = 2
MIN_OTHER_CHARS = 3
MIN_NAME_PART_CHARS = 3
#: Distinct (attribute, value) pairs whose renderings are kept: a few series' worth of headers.
PATTERN_CACHE_SIZE = 4096

_ISO_T = re.compile(r"(?<=\d)[Tt](?=\d)")
_SEPARATORS = re.compile(r"[\W_]+")
_DT_OFFSET = re.compile(r"[+-]\d{4}$")


def normalise(text: str) -> str:
    """Case-folded text whose tokens are separated by single spaces (punctuation, ``^``, ``_`` removed)."""
    return _SEPARATORS.sub(" ", _ISO_T.sub(" ", text).casefold()).strip()


def uid_is_kept(keyword: str, uid: str) -> bool:
    """True for UIDs that name a kind of thing (class, syntax, standard): neither PHI nor remapped.

    Manufacturer's Device Class UID is the exception: Table E.1-1 remaps it (it tells devices apart).
    """
    if uid.startswith(DICOM_ROOT):
        return True
    kind = keyword.endswith("ClassUID") and keyword not in REMAPPED_CLASS_UIDS
    return kind or keyword in KEPT_UID_KEYWORDS


@dataclass(frozen=True)
class PhiHit:
    """One attribute's original value found in one field. Carries no value, by design."""

    attribute: str
    where: str


@dataclass(frozen=True)
class PhiValues:
    """Original identifying values of one header: attribute keyword -> its original string values.

    Never printed (``repr`` shows counts only), so it cannot leak into a log or an error message.
    """

    by_attribute: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False, hash=False)

    def __repr__(self) -> str:
        count = sum(len(values) for values in self.by_attribute.values())
        return f"PhiValues(<{len(self.by_attribute)} attributes, {count} values>)"

    def __bool__(self) -> bool:
        return any(self.by_attribute.values())

    @cached_property
    def _matcher(self) -> _TokenMatcher:
        """Compiled once per header: it runs over every string of every sample built from it."""
        return _TokenMatcher.build(self.by_attribute)


# --- collecting ---------------------------------------------------------------------------------------


def collect_phi(ds: pydicom.Dataset) -> PhiValues:
    """Identifying values of ``ds`` (and its sequences, and its file meta), read before de-identification."""
    found: dict[str, list[str]] = {}
    public = " | ".join(normalise(str(ds.get(keyword, "") or "")) for keyword in PUBLIC_KEYWORDS)
    for elem in _public_elements(ds):
        for value in _identifying_values(elem):
            if f" {normalise(value)} " in f" {public} ":
                continue
            values = found.setdefault(elem.keyword, [])
            if value not in values:
                values.append(value)
    return PhiValues({keyword: tuple(values) for keyword, values in found.items()})


def _public_elements(ds: pydicom.Dataset) -> Iterator[DataElement]:
    meta = getattr(ds, "file_meta", None)
    datasets: list[pydicom.Dataset] = [meta, ds] if meta is not None else [ds]
    for dataset in datasets:
        for elem in dataset.iterall():
            if not elem.tag.is_private and elem.VR != "SQ" and elem.keyword:
                yield elem


def _identifying_values(elem: DataElement) -> Iterator[str]:
    """The element's values as strings, when its VR or keyword makes them identifying."""
    if not _is_identifying(elem):
        return
    raw = elem.value
    values = raw if isinstance(raw, MultiValue | list | tuple) else [raw]
    for value in values:
        text = as_text(value)
        if text is None or normalise(text) in PLACEHOLDERS:
            continue
        if elem.VR == "UI" and uid_is_kept(elem.keyword, text):
            continue
        yield text


def as_text(value: Any) -> str | None:
    """A value as its original text (DA/DT/TM objects keep it in ``original_string``); None for bytes."""
    if isinstance(value, PersonName):
        return str(value).strip()
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        return None
    original = getattr(value, "original_string", None)
    return (original if isinstance(original, str) else str(value)).strip()


def _is_identifying(elem: DataElement) -> bool:
    if elem.VR in ("PN", "DA", "DT", "UI", "AE"):
        return True
    return elem.keyword in ID_KEYWORDS or elem.keyword in TEXT_KEYWORDS or elem.keyword in OTHER_KEYWORDS


# --- patterns ------------------------------------------------------------------------------------------


@lru_cache(maxsize=PATTERN_CACHE_SIZE)
def _patterns(keyword: str, value: str) -> frozenset[str]:
    """Normalised renderings of one original value that count as a leak when found as whole tokens.

    Cached because every slice of a series carries the same patient, study, staff and institution
    values (only its instance UIDs differ), and deriving their renderings was most of building a new
    matcher for each slice. A pure function of its arguments, so the cache cannot change a match; it
    holds values only in this process's memory, next to the headers they came from.
    """
    vr = _vr(keyword)
    if vr == "PN":
        return frozenset(_name_patterns(value))
    if vr in ("DA", "DT"):
        return frozenset(_date_patterns(value))
    norm = normalise(value)
    if vr == "UI":
        return frozenset({norm} if norm else ())
    if keyword in ID_KEYWORDS:
        compact = norm.replace(" ", "")
        return frozenset(p for p in (norm, compact) if len(compact) >= MIN_ID_CHARS)
    if keyword in TEXT_KEYWORDS:
        ok = len(norm) >= MIN_TEXT_CHARS and len(norm.split()) >= MIN_TEXT_TOKENS
        return frozenset({norm} if ok else ())
    return frozenset({norm} if len(norm) >= MIN_OTHER_CHARS else ())


def _vr(keyword: str) -> str:
    try:
        return pydicom.datadict.dictionary_VR(keyword)
    except (KeyError, ValueError):  # repeating-group keywords (OverlayComments) do not resolve
        return ""


def _name_patterns(value: str) -> set[str]:
    """A person name in DICOM order, in the orders people write it, and its longer parts alone."""
    patterns: set[str] = set()
    for group in value.split("="):  # alphabetic, ideographic, phonetic representations
        family, given, middle = ([part.strip() for part in group.split("^")] + ["", "", ""])[:3]
        renderings = (group, f"{given} {family}", f"{given} {middle} {family}", f"{family}, {given}")
        patterns.update(p for p in map(normalise, renderings) if len(p) >= MIN_NAME_PART_CHARS)
        patterns.update(p for p in map(normalise, (family, given, middle)) if len(p) >= MIN_NAME_PART_CHARS)
    return {p for p in patterns if p not in PLACEHOLDERS}


def _date_patterns(value: str) -> set[str]:
    """The usual renderings of the date in a DA or DT value (none when it is not a valid date)."""
    digits = value.replace(".", "").replace("-", "").strip()
    patterns = {normalise(value)} if len(value) > 8 else set()
    try:
        day = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return patterns
    y, m, d = f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"
    m1, d1 = str(day.month), str(day.day)
    patterns |= {f"{y}{m}{d}", f"{y} {m} {d}", f"{m} {d} {y}", f"{d} {m} {y}"}
    patterns |= {f"{y} {m1} {d1}", f"{m1} {d1} {y}", f"{d1} {m1} {y}"}
    return patterns


# --- matching ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TokenMatcher:
    """Token-level dictionary matcher (Aho-Corasick-like on words): one hash lookup per token of text.

    ``index`` maps a pattern's first token to the patterns starting with it, longest first, each with
    the attributes whose values render to it.
    """

    index: Mapping[str, tuple[tuple[tuple[str, ...], frozenset[str]], ...]]

    @classmethod
    def build(cls, by_attribute: Mapping[str, tuple[str, ...]]) -> _TokenMatcher:
        owners: dict[tuple[str, ...], set[str]] = {}
        for keyword, values in by_attribute.items():
            for value in values:
                for pattern in _patterns(keyword, value):
                    owners.setdefault(tuple(pattern.split()), set()).add(keyword)
        grouped: dict[str, list[tuple[tuple[str, ...], frozenset[str]]]] = {}
        for tokens, keywords in owners.items():
            if tokens:
                grouped.setdefault(tokens[0], []).append((tokens, frozenset(keywords)))
        return cls({first: tuple(sorted(items, key=_longest_first)) for first, items in grouped.items()})

    def attributes_in(self, text: str) -> set[str]:
        tokens = normalise(text).split()
        found: set[str] = set()
        for i, token in enumerate(tokens):
            for pattern, keywords in self.index.get(token, ()):
                if tuple(tokens[i : i + len(pattern)]) == pattern:
                    found |= keywords
        return found


def _longest_first(item: tuple[tuple[str, ...], frozenset[str]]) -> int:
    return -len(item[0])


def find_phi(text: str, phi: PhiValues, where: str = "") -> list[PhiHit]:
    """Attributes whose original values occur in ``text`` as whole tokens; ``where`` labels the hits."""
    if not phi or not text:
        return []
    return [PhiHit(attribute, where) for attribute in sorted(phi._matcher.attributes_in(text))]


def scan_record(obj: Any, phi: PhiValues, where: str = "") -> list[PhiHit]:
    """Every hit in the strings of a record (nested dicts and lists); ``where`` is the dotted field path.

    Bytes (images) are skipped, and so are numbers and dict keys (see the module docstring).
    """
    if isinstance(obj, str):
        return find_phi(obj, phi, where)
    if isinstance(obj, Mapping):
        items: Iterable[tuple[Any, Any]] = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return []
    hits: list[PhiHit] = []
    for key, value in items:
        hits += scan_record(value, phi, f"{where}.{key}" if where else str(key))
    return hits
