"""Figure kind classification: caption cues (subject wins), image statistics, pluggable backends."""

from __future__ import annotations

import random

import pytest
from PIL import Image, ImageDraw

from medcurate.sources.pmc.figure_kind import (
    CLASSIFIERS,
    FigureKind,
    FigureKindClassifier,
    HeuristicClassifier,
    ImageStats,
    classify_figure,
    image_stats,
)


@pytest.mark.parametrize(
    ("caption", "kind", "modality"),
    [
        ("Axial contrast-enhanced CT of the abdomen showing a hypodense lesion.", "medical_image", "ct"),
        ("Computed tomography of the chest.", "medical_image", "ct"),
        ("Sagittal T2-weighted image of the lumbar spine.", "medical_image", "mri"),
        ("Chest radiograph showing bilateral infiltrates.", "medical_image", "xray"),
        ("Transabdominal ultrasound of the gallbladder.", "medical_image", "ultrasound"),
        ("PET/CT shows FDG-avid lymph nodes.", "medical_image", "pet"),
        ("Bone scintigraphy with increased uptake.", "medical_image", "nuclear"),
        ("CT angiography showing a saccular aneurysm.", "medical_image", "angiography"),
        ("Representative H&E staining of tumour sections (original magnification ×200).", "medical_image",
         "histopathology"),
        ("Pap smear with atypical squamous cells.", "medical_image", "cytology"),
        ("Dermoscopic image of a pigmented lesion.", "medical_image", "dermatology"),
        ("Fundus photograph of the right eye.", "medical_image", "ophthalmology"),
        ("OCT angiography of the macula.", "medical_image", "ophthalmology"),
        ("Colonoscopy revealed a pedunculated polyp.", "medical_image", "endoscopy"),
        ("Confocal micrograph of cells stained with DAPI.", "medical_image", "microscopy"),
        ("Clinical photograph of the patient showing facial swelling.", "medical_image", "clinical_photo"),
        ("Kaplan–Meier survival curves of patients with CT-detected nodules.", "chart", None),
        ("Receiver operating characteristic curves of MRI features.", "chart", None),
        ("Bar graph of IL-6 levels (mean ± SD). *P < 0.05.", "chart", None),
        ("Forest plot of pooled odds ratios.", "chart", None),
        ("Flowchart of patient selection for the CT cohort.", "diagram", None),
        ("Schematic diagram of the proposed mechanism.", "diagram", None),
        ("Western blot analysis of p53 expression.", "gel", None),
        ("Table summarizing baseline characteristics.", "table_image", None),
        ("Photograph of the experimental setup.", "equipment_photo", None),
        ("Photo of the hospital entrance.", "photo", None),
    ],
)  # fmt: skip
def test_caption_cues(caption: str, kind: str, modality: str | None) -> None:
    result = classify_figure(caption)
    assert (result.kind, result.modality) == (kind, modality)
    assert result.method == "heuristic-v1"
    assert 0.5 <= result.confidence <= 1.0
    assert result.evidence


def test_chart_subject_beats_a_modality_word_elsewhere() -> None:
    result = classify_figure("Kaplan–Meier survival curves of patients with CT-detected nodules.")
    assert result.kind == "chart"
    assert "chart:Kaplan–Meier@subject" in result.evidence
    assert "ct:CT" in result.evidence  # seen, but not the subject


def test_acronyms_are_case_sensitive_and_word_bounded() -> None:
    assert classify_figure("Pet owners and their dogs, Oct 2020.").kind == "unknown"
    assert classify_figure("Expression of OCT4 in stem cells.").modality is None
    assert classify_figure("Mean ct values by group.").kind == "unknown"


def test_no_cue_is_unknown_with_zero_confidence() -> None:
    assert classify_figure("Overall findings.") == FigureKind("unknown", None, 0.0, (), "heuristic-v1")
    assert classify_figure("").kind == "unknown"


def _bar_chart() -> Image.Image:
    image = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([80, 200, 160, 440], fill=(31, 119, 180))
    draw.rectangle([240, 120, 320, 440], fill=(255, 127, 14))
    draw.line([60, 440, 600, 440], fill="black", width=4)
    return image


def _radiograph() -> Image.Image:
    image = Image.new("L", (512, 512), 5)
    draw = ImageDraw.Draw(image)
    draw.ellipse([96, 64, 416, 480], fill=120)
    draw.ellipse([200, 180, 300, 280], fill=210)
    return image


def _histology() -> Image.Image:
    image = Image.new("RGB", (256, 256), (236, 190, 214))
    draw = ImageDraw.Draw(image)
    rng = random.Random(7)
    for _ in range(400):
        x, y = rng.randrange(256), rng.randrange(256)
        draw.ellipse(
            [x, y, x + 9, y + 9],
            fill=(rng.randrange(90, 140), rng.randrange(30, 70), rng.randrange(140, 190)),
        )
    return image


def test_image_stats_of_a_chart() -> None:
    stats = image_stats(_bar_chart())
    assert (stats.width, stats.height) == (640, 480)
    assert stats.white_fraction > 0.7
    assert stats.distinct_colors <= 6
    assert stats.dark_fraction < 0.05


def test_image_stats_of_a_radiograph() -> None:
    stats = image_stats(_radiograph())
    assert stats.grayscale_fraction == 1.0
    assert stats.colorfulness == 0.0
    assert stats.white_fraction == 0.0
    assert stats.dark_fraction > 0.3


def test_image_stats_of_histology() -> None:
    stats = image_stats(_histology())
    assert stats.grayscale_fraction < 0.05
    assert stats.colorfulness > 20
    assert stats.pink_purple_fraction > 0.8


def test_image_statistics_decide_when_the_caption_is_silent() -> None:
    chart = classify_figure("Figure 3.", _bar_chart())
    assert chart.kind == "chart" and "image:mostly-white-few-colours" in chart.evidence
    scan = classify_figure("Figure 1.", image_stats(_radiograph()))
    assert (scan.kind, scan.modality) == ("medical_image", None)
    assert "image:grayscale-dark-background" in scan.evidence
    tissue = classify_figure("", _histology())
    assert (tissue.kind, tissue.modality) == ("medical_image", "histopathology")


def test_caption_and_image_agree_for_more_confidence() -> None:
    alone = classify_figure("Axial CT of the chest.")
    both = classify_figure("Axial CT of the chest.", _radiograph())
    assert both.kind == alone.kind == "medical_image"
    assert both.confidence > alone.confidence


def test_deterministic() -> None:
    caption = "(A) Axial CT. (B) Bar graph of attenuation values."
    assert len({classify_figure(caption, _radiograph()) for _ in range(5)}) == 1


def test_registry_and_protocol() -> None:
    assert {"heuristic-v1": HeuristicClassifier} == CLASSIFIERS
    assert isinstance(HeuristicClassifier(), FigureKindClassifier)
    assert classify_figure("Chest radiograph.", classifier="heuristic-v1").modality == "xray"
    with pytest.raises(ValueError, match="unknown figure classifier 'vlm'"):
        classify_figure("x", classifier="vlm")

    class Fixed:
        name = "fixed"

        def classify(self, caption: str, image: ImageStats | None) -> FigureKind:
            return FigureKind("photo", None, 1.0, (caption,), self.name)

    assert classify_figure("anything", classifier=Fixed()) == FigureKind(
        "photo", None, 1.0, ("anything",), "fixed"
    )
