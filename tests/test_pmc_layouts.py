"""Mirror layouts: which files make up each article, and what the mirror's index says about it."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from medcurate.pmc_corpus import FILE_LIST_COLUMNS, write_pmc_sample_corpus
from medcurate.schemas.record import QUARANTINED, to_batch, validate_batch
from medcurate.sources import SourceContext, make_source
from medcurate.sources.pmc.layouts import (
    ArticleFiles,
    Mirror,
    MirrorError,
    detect_layout,
    list_articles,
)

CTX = SourceContext(stat_cache=lambda uri, size, mtime_ns: None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return write_pmc_sample_corpus(tmp_path_factory.mktemp("pmc-layouts"))


def write_csv(path: Path, header: list[str] | tuple[str, ...], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def row(file: str, accession: str, **overrides: str) -> list[str]:
    values = {
        "File": file,
        "Article Citation": f"J Test. 2024 Jan 1; 1(1):1-2 ({accession})",
        "Accession ID": accession,
        "Last Updated (YYYY-MM-DD HH:MM:SS)": "2024-05-01 10:00:00",
        "PMID": "123",
        "License": "CC BY",
        "Retracted": "no",
    }
    values.update({k.replace("_", " "): v for k, v in overrides.items()})
    return [values[column] for column in FILE_LIST_COLUMNS]


def pmc_source(uri: Path, **params: Any):
    return make_source("pmc", "pmc-test", str(uri), params, CTX)


# -- detection ----------------------------------------------------------------------------------------


def test_detect_layout(corpus: dict[str, Any], tmp_path: Path) -> None:
    assert detect_layout(Mirror(str(corpus["classic"]["root"])), None) == "classic"
    assert detect_layout(Mirror(str(corpus["cloud"]["root"])), None) == "cloud"
    folder = tmp_path / "folder"
    (folder / "a").mkdir(parents=True)
    shutil.copy(corpus["classic"]["root"] / corpus["classic"]["packages"]["PMC1000001"]["file"], folder / "a")
    assert detect_layout(Mirror(str(folder)), None) == "folder"
    # an explicit list names the layout by its file name
    assert detect_layout(Mirror(str(folder)), "oa_comm/metadata/oa_comm.filelist.csv") == "cloud"
    assert detect_layout(Mirror(str(folder)), "my_index.csv") == "classic"


def test_mirror_must_be_a_folder(corpus: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(MirrorError, match="is not a folder"):
        Mirror(str(corpus["classic"]["file_list"]))
    with pytest.raises(MirrorError, match="is not a folder"):
        Mirror(str(tmp_path / "absent"))


def test_unknown_layout_and_missing_lists(corpus: dict[str, Any], tmp_path: Path) -> None:
    mirror = Mirror(str(corpus["classic"]["root"]))
    with pytest.raises(ValueError, match="unknown PMC layout 'ftp'"):
        list(list_articles(mirror, "ftp"))
    empty = Mirror(str(tmp_path))
    with pytest.raises(MirrorError, match="no OA file list"):
        list(list_articles(empty, "classic"))
    with pytest.raises(MirrorError, match=r"no \*\.filelist\.csv"):
        list(list_articles(empty, "cloud"))
    write_csv(tmp_path / "oa_file_list.csv", ["Path", "Accession ID"], [["x.tar.gz", "PMC1"]])
    with pytest.raises(MirrorError, match="no 'File' column"):
        list(list_articles(Mirror(str(tmp_path))))


# -- classic ------------------------------------------------------------------------------------------


def test_classic_lists_only_listed_packages(corpus: dict[str, Any]) -> None:
    classic = corpus["classic"]
    root: Path = classic["root"]
    articles = list(list_articles(Mirror(str(root))))
    listed = [pmcid for pmcid, p in classic["packages"].items() if p["in_file_list"]]
    assert [a.pmcid for a in articles] == listed
    assert len(articles) == 15
    assert classic["ignored"] == ["PMC1000015"]
    assert "PMC1000015" not in {a.pmcid for a in articles}
    assert (root / classic["packages"]["PMC1000015"]["file"]).is_file()  # on disk, yet not an input
    for article in articles:
        path = str(root / classic["packages"][article.pmcid]["file"])
        assert article == ArticleFiles(path, (path,), True, article.pmcid, article.listing, None)


def test_classic_listing_fields(corpus: dict[str, Any]) -> None:
    classic = corpus["classic"]
    articles = {a.pmcid: a for a in list_articles(Mirror(str(classic["root"])), "classic")}
    for line, (pmcid, article) in enumerate(articles.items(), start=2):
        package = classic["packages"][pmcid]
        assert article.listing == {
            "citation": package["citation"],
            "last_updated": package["last_updated"],
            "pmid": package["pmid"],
            "license": package["file_list_license"],  # the raw file-list value, e.g. "CC BY-NC"
            "retracted": package["retracted"],
            "manifest_uri": str(classic["file_list"]),
            "manifest_line": line,
        }
    assert articles["PMC1000014"].listing["retracted"] is True
    assert articles["PMC1000007"].listing["license"] == "CC BY-NC"
    assert articles["PMC1000008"].listing["pmid"] is None  # empty PMID cell
    assert articles["PMC1000001"].listing["last_updated"] == "2024-06-06 12:41:11"


def test_classic_bad_rows(tmp_path: Path) -> None:
    rows = [
        row("oa_package/aa/bb/PMC1.tar.gz", "PMC1"),
        row("../../etc/passwd.tar.gz", "PMC2"),
        row("/etc/passwd.tar.gz", "PMC3"),
        ["oa_package/aa/bb/PMC4.tar.gz", "cit", "PMC4"],  # too few fields
        row("oa_package/aa/bb/PMC5.tar.gz", "PMCX5"),  # bad accession
        row("oa_package/aa/bb/PMC6.zip", "PMC6"),  # not a package
        ["", "", "", "", "", "", ""],  # blank row: skipped
        [*row("oa_package/aa/bb/PMC8.tar.gz", "PMC8"), "extra"],  # too many fields
        row("oa_package/../../PMC9.tar.gz", "PMC9"),
        row("oa_package\\..\\..\\PMC10.tar.gz", "PMC10"),
        row("", "PMC11"),
        row("oa_package/aa/bb/PMC12.tgz", "PMC12", Retracted="yes", License="CC BY-NC-ND"),
    ]
    file_list = write_csv(tmp_path / "oa_file_list.csv", FILE_LIST_COLUMNS, rows)
    articles = list(list_articles(Mirror(str(tmp_path))))
    errors = {a.listing["manifest_line"]: a.error for a in articles}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13]  # line 8 (blank) skipped
    assert errors[2] is None and errors[13] is None
    assert errors[3] == "manifest_unsafe_path: line 3 names '../../etc/passwd.tar.gz'"
    assert errors[4] == "manifest_unsafe_path: line 4 names '/etc/passwd.tar.gz'"
    assert errors[5] == "manifest_malformed: line 5 has 3 fields, expected 7"
    assert errors[6] == "manifest_malformed: line 6 has accession 'PMCX5'"
    assert errors[7] == "manifest_unsafe_path: line 7 names 'oa_package/aa/bb/PMC6.zip'"
    assert errors[9] == "manifest_malformed: line 9 has 8 fields, expected 7"
    assert errors[10].startswith("manifest_unsafe_path: line 10 ")  # type: ignore[union-attr]
    assert errors[11].startswith("manifest_unsafe_path: line 11 ")  # type: ignore[union-attr]
    assert errors[12] == "manifest_unsafe_path: line 12 names ''"
    by_line = {a.listing["manifest_line"]: a for a in articles}
    for line, error in errors.items():
        assert (by_line[line].files == ()) == (error is not None)
    assert by_line[2].files == (str(tmp_path / "oa_package/aa/bb/PMC1.tar.gz"),)
    assert by_line[12].uri == f"{file_list}#line=12"  # no path to name: the manifest line is the identity
    assert by_line[13].listing["retracted"] is True and by_line[13].listing["license"] == "CC BY-NC-ND"
    assert by_line[13].files == (str(tmp_path / "oa_package/aa/bb/PMC12.tgz"),)


def test_classic_columns_found_by_name(tmp_path: Path) -> None:
    header = ["Accession ID", "License", "File", "Last Updated (YYYY-MM-DD HH:MM:SS)"]
    write_csv(tmp_path / "lists" / "x.csv", header, [["PMC7", "CC0", "p/PMC7.tar.gz", "2024-02-02 02:02:02"]])
    (article,) = list_articles(Mirror(str(tmp_path)), file_list="lists/x.csv")
    assert article.error is None and article.pmcid == "PMC7"
    assert article.files == (str(tmp_path / "p/PMC7.tar.gz"),)
    assert article.listing["license"] == "CC0"
    assert article.listing["last_updated"] == "2024-02-02 02:02:02"
    assert article.listing["retracted"] is False and article.listing["citation"] is None
    # an absolute file list outside the mirror works too
    outside = write_csv(tmp_path.parent / f"{tmp_path.name}-list.csv", header, [["PMC8", "", "q.tar.gz", ""]])
    (other,) = list_articles(Mirror(str(tmp_path)), "classic", str(outside))
    assert other.pmcid == "PMC8" and other.listing["license"] is None and other.listing["manifest_line"] == 2


# -- through the source: missing and escaping packages -----------------------------------------------------


@pytest.fixture
def small_mirror(corpus: dict[str, Any], tmp_path: Path) -> Path:
    """A classic mirror of three rows: a real package, a missing one, and a symlink out of the mirror."""
    classic = corpus["classic"]
    mirror = tmp_path / "mirror"
    good = classic["packages"]["PMC1000001"]["file"]
    (mirror / good).parent.mkdir(parents=True)
    shutil.copy(classic["root"] / good, mirror / good)
    outside = tmp_path / "outside" / "PMC1000002.tar.gz"
    outside.parent.mkdir()
    shutil.copy(classic["root"] / classic["packages"]["PMC1000002"]["file"], outside)
    (mirror / "oa_package/ee").mkdir(parents=True)
    os.symlink(outside, mirror / "oa_package/ee/PMC1000002.tar.gz")
    os.symlink(mirror / good, mirror / "oa_package/ee/PMC1000003.tar.gz")  # inside the mirror: fine
    rows = [
        row(good, "PMC1000001"),
        row("oa_package/ee/PMC1000002.tar.gz", "PMC1000002"),
        row("oa_package/ee/PMC1000003.tar.gz", "PMC1000003"),
        row("oa_package/ff/PMC1000004.tar.gz", "PMC1000004"),
    ]
    write_csv(mirror / "oa_file_list.csv", FILE_LIST_COLUMNS, rows)
    return mirror


def test_source_flags_missing_and_escaping_packages(small_mirror: Path) -> None:
    source = pmc_source(small_mirror)
    items = {item.payload["pmcid"]: item for item in source.list_inputs()}
    assert list(items) == ["PMC1000001", "PMC1000002", "PMC1000003", "PMC1000004"]
    assert items["PMC1000001"].error is None and items["PMC1000003"].error is None
    escaping = items["PMC1000002"].error
    assert escaping == (
        f"unsafe_path: {small_mirror / 'oa_package/ee/PMC1000002.tar.gz'} resolves outside the mirror"
    )
    missing = items["PMC1000004"].error
    assert (
        missing
        == f"input_missing: {small_mirror / 'oa_package/ff/PMC1000004.tar.gz'} is listed but not a file"
    )
    for pmcid in ("PMC1000002", "PMC1000004"):
        item = items[pmcid]
        assert item.sha256 is None and "files" not in item.payload
        (record,) = source.read(item)
        assert record["status"] == QUARANTINED and record["status_reason"] == item.error
        assert record["status_stage"] == "ingest.pmc"
        assert record["source"]["uri"] == item.uri and record["source"]["manifest_line"] is not None
        assert "image" not in record or not record["image"]
        validate_batch(to_batch([record]), "test")
    # the in-mirror symlink reads like the package it points to
    assert items["PMC1000003"].sha256 == items["PMC1000001"].sha256
    assert [r["status"] for r in source.read(items["PMC1000003"])] == ["active"]


def test_source_error_rows_become_quarantined_records(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "oa_file_list.csv",
        FILE_LIST_COLUMNS,
        [row("../../etc/passwd.tar.gz", "PMC1"), row("p/PMC2.tar.gz", "bad")],
    )
    source = pmc_source(tmp_path)
    items = list(source.list_inputs())
    assert [i.error for i in items] == [
        "manifest_unsafe_path: line 2 names '../../etc/passwd.tar.gz'",
        "manifest_malformed: line 3 has accession 'bad'",
    ]
    records = [r for item in items for r in source.read(item)]
    assert [(r["status"], r["status_reason"]) for r in records] == [(QUARANTINED, i.error) for i in items]
    assert len({r["sample_id"] for r in records}) == 2
    validate_batch(to_batch(records), "test")


# -- folder ----------------------------------------------------------------------------------------------


def test_folder_layout_lists_every_package(tmp_path: Path, corpus: dict[str, Any]) -> None:
    package = corpus["classic"]["root"] / corpus["classic"]["packages"]["PMC1000001"]["file"]
    names = ["b/PMC22.tar.gz", "a/deep/PMC11.tgz", "z.tar.gz", "PMC3.tar.gz", "notes.txt", "PMC4.tar"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(package, tmp_path / name)
    articles = list(list_articles(Mirror(str(tmp_path))))  # no list: folder layout
    expected = ["PMC3.tar.gz", "a/deep/PMC11.tgz", "b/PMC22.tar.gz", "z.tar.gz"]
    assert [a.uri for a in articles] == [str(tmp_path / name) for name in expected]
    assert [a.pmcid for a in articles] == ["PMC3", "PMC11", "PMC22", None]
    for article in articles:
        assert article.files == (article.uri,) and article.packaged
        assert article.listing == {} and article.error is None


def test_folder_layout_on_a_classic_mirror_ignores_the_list(corpus: dict[str, Any]) -> None:
    classic = corpus["classic"]
    articles = list(list_articles(Mirror(str(classic["root"])), "folder"))
    assert {a.pmcid for a in articles} == set(classic["packages"])  # the unlisted PMC1000015 included
    assert len(articles) == 16


# -- cloud -----------------------------------------------------------------------------------------------


def test_cloud_lists_articles_with_media_and_group(corpus: dict[str, Any]) -> None:
    cloud = corpus["cloud"]
    root: Path = cloud["root"]
    articles = {a.pmcid: a for a in list_articles(Mirror(str(root)))}
    assert sorted(articles) == sorted(cloud["articles"])
    for pmcid, article in articles.items():
        expected = cloud["articles"][pmcid]
        media = sorted(str(root / f["member"]) for f in expected["figure_list"] if f["member"])
        assert article.uri == str(root / expected["key"])
        assert article.files == (str(root / expected["key"]), *media)
        assert article.packaged is False and article.error is None
        group = expected["group"]
        assert article.listing["group"] == group
        assert article.listing["manifest_uri"] == str(cloud["file_list"][group])
        assert article.listing["license"] == expected["file_list_license"]
        assert article.listing["last_updated"] == expected["last_updated"]
        assert article.listing["citation"] == expected["citation"]
        assert article.listing["retracted"] is False
    # PMC2000003's second figure has no media file: only the first one is listed beside the XML
    assert len(articles["PMC2000003"].files) == 2
    assert articles["PMC2000003"].listing["manifest_line"] == 2


def test_cloud_bad_rows(tmp_path: Path) -> None:
    header = ["Key", "ETag", "Article Citation", "AccessionID", "Last Updated UTC (YYYY-MM-DD HH:MM:SS)"]
    (tmp_path / "oa_comm/PMC1").mkdir(parents=True)
    (tmp_path / "oa_comm/PMC1/PMC1.xml").write_bytes(b"<article/>")
    (tmp_path / "oa_comm/PMC1/f1.jpg").write_bytes(b"jpg")
    (tmp_path / "oa_comm/PMC1/f1.gif").write_bytes(b"gif")
    (tmp_path / "oa_comm/PMC1/notes.txt").write_bytes(b"txt")
    rows = [
        ["oa_comm/PMC1/PMC1.xml", '"e"', "c", "PMC1", "2024-01-01 00:00:00"],
        ["../outside/PMC2.xml", '"e"', "c", "PMC2", ""],
        ["oa_comm/PMC3/PMC3.pdf", '"e"', "c", "PMC3", ""],
        ["weird/PMC4/PMC4.xml", '"e"', "c", "nope", ""],
        ["oa_comm/PMC5/PMC5.xml", '"e"'],
    ]
    write_csv(tmp_path / "oa_comm/metadata/oa_comm.filelist.csv", header, rows)
    articles = list(list_articles(Mirror(str(tmp_path))))
    assert [a.error for a in articles] == [
        None,
        "manifest_unsafe_path: line 3 names '../outside/PMC2.xml'",
        "manifest_unsafe_path: line 4 names 'oa_comm/PMC3/PMC3.pdf'",
        "manifest_malformed: line 5 has accession 'nope'",
        "manifest_malformed: line 6 has 2 fields, expected 5",
    ]
    folder = tmp_path / "oa_comm/PMC1"
    assert articles[0].files == (str(folder / "PMC1.xml"), str(folder / "f1.gif"), str(folder / "f1.jpg"))
    assert [a.listing["group"] for a in articles] == ["oa_comm", None, "oa_comm", None, "oa_comm"]
    assert all(a.files == () for a in articles[1:])
