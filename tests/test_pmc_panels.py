"""Compound-figure captions: per-panel sub-captions only for real sequential panel labels."""

from __future__ import annotations

import pytest

from medcurate.sources.pmc.panels import Panel, is_compound, lead_in, split_panels


def _pairs(caption: str) -> list[tuple[str, str]]:
    return [(p.label, p.text) for p in split_panels(caption)]


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        (
            "(A) Axial CT shows a hypodense mass (arrow). (B) Coronal reconstruction.",
            [("A", "Axial CT shows a hypodense mass (arrow)."), ("B", "Coronal reconstruction.")],
        ),
        (
            "(a) H&E staining; (b) Ki-67 immunostaining, scale bar 50 μm",
            [("a", "H&E staining"), ("b", "Ki-67 immunostaining, scale bar 50 μm")],
        ),
        (
            "A, Axial T2-weighted image. B, Sagittal T1-weighted image.",
            [("A", "Axial T2-weighted image."), ("B", "Sagittal T1-weighted image.")],
        ),
        ("A: chest radiograph. B: CT scan.", [("A", "chest radiograph."), ("B", "CT scan.")]),
        (
            "A. Axial FLAIR. B. Coronal T1. C. Sagittal.",
            [("A", "Axial FLAIR."), ("B", "Coronal T1."), ("C", "Sagittal.")],
        ),
        (
            "Left: before treatment. Right: after treatment.",
            [("Left", "before treatment."), ("Right", "after treatment.")],
        ),
        ("Top: raw signal. Bottom: fitted curve.", [("Top", "raw signal."), ("Bottom", "fitted curve.")]),
        (
            "(left) pre-operative, (right) post-operative",
            [("Left", "pre-operative"), ("Right", "post-operative")],
        ),
        (
            "a Axial CT shows the mass. b Coronal view.",
            [("a", "Axial CT shows the mass."), ("b", "Coronal view.")],
        ),
        ("(1) baseline scan (2) follow-up scan", [("1", "baseline scan"), ("2", "follow-up scan")]),
    ],
)
def test_panel_styles(caption: str, expected: list[tuple[str, str]]) -> None:
    assert _pairs(caption) == expected
    assert is_compound(caption)


def test_range_label_and_lead_in() -> None:
    caption = "Hepatic angiosarcoma. (A–C) Axial CT images at three levels. (D) Coronal view."
    assert split_panels(caption) == (
        Panel("A-C", "Axial CT images at three levels."),
        Panel("D", "Coronal view."),
    )
    assert lead_in(caption) == "Hepatic angiosarcoma."


def test_labels_sharing_one_text_are_merged() -> None:
    assert _pairs("(A) and (B) Axial CT; (C) coronal MRI.") == [("A,B", "Axial CT"), ("C", "coronal MRI.")]
    assert _pairs("(A)–(C) Axial slices; (D) coronal.") == [("A-C", "Axial slices"), ("D", "coronal.")]


def test_cross_reference_to_a_later_panel_does_not_cut_the_text() -> None:
    caption = "(A) CT shows the mass also seen in (B). (B) MRI confirms it. (C) PET."
    assert _pairs(caption) == [
        ("A", "CT shows the mass also seen in (B)."),
        ("B", "MRI confirms it."),
        ("C", "PET."),
    ]


def test_labels_written_after_their_text() -> None:
    assert _pairs("Axial CT (A) and coronal MRI (B) showing a mass.") == [
        ("A", "Axial CT"),
        ("B", "coronal MRI showing a mass."),
    ]


@pytest.mark.parametrize(
    "caption",
    [
        "Chest CT (A) showing a nodule.",  # one label only
        "The same lesion (see B) on follow-up.",
        "Patients with vitamin A deficiency and type B lesions.",
        "Grading: type A. Type B was not seen.",
        "(B) Coronal view and (C) sagittal view.",  # does not start at A
        "Culture of A. baumannii. B. fragilis was absent.",  # genus abbreviations
        "(A–C) Axial CT images at three levels.",  # a single range is one block of text
        "Left ventricle: dilated.",  # a position word without its pair
        "",
    ],
)
def test_not_compound(caption: str) -> None:
    assert split_panels(caption) == ()
    assert not is_compound(caption)
    assert lead_in(caption) == ""
