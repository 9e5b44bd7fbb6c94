"""``medcurate serve``: the audit viewer, driven in headless Chromium (Debian's, through Playwright).

The server is the real command in a subprocess on a real demo release; pages are checked for what a
person sees: the sample's pixels in a screenshot match the shard's image, the lineage timeline lists
the record's events in order, search finds what a duckdb-free manifest scan finds, hostile text stays
text, and no request reaches a file outside the release.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from medcurate.viewer.release_view import ReleaseView
from medcurate.viewer.sample_page import display_size, texts, timeline

from .conftest import DEMO_PIPELINE, demo_inputs
from .figures import figure, labeled_release

KINDS = ("dicom", "labeled", "nifti", "pmc")
HOSTILE = '<img src=x onerror=alert(1)> & "quoted"'


@pytest.fixture(scope="module")
def demo_release(tmp_path_factory, corpus_root, prefect_harness) -> Path:
    """The demo pipeline's release (one source of each kind), in its lake."""
    from medcurate.config import load_pipeline
    from medcurate.pipelines.flow import curate

    cfg = load_pipeline(DEMO_PIPELINE, [], demo_inputs(corpus_root))
    summary = curate(cfg.model_dump(), str(tmp_path_factory.mktemp("viewer-lake")))
    assert summary.published
    return Path(summary.release_path)


@pytest.fixture(scope="module")
def hostile_release(tmp_path_factory, prefect_harness) -> Path:
    """A labeled release whose class name (a folder name, so its label and caption too) is markup."""
    blob = io.BytesIO()
    figure(7).save(blob, "PNG")
    summary = labeled_release(
        tmp_path_factory.mktemp("viewer-hostile"), "hostile", {HOSTILE: [blob.getvalue()]}, {}, 8
    )
    assert summary.published and summary.sample_count == 1
    return Path(summary.release_path)


class Server:
    """``medcurate serve FOLDER --port 0`` in a subprocess; ``url`` is what its first line says."""

    def __init__(self, folder: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "medcurate.cli", "serve", str(folder), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("serving "):
            self.process.kill()
            raise AssertionError(f"serve did not start: {line!r} {self.process.stderr.read()}")
        self.url = line.split(" at ", 1)[1].strip()
        self.host, self.port = urlsplit(self.url).hostname, urlsplit(self.url).port

    def raw(self, method: str, path: str, host: str | None = None) -> tuple[int, bytes, dict]:
        """One request with ``path`` sent exactly as written (no client-side normalization of ``..``)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host or f"{self.host}:{self.port}")
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return response.status, body, dict(response.getheaders())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def server(demo_release) -> Iterator[Server]:
    running = Server(demo_release)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, driven by Playwright (no browser download). ``make test`` installs it; CI
    must have it, a developer's bare pytest skips without it."""
    executable = (
        os.environ.get("MEDCURATE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if executable is None:
        message = "no chromium on PATH (make test installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    opened.dialogs = dialogs
    yield opened
    context.close()


def _manifest(folder: Path) -> list[dict]:
    return pq.read_table(folder / "manifest.parquet").to_pylist()


def _member(folder: Path, row: dict, ext: str) -> bytes:
    member = next(m for m in row["members"] if m["ext"] == ext)
    with (folder / row["shard"]).open("rb") as shard:
        shard.seek(member["data_offset"])
        return shard.read(member["size"])


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_release_page_shows_the_card_with_its_plots_and_a_sample_of_each_kind(server, page, tmp_path):
    page.goto(server.url)
    assert page.locator("h1").inner_text() == "Release demo 1.0.0"
    assert sorted(page.locator("a.kind .kind-name").all_inner_texts()) == list(KINDS)
    plots = page.locator("#card img")
    assert plots.count() >= 5
    for i in range(plots.count()):
        assert plots.nth(i).evaluate("img => img.complete && img.naturalWidth") == 600  # 6 in at 100 dpi
    shot = _pixels(plots.first.screenshot(path=str(tmp_path / "plot.png")))
    assert shot.std() > 20 and (shot < 128).mean() > 0.005  # bars and text drawn, not a blank box
    card = page.locator("#card").inner_text()
    assert "Contents" in card and "By source kind" in card
    page.screenshot(path=str(tmp_path / "release.png"), full_page=True)


@pytest.mark.parametrize("kind", KINDS)
def test_sample_page_shows_the_image_texts_scores_and_lineage(server, demo_release, page, kind, tmp_path):
    page.goto(server.url)
    page.locator("a.kind", has_text=kind).click()
    key = page.locator("h1.sample-id").inner_text()
    row = next(r for r in _manifest(demo_release) if r["key"] == key)
    assert row["source_kind"] == kind
    record = json.loads(_member(demo_release, row, "json"))

    # The image: loaded at its natural size, and the screenshot shows the shard's own pixels.
    image = page.locator("#sample-image")
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [row["width"], row["height"]]
    image_ext = next(m["ext"] for m in row["members"] if m["ext"] in ("png", "jpg"))
    expected = Image.open(io.BytesIO(_member(demo_release, row, image_ext))).convert("RGB")
    box = image.bounding_box()
    width, height = display_size(row["width"], row["height"])
    assert (round(box["width"]), round(box["height"])) == (width, height)
    clip = {"x": round(box["x"]), "y": round(box["y"]), "width": width, "height": height}  # pixel-snapped
    shot = page.screenshot(clip=clip, path=str(tmp_path / f"{kind}-image.png"))
    shot = Image.open(io.BytesIO(shot)).convert("RGB")
    scaled = np.asarray(expected.resize(shot.size, Image.Resampling.NEAREST), dtype=np.int16)
    assert np.abs(np.asarray(shot, dtype=np.int16) - scaled).mean() < 4

    # The lineage: every event of the record, in order, ending in the release.
    stages = page.locator("ol.timeline .stage").all_inner_texts()
    assert stages == [event["stage"] for event in record["lineage"]]
    assert stages[0] == f"ingest.{kind}" and stages[-1] == "shard"
    assert page.locator("ol.timeline li").last.locator(".decision").text_content() == "released"
    assert page.locator("ol.timeline li .ran").first.inner_text().startswith("(finished 20")  # the run's time
    timeline_shot = _pixels(page.locator("#lineage").screenshot(path=str(tmp_path / f"{kind}-lineage.png")))
    assert timeline_shot.std() > 20

    # Every text with its author, and the scores.
    final = page.locator("tr.text-final_caption")
    assert final.locator("td").first.inner_text().strip() == record["text"]["final_caption"]
    assert record["text"]["final_caption_author"] in final.inner_text()
    assert page.locator("table.scores tbody tr").count() == len(record["scores"])

    # The source's bytes, hashed again on request, still match.
    page.locator("#source-check a").click()
    assert page.locator("#source-check .check").inner_text() == "matches"
    page.screenshot(path=str(tmp_path / f"{kind}.png"), full_page=True)


def test_search_finds_by_sample_id_source_pmcid_and_label(server, demo_release, page):
    rows = _manifest(demo_release)

    def search(field: str, query: str) -> list[str]:
        page.goto(server.url)
        page.locator("header select").select_option(field)
        page.locator("header input[type=search]").fill(query)
        page.locator("header button").click()
        page.wait_for_load_state()
        return page.locator("table.hits td:nth-child(2)").all_inner_texts()

    key = rows[5]["key"]
    search("id", key)
    assert page.locator("h1.sample-id").inner_text() == key  # an exact id opens the sample

    pmcid = next(r["article_id"] for r in rows if r["article_id"])
    assert search("pmcid", pmcid.lower()) == sorted(r["key"] for r in rows if r["article_id"] == pmcid)

    labeled = {
        r["key"]
        for r in rows
        if r["class_name"] == "melanoma" or any(label["name"] == "melanoma" for label in r["labels"] or [])
    }
    assert labeled and set(search("label", "Melanoma")) == labeled

    source = next(r for r in rows if r["source_kind"] == "dicom")
    assert search("source", source["source_uri"]) == [source["key"]]
    assert search("source", source["source_sha256"]) == [source["key"]]
    assert page.locator("#count").inner_text().startswith("1 sample match")

    assert search("any", "no-such-thing") == []
    assert page.locator("#count").inner_text().startswith("0 samples match")


def test_hostile_text_is_shown_as_text_and_runs_nothing(hostile_release, page):
    running = Server(hostile_release)
    try:
        page.goto(running.url + "search?field=label&q=onerror")
        assert page.locator("#count").inner_text().startswith("1 sample match")
        page.locator("table.hits td:nth-child(2) a").click()
        body = page.locator("body").inner_text()
        assert HOSTILE in body  # the markup is visible as the characters it is
        assert page.locator('img[src="x"]').count() == 0 and page.dialogs == []
        status, html, headers = running.raw("GET", urlsplit(page.url).path)
        assert status == 200 and b"<img src=x" not in html and b"&lt;img src=x onerror=alert(1)&gt;" in html
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no script
    finally:
        running.stop()


TRAVERSALS = (
    "/files/../../../../etc/passwd",
    "/files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/files/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/files//etc/passwd",
    "/files/%2Fetc%2Fpasswd",
    "/files/shards/../../../../../etc/passwd",
    "/files/shards/..%5c..%5c..%5cetc%5cpasswd",
    "/sample/..%2f..%2f..%2fetc%2fpasswd/image",
    "/static/../../../../etc/passwd",
    "/../../../../etc/passwd",
)


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_reaches_a_file_outside_the_release(server, path):
    status, body, _ = server.raw("GET", path)
    assert status in (400, 404) and b"root:" not in body


def test_traversal_in_the_browser_shows_a_refusal(server, page, tmp_path):
    page.goto(server.url + "files/..%2f..%2f..%2f..%2fetc%2fpasswd")  # the browser keeps %2f as it is
    assert "/files/" in page.url
    assert page.locator("h1").inner_text() == "404"
    assert "not a file of this release" in page.locator("body").inner_text()
    page.screenshot(path=str(tmp_path / "refused.png"))


def test_only_reads_and_only_for_this_machine(server):
    assert server.raw("GET", "/files/release.json")[0] == 200
    assert server.raw("POST", "/")[0] == 405
    assert server.raw("DELETE", "/files/release.json")[0] == 405
    assert server.raw("GET", "/", host="attacker.example")[0] == 400  # DNS rebinding
    status, _, headers = server.raw("GET", "/")
    assert status == 200 and headers["x-content-type-options"] == "nosniff"


def test_a_symlink_or_a_doctored_manifest_cannot_lead_out(demo_release, tmp_path):
    copy = tmp_path / "release"
    shutil.copytree(demo_release, copy)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    (copy / "card.md").unlink()
    (copy / "card.md").symlink_to(secret)
    manifest = pq.read_table(copy / "manifest.parquet")
    shards = manifest.column("shard").to_pylist()
    shards[0] = "../secret.txt"  # a manifest naming a file outside the release
    members = manifest.column("members").to_pylist()
    members[1] = [{**m, "data_offset": 10**12} for m in members[1]]  # an offset past the shard's end
    assert shards[2] == shards[3]
    members[2] = members[3]  # offsets of another sample's members in the same shard
    manifest = manifest.set_column(manifest.schema.get_field_index("shard"), "shard", pa.array(shards))
    manifest = manifest.set_column(
        manifest.schema.get_field_index("members"),
        manifest.schema.field("members"),
        pa.array(members, manifest.schema.field("members").type),
    )
    pq.write_table(manifest, copy / "manifest.parquet")
    view = ReleaseView(copy)
    keys = manifest.column("key").to_pylist()
    assert view.file_path("card.md") is None and view.read_text("card.md") is None
    for key in keys[:3]:
        assert view.member(view.row(key), "json") is None
    assert view.member(view.row(keys[4]), "json") is not None
    assert view.file_path("../secret.txt") is None and view.file_path(str(secret)) is None


def test_texts_name_every_author_and_the_timeline_parses_details():
    record = {
        "text": {
            "source_caption": "As written.",
            "generated_caption": "A model's words.",
            "paraphrases": ["One.", "Two."],
            "panel_captions": [{"label": "A", "text": "Left."}],
            "final_caption": "A model's words.",
            "final_caption_author": "model:tiny@abc",
            "authors": [
                {"field": "source_caption", "author": "author"},
                {"field": "generated_caption", "author": "model:tiny@abc", "prompt_id": "caption@1"},
                {"field": "final_caption", "author": "model:tiny@abc", "prompt_id": "caption@1"},
            ],
        },
        "lineage": [
            {
                "stage": "ingest.pmc",
                "stage_version": "1",
                "decision": "kept",
                "details": '{"b": 1, "a": "x"}',
            },
            {"stage": "caption", "stage_version": "2", "decision": "kept", "details": "free text"},
        ],
    }
    shown = {text.field: text for text in texts(record)}
    assert list(shown) == [
        "source_caption",
        "generated_caption",
        "paraphrases",
        "panel_captions",
        "final_caption",
    ]
    assert shown["panel_captions"].lines == ["A: Left."]
    assert [a["author"] for a in shown["generated_caption"].authors] == ["model:tiny@abc"]
    events = timeline(record)
    assert [e.number for e in events] == [1, 2]
    assert events[0].details == [("a", "x"), ("b", "1")] and events[1].details == [("details", "free text")]
    assert display_size(64, 32) == (512, 256) and display_size(2048, 1024) == (512, 256)


def test_a_sample_the_release_removed_is_found_with_its_reason(demo_release, tmp_path):
    """Searching for a sample the parent had shows why this release no longer has it (changes.json,
    written here by the same ``compute_changes`` a release build uses)."""
    from starlette.testclient import TestClient

    from medcurate.release.changes import CurrentFacts, compute_changes
    from medcurate.viewer.app import create_app

    copy = tmp_path / "release"
    shutil.copytree(demo_release, copy)
    parent = pq.read_table(copy / "manifest.parquet")
    gone = parent.column("key")[0].as_py()
    current = parent.filter(pc.not_equal(parent.column("key"), gone))
    pq.write_table(current, copy / "manifest.parquet")  # this "release" no longer has it
    facts = CurrentFacts(excluded={gone: "near_duplicate"})
    (copy / "changes.json").write_text(
        json.dumps(compute_changes(parent, current.to_pylist(), facts, "1.0.0"))
    )
    client = TestClient(create_app(ReleaseView(copy)), base_url="http://127.0.0.1")
    html = client.get("/search", params={"q": gone}).text
    assert f"<code>{gone}</code> is not in this release: near_duplicate" in html
    release_page = client.get("/").text
    assert "0 added, 1 removed" in release_page
    assert f"<td><code>{gone}</code></td>" in release_page and "<td>near_duplicate</td>" in release_page


def test_search_aligns_rows_when_a_column_is_all_null(tmp_path):
    """Fields joined for search stay one text per row even when a joined column holds only nulls."""
    from medcurate.release.builder import MANIFEST_SCHEMA

    keys = ["a-1", "a-2", "a-3"]
    columns = {
        "key": keys,
        "source_uri": ["/x/one.png", None, "/x/three.png"],
        "labels": [[{"name": "nodule", "value": None}], [], None],
        "members": [[]] * 3,
    }
    arrays = [pa.array(columns.get(f.name, [None] * 3), f.type) for f in MANIFEST_SCHEMA]
    pq.write_table(pa.Table.from_arrays(arrays, schema=MANIFEST_SCHEMA), tmp_path / "manifest.parquet")
    (tmp_path / "checksums.sha256").write_text(f"{'0' * 64}  manifest.parquet\n")
    (tmp_path / "release.json").write_text('{"name": "t", "version": "1.0.0"}')
    view = ReleaseView(tmp_path)  # source_sha256 and class_name are all null
    assert [hit.key for hit in view.search("three", "source")[1]] == ["a-3"]
    assert [hit.key for hit in view.search("nodule", "label")[1]] == ["a-1"]
    assert view.search("A-", "any")[0] == 3 and view.row("a-2")["key"] == "a-2" and view.row("b") is None
