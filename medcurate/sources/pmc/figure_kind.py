"""What a figure shows: a medical image (and which modality), a chart, a diagram, a gel, a photo ...

Most PMC figures are not medical images at all (bar charts, flowcharts, western blots), and a
medical image-text corpus must not be flooded with them. The first classifier is a transparent
heuristic: caption cue words (weighted, with a boost when the cue is the caption's grammatical
subject) plus a few cheap image statistics. It records the evidence it used so a curator can audit
every decision, and it sits behind a small protocol so a model backend can replace it by name.
"""

from __future__ import annotations

import colorsys
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "CLASSIFIERS",
    "KINDS",
    "MODALITIES",
    "FigureKind",
    "FigureKindClassifier",
    "HeuristicClassifier",
    "ImageStats",
    "classify_figure",
    "image_stats",
]

KINDS = ("medical_image", "chart", "diagram", "table_image", "gel", "equipment_photo", "photo", "unknown")
#: Modalities, in the order that breaks ties: the more specific reading first (PET/CT is PET,
#: CT angiography is angiography, fluorescein angiography is ophthalmology).
MODALITIES = (
    "pet", "nuclear", "ophthalmology", "angiography", "endoscopy", "dermatology", "cytology",
    "histopathology", "ultrasound", "mri", "ct", "xray", "microscopy", "clinical_photo",
)  # fmt: skip
#: Kinds in the order that breaks ties between equal scores.
_KIND_ORDER = ("gel", "chart", "diagram", "table_image", "medical_image", "equipment_photo", "photo")
SUBJECT_BOOST = 3.0
#: Only the start of a caption is read: what a figure shows is said early, and it bounds the cost.
MAX_CAPTION_CHARS = 4000


@dataclass(frozen=True)
class FigureKind:
    """A classification with the cues that decided it (``evidence``) and the method that made it."""

    kind: str
    modality: str | None
    confidence: float
    evidence: tuple[str, ...]
    method: str


@dataclass(frozen=True)
class ImageStats:
    """Cheap colour statistics of a figure image, from a 64x64 nearest-neighbour thumbnail.

    Charts and diagrams are mostly white with few colours; radiology is grayscale on a dark
    background; H&E histology is colourful pink/purple.
    """

    width: int
    height: int
    grayscale_fraction: float  # pixels with r ≈ g ≈ b
    colorfulness: float  # Hasler–Süsstrunk colourfulness (0 for grayscale, > 60 very colourful)
    white_fraction: float  # near-white pixels (all channels >= 235)
    distinct_colors: int  # distinct colours after quantising to 4 bits per channel
    dark_fraction: float = 0.0  # pixels with luminance < 40
    pink_purple_fraction: float = 0.0  # saturated pixels with a pink/purple hue (H&E staining)


def image_stats(image: Image.Image) -> ImageStats:
    """Statistics of a PIL image (any mode); deterministic and fast (4,096 pixels)."""
    from PIL import Image

    width, height = image.size
    thumb = image.convert("RGB").resize((64, 64), Image.Resampling.NEAREST)
    pixels = list(thumb.getdata())
    total = len(pixels)
    gray = white = dark = pink = 0
    colors = set()
    rg_values: list[int] = []
    yb_values: list[float] = []
    for r, g, b in pixels:
        if max(r, g, b) - min(r, g, b) <= 12:
            gray += 1
        if r >= 235 and g >= 235 and b >= 235:
            white += 1
        if 0.299 * r + 0.587 * g + 0.114 * b < 40:
            dark += 1
        hue, lightness, saturation = colorsys.rgb_to_hls(r / 255, g / 255, b / 255)
        if saturation > 0.15 and 0.15 < lightness < 0.92 and hue >= 0.75:
            pink += 1
        colors.add((r >> 4, g >> 4, b >> 4))
        rg_values.append(r - g)
        yb_values.append(0.5 * (r + g) - b)
    return ImageStats(
        width=width,
        height=height,
        grayscale_fraction=gray / total,
        colorfulness=_colorfulness(rg_values, yb_values),
        white_fraction=white / total,
        distinct_colors=len(colors),
        dark_fraction=dark / total,
        pink_purple_fraction=pink / total,
    )


def _colorfulness(rg: list[int], yb: list[float]) -> float:
    def mean_std(values: list[float]) -> tuple[float, float]:
        mean = sum(values) / len(values)
        return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))

    mean_rg, std_rg = mean_std([float(v) for v in rg])
    mean_yb, std_yb = mean_std(yb)
    return round(math.hypot(std_rg, std_yb) + 0.3 * math.hypot(mean_rg, mean_yb), 3)


@runtime_checkable
class FigureKindClassifier(Protocol):
    """Anything that can say what a figure shows from its caption and (optionally) its image stats."""

    name: str

    def classify(self, caption: str, image: ImageStats | None) -> FigureKind: ...


# --- caption cues ------------------------------------------------------------------------------------
# (category, pattern, weight). A category is a modality (implies kind "medical_image") or a kind.
# Patterns are matched against the caption as written: acronyms ("CT", "PET", "OCT") are
# case-sensitive so "pet owners" or "Oct 2020" do not count; words use (?i) where case is irrelevant.
_CUES: tuple[tuple[str, str, float], ...] = (
    ("ct", r"\bCT\b(?!\s*values?\b)", 1.0),
    ("ct", r"(?i)\bcomputed\s+tomograph", 1.2),
    ("ct", r"\b(?:HR|MD|CE|NC)CT\b", 1.2),
    ("mri", r"\bMRI?\b", 1.0),
    ("mri", r"(?i)\bmagnetic\s+resonance", 1.2),
    ("mri", r"(?i)\bT[12₁₂][-\s]?weighted|\bT[12₁₂]WI?\b|\bFLAIR\b|(?i:diffusion[-\s]weighted)|\bDWI\b", 1.2),
    ("xray", r"(?i)\bradiograph|\bx[-\s]?rays?\b|\bchest\s+film|\bplain\s+film|\bmammogra|\bfluoroscop", 1.2),
    ("ultrasound", r"(?i)\bultraso(?:und|nograph)|\bsonograph|\bechocardiogra|\bdoppler\b", 1.2),
    ("pet", r"\bPET\b|(?i:\bpositron\s+emission)|\bFDG\b", 1.3),
    ("nuclear", r"\bSPECT\b|(?i:\bscintigra|\bbone\s+scan|\bscintiscan)", 1.3),
    ("angiography", r"(?i)(?<!fluorescein\s)(?<!OCT\s)\bangiogra|\barteriogra|\bvenogra|\bDSA\b", 1.3),
    (
        "histopathology",
        r"H\s?&\s?E\b|\bHE\s+stain|(?i:\bh(?:a)?ematoxylin|\beosin\b|\bimmunohistochem|\bhistolog"
        r"|\bhistopatholog|\bbiops(?:y|ies)\b|\bmasson|\btrichrome|\bPAS\s+stain|original\s+magnification"
        r"|\bIHC\b|\bpathologic(?:al)?\s+(?:section|specimen|finding)s?)",
        1.2,
    ),
    (
        "cytology",
        r"(?i)\bcytolog|\bsmears?\b|\bpapanicolaou|\bfine[-\s]needle\s+aspirat|\bcytospin|\bFNA\b",
        1.2,
    ),
    (
        "dermatology",
        r"(?i)\bdermo?scop|\bdermatoscop|\bskin\s+lesions?|\berythem|\bpapul|\bpustul|\bvesicle|\brash\b"
        r"|\bplaques?\s+on\b|\bcutaneous\b",
        1.1,
    ),
    (
        "ophthalmology",
        r"(?i:\bfundus|\bfundoscop|\bretina|\bslit[-\s]lamp|fluorescein\s+angiogra"
        r"|optical\s+coherence\s+tomog)|\bOCT\b(?!-?\d)",
        1.3,
    ),
    (
        "endoscopy",
        r"(?i)\bendoscop|\bcolonoscop|\bgastroscop|\bbronchoscop|\blaparoscop|\bcystoscop|\barthroscop"
        r"|\bhysteroscop|\besophagogastroduodenoscop|\bEGD\b",
        1.3,
    ),
    (
        "microscopy",
        r"(?i)\bmicrograph|\bmicroscop|\bconfocal|\bimmunofluoresc|\bfluorescen(?:ce|t)\s+(?:image|microscop|stain)"
        r"|\bDAPI\b|\bscale\s+bars?\b",
        0.9,
    ),
    (
        "clinical_photo",
        r"(?i)\bclinical\s+(?:photo(?:graph)?|picture|appearance|image)|\bintra-?operative\s+(?:photo|view|image|find)"
        r"|\bgross\s+(?:appearance|specimen|photo|pathology)|\bmacroscopic|\bintraoral\b|\bphotograph\s+of\s+the\s+"
        r"(?:patient|face|lesion|wound|hand|foot|leg|arm|eye|mouth|tumou?r)",
        1.1,
    ),
    (
        "chart",
        r"(?i)\bbar\s+(?:graph|chart|plot)s?|\bbox[-\s]?(?:and[-\s]whisker\s+)?plots?|\bscatter\s*(?:plot|gram)?s?\b"
        r"|\bkaplan[-–—\s]+meier|\bsurvival\s+curves?|\bROC\b|\breceiver\s+operating|\bforest\s+plots?"
        r"|\bfunnel\s+plots?|\bhistograms?\b|\bline\s+graphs?|\bheat\s*maps?\b|\bpie\s+charts?|\bbland[-–\s]+altman"
        r"|\bvolcano\s+plots?|\bdose[-\s]response|\bcalibration\s+curves?|\bnomogram|\bcumulative\s+incidence",
        1.5,
    ),
    ("chart", r"(?i)\bgraphs?\b|\bplots?\b|\bcurves?\b|(?<!flow)(?<!flow\s)\bcharts?\b", 0.8),
    (
        "chart",
        r"(?i)\berror\s+bars?\b|\bmean\s*±\s*(?:SD|SEM|SE)\b|\b[Pp]\s*[<=]\s*0?\.0\d|\bstatistically\b",
        0.6,
    ),
    (
        "diagram",
        r"(?i)\bflow\s*-?\s*(?:chart|diagram)s?|\bPRISMA\b|\bCONSORT\b|\bschematic|\bdiagram|\billustration"
        r"|\bschema\b|\bworkflow|\bpipeline\b|\bframework\b|\balgorithm|\bproposed\s+mechanism|\bcartoon"
        r"|\bstudy\s+design|\bgraphical\s+abstract|\bconceptual\s+model|\btimeline|\boverview\s+of",
        1.4,
    ),
    (
        "table_image",
        r"(?i)^\s*table\b|\btable\s+(?:of|showing|summari[sz]ing|listing)|\bsummary\s+table",
        1.3,
    ),
    (
        "gel",
        r"(?i)\b(?:western|northern|southern|immuno)\s*-?\s*blot|\bblots?\b|\bgels?\b|\belectrophoresis|\bSDS-PAGE"
        r"|\bagarose\b|\bPCR\s+products?",
        1.5,
    ),
    (
        "equipment_photo",
        r"(?i)\b(?:photo(?:graph)?|picture|image)s?\s+of\s+(?:the\s+|a\s+|an\s+|our\s+)?(?:experimental\s+)?"
        r"(?:device|set-?up|apparatus|equipment|instrument|prototype|system|robot|probe|sensor|platform)",
        2.0,
    ),
    (
        "equipment_photo",
        r"(?i)\b(?:experimental|measurement|recording)\s+set-?up\b|\bapparatus\b|\bprototype\b",
        1.0,
    ),
    ("photo", r"(?i)\bphoto(?:graph)?s?\b|\bpictures?\b", 0.7),
)
_COMPILED = tuple((category, re.compile(pattern), weight) for category, pattern, weight in _CUES)
_LEADING_LABEL = re.compile(
    r"^\s*(?:(?:fig(?:ure)?\.?\s*\d+[a-z]?[.:]?)|\(?[A-Za-z1-9]\)|[A-Z][.:,])\s*", re.I
)
_SUBJECT_END = re.compile(
    r"[.;:]\s|\s\((?=[A-Za-z])|\b(?:of|for|in|from|with|among|showing|shows|demonstrat\w*|between"
    r"|comparing|according|by|on|at|after|before|during|versus|vs)\b",
    re.I,
)


def _subject_end(caption: str) -> int:
    """End of the caption's grammatical subject: its first words up to the first preposition/verb.

    "Kaplan–Meier survival curves | of patients with CT-detected nodules" → the chart is the subject.
    """
    match = _SUBJECT_END.search(caption)
    return match.start() if match else len(caption)


def _caption_scores(caption: str) -> tuple[dict[str, float], list[str]]:
    text = _LEADING_LABEL.sub("", caption[:MAX_CAPTION_CHARS], count=1)
    subject_end = _subject_end(text)
    scores: dict[str, float] = {}
    evidence: list[str] = []
    for category, pattern, weight in _COMPILED:
        for match in pattern.finditer(text):
            in_subject = match.start() < subject_end
            scores[category] = scores.get(category, 0.0) + weight * (SUBJECT_BOOST if in_subject else 1.0)
            end = match.end()
            while end < len(text) and text[end].isalpha():  # "Colonoscop" -> "Colonoscopy"
                end += 1
            cue = " ".join(text[match.start() : end].split())
            evidence.append(f"{category}:{cue}{'@subject' if in_subject else ''}")
            break  # one hit per cue pattern: repetition is not extra evidence
    return scores, evidence


def _image_scores(stats: ImageStats) -> tuple[dict[str, float], list[str]]:
    scores: dict[str, float] = {}
    evidence: list[str] = []
    if stats.white_fraction >= 0.5 and stats.distinct_colors <= 64:
        scores["chart"] = scores.get("chart", 0.0) + 1.0
        scores["diagram"] = scores.get("diagram", 0.0) + 0.9
        evidence.append("image:mostly-white-few-colours")
    elif stats.grayscale_fraction >= 0.9 and stats.dark_fraction >= 0.25:
        scores["medical_image"] = scores.get("medical_image", 0.0) + 1.5
        evidence.append("image:grayscale-dark-background")
    if stats.pink_purple_fraction >= 0.3 and stats.colorfulness >= 20 and stats.white_fraction < 0.6:
        scores["histopathology"] = scores.get("histopathology", 0.0) + 1.5
        evidence.append("image:pink-purple-stain")
    elif stats.distinct_colors >= 300 and stats.grayscale_fraction < 0.5 and stats.white_fraction < 0.3:
        scores["photo"] = scores.get("photo", 0.0) + 0.5
        evidence.append("image:photographic-colour")
    return scores, evidence


def _best(scores: dict[str, float], order: tuple[str, ...]) -> tuple[str | None, float, float]:
    """Best key by score (ties broken by ``order``), its score and the runner-up's score."""
    ranked = sorted((k for k in order if scores.get(k, 0.0) > 0), key=lambda k: (-scores[k], order.index(k)))
    if not ranked:
        return None, 0.0, 0.0
    second = scores[ranked[1]] if len(ranked) > 1 else 0.0
    return ranked[0], scores[ranked[0]], second


class HeuristicClassifier:
    """Caption cue words plus image statistics, weighted and summed; deterministic."""

    name = "heuristic-v1"

    def classify(self, caption: str, image: ImageStats | None = None) -> FigureKind:
        scores, evidence = _caption_scores(caption or "")
        if image is not None:
            image_scores, image_evidence = _image_scores(image)
            for key, value in image_scores.items():
                scores[key] = scores.get(key, 0.0) + value
            evidence.extend(image_evidence)
        modality_scores = {m: scores[m] for m in MODALITIES if m in scores}
        kind_scores = {k: scores.get(k, 0.0) for k in _KIND_ORDER}
        kind_scores["medical_image"] += sum(modality_scores.values())
        kind, top, second = _best(kind_scores, _KIND_ORDER)
        if kind is None:
            return FigureKind("unknown", None, 0.0, tuple(evidence), self.name)
        modality = _best(modality_scores, MODALITIES)[0] if kind == "medical_image" else None
        confidence = round(top / (top + second + 1.0), 3)
        return FigureKind(kind, modality, confidence, tuple(evidence), self.name)


#: Classifier backends by name, so a pipeline config can pick one ("heuristic-v1", later a model).
CLASSIFIERS: dict[str, type] = {HeuristicClassifier.name: HeuristicClassifier}


def classify_figure(
    caption: str,
    image: ImageStats | Image.Image | None = None,
    classifier: FigureKindClassifier | str | None = None,
) -> FigureKind:
    """Classify a figure with ``classifier`` (an instance or a ``CLASSIFIERS`` name; heuristic by default).

    ``image`` may be precomputed ``ImageStats`` or a PIL image (its stats are computed here).
    """
    if classifier is None:
        classifier = HeuristicClassifier()
    elif isinstance(classifier, str):
        try:
            classifier = CLASSIFIERS[classifier]()
        except KeyError:
            raise ValueError(
                f"unknown figure classifier {classifier!r}; known: {', '.join(CLASSIFIERS)}"
            ) from None
    stats = image if image is None or isinstance(image, ImageStats) else image_stats(image)
    return classifier.classify(caption, stats)
