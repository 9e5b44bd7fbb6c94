"""Synthetic clinical sample corpus: DICOM studies full of (made-up) PHI, a report CSV, NIfTI volumes.

Every identifying attribute of the DICOM files carries a realistic but invented value (names, record
numbers, birth dates, addresses, phone numbers, institution, accession numbers, free-text
descriptions, private tags, nested sequences), and so do folder names and the reports, so a test can
prove that none of it reaches a release. ``SAMPLE_PHI`` lists those values.

The cases cover what the DICOM source must handle: a CT series (volume), a multi-frame XA cine, a
MONOCHROME1 CR, an RLE-compressed DX, a JPEG 2000 MR (decoded when openjpeg is installed), a JPEG-LS
MR (no decoder by default: unsupported transfer syntax), an ultrasound with burned-in annotation, a
CT study inside a zip archive, and broken inputs (truncated pixel data, missing pixel data, a
non-DICOM ``.dcm`` file, an inconsistent series), plus a DICOMDIR and a README that are skipped.

Generation is deterministic (fixed UIDs and pixel seeds) and rewrites only files whose bytes differ.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from medcurate.samplecorpus import _write_if_changed
from medcurate.sources.volumes import gzip_bytes

SEED = 20241123
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"
XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"


@dataclass(frozen=True)
class Patient:
    name: str
    id: str
    birth_date: str
    sex: str
    age: str
    address: str
    phone: str
    other_id: str
    mother: str
    folder: str


PATIENTS = {
    "doe": Patient(
        "DOE^JOHN^QUINCY",
        "MRN4451234",
        "19580214",
        "M",
        "066Y",
        "42 Elm Street, Springfield",
        "555-867-5309",
        "HSP-99812",
        "SMITHERS^MARGE",
        "Doe_John_MRN4451234",
    ),
    "roe": Patient(
        "ROE^JANE",
        "MRN7712009",
        "19711103",
        "F",
        "052Y",
        "7 Birch Lane, Shelbyville",
        "555-201-7788",
        "HSP-10455",
        "ROEBUCK^ANNA",
        "Roe_Jane_MRN7712009",
    ),
    "smith": Patient(
        "SMITH^ALICE^B",
        "MRN5550123",
        "19300105",
        "F",
        "093Y",
        "1 Oak Court, Capital City",
        "555-332-1090",
        "HSP-77001",
        "JONES^BEATRICE",
        "Smith_Alice_MRN5550123",
    ),
}

STAFF = {
    "InstitutionName": "St. Example General Hospital",
    "InstitutionAddress": "100 Hospital Way, Springfield",
    "InstitutionalDepartmentName": "Radiology West Wing",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "PerformingPhysicianName": "WILSON^JAMES",
    "OperatorsName": "CHASE^ROBERT",
    "NameOfPhysiciansReadingStudy": "CUDDY^LISA",
    "StationName": "CTSCAN-ELM-01",
    "DeviceSerialNumber": "SN-7731-XQ",
}

STUDIES = {
    # key: (patient, accession, study id, study date, description)
    "doe_ct": ("doe", "ACC20240312001", "ST778812", "20240312", "CT CHEST W CONTRAST JOHN DOE"),
    "doe_ct_zip": ("doe", "ACC20240610002", "ST778990", "20240610", "CT CHEST FOLLOWUP DOE"),
    "doe_us": ("doe", "ACC20240312009", "ST778813", "20240312", "US ABDOMEN DOE JOHN"),
    "roe_xa": ("roe", "ACC20240401777", "ST880123", "20240401", "CORONARY ANGIO ROE"),
    "roe_mr": ("roe", "ACC20240402778", "ST880124", "20240402", "MR BRAIN ROE JANE"),
    "roe_mr_bad": ("roe", "ACC20240402779", "ST880125", "20240402", "MR SPINE ROE"),
    "smith_cr": ("smith", "ACC20230901555", "ST550001", "20230901", "CHEST PA ALICE SMITH"),
}


def _uid(*parts: Any) -> str:
    """A deterministic UID under the 2.25 (UUID-derived) root."""
    digest = hashlib.sha256(repr((SEED, *parts)).encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def sample_phi() -> list[str]:
    """Every invented identifying value the corpus writes (headers, folder names, reports).

    Name parts of one or two letters (a middle initial) are left out: they occur in any text.
    """
    values: list[str] = []
    for p in PATIENTS.values():
        family, given, *middle = p.name.split("^")
        values += [p.name, family, given, *(m for m in middle if len(m) > 2)]
        values += [p.id, p.birth_date, p.address, p.phone, p.other_id]
        values += [p.mother.split("^")[0], p.folder]
    for key, value in STAFF.items():
        values += value.split("^") if "Name" in key and "^" in value else [value]
    for _patient, accession, study_id, _date, description in STUDIES.values():
        values += [accession, study_id, description]
    return sorted(set(values))


def _base(study_key: str, series_no: int, modality: str, sop_class: str, instance: int) -> Dataset:
    patient_key, accession, study_id, study_date, description = STUDIES[study_key]
    p = PATIENTS[patient_key]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = _uid(study_key, series_no, instance)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(study_key)
    ds.SeriesInstanceUID = _uid(study_key, series_no)
    ds.FrameOfReferenceUID = _uid(study_key, "frame")
    ds.PatientName = p.name
    ds.PatientID = p.id
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    ds.PatientAge = p.age
    ds.PatientAddress = p.address
    ds.PatientTelephoneNumbers = p.phone
    ds.OtherPatientIDs = p.other_id
    ds.PatientMotherBirthName = p.mother
    ds.AdditionalPatientHistory = f"Smoker per {p.name.split('^')[1].title()}; call {p.phone}"
    ds.AccessionNumber = accession
    ds.StudyID = study_id
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101530"
    ds.StudyDescription = description
    ds.SeriesDescription = f"{modality} series {series_no} {p.name.split('^')[0]}"
    ds.ImageComments = f"Patient {p.name.replace('^', ' ')} {p.id}"
    for keyword, value in STAFF.items():
        setattr(ds, keyword, value)
    ds.Manufacturer = "ACME Medical"
    ds.ManufacturerModelName = "Imager 9000"
    ds.Modality = modality
    ds.SeriesNumber = series_no
    ds.InstanceNumber = instance
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref.ReferencedSOPInstanceUID = _uid(study_key, "ref")
    ds.ReferencedStudySequence = Sequence([ref])
    request = Dataset()
    request.RequestedProcedureID = f"RP-{p.id}"
    request.ScheduledProcedureStepID = f"SPS-{study_id}"
    request.RequestedProcedureDescription = f"{description} for {p.name}"
    ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(0x0011, "MEDCURATE SAMPLE", create=True)
    block.add_new(0x01, "LO", f"private copy of {p.name}")
    block.add_new(0x02, "LO", p.id)
    return ds


def _set_pixels(ds: Dataset, array: np.ndarray, photometric: str = "MONOCHROME2") -> None:
    rgb = photometric == "RGB"
    ds.Rows, ds.Columns = (int(n) for n in (array.shape[-3:-1] if rgb else array.shape[-2:]))
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = array.dtype.itemsize * 8
    ds.BitsStored = 12 if array.dtype.itemsize == 2 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if array.dtype.kind == "i" else 0
    ds.PixelData = array.astype(array.dtype.newbyteorder("<")).tobytes()


def _bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _ct_slice(
    study_key: str, series_no: int, index: int, count: int, z0: float = 0.0, shift: int = 0
) -> Dataset:
    """One CT slice; ``shift`` moves the patient in the field of view, as a follow-up scan does."""
    ds = _base(study_key, series_no, "CT", CT_IMAGE, index + 1)
    rng = np.random.default_rng(SEED + index + 31 * shift)
    yy, xx = np.mgrid[-32:32, -32:32]
    yy, xx = yy - shift, xx - shift // 2
    hu = np.full((64, 64), -1000.0)
    hu[(xx / 28.0) ** 2 + (yy / 22.0) ** 2 < 1] = 40.0  # body
    hu[((xx + 12) / 9.0) ** 2 + (yy / 14.0) ** 2 < 1] = -820.0  # lungs
    hu[((xx - 12) / 9.0) ** 2 + (yy / 14.0) ** 2 < 1] = -820.0
    hu[(xx + 14) ** 2 + (yy - 3) ** 2 < (2 + index % 4) ** 2] = 55.0  # a nodule that grows through z
    stored = np.clip(hu + 1024 + rng.normal(0, 8, hu.shape), 0, 4095).astype(np.int16)
    _set_pixels(ds, stored)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-22.4, -22.4, z0 - 2.5 * index]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 2.5
    ds.BodyPartExamined = "CHEST"
    ds.KVP = 120
    return ds


def _mr_slice(study_key: str, series_no: int, index: int, rows: int = 48) -> Dataset:
    ds = _base(study_key, series_no, "MR", MR_IMAGE, index + 1)
    rng = np.random.default_rng(SEED + 100 + index)
    image = (rng.random((rows, 48)) * 600 + 200).astype(np.uint16)
    _set_pixels(ds, image)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-24.0, -24.0, 3.0 * index]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 3.0
    ds.BodyPartExamined = "LSPINE"
    return ds


def _xa_cine() -> Dataset:
    ds = _base("roe_xa", 1, "XA", XA_IMAGE, 1)
    frames = np.stack(
        [(np.add.outer(np.arange(64), np.arange(64)) * (f + 1) % 255).astype(np.uint8) for f in range(6)]
    )
    _set_pixels(ds, frames)
    ds.NumberOfFrames = 6
    ds.FrameTime = 66.7
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.BodyPartExamined = "HEART"
    return ds


def _cr_monochrome1(with_pixels: bool = True, instance: int = 1) -> Dataset:
    ds = _base("smith_cr", 1 if with_pixels else 3, "CR", CR_IMAGE, instance)
    yy, xx = np.mgrid[0:80, 0:64]
    attenuation = (3000 - 20 * np.hypot(xx - 32, yy - 40)).clip(200, 4000).astype(np.uint16)
    _set_pixels(ds, attenuation, "MONOCHROME1")
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    ds.ViewPosition = "PA"
    ds.BodyPartExamined = "CHEST"
    ds.PixelSpacing = [0.5, 0.5]
    if not with_pixels:
        del ds.PixelData
    return ds


def _dx_rle() -> Dataset:
    ds = _base("smith_cr", 2, "DX", DX_IMAGE, 1)
    yy, xx = np.mgrid[0:64, 0:64]
    image = ((np.sin(xx / 6.0) + np.cos(yy / 9.0) + 2) * 900).astype(np.uint16)
    _set_pixels(ds, image)
    ds.ViewPosition = "LL"
    ds.BodyPartExamined = "CHEST"
    ds.WindowCenter, ds.WindowWidth = 1800, 3600
    ds.compress(RLELossless, generate_instance_uid=False)
    return ds


def _us_burned_in() -> Dataset:
    ds = _base("doe_us", 1, "US", US_IMAGE, 1)
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    image[4:10, 4:60] = 255  # the banner where scanners print name and date
    image[20:40, 10:50, 0] = 120
    _set_pixels(ds, image, "RGB")
    ds.BurnedInAnnotation = "YES"
    return ds


def _from_pydicom_file(name: str, study_key: str, series_no: int, modality: str) -> Dataset:
    """A compressed file from pydicom's own test data, re-labelled with this corpus's PHI."""
    original = pydicom.dcmread(get_testdata_file(name))
    ds = _base(study_key, series_no, modality, str(original.SOPClassUID), 1)
    ds.file_meta.TransferSyntaxUID = original.file_meta.TransferSyntaxUID
    for keyword in (
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PixelSpacing",
        "ImageOrientationPatient",
        "ImagePositionPatient",
        "SliceThickness",
        "RescaleIntercept",
        "RescaleSlope",
        "WindowCenter",
        "WindowWidth",
    ):
        if keyword in original:
            setattr(ds, keyword, original[keyword].value)
    ds["PixelData"] = original["PixelData"]
    ds.BodyPartExamined = "BRAIN"
    return ds


def _reports() -> bytes:
    rows = [
        (
            "ACC20240312001",
            "FINAL REPORT\nEXAMINATION: CT CHEST WITH CONTRAST\n"
            "INDICATION: 66-year-old man (John Doe, MRN4451234) with cough.\n"
            "COMPARISON: CT from 03/01/2023.\n"
            "FINDINGS: There is a 9 mm nodule in the right lower lobe. No pleural effusion. "
            "Heart size is normal.\n"
            "IMPRESSION: Right lower lobe nodule, 9 mm. Follow-up CT in 3 months is recommended. "
            "Discussed with Dr. Gregory House (555-867-5309) on 03/12/2024.",
        ),
        (
            "ACC20230901555",
            "EXAMINATION: CHEST PA\nHISTORY: 93 year old woman, Alice Smith, born 01/05/1930.\n"
            "FINDINGS: Lungs are clear. No pneumothorax. Mild cardiomegaly.\n"
            "IMPRESSION: Mild cardiomegaly. Signed by Dr. Lisa Cuddy, St. Example General Hospital.",
        ),
        (
            "ACC20240401777",
            "FINDINGS: Left anterior descending artery with 50% stenosis. Patient Jane Roe tolerated "
            "the procedure well.\nIMPRESSION: Moderate LAD stenosis. Reported by Dr. James Wilson.",
        ),
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["accession_number", "report"])
    writer.writerows(rows)
    return out.getvalue().encode()


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2024, 6, 10, 12, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data)
    return out.getvalue()


def dicom_files() -> dict[str, bytes]:
    """Relative path -> bytes of every file of the DICOM sample folder."""
    doe, roe, smith = (PATIENTS[k].folder for k in ("doe", "roe", "smith"))
    files: dict[str, bytes] = {
        "README.txt": b"SYNTHETIC DICOM sample corpus written by medcurate (invented patients only).\n",
        "DICOMDIR": b"\0" * 128 + b"DICM" + b"index of the files beside it (skipped)",
        "reports.csv": _reports(),
    }
    for i in range(12):
        files[f"{doe}/CT_20240312/IM{i + 1:04d}"] = _bytes(_ct_slice("doe_ct", 2, i, 12))
    files[f"{doe}/US_20240312/US0001.dcm"] = _bytes(_us_burned_in())
    files[f"{roe}/XA_20240401/XA_cine.dcm"] = _bytes(_xa_cine())
    files[f"{roe}/MR_20240402/MR_brain_jpegls.dcm"] = _bytes(
        _from_pydicom_file("MR_small_jpeg_ls_lossless.dcm", "roe_mr", 1, "MR")
    )
    files[f"{roe}/MR_20240402/MR_brain_j2k.dcm"] = _bytes(
        _from_pydicom_file("MR_small_jp2klossless.dcm", "roe_mr", 2, "MR")
    )
    for i in range(5):
        files[f"{roe}/MR_spine/slice{i}.dcm"] = _bytes(
            _mr_slice("roe_mr_bad", 3, i, rows=40 if i == 3 else 48)
        )
    files[f"{smith}/CR_20230901/chest_pa.dcm"] = _bytes(_cr_monochrome1())
    files[f"{smith}/DX_20230901/chest_lat_rle.dcm"] = _bytes(_dx_rle())
    files[f"{smith}/CR_nopixels/chest_ap.dcm"] = _bytes(_cr_monochrome1(with_pixels=False, instance=2))
    truncated = _bytes(_ct_slice("doe_ct", 7, 0, 1))
    files["broken/truncated_CT_Doe_John.dcm"] = truncated[: len(truncated) - 3000]
    files["broken/not_dicom_Doe_John.dcm"] = b"Patient DOE^JOHN exported as text by mistake\n"
    archive = {
        f"DOE_JOHN_{doe}/CT/IM{i + 1:04d}.dcm": _bytes(_ct_slice("doe_ct_zip", 2, i, 5, -40.0, shift=7))
        for i in range(5)
    }
    files[f"transfer_{doe}.zip"] = _zip(archive)
    return files


def write_dicom_sample_corpus(root: Path) -> Path:
    """Write (or refresh) the DICOM sample folder under ``root``; returns it."""
    folder = Path(root)
    _write_all(folder, dicom_files())
    return folder


def _write_all(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in sorted(files.items()):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_if_changed(path, data)


# -- NIfTI ------------------------------------------------------------------------------------------

#: What the NIfTI header's free-text field of case 1 carries: scanners and converters leave names there.
NIFTI_DESCRIP = "DOE^JOHN MRN4451234"


def _nifti(array: np.ndarray, affine: np.ndarray, descrip: str = "") -> bytes:
    image = nib.Nifti1Image(array, affine)
    image.header["descrip"] = descrip.encode()
    image.header.set_xyzt_units("mm", "sec")
    return gzip_bytes(image.to_bytes())


def _ct_volume() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 40x40x24 CT in LPS voxel order (axis 0 runs to the patient's left), with a two-label mask."""
    affine = np.array([[-0.8, 0, 0, 16.0], [0, -0.8, 0, 16.0], [0, 0, 2.0, -24.0], [0, 0, 0, 1]])
    i, j, k = np.meshgrid(np.arange(40), np.arange(40), np.arange(24), indexing="ij")
    xyz = np.einsum("ab,bijk->aijk", affine[:3, :3], np.stack([i, j, k])) + affine[:3, 3:4, None, None]
    x, y, z = xyz
    hu = np.full(i.shape, -1000.0)
    hu[(x / 15.0) ** 2 + (y / 12.0) ** 2 < 1] = 45.0  # body
    hu[((x + 7) / 5.0) ** 2 + (y / 7.0) ** 2 < 1] = -850.0  # left lung (x < 0 is the patient's left)
    mask = np.zeros(i.shape, dtype=np.uint8)
    liver = (x - 7.0) ** 2 + (y + 2.0) ** 2 + (z - 2.0) ** 2 < 6.0**2  # right side (x > 0)
    nodule = (x + 7.0) ** 2 + y**2 + (z + 6.0) ** 2 < 3.0**2  # left lung
    hu[liver], hu[nodule] = 90.0, -20.0
    mask[liver], mask[nodule] = 1, 2
    rng = np.random.default_rng(SEED)
    return (hu + rng.normal(0, 5, hu.shape)).astype(np.int16), mask, affine


def nifti_files() -> dict[str, bytes]:
    """Relative path -> bytes of every file of the NIfTI sample folder."""
    ct, mask, affine = _ct_volume()
    rng = np.random.default_rng(SEED + 1)
    mr = (rng.random((32, 32, 12)) * 800).astype(np.float32)
    mr_affine = np.diag([1.2, 1.2, 4.0, 1.0])
    files = {
        "README.txt": b"SYNTHETIC NIfTI sample corpus written by medcurate (invented volumes only).\n",
        "case001_ct.nii.gz": _nifti(ct, affine, NIFTI_DESCRIP),
        "case001_ct_mask.nii.gz": _nifti(mask, affine),
        "case001_ct_labels.json": json.dumps({"1": "liver lesion", "2": "lung nodule"}, indent=1).encode(),
        "case002_mr.nii.gz": _nifti(mr, mr_affine),
        "case003_ct_badgrid.nii.gz": _nifti(ct[:, :, :12], affine),
        "case003_ct_badgrid_mask.nii.gz": _nifti(mask, affine),
    }
    whole = _nifti(ct, affine)
    files["case004_ct_truncated.nii.gz"] = whole[: len(whole) // 2]
    return files


def write_nifti_sample_corpus(root: Path) -> Path:
    """Write (or refresh) the NIfTI sample folder under ``root``; returns it."""
    folder = Path(root)
    _write_all(folder, nifti_files())
    return folder
