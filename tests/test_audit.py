"""The source check of `audit`: a record's input is hashed again, found by path or in a zip member."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from medcurate.audit import check_source
from medcurate.lake import Lake
from medcurate.lake.restricted import PathMap


def _record(uri: str, data: bytes) -> dict:
    return {"source": {"uri": uri, "sha256": hashlib.sha256(data).hexdigest()}}


def test_check_source_says_matches_changed_missing_or_unverifiable(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    image = tmp_path / "figure.png"
    image.write_bytes(b"original bytes")
    record = _record(str(image), b"original bytes")
    assert check_source(lake, record)["status"] == "matches"
    assert (
        check_source(lake, {**record, "source": {**record["source"], "uri": image.as_uri()}})["via"] == "path"
    )
    image.write_bytes(b"edited bytes")
    assert check_source(lake, record)["status"] == "changed"
    image.unlink()
    assert check_source(lake, record)["status"] == "missing"
    # A pseudonymous uri with no restricted path map, and a record without a checksum.
    assert check_source(lake, _record("dicom://site/abc", b"x"))["status"] == "unverifiable"
    assert check_source(lake, {"source": {"uri": str(image), "sha256": None}})["status"] == "unverifiable"


def test_check_source_hashes_a_zip_member_inside_its_archive(tmp_path: Path) -> None:
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("series/1.dcm", b"dicom bytes")
    lake = Lake(str(tmp_path / "lake"))
    paths = PathMap()  # what the DICOM source records while listing
    paths.remember("dicom://site/abc", f"{archive}!series/1.dcm")
    paths.commit(lake, "dicom")
    assert check_source(lake, _record("dicom://site/abc", b"dicom bytes")) == {
        "status": "matches",
        "why": "",
        "via": "restricted path map",
    }
    assert check_source(lake, _record("dicom://site/abc", b"other"))["status"] == "changed"
