"""The synthetic PMC mirrors: deterministic bytes, real PMC formats, and the documented bad packages."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from PIL import Image

from medcurate.pmc_corpus import (
    CLOUD_FILE_LIST_COLUMNS,
    FILE_LIST_COLUMNS,
    LICENSES,
    edit_last_updated,
    remove_from_file_list,
    set_license,
    write_pmc_mirror,
    write_pmc_sample_corpus,
)

XLINK = "{http://www.w3.org/1999/xlink}href"
SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return {info.name: info for info in tar.getmembers()}


def read_member(path: Path, name: str) -> bytes:
    with tarfile.open(path, "r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("pmc")
    return root, write_pmc_sample_corpus(root)


def test_layout_readme_and_size(corpus):
    root, expected = corpus
    classic, cloud = expected["classic"], expected["cloud"]
    assert classic["root"] == root / "pmc" and cloud["root"] == root / "pmc-cloud"
    for mirror in (root / "pmc", root / "pmc-cloud"):
        assert "synthetic" in (mirror / "README.txt").read_text().lower()
    everything = files(root)
    assert sum(map(len, everything.values())) < 3_000_000
    packages = sorted(k for k in everything if k.endswith(".tar.gz"))
    assert len(packages) == 16
    assert all(re.fullmatch(r"pmc/oa_package/[0-9a-f]{2}/[0-9a-f]{2}/PMC\d+\.tar\.gz", k) for k in packages)
    assert {f"pmc/{p['file']}" for p in classic["packages"].values()} == set(packages)


def test_classic_file_list(corpus):
    _, expected = corpus
    classic = expected["classic"]
    columns, rows = read_csv(classic["file_list"])
    assert tuple(columns) == FILE_LIST_COLUMNS
    ids = [row["Accession ID"] for row in rows]
    assert ids == sorted(ids, key=lambda a: int(a[3:])) and len(ids) == 15
    assert "PMC1000015" not in ids and classic["ignored"] == ["PMC1000015"]
    for row in rows:
        package = classic["packages"][row["Accession ID"]]
        assert row["File"] == package["file"]
        assert (classic["root"] / row["File"]).is_file()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["Last Updated (YYYY-MM-DD HH:MM:SS)"])
        assert re.fullmatch(r".+\. \d{4} [A-Z][a-z]{2} \d{1,2}; \d+\(\d+\):\d+-\d+", row["Article Citation"])
        assert row["License"] in LICENSES and row["PMID"] in ("", package["pmid"])
        assert row["Retracted"] == ("yes" if package["retracted"] else "no")
    by_id = {row["Accession ID"]: row for row in rows}
    assert by_id["PMC1000014"]["Retracted"] == "yes"
    assert by_id["PMC1000007"]["License"] == "CC BY-NC"
    assert by_id["PMC1000008"]["PMID"] == ""


def test_expectations(corpus):
    _, expected = corpus
    classic = expected["classic"]
    assert classic["expected_samples"] == 19
    assert classic["expected_retracted_samples"] == 1
    assert classic["expected_quarantined"] == {
        "PMC1000005/F2": "graphic_missing",
        "PMC1000010": "xml_malformed",
        "PMC1000011": "archive_unsafe_member",
        "PMC1000012": "archive_truncated",
        "PMC1000013": "xml_entities",
    }
    packages = classic["packages"]
    assert [packages[classic["cases"][c]]["figures"] for c in ("compound_cc0", "fig_group_floats_boxed")] == [
        2,
        4,
    ]
    single = packages["PMC1000001"]["figure_list"][0]
    assert single["cited_in"] == ["Case presentation", "Discussion"] and single["direct_citations"] == 2
    ranged = {f["id"]: f for f in packages["PMC1000006"]["figure_list"]}
    assert ranged["F3"]["cited_via_range"] and ranged["F3"]["panels"] == ["A", "B"]
    assert [ranged[f]["kind"] for f in ("F1", "F2", "F3", "F4")] == ["chart", "histology", "ct", "diagram"]
    placements = {f["id"]: f["placement"] for f in packages["PMC1000003"]["figure_list"]}
    assert placements == {"F1A": "fig-group", "F1B": "fig-group", "F2": "floats-group", "F3": "boxed-text"}
    for pmcid in ("PMC1000008", "PMC1000009"):
        assert packages[pmcid]["license"] == "cc-by" and packages[pmcid]["license_source"] == "file_list"
    assert packages["PMC1000007"]["license"] == "cc-by-nc"
    assert expected["cloud"]["expected_samples"] == 5
    assert expected["cloud"]["expected_quarantined"] == {"PMC2000003/F2": "graphic_missing"}


def test_deterministic_and_mtime_preserving(corpus, tmp_path):
    root, _ = corpus
    other = tmp_path / "other"
    write_pmc_sample_corpus(other)
    assert files(other) == files(root)  # .tar.gz bytes included
    paths = [p for p in other.rglob("*") if p.is_file()]
    for path in paths:
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    write_pmc_sample_corpus(other)
    assert [p for p in paths if p.stat().st_mtime_ns != 1_000_000_000] == []


def test_packages_open_except_the_truncated_one(corpus):
    _, expected = corpus
    classic = expected["classic"]
    for pmcid, package in classic["packages"].items():
        path = classic["root"] / package["file"]
        assert path.read_bytes()[:2] == b"\x1f\x8b"
        if package["case"] == "truncated_gzip":
            with pytest.raises((tarfile.TarError, EOFError, zlib.error)), tarfile.open(path, "r:gz") as tar:
                for info in tar.getmembers():
                    if info.isfile():
                        tar.extractfile(info).read()  # type: ignore[union-attr]
            continue
        names = members(path)
        assert pmcid in names and names[pmcid].isdir()
        assert all(info.mtime == 0 and info.uid == 0 and info.uname == "" for info in names.values())
        pdfs = [n for n in names if n.endswith(".pdf")]
        assert len(pdfs) == 1 and read_member(path, pdfs[0]).startswith(b"%PDF-1.4")
    unsafe = members(classic["root"] / classic["packages"]["PMC1000011"]["file"])
    assert "../../evil.txt" in unsafe and "/tmp/evil" in unsafe
    assert any(info.issym() for info in unsafe.values())


def test_good_nxml_is_jats_with_extensionless_graphics(corpus):
    _, expected = corpus
    classic = expected["classic"]
    for pmcid, package in classic["packages"].items():
        if package["quarantine"]:
            continue
        path = classic["root"] / package["file"]
        names = members(path)
        data = read_member(path, package["nxml"])
        assert data.startswith(
            b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE article PUBLIC "-//NLM//DTD JATS'
        )
        article = etree.fromstring(data, SAFE_PARSER)
        assert article.tag == "article" and article.get("dtd-version") == "1.3"
        assert article.find("front/journal-meta/journal-id[@journal-id-type='nlm-ta']") is not None
        ids = {e.get("pub-id-type"): e.text for e in article.iterfind("front/article-meta/article-id")}
        assert ids.get("pmc") == pmcid[3:] or ids.get("pmcid") == pmcid
        hrefs = [g.get(XLINK) for g in article.iter("graphic")]
        assert hrefs and all("." not in href for href in hrefs)
        present = {f["href"] for f in package["figure_list"] if f["sample"]}
        assert set(hrefs) == {f["href"] for f in package["figure_list"]}
        for href in hrefs:
            full = [n for n in names if re.fullmatch(rf"{pmcid}/{re.escape(href)}\.(jpg|png|tif)", n)]
            assert len(full) == (href in present)
            assert (f"{pmcid}/{href}.gif" in names) == (href in present)
        assert len(present) == package["figures"]
    captions = etree.fromstring(
        read_member(classic["root"] / classic["packages"]["PMC1000002"]["file"], "PMC1000002/cic-9-210.nxml"),
        SAFE_PARSER,
    )
    text = " ".join(captions.xpath("//fig//caption//text()"))
    assert "(A) Axial CT" in text and "(B) Coronal" in text and "A, Haematoxylin" in text and "μm" in text


def test_licence_variants(corpus):
    _, expected = corpus
    classic = expected["classic"]

    def permissions(pmcid: str) -> etree._Element:
        package = classic["packages"][pmcid]
        data = read_member(classic["root"] / package["file"], package["nxml"])
        return etree.fromstring(data, SAFE_PARSER).find("front/article-meta/permissions")

    assert (
        permissions("PMC1000007").find("license").get(XLINK)
        == "https://creativecommons.org/licenses/by-nc/4.0/"
    )
    assert permissions("PMC1000008").find("license") is None
    empty = permissions("PMC1000009").find("license")
    assert empty is not None and len(empty) == 0 and not (empty.text or "").strip()
    ali = permissions("PMC1000002").find("license/{http://www.niso.org/schemas/ali/1.0/}license_ref")
    assert ali is not None and "publicdomain/zero" in ali.text


def test_broken_xml_packages(corpus):
    _, expected = corpus
    classic = expected["classic"]
    malformed = classic["packages"]["PMC1000010"]
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(read_member(classic["root"] / malformed["file"], malformed["nxml"]), SAFE_PARSER)
    laughs = classic["packages"]["PMC1000013"]
    data = read_member(classic["root"] / laughs["file"], laughs["nxml"])
    assert b"<!ENTITY lol9" in data and b"&lol9;" in data


def test_images_are_real_files(corpus):
    _, expected = corpus
    classic = expected["classic"]
    path = classic["root"] / classic["packages"]["PMC1000004"]["file"]
    formats = {}
    for name in members(path):
        if name.endswith((".tif", ".png", ".gif", ".jpg")):
            with Image.open(io.BytesIO(read_member(path, name))) as image:
                image.load()
                formats[name.rsplit(".", 1)[1]] = formats.get(name.rsplit(".", 1)[1], 0) + 1
                if name.endswith(".gif"):
                    assert max(image.size) <= 120
                else:
                    assert 256 <= max(image.size) <= 520
                if name.endswith(".png"):  # the bar chart: white background, a handful of solid colours
                    colours = image.convert("RGB").getcolors(1024)
                    assert colours is not None and len(colours) < 16
                    assert max(colours)[1] == (255, 255, 255)
    assert formats == {"tif": 1, "png": 1, "gif": 2}
    ct = classic["packages"]["PMC1000001"]["figure_list"][0]["member"]
    with Image.open(
        io.BytesIO(read_member(classic["root"] / classic["packages"]["PMC1000001"]["file"], ct))
    ) as im:
        assert (
            im.mode == "L" and im.getpixel((0, 0)) < 40 and im.getpixel((im.width // 2, im.height // 2)) > 60
        )


def test_cloud_layout(corpus):
    _, expected = corpus
    cloud = expected["cloud"]
    assert set(cloud["file_list"]) == {"oa_comm", "oa_noncomm"}
    keys = []
    for group, path in cloud["file_list"].items():
        assert path == cloud["root"] / group / "metadata" / f"{group}.filelist.csv"
        columns, rows = read_csv(path)
        assert tuple(columns) == CLOUD_FILE_LIST_COLUMNS
        for row in rows:
            xml = (cloud["root"] / row["Key"]).read_bytes()
            assert row["ETag"] == f'"{hashlib.md5(xml).hexdigest()}"'
            assert row["Key"] == f"{group}/{row['AccessionID']}/{row['AccessionID']}.xml"
            etree.fromstring(xml, SAFE_PARSER)
            keys.append(row["Key"])
    assert len(keys) == len(cloud["articles"]) == 4
    for article in cloud["articles"].values():
        for fig in article["figure_list"]:
            media = cloud["root"] / article["key"].rsplit("/", 1)[0] / f"{fig['href']}.jpg"
            assert media.is_file() == fig["sample"]


def test_file_list_helpers(corpus, tmp_path):
    root, _ = corpus
    shutil.copytree(root / "pmc", tmp_path / "pmc")
    path = tmp_path / "pmc" / "oa_file_list.csv"
    _, before = read_csv(path)
    edit_last_updated(tmp_path, "PMC1000003", "2025-01-02 03:04:05")  # the sample root works too
    set_license(tmp_path / "pmc", "PMC1000008", "CC BY-NC")
    remove_from_file_list(tmp_path / "pmc", "PMC1000006")
    columns, after = read_csv(path)
    assert tuple(columns) == FILE_LIST_COLUMNS
    by_id = {row["Accession ID"]: row for row in after}
    assert by_id["PMC1000003"]["Last Updated (YYYY-MM-DD HH:MM:SS)"] == "2025-01-02 03:04:05"
    assert by_id["PMC1000008"]["License"] == "CC BY-NC"
    assert "PMC1000006" not in by_id and len(after) == len(before) - 1
    assert [r["Accession ID"] for r in after] == sorted(by_id, key=lambda a: int(a[3:]))
    untouched = [r for r in before if r["Accession ID"] not in ("PMC1000003", "PMC1000006", "PMC1000008")]
    assert untouched == [r for r in after if r["Accession ID"] not in ("PMC1000003", "PMC1000008")]
    with pytest.raises(KeyError):
        set_license(tmp_path / "pmc", "PMC9999999", "CC BY")


def test_mirror(tmp_path):
    file_list = write_pmc_mirror(tmp_path / "mirror", 50)
    assert file_list == tmp_path / "mirror" / "oa_file_list.csv"
    columns, rows = read_csv(file_list)
    assert tuple(columns) == FILE_LIST_COLUMNS and len(rows) == 50
    packages = sorted((tmp_path / "mirror" / "oa_package").rglob("*.tar.gz"))
    assert len(packages) == 50
    assert {(tmp_path / "mirror" / r["File"]) for r in rows} == set(packages)
    image_hashes = set()
    for row in rows:
        path = tmp_path / "mirror" / row["File"]
        names = members(path)
        nxml = [n for n in names if n.endswith(".nxml")]
        data = read_member(path, nxml[0])
        assert 18_000 <= len(data) <= 70_000
        hrefs = [g.get(XLINK) for g in etree.fromstring(data, SAFE_PARSER).iter("graphic")]
        assert 1 <= len(hrefs) <= 6
        for href in hrefs:
            top = row["Accession ID"]
            assert f"{top}/{href}.jpg" in names and f"{top}/{href}.gif" in names
            image_hashes.add(hashlib.sha256(read_member(path, f"{top}/{href}.jpg")).hexdigest())
        assert any(n.endswith(".pdf") for n in names)
    assert len(image_hashes) > 50  # pooled pixels, but every package's files have their own bytes


def test_mirror_deterministic(tmp_path):
    write_pmc_mirror(tmp_path / "a", 4, seed=7, image_pool=6)
    write_pmc_mirror(tmp_path / "b", 4, seed=7, image_pool=6)
    assert files(tmp_path / "a") == files(tmp_path / "b")
