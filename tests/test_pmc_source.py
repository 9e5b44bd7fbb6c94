"""``PmcSource`` against the sample corpus's own description of what a correct reader makes of it.

Classic (``.tar.gz`` packages + ``oa_file_list.csv``) and cloud (per-file + ``*.filelist.csv``) mirrors are
both read end to end; ``graphics.renditions`` (which image file holds a figure) is tested at the end.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from medcurate.pmc_corpus import set_license, write_pmc_sample_corpus
from medcurate.schemas.record import ACTIVE, FILTERED, QUARANTINED, to_batch, validate_batch
from medcurate.sources import PmcSource, SourceContext, make_source
from medcurate.sources.base import INGEST_DETAILS, InputItem
from medcurate.sources.pmc.graphics import Rendition, renditions
from medcurate.sources.pmc.licenses import normalize_license

CTX = SourceContext(stat_cache=lambda uri, size, mtime_ns: None)
CLASSIC_IDS = [f"PMC{1000000 + n}" for n in (*range(1, 15), 16)]  # the listed packages (PMC1000015 is not)
CLOUD_IDS = [f"PMC{2000000 + n}" for n in range(1, 5)]

Read = dict[str, tuple[InputItem, list[dict[str, Any]]]]


def pmc_source(uri: Path, ctx: SourceContext = CTX, **params: Any) -> PmcSource:
    source = make_source("pmc", "pmc-sample", str(uri), params, ctx)
    assert isinstance(source, PmcSource)
    return source


def read_all(source: PmcSource) -> Read:
    return {item.payload["pmcid"]: (item, source.read(item)) for item in source.list_inputs()}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code(record: dict[str, Any]) -> str:
    return record["status_reason"].split(":", 1)[0]


def plain(text: str | None) -> str:
    """Caption text compared loosely: the parser keeps T₂ and ×10⁹ where the corpus's plain text has T2."""
    return " ".join(unicodedata.normalize("NFKC", text or "").split())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return write_pmc_sample_corpus(tmp_path_factory.mktemp("pmc-source"))


@pytest.fixture(scope="module")
def classic(corpus: dict[str, Any]) -> Read:
    return read_all(pmc_source(corpus["classic"]["root"]))


@pytest.fixture(scope="module")
def cloud(corpus: dict[str, Any]) -> Read:
    return read_all(pmc_source(corpus["cloud"]["root"]))


def member_bytes(package: Path, name: str) -> bytes:
    with tarfile.open(package, "r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


# -- what gets listed ------------------------------------------------------------------------------------


def test_listed_inputs(corpus: dict[str, Any], classic: Read, cloud: Read) -> None:
    expected = corpus["classic"]
    assert list(classic) == CLASSIC_IDS
    assert [k for k, v in expected["packages"].items() if v["in_file_list"]] == CLASSIC_IDS
    assert list(cloud) == CLOUD_IDS == list(corpus["cloud"]["articles"])
    for pmcid, (item, _) in classic.items():
        package = expected["root"] / expected["packages"][pmcid]["file"]
        data = package.read_bytes()
        assert item.source == "pmc-sample" and item.error is None
        assert (item.uri, item.sha256, item.size) == (str(package), sha(data), len(data))
    for pmcid, (item, _) in cloud.items():
        xml = corpus["cloud"]["root"] / corpus["cloud"]["articles"][pmcid]["key"]
        assert (item.uri, item.sha256) == (str(xml), sha(xml.read_bytes()))
    keys = [item.key for item, _ in (*classic.values(), *cloud.values())]
    assert len(set(keys)) == len(keys)


def test_totals_match_the_expectation(corpus: dict[str, Any], classic: Read, cloud: Read) -> None:
    for side, read in (("classic", classic), ("cloud", cloud)):
        expected = corpus[side]
        records = [r for _, records in read.values() for r in records]
        active = [r for r in records if r["status"] == ACTIVE]
        assert len(active) == expected["expected_samples"] - expected["expected_retracted_samples"]
        quarantined = {}
        for r in records:
            if r["status"] == QUARANTINED:
                where = r["article"]["pmcid"] + "/" + r["figure"]["id"] if r["figure"] else None
                quarantined[where or _pmcid_of(read, r)] = code(r)
        assert quarantined == expected["expected_quarantined"]
        filtered = [r for r in records if r["status"] == FILTERED]
        assert len(filtered) == sum(1 for p in expected.get("packages", {}).values() if p["retracted"])


def _pmcid_of(read: Read, record: dict[str, Any]) -> str:
    return next(pmcid for pmcid, (_, records) in read.items() if record in records)


# -- every package, checked against the expectation ------------------------------------------------------


def check_article(
    pmcid: str, expected: dict[str, Any], item: InputItem, records: list[dict[str, Any]], root: Path
) -> None:
    validate_batch(to_batch(records), pmcid)  # also: every sample_id is dot-free
    for record in records:
        assert record["sample_id"].startswith("pmc-") and "." not in record["sample_id"]
        assert record["source"]["kind"] == "pmc" and record["source"]["dataset"] == "pmc-sample"
        assert record["source"]["citation"] == expected["citation"]
        assert record["source"]["manifest_line"] == item.payload["listing"]["manifest_line"]
    if expected["quarantine"]:
        (record,) = records
        assert record["status"] == QUARANTINED and record["status_stage"] == "ingest.pmc"
        assert record["status_reason"].startswith(expected["quarantine"] + ": ")
        assert record["figure"] is None and not record["image"]
        return
    if expected["retracted"]:
        (record,) = records
        assert record["status"] == FILTERED
        assert record["status_reason"].startswith("retracted")
        assert pmcid in record["status_reason"]
        return
    packaged = "file" in expected
    figures = {f["id"]: f for f in expected["figure_list"]}
    assert [r["figure"]["id"] for r in records] == list(figures)  # one record per graphic-bearing fig
    active = [r for r in records if r["status"] == ACTIVE]
    assert len(active) == expected["figures"]
    missing = {r["figure"]["id"]: code(r) for r in records if r["status"] == QUARANTINED}
    assert missing == expected["quarantined_figures"]
    for record in records:
        fig = figures[record["figure"]["id"]]
        article = record["article"]
        assert article["pmcid"] == pmcid
        assert article["doi"] == expected["doi"] and article["title"] == expected["title"]
        assert article["pmid"] == expected["pmid"]
        assert article["last_updated"] == expected["last_updated"]
        figure = record["figure"]
        assert figure["label"] == fig["label"] and figure["graphic"] == fig["href"]
        assert figure["title"] == (fig["caption_title"] or None)
        assert figure["container"] == fig["placement"]
        assert [p["label"] for p in figure["panels"]] == fig["panels"]
        assert figure["compound"] is bool(fig["panels"])
        assert plain(fig["caption_text"]) in plain(record["text"]["source_caption"])
        assert record["text"]["final_caption"] == record["text"]["source_caption"]
        if fig["cited_in"]:
            assert figure["citing"], f"{pmcid}/{fig['id']} has no citing sentence"
            sections = list(dict.fromkeys(c["section"] for c in figure["citing"]))
            if fig["placement"] == "boxed-text":
                # jats._section_title treats <boxed-text> as section-like (documented), so a sentence
                # inside the box reports the box's title, where the corpus names the enclosing <sec>.
                assert sections == ["Teaching point"] and fig["cited_in"] == ["Discussion"]
            else:
                assert sections == fig["cited_in"]
            assert record["text"]["citing_context"] == "\n".join(c["text"] for c in figure["citing"])
        if record["status"] == QUARANTINED:
            assert fig["quarantine"] == "graphic_missing" and fig["member"] is None
            assert record["status_reason"].startswith(f"graphic_missing: figure {fig['id']} ")
            assert not record["image"]
            continue
        check_sample(record, fig, expected, item, root, packaged)


def check_sample(
    record: dict[str, Any],
    fig: dict[str, Any],
    expected: dict[str, Any],
    item: InputItem,
    root: Path,
    packaged: bool,
) -> None:
    source, image = record["source"], record["image"]
    assert not fig["member"].endswith(".gif")  # the full-size rendition, never the thumbnail
    if packaged:
        package = root / expected["file"]
        data = member_bytes(package, fig["member"])
        assert source["member"] == fig["member"]
        assert (source["uri"], source["sha256"], source["size"]) == (str(package), item.sha256, item.size)
    else:
        path = root / fig["member"]
        data = path.read_bytes()
        assert source["member"] is None
        assert (source["uri"], source["sha256"], source["size"]) == (str(path), sha(data), len(data))
    assert image["bytes"] == data and image["sha256"] == sha(data)
    assert source["license"] == expected["license"]
    listed, _ = normalize_license(expected["file_list_license"])
    evidence = record[INGEST_DETAILS]["license"]
    if expected["license_source"] == "xml":
        # the record carries the canonical https form of the article's URL
        assert source["license_url"] == normalize_license(expected["license_url"])[1]
        assert evidence == {
            "article": expected["license"],
            "file_list": listed,
            "chosen": expected["license"],
        }
    else:
        # No <license> in the article: the id comes from the file list, which names no version, so the
        # source records no URL (licenses.normalize_license) where the corpus expects the 4.0 URL.
        assert source["license_url"] is None
        assert evidence == {"article": None, "file_list": listed, "chosen": expected["license"]}
    assert record[INGEST_DETAILS]["renditions"][0].startswith(f"{source['member'] or fig['member']} (")
    if fig["thumbnail"]:
        assert any(r.startswith(fig["thumbnail"] + " (") for r in record[INGEST_DETAILS]["renditions"][1:])


@pytest.mark.parametrize("pmcid", CLASSIC_IDS)
def test_classic_package(corpus: dict[str, Any], classic: Read, pmcid: str) -> None:
    item, records = classic[pmcid]
    check_article(pmcid, corpus["classic"]["packages"][pmcid], item, records, corpus["classic"]["root"])


@pytest.mark.parametrize("pmcid", CLOUD_IDS)
def test_cloud_article(corpus: dict[str, Any], cloud: Read, pmcid: str) -> None:
    item, records = cloud[pmcid]
    check_article(pmcid, corpus["cloud"]["articles"][pmcid], item, records, corpus["cloud"]["root"])


def test_compound_figure_panels(classic: Read, cloud: Read) -> None:
    f1, f2 = (r["figure"] for r in classic["PMC1000002"][1])
    assert [p["label"] for p in f1["panels"]] == ["A", "B", "C"] and f1["compound"]
    assert f1["panels"][1] == {"label": "B", "text": "Coronal reformat demonstrates pleural tethering."}
    assert [p["label"] for p in f2["panels"]] == ["A", "B"]
    assert f2["panels"][1]["text"].startswith("Immunohistochemistry for TTF-1")
    (cloud_fig,) = (r["figure"] for r in cloud["PMC2000002"][1])
    assert [p["label"] for p in cloud_fig["panels"]] == ["A", "B", "C"]


def test_range_cited_figure_has_the_range_sentence(classic: Read) -> None:
    by_id = {r["figure"]["id"]: r["figure"] for r in classic["PMC1000006"][1]}
    sentence = "Biopsy, follow-up CT and the treatment course are shown in Figs. 2–4."
    # F3 is only cited through the range "Figs. 2–4" (plus its own "Fig. 3B" in the discussion)
    assert [c["text"] for c in by_id["F3"]["citing"]] == [
        sentence,
        "Encasement of the mesenteric vessels (Fig. 3B) precluded complete resection.",
    ]
    assert [c["text"] for c in by_id["F2"]["citing"]] == [sentence]
    assert [c["text"] for c in by_id["F4"]["citing"]] == [sentence]
    assert [c["text"] for c in by_id["F1"]["citing"]] == [
        "Inflammatory markers rose over six weeks (Figure 1)."
    ]


def test_containers(classic: Read) -> None:
    containers = {r["figure"]["id"]: r["figure"]["container"] for r in classic["PMC1000003"][1]}
    assert containers == {"F1A": "fig-group", "F1B": "fig-group", "F2": "floats-group", "F3": "boxed-text"}


def test_tiff_and_png_graphics(corpus: dict[str, Any], classic: Read) -> None:
    members = [r["source"]["member"] for r in classic["PMC1000004"][1]]
    assert members == ["PMC1000004/ijcm-12-301-g001.tif", "PMC1000004/ijcm-12-301-g002.png"]
    with Image.open(io.BytesIO(classic["PMC1000004"][1][0]["image"]["bytes"])) as im:
        assert im.format == "TIFF"


def test_sample_ids_are_deterministic(corpus: dict[str, Any], classic: Read, cloud: Read) -> None:
    again = {
        **read_all(pmc_source(corpus["classic"]["root"])),
        **read_all(pmc_source(corpus["cloud"]["root"])),
    }
    first = {**classic, **cloud}
    ids = {pmcid: [r["sample_id"] for r in records] for pmcid, (_, records) in first.items()}
    assert ids == {pmcid: [r["sample_id"] for r in records] for pmcid, (_, records) in again.items()}
    assert {pmcid: item.key for pmcid, (item, _) in first.items()} == {
        pmcid: item.key for pmcid, (item, _) in again.items()
    }
    every = [i for sample_ids in ids.values() for i in sample_ids]
    assert len(every) == len(set(every))
    assert all("." not in i and len(i) == len("pmc-") + 24 for i in every)


def test_details(corpus: dict[str, Any], classic: Read, cloud: Read) -> None:
    source = pmc_source(corpus["classic"]["root"])
    for pmcid, (item, _) in classic.items():
        package = corpus["classic"]["packages"][pmcid]
        assert source.details(item) == {
            "last_updated": package["last_updated"],
            "listed_license": package["file_list_license"],
            "retracted": package["retracted"],
        }
    item, _ = cloud["PMC2000003"]
    assert pmc_source(corpus["cloud"]["root"]).details(item) == {
        "last_updated": "2024-06-08 12:23:11",
        "listed_license": "CC BY-NC",
        "retracted": False,
        "group": "oa_noncomm",
    }
    item, _ = classic["PMC1000001"]
    ctx = SourceContext(stat_cache=CTX.stat_cache, history=lambda uri: ["older-key", item.key])
    details = pmc_source(corpus["classic"]["root"], ctx).details(item)
    assert details is not None and details["supersedes_inputs"] == ["older-key"]


# -- licence: the most restrictive of the article's and the file list's ------------------------------------


@pytest.fixture
def classic_copy(corpus: dict[str, Any], tmp_path: Path) -> Path:
    target = tmp_path / "pmc"
    shutil.copytree(corpus["classic"]["root"], target)
    return target


def test_license_most_restrictive_wins(classic_copy: Path) -> None:
    # set_license edits only the file list; the expectation dict (which describes the generated corpus)
    # still says cc-by / cc-by-nc here, so these assert the source's most-restrictive rule instead.
    set_license(classic_copy, "PMC1000001", "CC BY-NC")  # article: CC BY 4.0
    set_license(classic_copy, "PMC1000007", "CC0")  # article: CC BY-NC 4.0
    read = read_all(pmc_source(classic_copy))
    (stricter_list,) = read["PMC1000001"][1]
    assert stricter_list["source"]["license"] == "cc-by-nc"
    assert stricter_list["source"]["license_url"] is None  # the URL was the article's, for another licence
    assert stricter_list[INGEST_DETAILS]["license"] == {
        "article": "cc-by",
        "file_list": "cc-by-nc",
        "chosen": "cc-by-nc",
    }
    (stricter_article,) = read["PMC1000007"][1]
    assert stricter_article["source"]["license"] == "cc-by-nc"
    assert stricter_article["source"]["license_url"] == "https://creativecommons.org/licenses/by-nc/4.0/"
    assert stricter_article[INGEST_DETAILS]["license"]["file_list"] == "cc0"


# -- inputs that change or are configured differently -----------------------------------------------------


def test_package_changed_after_listing(classic_copy: Path, corpus: dict[str, Any]) -> None:
    source = pmc_source(classic_copy)
    items = {item.payload["pmcid"]: item for item in source.list_inputs()}
    packages = corpus["classic"]["packages"]
    target = classic_copy / packages["PMC1000001"]["file"]
    target.write_bytes((classic_copy / packages["PMC1000002"]["file"]).read_bytes())  # another good package
    (record,) = source.read(items["PMC1000001"])
    assert record["status"] == QUARANTINED
    assert record["status_reason"] == f"input_changed: {target} changed since it was listed"
    assert record["source"]["sha256"] == items["PMC1000001"].sha256
    validate_batch(to_batch([record]), "test")
    # listed afresh, the new bytes are a new input that reads fine
    fresh = {item.payload["pmcid"]: item for item in source.list_inputs()}["PMC1000001"]
    assert fresh.key != items["PMC1000001"].key
    assert [r["status"] for r in source.read(fresh)] == [ACTIVE, ACTIVE]


def test_package_truncated_after_listing_is_input_changed(classic_copy: Path, corpus: dict[str, Any]) -> None:
    source = pmc_source(classic_copy)
    items = {item.payload["pmcid"]: item for item in source.list_inputs()}
    target = classic_copy / corpus["classic"]["packages"]["PMC1000001"]["file"]
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])  # a sync in progress
    (record,) = source.read(items["PMC1000001"])
    assert record["status_reason"].startswith("input_changed")


def test_cloud_file_changed_after_listing(corpus: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "cloud"
    shutil.copytree(corpus["cloud"]["root"], root)
    source = pmc_source(root)
    items = {item.payload["pmcid"]: item for item in source.list_inputs()}
    image = root / corpus["cloud"]["articles"]["PMC2000001"]["figure_list"][1]["member"]
    image.write_bytes(image.read_bytes() + b"\0")
    (record,) = source.read(items["PMC2000001"])
    assert record["status"] == QUARANTINED
    assert record["status_reason"] == f"input_changed: {image} changed since it was listed"
    assert [r["status"] for r in source.read(items["PMC2000002"])] == [ACTIVE]


def test_stat_cache_is_trusted_at_listing_and_checked_at_reading(corpus: dict[str, Any]) -> None:
    ctx = SourceContext(stat_cache=lambda uri, size, mtime_ns: "0" * 64)
    source = pmc_source(corpus["classic"]["root"], ctx)
    item = next(iter(source.list_inputs()))
    assert item.sha256 == "0" * 64
    (record,) = source.read(item)
    assert code(record) == "input_changed"


def test_unknown_params_are_refused(corpus: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"unknown params \['colour', 'max_size'\]"):
        pmc_source(corpus["classic"]["root"], colour="red", max_size=3)
    with pytest.raises(ValueError, match="unknown source kind 'pubmed'"):
        make_source("pubmed", "x", str(corpus["classic"]["root"]), {}, CTX)


def test_params_reach_the_reader(corpus: dict[str, Any]) -> None:
    root = corpus["classic"]["root"]
    first = {"PMC1000001", "PMC1000003"}

    def codes(**params: Any) -> dict[str, list[str]]:
        read = read_all(pmc_source(root, **params))
        return {k: [code(r) if r["status_reason"] else r["status"] for r in v[1]] for k, v in read.items()}

    few = codes(max_members=5)  # PMC1000001: its folder, nxml, jpg, gif, pdf; PMC1000003: 11 entries
    assert {k: few[k] for k in first} == {
        "PMC1000001": ["active"],
        "PMC1000003": ["archive_too_many_members"],
    }
    small = codes(max_package_bytes=1000)
    assert {k: small[k] for k in first} == {k: ["archive_bomb"] for k in first}
    tiny_xml = codes(max_xml_bytes=1000)
    assert {k: tiny_xml[k] for k in first} == {k: ["xml_too_large"] for k in first}
    folder = read_all(pmc_source(root, layout="folder"))
    assert set(folder) == set(CLASSIC_IDS) | {"PMC1000015"}
    (unlisted,) = folder["PMC1000015"][1]  # read without the list: no retraction, licence from the XML
    assert unlisted["status"] == ACTIVE and unlisted["source"]["license"] == "cc-by"
    assert unlisted["article"]["last_updated"] is None and unlisted["source"]["manifest_uri"] is None


# -- graphics: which file holds a <graphic> ---------------------------------------------------------------


def encode(size: tuple[int, int], fmt: str, noisy: bool = False, **save: Any) -> bytes:
    if noisy:
        image = Image.frombytes("L", size, bytes((i * 7919) % 251 for i in range(size[0] * size[1])))
    else:
        image = Image.new("L", size, 128)
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def test_largest_rendition_wins_even_against_more_bytes() -> None:
    jpg = encode((400, 300), "JPEG", quality=10)
    gif = encode((120, 90), "GIF", noisy=True)
    assert len(gif) > len(jpg)  # the thumbnail is the bigger file here
    files = {
        "P/fig1.gif": gif,
        "P/fig1.jpg": jpg,
        "P/fig10.jpg": encode((800, 600), "JPEG"),  # a different figure
        "P/fig1.pdf": b"%PDF",  # not an image
        "P/other.png": encode((900, 900), "PNG"),
        "P/fig1-s1.jpg": encode((900, 900), "JPEG"),
    }
    found = renditions("fig1", files)
    assert found == [Rendition("P/fig1.jpg", 400, 300, len(jpg)), Rendition("P/fig1.gif", 120, 90, len(gif))]
    assert found[0].area == 120_000


def test_tif_is_matched_and_extension_in_href_is_ignored() -> None:
    tif = encode((500, 500), "TIFF")
    gif = encode((100, 100), "GIF")
    files = {"P/g002.tif": tif, "P/g002.gif": gif, "P/g002.JPG": encode((200, 200), "JPEG")}
    assert [r.name for r in renditions("g002", files)] == ["P/g002.tif", "P/g002.JPG", "P/g002.gif"]
    assert [r.name for r in renditions("g002.tif", files)] == ["P/g002.tif", "P/g002.JPG", "P/g002.gif"]
    assert [r.name for r in renditions("images/G002", files)][0] == "P/g002.tif"


def test_unrelated_stems_and_unreadable_files() -> None:
    files = {"a/fig2.jpg": encode((50, 50), "JPEG"), "a/fig22.jpg": b"", "a/xfig2.png": b""}
    assert renditions("fig3", files) == []
    broken = {"a/fig2.png": b"not a png at all", "a/fig2.jpg": files["a/fig2.jpg"]}
    found = renditions("fig2", broken)
    assert [(r.name, r.width, r.height) for r in found] == [("a/fig2.jpg", 50, 50), ("a/fig2.png", 0, 0)]


def test_equal_area_ties_go_to_more_bytes_then_name() -> None:
    small = encode((64, 64), "PNG")
    big = encode((64, 64), "PNG", noisy=True)
    files = {"b/f.png": small, "a/f.png": small, "c/f.jpeg": big}
    assert [r.name for r in renditions("f", files)] == ["c/f.jpeg", "a/f.png", "b/f.png"]


# -- packages that parse but cannot give samples -----------------------------------------------------------

JATS_HEAD = (
    b'<?xml version="1.0"?>\n<article xmlns:xlink="http://www.w3.org/1999/xlink"><front><article-meta>'
)


def _package(folder: Path, pmcid: str, members: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{pmcid}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (folder / f"{pmcid}.tar.gz").write_bytes(buffer.getvalue())


def test_packages_without_article_xml_or_figures_are_quarantined_with_their_reason(tmp_path: Path) -> None:
    article = (
        JATS_HEAD
        + b'<article-id pub-id-type="pmc">{n}</article-id></article-meta></front>'
        + b"<body><p>x</p></body></article>"
    )
    _package(tmp_path, "PMC1", {"only.pdf": b"%PDF-1.4", "f1.jpg": b"not really"})
    _package(
        tmp_path, "PMC2", {"a.nxml": article.replace(b"{n}", b"2"), "b.nxml": article.replace(b"{n}", b"2")}
    )
    _package(tmp_path, "PMC3", {"a.nxml": article.replace(b"{n}", b"3")})
    read = read_all(pmc_source(tmp_path, layout="folder"))
    reasons = {pmcid: [(r["status"], code(r)) for r in records] for pmcid, (_, records) in read.items()}
    assert reasons == {
        "PMC1": [(QUARANTINED, "xml_missing")],
        "PMC2": [(QUARANTINED, "xml_ambiguous")],
        "PMC3": [(QUARANTINED, "no_figures")],
    }
    for _, records in read.values():
        (record,) = records
        assert record["source"]["uri"].endswith(".tar.gz") and record["source"]["sha256"]
        to_batch(records)
