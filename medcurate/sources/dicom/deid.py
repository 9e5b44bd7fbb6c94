"""De-identification of a DICOM header in memory: PS3.15 Annex E Basic Profile, configured for training.

Why this module exists: the DICOM source writes PNG pixels and a JSON record (with the header as DICOM
JSON for researchers), never a DICOM file, so the header must be clean before anything is built from
it. The attribute-by-attribute actions come from PS3.15 Table E.1-1 as machine-read by
``dicom-anonymizer`` (KitwareMedical, BSD-3-Clause; edition ``TABLE_EDITION``); see
docs/decisions/0006-dicom-deidentification.md for why that library and how it is configured.

One call, never touching the caller's dataset:

1. copy the header without pixel data (PixelData can be hundreds of MB and is rendered elsewhere);
2. apply the table to the dataset *and to every item of every sequence that survives* (the library
   itself only acts on the top level): X-type codes remove, Z-type codes empty, D gives the library's
   dummy, private attributes, curves and overlays go. No IOD conformance has to be kept (no DICOM is
   written), so of X/Z, X/D, X/Z/D and X/Z/U* we always take X, and of Z/D always Z;
3. sweep the whole tree with our keyed functions: every instance UID becomes
   ``2.25.<128 bits of HMAC(key, uid)>`` (same UID in, same UID out: studies stay linked), every date
   is shifted back by a per-patient keyed number of days (or removed), and person names, AE titles and
   unknown attributes that the table does not list are dropped;
4. mark the result: PatientIdentityRemoved, DeidentificationMethod and its code sequence (113100, plus
   113107 when dates are shifted and 113108 because the patient's sex is kept).

Deviations from the Basic Profile, on purpose and tested: PatientSex is kept (option 113108, that one
characteristic only); PatientID carries the patient pseudonym (a dummy that Z permits); PatientBirthDate
is removed, not emptied; PatientAge is removed and replaced by an age band in the record (HIPAA: 90+
collapsed); with ``dates="shift"`` every date is shifted and times of day are kept (option 113107: a
whole-day shift leaves them meaningless on their own); D on a sequence removes it.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import version
from typing import Any, ClassVar

import pydicom
from dicomanonymizer import simpledicomanonymizer as sda
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from medcurate.hashing import pseudonym
from medcurate.sources.dicom.phi import PhiValues, as_text, collect_phi, uid_is_kept

PROFILE_VERSION = "1"
LIBRARY = "dicom-anonymizer"
TABLE_EDITION = "dicomfields_2026c"
DATE_MODES = ("shift", "remove")
MAX_SHIFT_DAYS = 3650
BULK_LIMIT = 1024  # bytes; larger binary values never go into the header JSON

#: What training needs. None of these is in Table E.1-1 except PatientSex (tests check that), so keeping
#: them is the profile's own default; listing them makes a future edition that adds one fail loudly.
TRAINING_ATTRIBUTES = (
    "SOPClassUID", "Modality", "BodyPartExamined", "ViewPosition", "Laterality", "ImageLaterality",
    "PatientPosition", "ImageType", "PixelSpacing", "ImagerPixelSpacing", "SliceThickness",
    "SpacingBetweenSlices", "ImageOrientationPatient", "ImagePositionPatient", "Rows", "Columns",
    "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PhotometricInterpretation", "RescaleIntercept", "RescaleSlope", "RescaleType", "WindowCenter",
    "WindowWidth", "VOILUTFunction", "Manufacturer", "ManufacturerModelName", "KVP", "XRayTubeCurrent",
    "ExposureTime", "Exposure", "ConvolutionKernel", "MagneticFieldStrength", "RepetitionTime", "EchoTime",
    "FlipAngle", "BurnedInAnnotation", "PatientSex",
)  # fmt: skip
#: Removed whatever the table or ``keep`` say: birth date and time and age (the record carries an age
#: band instead), and identifying attributes that Table E.1-1 does not list (issuers hold hospital names,
#: alternative-calendar dates are dates, the rest hold people and free text).
ALWAYS_REMOVED = frozenset(
    {
        "PatientBirthDate", "PatientBirthTime", "PatientAge", "IssuerOfAccessionNumberSequence",
        "IssuerOfPatientIDQualifiersSequence", "PatientBirthDateInAlternativeCalendar",
        "PatientDeathDateInAlternativeCalendar", "RequestingPhysicianIdentificationSequence",
        "CommentsOnTheScheduledProcedureStep", "ContactDisplayName", "AuthorIdentificationSequence",
    }
)  # fmt: skip

BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")

_AGE = re.compile(r"(\d{1,3})\s*([DWMY])")
_AGE_YEARS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
_DT_OFFSET = re.compile(r"[+-]\d{4}$")
_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
Action = Callable[[Dataset, Any], None]


@dataclass(frozen=True)
class DeidConfig:
    """How to de-identify: the pseudonym key (from config or MEDCURATE_PSEUDONYM_KEY, never from code),
    whether dates are shifted (per patient, so intervals survive) or removed, and extra keywords to keep.
    """

    key: str = field(repr=False)
    dates: str = "shift"
    keep: tuple[str, ...] = ()
    method_label: ClassVar[str] = f"medcurate-deid/{PROFILE_VERSION}"

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError(
                "de-identification needs a pseudonym key: set MEDCURATE_PSEUDONYM_KEY "
                "(or pseudonym_key in the pipeline config)"
            )
        if self.dates not in DATE_MODES:
            raise ValueError(f"dates must be one of {DATE_MODES}, got {self.dates!r}")
        unknown = [kw for kw in self.keep if pydicom.datadict.tag_for_keyword(kw) is None]
        if unknown:
            raise ValueError(f"keep: unknown DICOM keywords {unknown}")
        if ALWAYS_REMOVED & set(self.keep):
            raise ValueError(f"keep: {sorted(ALWAYS_REMOVED & set(self.keep))} are always removed")
        object.__setattr__(self, "keep", tuple(self.keep))


@dataclass(frozen=True)
class DeidResult:
    """The de-identified header (no pixel data) and the facts a record needs, read from the original.

    ``phi`` holds the original identifying values for the leak scanner; it never prints them.
    """

    dataset: Dataset
    patient_pseudonym: str | None
    study_pseudonym: str | None
    series_pseudonym: str | None
    site_pseudonym: str | None
    sex: str | None
    age_band: str | None
    phi: PhiValues


def deidentify(ds: Dataset, config: DeidConfig) -> DeidResult:
    """A de-identified copy of ``ds``'s header (``ds`` itself is left as it was)."""
    keep = frozenset(TRAINING_ATTRIBUTES) | frozenset(config.keep)
    clean = _header_copy(ds)
    _apply_profile(clean, _rules(config.dates, keep))
    _Sweep(config.key, config.dates, _shift_days(config.key, ds), keep, _listed_tags()).dataset(clean)
    patient = _pseudonym_of(config.key, "patient", ds.get("PatientID"))
    _mark(clean, config, keep, patient)
    clean.file_meta = _file_meta(ds, config.key)
    return DeidResult(
        dataset=clean,
        patient_pseudonym=patient,
        study_pseudonym=_pseudonym_of(config.key, "study", ds.get("StudyInstanceUID")),
        series_pseudonym=_pseudonym_of(config.key, "series", ds.get("SeriesInstanceUID")),
        site_pseudonym=site_pseudonym(ds, config.key),
        sex=sex_of(ds),
        age_band=age_band(age_years(ds)),
        phi=collect_phi(ds),
    )


def keyed_uid(key: str, uid: str) -> str:
    """``2.25.<decimal of 128 bits of HMAC-SHA256(key, uid)>``: stable per key, unlinkable without it.

    128 bits (not ``hashing.pseudonym``'s 96) because 2.25 UIDs are UUID-sized by definition.
    """
    mac = hmac.new(key.encode("utf-8"), f"uid\x1f{uid.strip()}".encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(mac[:16], 'big')}"


def header_json(ds: Dataset) -> dict[str, Any]:
    """The header in the DICOM JSON model without bulk data: no pixel data, overlays, or binary > 1 KiB."""
    data = ds.to_json_dict(
        bulk_data_threshold=(BULK_LIMIT * 4) // 3,  # pydicom compares the base64 length
        bulk_data_element_handler=_bulk_marker,
        suppress_invalid_tags=True,
    )
    return _without_bulk(data)


# --- the table ------------------------------------------------------------------------------------------

_LIBRARY_CODES: dict[Callable[..., None], str] = {
    sda.delete: "X",
    sda.empty: "Z",
    sda.replace: "D",
    sda.replace_UID: "U",
    sda.empty_or_replace: "Z/D",
    sda.delete_or_empty: "X/Z",
    sda.delete_or_replace: "X/D",
    sda.delete_or_empty_or_replace: "X/Z/D",
    sda.delete_or_empty_or_replace_UID: "X/Z/U*",
}


@cache
def profile_table() -> dict[tuple[int, ...], str]:
    """Table E.1-1's Basic Profile codes as the library reads them: (group, element[, masks]) -> code."""
    return {
        tuple(tag): _LIBRARY_CODES[action] for tag, action in sda.initialize_actions(TABLE_EDITION).items()
    }


@cache
def _listed_tags() -> frozenset[int]:
    return frozenset(int(Tag(tag[0], tag[1])) for tag in profile_table() if len(tag) == 2)


@cache
def _rules(dates: str, keep: frozenset[str]) -> dict[tuple[int, ...], Action]:
    """Our action for every tag of the table, for one configuration (computed once per configuration)."""
    rules = {tag: _action(tag, code, dates, keep) for tag, code in profile_table().items()}
    for keyword in ALWAYS_REMOVED:
        tag = Tag(keyword)
        rules[(tag.group, tag.element)] = _remove
    return rules


def _action(tag: tuple[int, ...], code: str, dates: str, keep: frozenset[str]) -> Action:
    if len(tag) > 2:  # repeating groups (curves, overlays): all X in the table
        return _structural(code)
    keyword = pydicom.datadict.keyword_for_tag(Tag(tag[0], tag[1]))
    vr = _dictionary_vr(Tag(tag[0], tag[1]))
    if keyword in ALWAYS_REMOVED:
        return _remove
    if keyword in keep:
        return sda.keep
    if vr == "UI":
        return _remove if code == "X" else sda.keep  # U: remapped once, by the sweep
    if vr in ("DA", "DT", "TM") and dates == "shift":
        return sda.keep  # DA/DT shifted by the sweep; TM kept (option 113107)
    if vr == "SQ" and code == "D":
        return _remove
    return _structural(code)


def _structural(code: str) -> Action:
    if code.startswith("X"):
        return _remove
    if code in ("Z", "Z/D"):
        return _zero_length
    if code == "D":
        return sda.replace
    return sda.keep


def _remove(dataset: Dataset, tag: Any) -> None:
    """X (the library's own X writes 00010101 into a DA instead of removing it)."""
    if tag in dataset:
        del dataset[tag]


def _zero_length(dataset: Dataset, tag: Any) -> None:
    """Z: an empty value (the library's own Z writes dummy dates and keeps sequence items)."""
    elem = dataset.get(tag)
    if elem is not None:
        elem.value = Sequence() if elem.VR == "SQ" else ("" if elem.VR in _STRING_VRS else None)


def _dictionary_vr(tag: BaseTag) -> str:
    try:
        return pydicom.datadict.dictionary_VR(tag)
    except KeyError:
        return ""


def _apply_profile(ds: Dataset, rules: dict[tuple[int, ...], Action]) -> None:
    """The library's pass over one dataset, then the same over every item of every remaining sequence.

    Only the rules for tags present (and the repeating-group rules when such a group is present) are
    handed over: the library would otherwise look up all ~650 tags of the table in every item.
    """
    present = {(tag.group, tag.element) for tag in list(ds.keys())}
    groups = {group & 0xFF00 for group, _ in present}
    relevant = {tag: action for tag, action in rules.items() if tag in present or _repeats_in(tag, groups)}
    sda.anonymize_dataset(ds, base_rules_gen=lambda: dict(relevant), delete_private_tags=True)
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _apply_profile(item, rules)


def _repeats_in(tag: tuple[int, ...], groups: set[int]) -> bool:
    """A repeating-group rule (group, element, group mask, element mask) whose groups occur."""
    return len(tag) > 2 and (tag[0] & tag[2]) in groups


# --- the sweep ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sweep:
    """What the table does not say, over the whole tree: UIDs, dates, stray names, AE titles, unknowns."""

    key: str = field(repr=False)
    dates: str
    shift_days: int = field(repr=False)
    keep: frozenset[str]
    listed: frozenset[int]

    def dataset(self, ds: Dataset) -> None:
        for tag in list(ds.keys()):
            elem = ds[tag]
            if elem.VR == "SQ":
                for item in elem.value:
                    self.dataset(item)
            elif elem.keyword not in self.keep:
                self.element(ds, elem)

    def element(self, ds: Dataset, elem: DataElement) -> None:
        unlisted_name = elem.VR == "PN" and elem.tag not in self.listed
        if not elem.keyword or elem.VR in ("UN", "AE") or unlisted_name:
            del ds[elem.tag]
        elif elem.VR == "UI":
            _set_values(elem, [self.uid(elem.keyword, value) for value in _values(elem)])
        elif elem.VR in ("DA", "DT"):
            self.date(ds, elem)

    def uid(self, keyword: str, value: str) -> str:
        return value if uid_is_kept(keyword, value) else keyed_uid(self.key, value)

    def date(self, ds: Dataset, elem: DataElement) -> None:
        if self.dates == "remove":
            if elem.tag not in self.listed:
                del ds[elem.tag]
            return
        values = _values(elem)
        shifted = [shift_date(v, elem.VR, self.shift_days) for v in values]
        if None in shifted:
            del ds[elem.tag]  # a value we cannot read as a date cannot be shifted: drop it
        else:
            _set_values(elem, shifted)


def shift_date(value: str, vr: str, days: int) -> str | None:
    """A DA or DT value moved ``days`` back; None when it is not a full date (or would leave the calendar).

    DT keeps its time of day but loses its UTC offset (Timezone Offset From UTC is X in the table too).
    """
    text = value.strip().replace(".", "") if vr == "DA" else value.strip()
    digits = text[:8]
    if len(digits) < 8 or not digits.isdigit() or (vr == "DA" and len(text) != 8):
        return None
    try:
        day = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])) - dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{day.year:04d}{day.month:02d}{day.day:02d}" + _DT_OFFSET.sub("", text[8:])


def _values(elem: DataElement) -> list[str]:
    raw = elem.value
    items = raw if isinstance(raw, MultiValue | list | tuple) else [raw]
    return [text for text in map(as_text, items) if text]


def _set_values(elem: DataElement, values: list[str]) -> None:
    if values:
        elem.value = values if len(values) > 1 else values[0]


# --- facts from the original ---------------------------------------------------------------------------


def _shift_days(key: str, ds: Dataset) -> int:
    """1..MAX_SHIFT_DAYS, from the patient (same patient, same shift: intervals survive across studies)."""
    anchor = str(ds.get("PatientID", "") or "").strip() or str(ds.get("StudyInstanceUID", "") or "").strip()
    return int(pseudonym(key, "date-shift", anchor), 16) % MAX_SHIFT_DAYS + 1


def _pseudonym_of(key: str, namespace: str, value: Any) -> str | None:
    """Same namespaces and inputs as the listing's header facts, so both name a patient alike."""
    text = str(value or "").strip()
    return pseudonym(key, namespace, text) if text else None


def site_pseudonym(ds: Dataset, key: str) -> str | None:
    """The institution's pseudonym; else the device's (station or serial, with maker and model); else None.

    Maker and model alone are no site (thousands of sites share one), so they give None.
    """
    institution = " ".join(str(ds.get("InstitutionName", "") or "").split()).casefold()
    if institution:
        return pseudonym(key, "site", f"institution:{institution}")
    keywords = ("Manufacturer", "ManufacturerModelName", "StationName", "DeviceSerialNumber")
    device = [str(ds.get(keyword, "") or "").strip() for keyword in keywords]
    return pseudonym(key, "site", "device:" + "|".join(device)) if device[2] or device[3] else None


def sex_of(ds: Dataset) -> str | None:
    sex = str(ds.get("PatientSex", "") or "").strip().upper()
    return sex if sex in ("M", "F", "O") else None


def age_years(ds: Dataset) -> float | None:
    """Age at the study: PatientAge when readable, else birth date against the first study-level date."""
    match = _AGE.fullmatch(str(ds.get("PatientAge", "") or "").strip().upper())
    if match:
        return int(match[1]) * _AGE_YEARS[match[2]]
    birth = _date(ds.get("PatientBirthDate"))
    seen = (_date(ds.get(k)) for k in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"))
    when = next((d for d in seen if d is not None), None)
    if birth is None or when is None or when < birth:
        return None
    return when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))


def age_band(years: float | None) -> str | None:
    """Decades ("40-49"); 90 and over collapse to "90+" (HIPAA Safe Harbor)."""
    if years is None or not 0 <= years <= 150:
        return None
    if years >= 90:
        return "90+"
    low = int(years) // 10 * 10
    return f"{low}-{low + 9}"


def _date(value: Any) -> dt.date | None:
    text = as_text(value) or ""
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 else None
    except ValueError:
        return None


# --- copy, marks, file meta, JSON ----------------------------------------------------------------------


def _header_copy(ds: Dataset) -> Dataset:
    """A deep copy of every element but pixel data (group 7FE0, never read here) and top-level private
    attributes (removed anyway; in vendor headers they are most of the elements and of the copying time).
    """
    clean = Dataset()
    for tag in list(ds.keys()):  # iterating a Dataset itself yields (converted) elements
        if tag.group != 0x7FE0 and not tag.is_private:
            clean.add(_element_copy(ds[tag]))
    return clean


#: Types of a DataElement's attributes that cannot change in place, so a copy may share them.
_IMMUTABLE = frozenset({int, float, str, bool, type(None), BaseTag})


def _element_copy(elem: DataElement) -> DataElement:
    """What ``copy.deepcopy(elem)`` makes, sharing the attributes that are immutable (tag, VR, offsets).

    pydicom's ``__deepcopy__`` rebuilds every attribute, the tag (an int subclass) through
    ``__reduce_ex__``: half of the copying time of a CT header, once per slice. Values are still
    deep-copied (the profile and the sweep assign new values, never edit shared ones, but a copy must
    not rely on that); sequences and buffered values keep pydicom's own deepcopy.
    """
    if elem.VR == "SQ" or elem.is_buffered:
        return copy.deepcopy(elem)
    new = object.__new__(type(elem))
    for name, value in vars(elem).items():
        setattr(new, name, value if type(value) in _IMMUTABLE else copy.deepcopy(value))
    return new


def _mark(ds: Dataset, config: DeidConfig, keep: frozenset[str], patient: str | None) -> None:
    """PatientIdentityRemoved, DeidentificationMethod (+ code sequence), and the pseudonymous PatientID."""
    shifted = config.dates == "shift"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = method_label()
    codes = [BASIC_PROFILE, *([MODIFIED_DATES] if shifted else []), PATIENT_CHARACTERISTICS]
    ds.DeidentificationMethodCodeSequence = Sequence([_code(value, meaning) for value, meaning in codes])
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if shifted else "REMOVED"
    if "PatientID" not in keep:
        ds.PatientID = patient or ""


@cache
def method_label() -> str:
    """One LO value (<= 64 characters) naming our profile version, the library, its version and table."""
    edition = TABLE_EDITION.removeprefix("dicomfields_")
    return f"{DeidConfig.method_label} {LIBRARY} {version(LIBRARY)} table {edition}"


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _file_meta(ds: Dataset, key: str) -> FileMetaDataset:
    """Only what decoding and referencing need; the instance UID remapped like SOPInstanceUID."""
    original = getattr(ds, "file_meta", None)
    meta = FileMetaDataset()
    for keyword in ("TransferSyntaxUID", "MediaStorageSOPClassUID"):
        if original is not None and original.get(keyword):
            setattr(meta, keyword, original.get(keyword))
    sop = (original.get("MediaStorageSOPInstanceUID") if original is not None else None) or ds.get(
        "SOPInstanceUID"
    )
    if sop:
        meta.MediaStorageSOPInstanceUID = keyed_uid(key, str(sop))
    return meta


def _bulk_marker(elem: DataElement) -> str:
    return "bulk"


def _without_bulk(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag, elem in data.items():
        group = int(tag[:4], 16)
        if "BulkDataURI" in elem or group == 0x7FE0 or 0x6000 <= group <= 0x60FF:
            continue
        if elem.get("vr") == "SQ":
            elem = {**elem, "Value": [_without_bulk(item) for item in elem.get("Value", [])]}
        out[tag] = elem
    return out
