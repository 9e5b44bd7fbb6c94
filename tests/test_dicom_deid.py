"""DICOM de-identification against PS3.15 Table E.1-1, attribute by attribute, and the PHI leak scanner.

The reference is tests/data/ps315_table_e1_1.csv, a hand-written subset of the standard's table that is
independent of the library's own copy. The test header carries PHI in every attribute of that table, in
private attributes and in nested sequences; nothing here mocks pydicom.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomanonymizer import simpledicomanonymizer as sda
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from medcurate.sources.dicom.deid import (
    ALWAYS_REMOVED,
    TRAINING_ATTRIBUTES,
    DeidConfig,
    age_band,
    deidentify,
    header_json,
    keyed_uid,
    profile_table,
)
from medcurate.sources.dicom.phi import PhiValues, collect_phi, find_phi, scan_record, uid_is_kept

TABLE = Path(__file__).parent / "data" / "ps315_table_e1_1.csv"
KEY = "test-key-not-secret"
STUDY_UID = "1.2.826.0.1.3680043.10.999.1.1"
SERIES_UID = "1.2.826.0.1.3680043.10.999.1.2"
UNKNOWN_PUBLIC = 0x0010009A  # an even group, but no attribute pydicom knows

#: Realistic PHI for the attributes people look at first; every other attribute gets a value made from
#: its tag, so each identifying value in the header is distinct.
REALISTIC = {
    "PatientName": "Doe^Jane^Quinn",
    "PatientID": "MRN0048213",
    "PatientBirthDate": "19700102",
    "PatientAge": "045Y",
    "PatientSex": "F",
    "PatientAddress": "12 Elm Street, Springfield",
    "PatientTelephoneNumbers": "+1 555 014 2877",
    "PatientMotherBirthName": "Smith^Mary",
    "OtherPatientIDs": "ALT-99812",
    "IssuerOfPatientID": "SPRINGFIELD GH",
    "AccessionNumber": "ACC24011700",
    "StudyID": "STU77123",
    "InstitutionName": "Springfield General Hospital",
    "InstitutionAddress": "1 Hospital Way, Springfield",
    "InstitutionalDepartmentName": "Radiology East Wing",
    "StationName": "CTSCAN07",
    "DeviceSerialNumber": "SN-4471-XQ",
    "ReferringPhysicianName": "House^Gregory",
    "PerformingPhysicianName": "Cameron^Allison",
    "OperatorsName": "Chase^Robert",
    "StudyDescription": "CT CHEST Jane Doe follow up",
    "SeriesDescription": "AXIAL 5MM for Dr House",
    "ImageComments": "patient Doe was anxious",
    "AdditionalPatientHistory": "smoker since 1988, lives with daughter",
    "ProtocolName": "Chest routine Doe",
}
#: What training needs, with ordinary values (kept unchanged).
TRAINING = {
    "SOPClassUID": CTImageStorage,
    "Modality": "CT",
    "BodyPartExamined": "CHEST",
    "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
    "PatientPosition": "HFS",
    "Laterality": "R",
    "PixelSpacing": [0.7, 0.7],
    "SliceThickness": "5",
    "SpacingBetweenSlices": "5",
    "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
    "ImagePositionPatient": [-150, -150, 12],
    "Rows": 4,
    "Columns": 4,
    "SamplesPerPixel": 1,
    "BitsAllocated": 16,
    "BitsStored": 12,
    "HighBit": 11,
    "PixelRepresentation": 0,
    "PhotometricInterpretation": "MONOCHROME2",
    "RescaleIntercept": "-1024",
    "RescaleSlope": "1",
    "WindowCenter": "40",
    "WindowWidth": "400",
    "Manufacturer": "ACME MEDICAL",
    "ManufacturerModelName": "Scanner 9000",
    "KVP": "120",
    "ConvolutionKernel": "STANDARD",
}
#: Documented deviations from the Basic Profile (see docs/decisions/0006-dicom-deidentification.md).
DEVIATIONS = {"PatientSex", "PatientID", "PatientBirthDate"}


# --- the reference table -------------------------------------------------------------------------------


def _table() -> list[dict[str, str]]:
    with TABLE.open(encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def _concrete_tags(tag: str) -> list[int]:
    """The tags a table row stands for in the test header (repeating groups: group 5000 or 6000)."""
    group, element = tag.strip("()").split(",")
    if group == "50XX":
        return [0x50000005, 0x50003000]
    return [int(group.replace("XX", "00") + element, 16)]


ROWS = _table()


# --- a header with PHI everywhere ----------------------------------------------------------------------


def _vr(tag: int) -> str:
    vr = dictionary_VR(tag)
    return {"OB or OW": "OW", "US or SS": "US", "US or OW": "US", "US or SS or OW": "US"}.get(vr, vr)


def _date(index: int) -> str:
    return (dt.date(2024, 1, 1) + dt.timedelta(days=index)).strftime("%Y%m%d")


def _item(tag: int) -> Dataset:
    """A sequence item with PHI of its own: a coded concept, a person, an ID and an instance reference."""
    item = Dataset()
    item.CodeValue = f"C{tag:08X}"
    item.CodingSchemeDesignator = "99PHI"
    item.CodeMeaning = f"nested secret {tag:08X}"
    item.PersonName = f"Nested{tag:08X}^Person"
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.10.999.3.{tag}"
    return item


def _value(tag: int, vr: str, index: int) -> Any:
    """A value of the right VR that is unique to this attribute."""
    keyword = keyword_for_tag(tag) or f"T{tag:08X}"
    if keyword in REALISTIC:
        return REALISTIC[keyword]
    generated = {
        "PN": f"Surname{tag:08X}^Given{tag:08X}",
        "DA": _date(index),
        "DT": _date(index) + "093015.000000+0100",
        "TM": "093015.123",
        "UI": f"1.2.826.0.1.3680043.10.999.2.{tag}",
        "SH": f"S{tag:08X}",
        "CS": f"C{tag:08X}",
        "AE": f"AE{tag:08X}",
        "AS": "045Y",
        "DS": "72.5",
        "IS": "42",
        "US": 4,
        "SS": 4,
        "OW": b"secret\x00\x00",
        "OB": b"secret\x00\x00",
        "SQ": Sequence([_item(tag)]),
    }
    return generated.get(vr, f"Secret {keyword} value")


def phi_dataset(
    patient_id: str = "MRN0048213",
    study_uid: str = STUDY_UID,
    sop_uid: str = "1.2.826.0.1.3680043.10.999.1.3",
    study_date: str = "20240117",
) -> Dataset:
    """A CT-like header with PHI in every attribute of the reference table, private tags and sequences."""
    ds = Dataset()
    for index, row in enumerate(ROWS):
        for tag in _concrete_tags(row["tag"]):
            if tag >> 16 != 0x0002:
                ds.add_new(tag, _vr(tag), _value(tag, _vr(tag), index))
    for keyword, value in TRAINING.items():
        setattr(ds, keyword, value)
    ds.PatientID, ds.StudyInstanceUID, ds.SOPInstanceUID = patient_id, study_uid, sop_uid
    ds.SeriesInstanceUID, ds.StudyDate = SERIES_UID, study_date
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.10.999.1.4"
    _add_private(ds)
    _add_nested(ds)
    ds.add_new(UNKNOWN_PUBLIC, "LO", "unknown public attribute, Jane Doe")
    ds.PixelData = b"\x00\x01" * 16
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    return ds


def _add_private(ds: Dataset) -> None:
    block = ds.private_block(0x0009, "ACME PHI", create=True)
    block.add_new(0x01, "LO", "Doe^Jane private copy")
    block.add_new(0x02, "DA", "19700102")


def _add_nested(ds: Dataset) -> None:
    """The sequences the issue names, plus one the table does not list (so only recursion cleans it)."""
    request = Dataset()
    request.AccessionNumber = "ACC24011700"
    request.RequestedProcedureID = "RP-5521"
    request.ScheduledProcedureStepID = "SPS-5521"
    request.ReasonForTheRequestedProcedure = "suspected mass, patient Doe"
    ds.RequestAttributesSequence = Sequence([request])
    other = Dataset()
    other.PatientID = "ALT-99812"
    other.IssuerOfPatientID = "OTHER HOSPITAL"
    ds.OtherPatientIDsSequence = Sequence([other])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_ref.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.999.4.1"
    ds.ReferencedStudySequence = Sequence([study_ref])
    series_ref = Dataset()  # ReferencedSeriesSequence is not in Table E.1-1
    series_ref.SeriesInstanceUID = SERIES_UID
    series_ref.InstitutionName = "Springfield General Hospital"
    series_ref.ReferringPhysicianName = "House^Gregory"
    series_ref.EvaluatorName = "Wilson^James"  # a PN the table does not list either
    series_ref.StudyDate = "20240117"
    series_ref.add_new(0x00091010, "LO", "private inside a sequence")
    ds.ReferencedSeriesSequence = Sequence([series_ref])
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "SPRINGFIELD GH RIS"
    ds.IssuerOfAccessionNumberSequence = Sequence([issuer])


@pytest.fixture(scope="module")
def original() -> Dataset:
    return phi_dataset()


@pytest.fixture(scope="module")
def removed(original: Dataset):
    """The pure Basic Profile run (dates removed), checked against the table."""
    return deidentify(original, DeidConfig(key=KEY, dates="remove"))


@pytest.fixture(scope="module")
def shifted(original: Dataset):
    return deidentify(original, DeidConfig(key=KEY))


# --- the table, attribute by attribute -----------------------------------------------------------------

ALLOWED = {
    "X": {"absent"},
    "Z": {"absent", "empty"},
    "D": {"dummy"},
    "U": {"uid"},
    "X/Z": {"absent", "empty"},
    "X/D": {"absent", "dummy"},
    "X/Z/D": {"absent", "empty", "dummy"},
    "Z/D": {"absent", "empty", "dummy"},
    "X/Z/U*": {"absent", "empty"},
}


def _outcome(ds: Dataset, tag: int, before: Any) -> str:
    if tag not in ds:
        return "absent"
    value = ds[tag].value
    if value in (None, "", b"") or (isinstance(value, Sequence) and len(value) == 0):
        return "empty"
    if ds[tag].VR == "UI":
        return "uid" if str(value).startswith("2.25.") and str(value) != str(before) else "kept"
    return "dummy" if str(value) != str(before) else "kept"


@pytest.mark.parametrize("row", ROWS, ids=[row["name"] for row in ROWS])
def test_table_e1_1_basic_profile(row: dict[str, str], original: Dataset, removed) -> None:
    for tag in _concrete_tags(row["tag"]):
        keyword = keyword_for_tag(tag)
        clean = removed.dataset.file_meta if tag >> 16 == 0x0002 else removed.dataset
        source = original.file_meta if tag >> 16 == 0x0002 else original
        outcome = _outcome(clean, tag, source[tag].value)
        if keyword in DEVIATIONS:
            continue  # asserted one by one below
        code = row["basic_profile"]
        if dictionary_VR(tag) == "SQ" and code == "D":
            assert outcome == "absent", f"{row['name']}: D on a sequence is removed (documented)"
        else:
            assert outcome in ALLOWED[code], f"{row['name']} ({row['tag']}, {code}): {outcome}"


def test_documented_deviations(removed) -> None:
    clean = removed.dataset
    assert clean.PatientSex == "F" and removed.sex == "F"
    assert clean.PatientID == removed.patient_pseudonym and len(clean.PatientID) == 24
    assert "PatientBirthDate" not in clean and "PatientAge" not in clean
    assert removed.age_band == "40-49"


def test_reference_table_agrees_with_the_library_edition() -> None:
    """The hand-written table and the library's machine-read one agree (Patient ID: Z became Z/D in 2024b)."""
    library = profile_table()
    for row in ROWS:
        group, element = row["tag"].strip("()").split(",")
        if "X" in group:
            continue
        expected = "Z/D" if row["name"] == "Patient ID" else row["basic_profile"]
        assert library.get((int(group, 16), int(element, 16))) == expected, row["name"]


def test_training_attributes_are_not_in_the_table_and_are_kept(original: Dataset, shifted) -> None:
    listed = {(Tag(kw).group, Tag(kw).element) for kw in TRAINING_ATTRIBUTES}
    assert {keyword_for_tag(Tag(*t)) for t in listed & set(profile_table())} == {"PatientSex"}
    for keyword in TRAINING:
        assert shifted.dataset[keyword].value == original[keyword].value, keyword


def test_uids_are_remapped_consistently_across_instances_of_a_study(original: Dataset, removed) -> None:
    other = deidentify(phi_dataset(sop_uid="1.2.826.0.1.3680043.10.999.1.33"), DeidConfig(key=KEY))
    a, b = removed.dataset, other.dataset
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "DeviceUID"):
        assert a[keyword].value == b[keyword].value == keyed_uid(KEY, original[keyword].value)
        assert a[keyword].value.startswith("2.25.") and len(a[keyword].value) <= 64
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.SOPClassUID == a.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert a.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    nested = a.ReferencedSeriesSequence[0]
    assert nested.SeriesInstanceUID == a.SeriesInstanceUID  # recursion remaps references alike
    assert removed.study_pseudonym == other.study_pseudonym and removed.series_pseudonym
    assert keyed_uid("another key", original.StudyInstanceUID) != a.StudyInstanceUID


def test_table_uids_are_never_taken_for_standard_ones() -> None:
    """Every UI attribute the table lists is remapped or removed: none passes as a class/standard UID."""
    for tag in profile_table():
        if len(tag) == 2 and dictionary_has_tag(Tag(*tag)) and dictionary_VR(Tag(*tag)) == "UI":
            assert not uid_is_kept(keyword_for_tag(Tag(*tag)), "1.2.826.0.1.3680043.10.999"), tag


def test_library_never_generates_random_uids(removed, shifted) -> None:
    """dicom-anonymizer's own UID replacement is random and process-global; we never let it run."""
    assert sda.dictionary == {}


def test_every_uid_is_remapped_or_standard(removed, shifted) -> None:
    for result in (removed, shifted):
        for elem in result.dataset.iterall():
            if elem.VR == "UI" and elem.value:
                values = elem.value if isinstance(elem.value, list) else [elem.value]
                for uid in map(str, values):
                    assert uid.startswith(("2.25.", "1.2.840.10008.")), elem.keyword


def test_private_tags_and_pixels_are_gone_and_the_input_is_untouched(original: Dataset, shifted) -> None:
    snapshot = copy.deepcopy(original)
    deidentify(original, DeidConfig(key=KEY))
    assert original == snapshot and "PixelData" in original
    clean = shifted.dataset
    assert not [e.tag for e in clean.iterall() if e.tag.is_private]
    assert "PixelData" not in clean
    assert not [e for e in clean if e.tag.group in (0x5000, 0x6000)]
    assert UNKNOWN_PUBLIC in original and UNKNOWN_PUBLIC not in clean


def test_nested_phi_is_cleaned_by_recursion(shifted) -> None:
    clean = shifted.dataset
    for keyword in ("RequestAttributesSequence", "OtherPatientIDsSequence", "ReferencedStudySequence"):
        assert keyword not in clean
    assert "IssuerOfAccessionNumberSequence" in ALWAYS_REMOVED  # not in the table; holds the hospital's name
    assert "IssuerOfAccessionNumberSequence" not in clean
    nested = clean.ReferencedSeriesSequence[0]
    assert "InstitutionName" not in nested and "EvaluatorName" not in nested
    assert nested.ReferringPhysicianName == "" and nested.StudyDate == clean.StudyDate


def test_marks(removed, shifted) -> None:
    for result, codes, temporal in (
        (removed, {"113100", "113108"}, "REMOVED"),
        (shifted, {"113100", "113107", "113108"}, "MODIFIED"),
    ):
        clean = result.dataset
        assert clean.PatientIdentityRemoved == "YES"
        assert "dicom-anonymizer" in clean.DeidentificationMethod and len(clean.DeidentificationMethod) <= 64
        assert {item.CodeValue for item in clean.DeidentificationMethodCodeSequence} == codes
        assert {item.CodingSchemeDesignator for item in clean.DeidentificationMethodCodeSequence} == {"DCM"}
        assert clean.LongitudinalTemporalInformationModified == temporal


# --- dates ----------------------------------------------------------------------------------------------


def _days(later: str, earlier: str) -> int:
    def day(text: str) -> dt.date:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))

    return (day(later) - day(earlier)).days


def test_dates_shift_per_patient_and_keep_intervals(original: Dataset, shifted) -> None:
    shift = _days(original.StudyDate, shifted.dataset.StudyDate)
    assert 1 <= shift <= 3650
    clean = shifted.dataset
    for keyword in ("SeriesDate", "AcquisitionDate", "PerformedProcedureStepStartDate", "AdmittingDate"):
        assert _days(original[keyword].value, clean[keyword].value) == shift, keyword
    assert clean.AcquisitionDateTime.endswith("093015.000000")  # time kept, UTC offset dropped
    assert clean.StudyTime == original.StudyTime  # whole-day shift: times of day survive
    next_study = phi_dataset(study_uid="1.2.826.0.1.3680043.10.999.9", study_date="20240301")
    later = deidentify(next_study, DeidConfig(KEY))
    assert _days("20240301", later.dataset.StudyDate) == shift  # same patient, same shift
    assert _days(later.dataset.StudyDate, clean.StudyDate) == _days("20240301", original.StudyDate)
    stranger = deidentify(phi_dataset(patient_id="MRN0000007"), DeidConfig(KEY))
    assert _days(original.StudyDate, stranger.dataset.StudyDate) != shift
    assert stranger.patient_pseudonym != shifted.patient_pseudonym


def test_remove_mode_leaves_no_original_date(original: Dataset, removed) -> None:
    originals = {e.value for e in original.iterall() if e.VR == "DA" and e.value}
    assert not [e.keyword for e in removed.dataset.iterall() if e.VR in ("DA", "DT") and e.value in originals]


@pytest.mark.parametrize(
    ("age", "birth", "study", "band"),
    [
        ("045Y", "", "", "40-49"),
        ("089Y", "", "", "80-89"),
        ("090Y", "", "", "90+"),
        ("102Y", "", "", "90+"),
        ("006M", "", "", "0-9"),
        ("", "19700102", "20240117", "50-59"),
        ("", "19330101", "20240117", "90+"),
        ("", "", "20240117", None),
    ],
)
def test_age_band(age: str, birth: str, study: str, band: str | None) -> None:
    ds = Dataset()
    ds.PatientID, ds.PatientAge, ds.PatientBirthDate, ds.StudyDate = "P1", age, birth, study
    assert deidentify(ds, DeidConfig(key=KEY)).age_band == band
    assert age_band(None) is None


def test_config_refuses_a_missing_key_and_hides_it() -> None:
    with pytest.raises(ValueError, match="MEDCURATE_PSEUDONYM_KEY"):
        DeidConfig(key="")
    with pytest.raises(ValueError, match="dates"):
        DeidConfig(key=KEY, dates="jitter")
    with pytest.raises(ValueError, match="unknown"):
        DeidConfig(key=KEY, keep=("NoSuchKeyword",))
    with pytest.raises(ValueError, match="always removed"):
        DeidConfig(key=KEY, keep=("PatientBirthDate",))
    assert KEY not in repr(DeidConfig(key=KEY))
    kept = deidentify(phi_dataset(), DeidConfig(key=KEY, keep=("StudyDescription",))).dataset
    assert kept.StudyDescription == REALISTIC["StudyDescription"]


# --- the scanner ---------------------------------------------------------------------------------------


def _record(result) -> dict[str, Any]:
    return {
        "subject": {
            "patient_pseudonym": result.patient_pseudonym,
            "study_pseudonym": result.study_pseudonym,
            "sex": result.sex,
            "age_band": result.age_band,
        },
        "scan": {"series_pseudonym": result.series_pseudonym, "site_pseudonym": result.site_pseudonym},
        "text": {"final_caption": "Axial CT of the chest, slice 12 of 40, 120 kVp, 1.25 mm."},
        "image": {"bytes": b"Doe^Jane"},
        "header": header_json(result.dataset),
    }


def test_clean_header_and_record_have_no_phi(original: Dataset, removed, shifted) -> None:
    phi = collect_phi(original)
    assert phi and shifted.phi.by_attribute == phi.by_attribute
    for result in (removed, shifted):
        assert scan_record(header_json(result.dataset), phi) == []
        assert scan_record(_record(result), phi) == []


def test_planted_phi_is_found_by_attribute_and_field_never_by_value(original: Dataset, shifted) -> None:
    phi = collect_phi(original)
    record = _record(shifted)
    record["text"]["final_caption"] = "Chest CT of Jane Doe, born 1970-01-02."
    record["text"]["label_text"] = "Doe, Jane (01/02/1970)"
    record["report"] = {"sections": [{"name": "history", "meta": {"accession": "acc24011700"}}]}
    record["scan"]["institution"] = "springfield general hospital"
    hits = scan_record(record, phi)
    found = {(h.attribute, h.where) for h in hits}
    assert ("PatientName", "text.final_caption") in found
    assert ("PatientBirthDate", "text.final_caption") in found
    assert ("PatientName", "text.label_text") in found and ("PatientBirthDate", "text.label_text") in found
    assert ("AccessionNumber", "report.sections.0.meta.accession") in found
    assert ("InstitutionName", "scan.institution") in found
    for hit in hits:
        assert not {"jane", "1970", "acc24011700"} & set(repr(hit).casefold().replace("'", " ").split())
    assert "Doe" not in repr(phi) and "MRN" not in repr(phi)


def test_matching_is_whole_token_and_skips_short_and_generic_values() -> None:
    phi = PhiValues(
        {
            "StudyID": ("12",),
            "AccessionNumber": ("A-77",),
            "InstitutionName": ("GH",),
            "SeriesDescription": ("CHEST", "T2 FLAIR"),
            "StudyInstanceUID": ("1.2.3.4567",),
            "PatientName": ("O'Brien^Seamus",),
        }
    )
    for text in ("slice 12x", "120 kVp", "1.25 mm", "GH ward", "CT chest", "1.2.3.45678", "obrienx"):
        assert find_phi(text, phi) == [], text
    assert [h.attribute for h in find_phi("series 12 of 40", phi)] == ["StudyID"]
    assert [h.attribute for h in find_phi("ref A77", phi)] == ["AccessionNumber"]
    assert [h.attribute for h in find_phi("axial t2-flair", phi)] == ["SeriesDescription"]
    assert [h.attribute for h in find_phi("uid 1.2.3.4567", phi)] == ["StudyInstanceUID"]
    assert [h.attribute for h in find_phi("Seamus O'Brien", phi)] == ["PatientName"]
    assert [h.attribute for h in find_phi("O BRIEN, S.", phi)] == ["PatientName"]
    assert find_phi("OBRIEN", phi) == []  # the apostrophe splits the stored name into two tokens


# --- pydicom's own test files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_pydicom_test_files_come_out_clean(name: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(name, download=False))
    phi = collect_phi(ds)
    result = deidentify(ds, DeidConfig(key=KEY))
    header = header_json(result.dataset)
    assert phi and scan_record(header, phi) == []
    assert scan_record(_record(result), phi) == []
    clean = result.dataset
    assert clean.PatientIdentityRemoved == "YES" and clean.Modality == ds.Modality
    assert clean.StudyInstanceUID == keyed_uid(KEY, ds.StudyInstanceUID)
    assert not [e for e in clean.iterall() if e.tag.is_private]
    assert "7FE00010" not in header and result.site_pseudonym is not None


def test_header_json_drops_bulk_data() -> None:
    ds = Dataset()
    ds.Modality = "CT"
    ds.add_new(0x00282000, "OB", b"\x01" * 2048)  # ICC profile: binary over 1 KiB
    ds.add_new(0x00189220, "OB", b"\x01\x02")  # small binary stays inline
    ds.add_new(0x60000010, "US", 4)  # overlay rows
    ds.PixelData = b"\x00" * 64
    item = Dataset()
    item.add_new(0x00282000, "OB", b"\x02" * 4096)
    item.CodeValue = "1"
    ds.AnatomicRegionSequence = Sequence([item])
    header = header_json(ds)
    assert set(header) == {"00080060", "00189220", "00082218"}
    assert header["00082218"]["Value"] == [{"00080100": {"vr": "SH", "Value": ["1"]}}]


def test_tags_in_table_exist_in_pydicom() -> None:
    for row in ROWS:
        for tag in _concrete_tags(row["tag"]):
            assert keyword_for_tag(tag), row["name"]
    assert tag_for_keyword("PatientIdentityRemoved") == 0x00120062
