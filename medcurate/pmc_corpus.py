"""Synthetic, format-real PubMed Central Open Access mirrors for demos, tests and benchmarks.

Every article, author, journal and image here is made up (DOIs use the 10.5555 test prefix), but the
files follow what PMC actually publishes, because a PMC reader is only as good as the quirks it has
been tested against:

* the classic FTP layout (``oa_file_list.csv`` + ``oa_package/xx/yy/PMCnnn.tar.gz`` packages holding
  a JATS ``.nxml``, full-size figures, ``.gif`` thumbnails and a PDF);
* the cloud layout (``<group>/<PMCID>/<PMCID>.xml`` + media + ``<group>/metadata/<group>.filelist.csv``).

``write_pmc_sample_corpus`` writes a small corpus with one package per awkward case (compound figures,
``fig-group``, ``floats-group``, TIFF graphics, missing graphics, xref ranges, missing or empty
licences, malformed XML, unsafe tar members, a truncated gzip stream, a billion-laughs DTD, a retracted
article, a package absent from the file list) and returns what a correct reader should make of it.
``write_pmc_mirror`` writes thousands of plausible good packages quickly for benchmarks.

Generation is deterministic (fixed seeds; tar and gzip headers carry no time, owner or file name), and
files are rewritten only when their bytes differ, so mtimes, and thus the lake's stat cache, survive a
re-run.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import random
import re
import struct
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from medcurate.samplecorpus import _blob, _chest_pixels, _encode, _write_if_changed

SEED = 20240917

FILE_LIST_NAME = "oa_file_list.csv"
FILE_LIST_COLUMNS = (
    "File",
    "Article Citation",
    "Accession ID",
    "Last Updated (YYYY-MM-DD HH:MM:SS)",
    "PMID",
    "License",
    "Retracted",
)
CLOUD_FILE_LIST_COLUMNS = (
    "Key",
    "ETag",
    "Article Citation",
    "AccessionID",
    "Last Updated UTC (YYYY-MM-DD HH:MM:SS)",
    "PMID",
    "License",
    "Retracted",
)
CLOUD_GROUPS = ("oa_comm", "oa_noncomm", "other")

#: File-list ``License`` value -> (normalised licence code, canonical licence URL or None).
LICENSES: dict[str, tuple[str, str | None]] = {
    "CC BY": ("cc-by", "https://creativecommons.org/licenses/by/4.0/"),
    "CC0": ("cc0", "https://creativecommons.org/publicdomain/zero/1.0/"),
    "CC BY-NC": ("cc-by-nc", "https://creativecommons.org/licenses/by-nc/4.0/"),
    "CC BY-NC-ND": ("cc-by-nc-nd", "https://creativecommons.org/licenses/by-nc-nd/4.0/"),
    "NO-CC CODE": ("no-cc-code", None),
}

#: Quarantine reason codes the sample corpus expects a PMC reader to use.
GRAPHIC_MISSING = "graphic_missing"
XML_MALFORMED = "xml_malformed"
XML_ENTITIES = "xml_entities"
ARCHIVE_UNSAFE_MEMBER = "archive_unsafe_member"
ARCHIVE_TRUNCATED = "archive_truncated"

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
DOCTYPE_PUBLIC = (
    '<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.3 '
    '20210610//EN" "JATS-archivearticle1-3.dtd"'
)
ARTICLE_OPEN = (
    '<article xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:mml="http://www.w3.org/1998/Math/MathML" '
    'xmlns:ali="http://www.niso.org/schemas/ali/1.0/" article-type="{article_type}" dtd-version="1.3" '
    'xml:lang="en">'
)

README = """\
medcurate PMC sample mirror: SYNTHETIC data written by medcurate.pmc_corpus.

Nothing here is a real publication. Journals, authors, affiliations, article text, captions, PMIDs,
PMCIDs and DOIs (10.5555 is Crossref's test prefix) are invented, and every image is generated from
fixed random seeds; no image shows a real patient. Only the FILE FORMATS are real: the PMC Open Access
classic layout (oa_file_list.csv + oa_package/xx/yy/PMCnnn.tar.gz holding JATS 1.3 .nxml, full-size
figures, .gif thumbnails and a PDF) or the PMC cloud layout (<group>/<PMCID>/<PMCID>.xml + media +
<group>/metadata/<group>.filelist.csv).

Some packages are deliberately broken (malformed XML, unsafe tar members, a truncated gzip stream, a
billion-laughs DTD, a missing graphic). Never extract these archives with tarfile.extractall.
"""

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# -- journals, people, vocabulary ------------------------------------------------------------------------


def _issn(serial: int) -> str:
    """A checksum-valid ISSN for a made-up serial number, so ISSN validators accept it."""
    digits = f"{serial:07d}"
    check = (11 - sum(int(d) * w for d, w in zip(digits, range(8, 1, -1), strict=True)) % 11) % 11
    return f"{digits[:4]}-{digits[4:]}{'X' if check == 10 else check}"


@dataclass(frozen=True)
class _Journal:
    title: str
    abbrev: str  # NLM title abbreviation (journal-id nlm-ta), also the citation's first words
    prefix: str  # publisher's file prefix, as in "crr-16-1012-g001"
    issn: str
    publisher: str


JOURNALS = (
    _Journal(
        "Case Reports in Radiology and Imaging",
        "Case Rep Radiol Imaging",
        "crr",
        _issn(1930043),
        "Synthetic Medical Press",
    ),
    _Journal(
        "Journal of Synthetic Pathology", "J Synth Pathol", "jsp", _issn(2190551), "Example Open Publishing"
    ),
    _Journal(
        "Clinical Imaging Cases", "Clin Imaging Cases", "cic", _issn(2451880), "Synthetic Medical Press"
    ),
    _Journal(
        "International Journal of Case Medicine",
        "Int J Case Med",
        "ijcm",
        _issn(1752194),
        "Placeholder Scientific",
    ),
    _Journal(
        "Annals of Diagnostic Imaging", "Ann Diagn Imaging", "adi", _issn(2090317), "Example Open Publishing"
    ),
)

GIVEN = (
    "Ana",
    "Tomasz",
    "Mei",
    "Oluwaseun",
    "Lars",
    "Priya",
    "Jonas",
    "Fatima",
    "Kenji",
    "Sofia",
    "Mateo",
    "Aisha",
    "Henrik",
    "Chloé",
    "Rafael",
    "Ingrid",
    "Yusuf",
    "Elena",
    "Dmitri",
    "Nadia",
)
SURNAMES = (
    "Okafor",
    "Lindqvist",
    "Tanaka",
    "Kowalski",
    "Moreau",
    "Haddad",
    "Fernández",
    "Novak",
    "Iyer",
    "Brennan",
    "Petrova",
    "Schultz",
    "Nakamura",
    "Adeyemi",
    "Rossi",
    "Van Dijk",
    "Costa",
    "Kaur",
    "Müller",
    "O'Sullivan",
)
DEPARTMENTS = (
    "Radiology",
    "Pathology",
    "Internal Medicine",
    "General Surgery",
    "Orthopaedics",
    "Nuclear Medicine",
)
PLACES = ("Northbridge, Examplia", "Eastvale, Examplia", "Port Sample, Fictland", "Lakemoor, Fictland")

DISEASES = (
    "splenic hamartoma",
    "pulmonary sequestration",
    "ileocolic intussusception",
    "osteoid osteoma",
    "renal angiomyolipoma",
    "sclerosing mesenteritis",
    "epiploic appendagitis",
    "Castleman disease",
    "desmoid tumour",
    "hepatic adenoma",
    "chondroblastoma",
    "xanthogranulomatous pyelonephritis",
    "thymoma",
    "gastrointestinal stromal tumour",
    "aneurysmal bone cyst",
    "pneumatosis intestinalis",
)
SYMPTOMS = (
    "abdominal pain",
    "intermittent fever",
    "progressive dyspnoea",
    "a palpable mass",
    "weight loss",
    "night pain relieved by non-steroidal anti-inflammatory drugs",
    "painless haematuria",
    "chronic cough",
    "low back pain",
    "nausea and vomiting",
    "swelling of the left knee",
)
MODALITIES = (
    "Contrast-enhanced CT",
    "Non-contrast CT",
    "MRI",
    "Ultrasonography",
    "Plain radiography",
    "<sup>18</sup>F-FDG PET/CT",
    "Diffusion-weighted MRI",
    "CT angiography",
)
LOCATIONS = (
    "right upper lobe",
    "left lower lobe",
    "spleen",
    "left kidney",
    "right iliac fossa",
    "proximal tibia",
    "right hepatic lobe",
    "anterior mediastinum",
    "small-bowel mesentery",
    "distal femur",
    "L3 vertebral body",
    "pancreatic tail",
)
FINDINGS = (
    "a well-circumscribed hypodense lesion",
    "a heterogeneously enhancing soft-tissue mass",
    "a lytic lesion with a sclerotic rim",
    "a fat-containing lesion",
    "a cystic lesion with fluid–fluid levels",
    "a target sign",
    "an area of ground-glass opacity",
    "a nodule with spiculated margins",
    "a ring-enhancing collection",
    "a fat-stranding halo",
)
HISTOLOGY = (
    "spindle cells arranged in intersecting fascicles",
    "sheets of atypical lymphoid cells",
    "multinucleated giant cells in a haemosiderin-laden stroma",
    "mature adipose tissue with thick-walled vessels",
    "nests of epithelioid cells with eosinophilic cytoplasm",
    "a dense lymphoplasmacytic infiltrate",
)
MARKERS = (
    "CD117",
    "DOG1",
    "S-100",
    "TTF-1",
    "HMB-45",
    "desmin",
    "β-catenin",
    "α-smooth muscle actin",
    "CD20",
    "CD34",
)
TREATMENTS = (
    "laparoscopic resection",
    "CT-guided radiofrequency ablation",
    "conservative management",
    "surgical excision",
    "a course of oral corticosteroids",
    "intravenous antibiotics",
    "curettage and bone grafting",
    "segmental resection",
)
MECHANISMS = (
    "intralesional haemorrhage",
    "a rich vascular stroma",
    "central necrosis",
    "myxoid degeneration",
    "fibrous encapsulation",
)
ORGANISMS = (
    "Staphylococcus aureus",
    "Escherichia coli",
    "Klebsiella pneumoniae",
    "Streptococcus pneumoniae",
    "Mycobacterium tuberculosis",
)


def _patient(rng: random.Random) -> str:
    """ "A 54-year-old woman" / "An 8-year-old boy": age, sex and article agree."""
    age = rng.randint(4, 88)
    sex = rng.choice(("boy", "girl")) if age < 16 else rng.choice(("man", "woman"))
    return f"{'An' if age in (8, 11, 18) or 80 <= age <= 89 else 'A'} {age}-year-old {sex}"


_FILLERS: dict[str, Callable[[random.Random], str]] = {
    "n": lambda r: str(r.randint(12, 300)),
    "patient": _patient,
    "days": lambda r: str(r.choice((2, 3, 4, 5, 6, 7, 10, 12, 14, 21, 30, 45, 60))),  # never "a 11-day"
    "symptom": lambda r: r.choice(SYMPTOMS),
    "modality": lambda r: r.choice(MODALITIES),
    "location": lambda r: r.choice(LOCATIONS),
    "finding": lambda r: r.choice(FINDINGS),
    "histo": lambda r: r.choice(HISTOLOGY),
    "m1": lambda r: r.choice(MARKERS),
    "m2": lambda r: r.choice(MARKERS[::-1]),
    "treatment": lambda r: r.choice(TREATMENTS),
    "mechanism": lambda r: r.choice(MECHANISMS),
    "organism": lambda r: r.choice(ORGANISMS),
    "d1": lambda r: r.choice(DISEASES),
    "d2": lambda r: r.choice(DISEASES[::-1]),
    "d3": lambda r: r.choice(DISEASES[3:] + DISEASES[:3]),
    "a": lambda r: str(r.randint(8, 95)),
    "b": lambda r: str(r.randint(6, 80)),
    "wbc": lambda r: f"{r.uniform(3.5, 21):.1f}",
    "crp": lambda r: str(r.randint(2, 260)),
    "ldh": lambda r: str(r.randint(140, 900)),
    "adc": lambda r: f"{r.uniform(0.6, 2.4):.2f}",
    "suv": lambda r: f"{r.uniform(1.2, 18):.1f}",
    "temp": lambda r: f"{r.uniform(36.5, 39.4):.1f}",
    "ki": lambda r: str(r.randint(1, 60)),
    "pct": lambda r: str(r.randint(8, 92)),
    "months": lambda r: str(r.choice((3, 6, 12, 18, 24, 36))),
    "decade": lambda r: r.choice(("second", "third", "fourth", "fifth", "sixth")),
    "mag": lambda r: str(r.choice((40, 100, 200, 400))),
    "bar": lambda r: str(r.choice((20, 50, 100, 200))),
}

INTRO = (
    "{Disease} is a rare entity, with fewer than {n} cases reported in the English-language "
    "literature{cite}.",
    "It most commonly affects patients in the {decade} decade of life{cite}.",
    "The clinical presentation is nonspecific, and the diagnosis is often made incidentally on "
    "imaging{cite}.",
    "Accurate preoperative recognition matters because it may avoid unnecessary treatment such as "
    "{treatment}{cite}.",
    "{modality} is the usual first examination, although its specificity remains limited{cite}.",
    "The pathogenesis remains debated; {mechanism} has been proposed as the main mechanism{cite}.",
    "Most published cases describe lesions in the {location}, and other sites are exceptional{cite}.",
    "We report a case of {disease} and review the imaging features that suggest the diagnosis.",
)
CASE = (
    "{patient} presented with a {days}-day history of {symptom}.",
    "The medical history was unremarkable apart from treated hypertension.",
    "Physical examination revealed mild tenderness without guarding or rebound.",
    "Vital signs were stable, with a temperature of {temp} °C.",
    "Laboratory tests showed a white blood cell count of {wbc} × 10<sup>9</sup>/L and a C-reactive protein "
    "level of {crp} mg/L.",
    "Serum lactate dehydrogenase was {ldh} U/L (reference range, 135–225 U/L).",
    "{modality} demonstrated {finding} in the {location} measuring {a} × {b} mm.",
    "There was no lymphadenopathy, ascites or distant metastasis.",
    "The lesion showed an apparent diffusion coefficient of {adc} × 10<sup>−3</sup> mm<sup>2</sup>/s.",
    "The SUV<sub>max</sub> of the lesion was {suv}.",
    "Histopathological examination revealed {histo}; immunohistochemistry was positive for {m1} and "
    "negative for {m2}.",
    "The Ki-67 labelling index was approximately {ki}%.",
    "Blood cultures grew <italic>{organism}</italic>, and antibiotic therapy was adjusted accordingly.",
    "After multidisciplinary discussion, {treatment} was recommended.",
    "The patient underwent {treatment} and had an uneventful recovery.",
    "At {months}-month follow-up, there was no evidence of recurrence.",
)
DISCUSSION = (
    "The differential diagnosis of {finding} in the {location} includes {d1}, {d2} and {d3}{cite}.",
    "In a series of {n} patients, {pct}% of lesions showed {finding}{cite}.",
    "Imaging features overlap with those of {d1}, which explains the frequent misdiagnosis{cite}.",
    "Although {m1} expression is characteristic, it is not specific{cite}.",
    "Several authors have suggested that this appearance reflects {mechanism}{cite}.",
    "Our case illustrates that {finding} may be the only clue to the diagnosis.",
    "Management depends on symptoms and lesion size; {treatment} is usually curative{cite}.",
    "Negative staining for {m2} helps to exclude {d2}{cite}.",
    "{modality} may add specificity when the appearance on the first examination is equivocal{cite}.",
    "Recurrence after {treatment} has been reported in up to {pct}% of patients{cite}.",
    "A limitation of this report is the short follow-up of {months} months.",
    "Awareness of this entity is important for radiologists and pathologists alike.",
)
#: Sentences that cite a figure of each kind (the xref is appended), so citing text matches the image.
CITING: dict[str, tuple[str, ...]] = {
    "ct": (
        "{modality} demonstrated {finding} in the {location} measuring {a} × {b} mm",
        "Follow-up CT showed {finding} in the {location}",
    ),
    "xray": (
        "Plain radiography showed {finding} in the {location}",
        "The initial radiograph was unremarkable",
    ),
    "histology": (
        "Histopathological examination revealed {histo}",
        "Immunohistochemistry was positive for {m1} and negative for {m2}",
    ),
    "chart": (
        "C-reactive protein fell from {crp} mg/L over the following {days} days",
        "Serum lactate dehydrogenase peaked at {ldh} U/L and then normalised",
    ),
    "diagram": (
        "The diagnostic work-up and treatment course are summarised",
        "The sequence of investigations is shown",
    ),
}
_FIELD = re.compile(r"\{(\w+)\}")
_TEMPLATE_KEYS = {
    t: tuple(_FIELD.findall(t))
    for t in (*INTRO, *CASE, *DISCUSSION, *(t for ts in CITING.values() for t in ts))
}


class _Text:
    """Plausible case-report prose from fixed templates; cheap enough for thousands of articles."""

    def __init__(self, rng: random.Random, disease: str, n_refs: int) -> None:
        self.rng, self.disease, self.n_refs = rng, disease, n_refs

    def cite(self) -> str:
        """A bibliography citation in one of the styles PMC articles use (or none)."""
        r = self.rng
        if r.random() < 0.45 or not self.n_refs:
            return ""
        first = r.randint(1, self.n_refs)
        ref = f'<xref ref-type="bibr" rid="B{first}">{first}</xref>'
        if r.random() < 0.3 and first < self.n_refs:
            last = min(self.n_refs, first + r.randint(1, 3))
            ref += f', <xref ref-type="bibr" rid="B{last}">{last}</xref>'
        return f"<sup>{ref}</sup>" if r.random() < 0.3 else f" [{ref}]"

    def sentence(self, templates: Sequence[str], template: str | None = None) -> str:
        template = self.rng.choice(templates) if template is None else template
        values = {}
        for key in _TEMPLATE_KEYS[template]:
            if key == "cite":
                values[key] = self.cite()
            elif key in ("disease", "Disease"):
                values[key] = self.disease if key == "disease" else self.disease[0].upper() + self.disease[1:]
            else:
                values[key] = _FILLERS[key](self.rng)
        return template.format(**values)

    def citing(self, fig: _Fig, text: str | None = None) -> str:
        """A sentence about what ``fig`` shows, citing it as ``(<xref>Figure n</xref>)`` (or ``text``)."""
        return f"{self.sentence(CITING[fig.kind])} ({_xf(fig.id, text or fig.label)})."

    def paragraph(self, templates: Sequence[str], low: int = 3, high: int = 7) -> str:
        """Sentences from distinct templates, so a paragraph never repeats itself verbatim."""
        count = min(self.rng.randint(low, high), len(templates))
        return " ".join(self.sentence(templates, t) for t in self.rng.sample(templates, count))


# -- synthetic images ------------------------------------------------------------------------------------


def _ct_image(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """CT-like slice: near-black air, a noisy bright body ellipse, organs and a very bright spine."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height - 0.5, xx / width - 0.5
    ry, rx = rng.uniform(0.3, 0.4), rng.uniform(0.4, 0.47)
    inside = np.clip((1 - np.hypot(yy / ry, xx / rx)) * 30, 0, 1)
    image = 0.03 + inside * (0.42 + 0.08 * np.hypot(yy / ry, xx / rx))  # subcutaneous fat ring is brighter
    for _ in range(int(rng.integers(2, 5))):  # organs
        cy, cx = rng.uniform(-0.15, 0.15), rng.uniform(-0.25, 0.25)
        image += inside * rng.uniform(-0.15, 0.2) * _blob(yy, xx, cy, cx, *rng.uniform(0.05, 0.14, 2))
    image += 0.5 * _blob(yy, xx, ry * 0.6, 0.0, 0.05, 0.05)  # vertebral body
    image += 0.2 * _blob(yy, xx, *rng.uniform(-0.1, 0.1, 2), 0.03, 0.03)  # the lesion
    image += rng.normal(0, 0.03, size=image.shape) * (0.3 + inside)
    return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))


def _xray_image(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    pixels = _chest_pixels(rng, height, width, lateral=bool(rng.random() < 0.3))
    return Image.fromarray((pixels * 255).astype(np.uint8))


def _histology_image(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """H&E-like field: pink eosin stroma, purple haematoxylin nuclei, a few white lumens."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height, xx / width
    shade = 0.9 + 0.1 * _blob(yy, xx, *rng.uniform(0, 1, 2), 0.4, 0.5)
    stroma = np.array([236, 170, 204], np.float32) * shade[..., None]
    masks = {name: Image.new("L", (width, height)) for name in ("nuclei", "lumen")}
    draw = ImageDraw.Draw(masks["nuclei"])
    for _ in range(height * width // 900):
        y, x = rng.uniform(0, height), rng.uniform(0, width)
        r1, r2 = rng.uniform(2.5, 7, 2)
        draw.ellipse((x - r1, y - r2, x + r1, y + r2), fill=int(rng.integers(150, 256)))
    draw = ImageDraw.Draw(masks["lumen"])
    for _ in range(int(rng.integers(1, 4))):
        y, x = rng.uniform(0, height), rng.uniform(0, width)
        r1, r2 = rng.uniform(12, 40, 2)
        draw.ellipse((x - r1, y - r2, x + r1, y + r2), fill=255)
    nuclei = np.asarray(masks["nuclei"].filter(ImageFilter.GaussianBlur(1.2)), np.float32)[..., None] / 255
    lumen = np.asarray(masks["lumen"].filter(ImageFilter.GaussianBlur(2.0)), np.float32)[..., None] / 255
    purple = np.array([92, 48, 140], np.float32) * rng.uniform(0.85, 1.1)
    image = stroma * (1 - nuclei) + purple * nuclei
    image = image * (1 - lumen) + 248 * lumen
    image += rng.normal(0, 6, size=image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


CHART_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def _chart_image(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A bar chart in a few solid colours on white, with black axes, ticks and error bars."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # no anti-aliasing: the chart keeps its few exact colours (in PNG)
    left, bottom, top, right = 40, height - 30, 20, width - 15
    draw.line((left, top, left, bottom, right, bottom), fill="black", width=2)
    for tick in range(5):
        y = bottom - tick * (bottom - top) // 4
        draw.line((left - 5, y, left, y), fill="black", width=1)
        draw.text((6, y - 6), str(tick * 25), fill="black", font=_font(11))
    groups, series = int(rng.integers(3, 6)), int(rng.integers(1, 4))
    slot = (right - left - 10) / groups
    bar = slot * 0.8 / series
    for g in range(groups):
        for s in range(series):
            x0 = left + 8 + g * slot + s * bar
            h = rng.uniform(0.15, 0.95) * (bottom - top)
            draw.rectangle((x0, bottom - h, x0 + bar - 2, bottom - 1), fill=CHART_COLOURS[s])
            err = rng.uniform(4, 18)
            mid = x0 + bar / 2 - 1
            draw.line((mid, bottom - h - err, mid, bottom - h + err), fill="black", width=1)
            draw.line((mid - 3, bottom - h - err, mid + 3, bottom - h - err), fill="black", width=1)
        draw.text((left + 8 + g * slot, bottom + 8), f"D{g * 7}", fill="black", font=_font(11))
    return image


def _diagram_image(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A flowchart: outlined boxes joined by arrows on white, like a diagnostic algorithm figure."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"
    rows = int(rng.integers(3, 5))
    box_h = (height - 20) // rows - 24
    previous: list[tuple[float, float]] = []
    for row in range(rows):
        count = 1 if row == 0 else int(rng.integers(1, 3))
        centres = []
        for col in range(count):
            cx = width * (col + 1) / (count + 1)
            y0 = 10 + row * (box_h + 24)
            x0, x1 = cx - width / (3.2 * count), cx + width / (3.2 * count)
            draw.rectangle((x0, y0, x1, y0 + box_h), fill=(222, 232, 245), outline="black", width=2)
            draw.text(
                (x0 + 8, y0 + box_h / 2 - 6),
                f"Step {row + 1}{'ab'[col] if count > 1 else ''}",
                fill="black",
                font=_font(12),
            )
            for px, py in previous:
                draw.line((px, py, cx, y0), fill="black", width=2)
                draw.polygon((cx - 5, y0 - 8, cx + 5, y0 - 8, cx, y0), fill="black")
            centres.append((cx, y0 + box_h))
        previous = centres
    return image


RENDERERS: dict[str, Callable[[np.random.Generator, int, int], Image.Image]] = {
    "ct": _ct_image,
    "xray": _xray_image,
    "histology": _histology_image,
    "chart": _chart_image,
    "diagram": _diagram_image,
}


def _figure_image(kind: str, panels: Sequence[str], rng: np.random.Generator) -> Image.Image:
    """One figure's full-size image; with ``panels``, side-by-side panels lettered like journals do."""
    if not panels:
        height, width = (int(v) for v in rng.choice([256, 320, 384, 448, 512], size=2))
        return RENDERERS[kind](rng, height, width)
    side = 240 if len(panels) <= 2 else 168
    tiles = [RENDERERS[kind](rng, side, side).convert("RGB") for _ in panels]
    gutter = 6
    image = Image.new("RGB", (len(tiles) * side + (len(tiles) - 1) * gutter, side), "white")
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"
    for index, (tile, letter) in enumerate(zip(tiles, panels, strict=True)):
        x = index * (side + gutter)
        image.paste(tile, (x, 0))
        dark = float(np.asarray(tile.convert("L"))[:40, :40].mean()) < 128
        draw.text((x + 6, 4), letter, fill="white" if dark else "black", font=_font(22))
    return image.convert("L") if kind in ("ct", "xray") else image


def _thumbnail_gif(image: Image.Image) -> bytes:
    """The small ``.gif`` PMC ships beside each full-size figure (longest side 120 px)."""
    thumb = image.copy()
    thumb.thumbnail((120, 120))
    if thumb.mode != "L":
        thumb = thumb.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=128)
    return _encode(thumb, "GIF")


def _encode_full(image: Image.Image, ext: str) -> bytes:
    if ext == "jpg":
        return _encode(image, "JPEG", quality=85)
    if ext == "png":
        return _encode(image, "PNG")
    if ext == "tif":
        return _encode(image, "TIFF")  # uncompressed, as many publisher TIFFs are
    raise ValueError(f"unknown figure extension {ext!r}")


def _jpeg_with_comment(data: bytes, text: str) -> bytes:
    """Insert a COM segment after the JFIF header: different bytes, same pixels, no re-encode."""
    comment = text.encode("ascii")[:60000]
    position = 2
    if data[2:4] == b"\xff\xe0":
        position = 4 + struct.unpack(">H", data[4:6])[0]
    return data[:position] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[position:]


def _gif_with_comment(data: bytes, text: str) -> bytes:
    """Insert a GIF89a comment extension after the global colour table (same pixels, new bytes)."""
    comment = text.encode("ascii")[:255]
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    block = b"\x21\xfe" + bytes([len(comment)]) + comment + b"\x00"
    return b"GIF89a" + data[6:position] + block + data[position:]


def _fake_pdf(text: str) -> bytes:
    """A tiny but valid one-page PDF standing in for the article PDF real packages carry."""
    safe = text.encode("ascii", "replace").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    stream = b"BT /F1 12 Tf 72 720 Td (" + safe + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# -- JATS articles ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fig:
    id: str
    label: str
    title: str  # caption title (inline JATS markup allowed)
    text: str  # caption paragraph (inline JATS markup allowed)
    href: str  # xlink:href of the graphic: no extension, as PMC writes it
    kind: str  # ct | xray | histology | chart | diagram: what the image looks like
    ext: str = "jpg"  # extension of the full-size member: jpg | png | tif
    panels: tuple[str, ...] = ()
    present: bool = True  # False: no member at all for this href
    alt: str | None = None
    reprint_of: tuple[int, int] | None = None  # (pmc_number, figure index): the same image as that one


@dataclass(frozen=True)
class _Group:
    """A ``<fig-group>``: a group label and caption over child figs that each have their own graphic."""

    id: str
    label: str
    title: str
    text: str
    children: tuple[_Fig, ...]


@dataclass(frozen=True)
class _Boxed:
    """A ``<boxed-text>`` panel holding a paragraph and a figure."""

    id: str
    title: str
    paragraph: str
    fig: _Fig


_Item = str | _Fig | _Group | _Boxed


@dataclass
class _Article:
    pmc_number: int
    journal: _Journal
    pmid: str
    date: tuple[int, int, int]  # year, month, day of the epub date
    volume: int
    issue: int
    fpage: int
    lpage: int
    title: str
    authors: list[tuple[str, str]]
    license: str  # the file-list value; also what <license> says unless license_style is none/empty
    sections: list[tuple[str, list[_Item]]]
    abstract: str
    keywords: list[str]
    refs: list[str] = field(default_factory=list)
    floats: list[_Fig] = field(default_factory=list)
    license_style: str = "full"  # full | href | ali | none | empty
    id_style: str = "pmc"  # pmc (digits) | pmcid (PMC...) | both
    article_type: str = "case-report"
    subject: str = "Case Report"
    department: str = "Radiology"
    place: str = PLACES[0]
    last_updated: str = "2024-03-05 12:00:11"
    retracted: bool = False
    http_license: bool = False  # older files write http:// licence URLs

    @property
    def pmcid(self) -> str:
        return f"PMC{self.pmc_number}"

    @property
    def doi(self) -> str:
        return f"10.5555/{self.journal.prefix}.{self.date[0]}.{self.fpage:05d}"

    @property
    def stem(self) -> str:
        """Publisher file stem of the article, e.g. ``crr-16-1012``."""
        return f"{self.journal.prefix}-{self.volume}-{self.fpage}"

    @property
    def citation(self) -> str:
        year, month, day = self.date
        return (
            f"{self.journal.abbrev}. {year} {MONTHS[month - 1]} {day}; "
            f"{self.volume}({self.issue}):{self.fpage}-{self.lpage}"
        )

    @property
    def license_url(self) -> str | None:
        url = LICENSES[self.license][1]
        return url.replace("https://", "http://") if url and self.http_license else url

    def figures(self) -> list[tuple[_Fig, str]]:
        """Every fig with a graphic, in document order, with where it sits."""
        found: list[tuple[_Fig, str]] = []
        for _, items in self.sections:
            for item in items:
                if isinstance(item, _Fig):
                    found.append((item, "body"))
                elif isinstance(item, _Group):
                    found.extend((child, "fig-group") for child in item.children)
                elif isinstance(item, _Boxed):
                    found.append((item.fig, "boxed-text"))
        found.extend((fig, "floats-group") for fig in self.floats)
        return found


def _caption_plain(markup: str) -> str:
    """Caption text as a reader would extract it: tags dropped, entities decoded, spaces collapsed."""
    text = re.sub(r"<[^>]+>", "", markup)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


def _fig_xml(fig: _Fig, indent: str = "") -> str:
    caption = f"<title>{fig.title}</title>" if fig.title else ""
    caption += f"<p>{fig.text}</p>" if fig.text else ""
    alt = f"<alt-text>{fig.alt}</alt-text>" if fig.alt else ""
    return (
        f'{indent}<fig id="{fig.id}" position="float">\n{indent}  <label>{fig.label}</label>\n'
        f"{indent}  <caption>{caption}</caption>\n"
        + (f"{indent}  {alt}\n" if alt else "")
        + f'{indent}  <graphic xlink:href="{fig.href}"/>\n{indent}</fig>\n'
    )


def _item_xml(item: _Item) -> str:
    if isinstance(item, str):
        return f"<p>{item}</p>\n"
    if isinstance(item, _Fig):
        return _fig_xml(item)
    if isinstance(item, _Group):
        children = "".join(_fig_xml(child, "  ") for child in item.children)
        return (
            f'<fig-group id="{item.id}">\n  <label>{item.label}</label>\n'
            f"  <caption><title>{item.title}</title><p>{item.text}</p></caption>\n{children}</fig-group>\n"
        )
    return (
        f'<boxed-text id="{item.id}" position="float">\n  <caption><title>{item.title}</title></caption>\n'
        f"  <p>{item.paragraph}</p>\n{_fig_xml(item.fig, '  ')}</boxed-text>\n"
    )


def _license_xml(article: _Article) -> str:
    url, name = article.license_url, article.license
    if article.license_style == "none":
        return ""
    if article.license_style == "empty":
        return "<license/>\n"
    if url is None:  # NO-CC CODE: a publisher licence without a Creative Commons URL
        return (
            '<license license-type="open-access"><license-p>This article is made available via the PMC Open '
            "Access Subset for unrestricted research re-use and secondary analysis in any form or by any "
            "means with acknowledgement of the original source.</license-p></license>\n"
        )
    text = (
        f'This is an open access article under the {name} license (<ext-link ext-link-type="uri" '
        f'xlink:href="{url}">{url}</ext-link>).'
    )
    ali = f'<ali:license_ref specific-use="textmining" content-type="ccbylicense">{url}</ali:license_ref>'
    if article.license_style == "ali":
        return f"<license>{ali}<license-p>{text}</license-p></license>\n"
    if article.license_style == "href":
        open_access = f'<license license-type="open-access" xlink:href="{url}">'
        return f"{open_access}<license-p>{text}</license-p></license>\n"
    return f'<license xlink:href="{url}">{ali}<license-p>{text}</license-p></license>\n'


def _article_xml(article: _Article, internal_subset: str = "") -> str:
    """The ``.nxml`` text of ``article`` in the JATS 1.3 archiving tag set, as PMC distributes it."""
    journal = article.journal
    year, month, day = article.date
    ids = []
    if article.id_style in ("pmc", "both"):
        ids.append(f'<article-id pub-id-type="pmc">{article.pmc_number}</article-id>')
    if article.id_style in ("pmcid", "both"):
        ids.append(f'<article-id pub-id-type="pmcid">{article.pmcid}</article-id>')
    if article.pmid:
        ids.append(f'<article-id pub-id-type="pmid">{article.pmid}</article-id>')
    ids.append(f'<article-id pub-id-type="doi">{article.doi}</article-id>')
    corresp = ' corresp="yes"'
    contribs = "".join(
        f'<contrib contrib-type="author"{corresp if i == 0 else ""}><name><surname>{surname}</surname>'
        f'<given-names>{given}</given-names></name><xref ref-type="aff" rid="aff1">1</xref></contrib>\n'
        for i, (surname, given) in enumerate(article.authors)
    )
    corresponding = article.authors[0][0].lower().replace(" ", "").replace("'", "")
    sections = "".join(
        f'<sec id="s{number}">\n<title>{title}</title>\n'
        + "".join(_item_xml(item) for item in items)
        + "</sec>\n"
        for number, (title, items) in enumerate(article.sections, 1)
    )
    refs = "".join(article.refs)
    back = (
        "<back>\n<ack><p>The authors thank the imaging staff.</p></ack>\n"
        "<ref-list>\n<title>References</title>\n"
        f"{refs}</ref-list>\n</back>\n"
    )
    floats = (
        "<floats-group>\n" + "".join(_fig_xml(fig) for fig in article.floats) + "</floats-group>\n"
        if article.floats
        else ""
    )
    keywords = "".join(f"<kwd>{kwd}</kwd>" for kwd in article.keywords)
    doctype = DOCTYPE_PUBLIC + (f" [\n{internal_subset}]" if internal_subset else "") + ">\n"
    return (
        XML_DECLARATION
        + doctype
        + ARTICLE_OPEN.format(article_type=article.article_type)
        + "\n<front>\n<journal-meta>\n"
        f'<journal-id journal-id-type="nlm-ta">{journal.abbrev}</journal-id>\n'
        f'<journal-id journal-id-type="iso-abbrev">{journal.abbrev}</journal-id>\n'
        f"<journal-title-group><journal-title>{journal.title}</journal-title></journal-title-group>\n"
        f'<issn pub-type="epub">{journal.issn}</issn>\n'
        f"<publisher><publisher-name>{journal.publisher}</publisher-name></publisher>\n"
        "</journal-meta>\n<article-meta>\n" + "\n".join(ids) + "\n"
        f'<article-categories><subj-group subj-group-type="heading"><subject>{article.subject}</subject>'
        "</subj-group></article-categories>\n"
        f"<title-group><article-title>{article.title}</article-title></title-group>\n"
        f"<contrib-group>\n{contribs}</contrib-group>\n"
        f'<aff id="aff1"><label>1</label>Department of {article.department}, Example University Hospital, '
        f"{article.place}</aff>\n"
        f'<author-notes><corresp id="cor1">Corresponding author. <email>{corresponding}@example.org</email>'
        "</corresp></author-notes>\n"
        f'<pub-date pub-type="epub"><day>{day:02d}</day><month>{month:02d}</month>'
        f"<year>{year}</year></pub-date>\n"
        f'<pub-date pub-type="collection"><month>{article.issue}</month><year>{year}</year></pub-date>\n'
        f"<volume>{article.volume}</volume>\n<issue>{article.issue}</issue>\n"
        f"<fpage>{article.fpage}</fpage>\n<lpage>{article.lpage}</lpage>\n"
        "<permissions>\n"
        f"<copyright-statement>© {year} The Authors</copyright-statement>\n"
        f"<copyright-year>{year}</copyright-year>\n" + _license_xml(article) + "</permissions>\n"
        f"<abstract>\n<p>{article.abstract}</p>\n</abstract>\n"
        f'<kwd-group kwd-group-type="author"><title>Keywords</title>{keywords}</kwd-group>\n'
        "</article-meta>\n</front>\n"
        f"<body>\n{sections}</body>\n{back}{floats}</article>\n"
    )


def _references(rng: random.Random, count: int) -> list[str]:
    refs = []
    for number in range(1, count + 1):
        people = "".join(
            f"<name><surname>{rng.choice(SURNAMES)}</surname><given-names>{rng.choice(GIVEN)[0]}</given-names>"
            "</name>"
            for _ in range(rng.randint(1, 4))
        )
        year = rng.randint(1995, 2023)
        fpage = rng.randint(1, 2400)
        journal = rng.choice(JOURNALS)
        title = f"{rng.choice(FINDINGS)[0].upper()}{rng.choice(FINDINGS)[1:]} in {rng.choice(DISEASES)}"
        refs.append(
            f'<ref id="B{number}"><label>{number}</label><element-citation publication-type="journal">'
            f'<person-group person-group-type="author">{people}</person-group>'
            f"<article-title>{title}</article-title><source>{journal.abbrev}</source><year>{year}</year>"
            f"<volume>{rng.randint(1, 40)}</volume><fpage>{fpage}</fpage>"
            f"<lpage>{fpage + rng.randint(2, 12)}</lpage>"
            f'<pub-id pub-id-type="doi">10.5555/{journal.prefix}.{year}.{fpage:05d}</pub-id>'
            "</element-citation></ref>\n"
        )
    return refs


# -- figure citations, for the expectation dict ------------------------------------------------------------

_FIG_XREF = re.compile(r'<xref ref-type="fig" rid="([^"]+)">')
_FIG_RANGE = re.compile(
    r'<xref ref-type="fig" rid="([^"]+)">[^<]*</xref>\s*[–-]\s*<xref ref-type="fig" rid="([^"]+)">'
)


def _citations(article: _Article) -> dict[str, dict[str, Any]]:
    """Figure id -> sections citing it and whether it is cited only through an xref range."""
    children: dict[str, list[str]] = {}
    order = [fig.id for fig, _ in article.figures()]
    for _, items in article.sections:
        for item in items:
            if isinstance(item, _Group):
                children[item.id] = [child.id for child in item.children]
    top = list(order)
    for group, kids in children.items():  # a group is cited as one figure at its first child's position
        index = top.index(kids[0])
        top[index : index + len(kids)] = [group]
    out: dict[str, dict[str, Any]] = {fid: {"cited_in": [], "direct": 0, "in_range": False} for fid in order}

    def mark(fid: str, section: str, direct: bool) -> None:
        for target in children.get(fid, [fid]):
            if target not in out:
                continue
            if section not in out[target]["cited_in"]:
                out[target]["cited_in"].append(section)
            if direct:
                out[target]["direct"] += 1
            else:
                out[target]["in_range"] = True

    for title, items in article.sections:
        texts = [i for i in items if isinstance(i, str)] + [
            i.paragraph for i in items if isinstance(i, _Boxed)
        ]
        for text in texts:
            for fid in _FIG_XREF.findall(text):
                mark(fid, title, True)
            for first, last in _FIG_RANGE.findall(text):
                if first in top and last in top:
                    for fid in top[top.index(first) + 1 : top.index(last)]:
                        mark(fid, title, False)
    return out


# -- tar.gz packages -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    name: str
    data: bytes = b""
    kind: str = "file"  # file | dir | symlink
    link: str = ""


def _tar_gz(members: Sequence[_Member], level: int = 9) -> bytes:
    """A byte-for-byte reproducible .tar.gz: no times, owners or file name in either header."""
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=level) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if member.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif member.kind == "symlink":
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, member.link
                tar.addfile(info)
            else:
                info.size, info.mode = len(member.data), 0o644
                tar.addfile(info, io.BytesIO(member.data))
    return raw.getvalue()


def _package_path(pmcid: str) -> str:
    """``oa_package/xx/yy/PMCnnn.tar.gz``: PMC spreads packages over hash-like hex folders."""
    digest = hashlib.md5(pmcid.encode("ascii")).hexdigest()
    return f"oa_package/{digest[:2]}/{digest[2:4]}/{pmcid}.tar.gz"


def _article_members(
    article: _Article, media: dict[str, tuple[bytes, bytes]], nxml: str | bytes | None = None
) -> list[_Member]:
    """Members of one package: the folder, the .nxml, full-size + .gif per present figure, the PDF."""
    top = article.pmcid
    text = _article_xml(article) if nxml is None else nxml
    data = text.encode("utf-8") if isinstance(text, str) else text
    members = [_Member(f"{top}/", kind="dir"), _Member(f"{top}/{article.stem}.nxml", data)]
    for fig, _ in article.figures():
        if fig.present:
            full, thumb = media[fig.id]
            members.append(_Member(f"{top}/{fig.href}.{fig.ext}", full))
            members.append(_Member(f"{top}/{fig.href}.gif", thumb))
    members.append(_Member(f"{top}/{article.stem}.pdf", _fake_pdf(f"Synthetic article {top}: {article.doi}")))
    return members


def _render_media(article: _Article, salt: int) -> dict[str, tuple[bytes, bytes]]:
    """Full-size and thumbnail bytes for every present figure, from seeds fixed per article and figure."""
    media = {}
    for index, (fig, _) in enumerate(article.figures()):
        if not fig.present:
            continue
        number, position = fig.reprint_of or (article.pmc_number, index)
        rng = np.random.default_rng([SEED, salt, number, position])
        image = _figure_image(fig.kind, fig.panels, rng)
        media[fig.id] = (_encode_full(image, fig.ext), _thumbnail_gif(image))
    return media


# -- file lists ------------------------------------------------------------------------------------------


def _csv_bytes(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _accession_key(accession: str) -> tuple[int, str]:
    digits = accession.removeprefix("PMC")
    return (int(digits), accession) if digits.isdigit() else (1 << 62, accession)


def _file_list_row(article: _Article) -> list[str]:
    return [
        _package_path(article.pmcid),
        article.citation,
        article.pmcid,
        article.last_updated,
        article.pmid,
        article.license,
        "yes" if article.retracted else "no",
    ]


def _file_list_path(root: Path) -> Path:
    """The classic file list under ``root``; also accepts the sample corpus root (``root/pmc``)."""
    root = Path(root)
    if not (root / FILE_LIST_NAME).is_file() and (root / "pmc" / FILE_LIST_NAME).is_file():
        return root / "pmc" / FILE_LIST_NAME
    return root / FILE_LIST_NAME


def _edit_file_list(root: Path, pmcid: str, edit: Callable[[list[dict[str, str]], int], None]) -> Path:
    path = _file_list_path(root)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != FILE_LIST_COLUMNS:
            raise ValueError(f"{path}: unexpected columns {reader.fieldnames}")
        rows = list(reader)
    matches = [i for i, row in enumerate(rows) if row["Accession ID"] == pmcid]
    if not matches:
        raise KeyError(f"{pmcid} is not in {path}")
    edit(rows, matches[0])
    rows.sort(key=lambda row: _accession_key(row["Accession ID"]))
    _write_if_changed(
        path, _csv_bytes(FILE_LIST_COLUMNS, [[row[c] for c in FILE_LIST_COLUMNS] for row in rows])
    )
    return path


def edit_last_updated(root: Path, pmcid: str, new_value: str) -> Path:
    """Rewrite one row's ``Last Updated`` cell, the way PMC signals that a package was re-issued.

    ``root`` is the classic mirror root (or the sample corpus root, meaning ``root/pmc``). Returns the file
    list path; raises ``KeyError`` if ``pmcid`` is not listed.
    """
    column = FILE_LIST_COLUMNS[3]
    return _edit_file_list(root, pmcid, lambda rows, i: rows[i].__setitem__(column, new_value))


def remove_from_file_list(root: Path, pmcid: str) -> Path:
    """Drop one row (as when PMC withdraws an article from the OA subset); the package stays on disk."""
    return _edit_file_list(root, pmcid, lambda rows, i: rows.pop(i))


def set_license(root: Path, pmcid: str, file_list_value: str) -> Path:
    """Set one row's ``License`` cell (e.g. ``"CC BY-NC"``); the package's own ``<license>`` is untouched."""
    return _edit_file_list(root, pmcid, lambda rows, i: rows[i].__setitem__("License", file_list_value))


# -- the sample corpus -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    name: str
    article: _Article
    mutation: str | None = None  # malformed | unsafe | truncated | entities
    quarantine: str | None = None
    in_file_list: bool = True
    description: str = ""


def _base_article(number: int, journal: _Journal, license: str, **overrides: Any) -> _Article:
    """Boilerplate front matter and prose around the figures that each sample case sets by hand."""
    rng = random.Random(SEED * 1000 + number)
    disease = overrides.pop("disease", DISEASES[number % len(DISEASES)])
    figures: list[_Fig] = overrides.pop("figures", [])
    text = _Text(rng, disease, 6)
    fields: dict[str, Any] = {
        "pmc_number": number,
        "journal": journal,
        "pmid": str(33500000 + number * 7),
        "date": (2021, 3, 4),
        "volume": 16,
        "issue": 5,
        "fpage": 1000 + (number % 100) * 12,
        "lpage": 1000 + (number % 100) * 12 + 4,
        "title": f"{disease[0].upper()}{disease[1:]}: a case report and review of the literature",
        "authors": [
            (SURNAMES[(number + i * 3) % len(SURNAMES)], GIVEN[(number * 2 + i) % len(GIVEN)])
            for i in range(3 + number % 3)
        ],
        "license": license,
        "sections": [],
        "abstract": text.paragraph(CASE, 3, 4),
        "keywords": ["case report", disease, "imaging"],
        "refs": _references(rng, 6),
        "last_updated": f"2024-06-{5 + number % 20:02d} 12:{number % 60:02d}:11",
    }
    fields.update(overrides)
    article = _Article(**fields)
    if not article.sections:
        article.sections = _default_sections(text, figures)
    return article


def _default_sections(text: _Text, figs: Sequence[_Fig]) -> list[tuple[str, list[_Item]]]:
    """Introduction / Case presentation (figures cited in turn) / Discussion / Conclusion."""
    case: list[_Item] = []
    for fig in figs:
        case.append(f"{text.paragraph(CASE, 2, 3)} {text.citing(fig)}")
        case.append(fig)
    return [
        ("Introduction", [text.paragraph(INTRO)]),
        ("Case presentation", [text.paragraph(CASE), *case]),
        ("Discussion", [text.paragraph(DISCUSSION), text.paragraph(DISCUSSION)]),
        ("Conclusion", [text.paragraph(DISCUSSION, 1, 2)]),
    ]


def _xf(rid: str, text: str) -> str:
    """A figure xref, as PMC writes them: the rid names the fig, the text is what readers see."""
    return f'<xref ref-type="fig" rid="{rid}">{text}</xref>'


def _fig(article_stem: str, number: int, kind: str, title: str, text: str, **extra: Any) -> _Fig:
    return _Fig(
        id=f"F{number}",
        label=f"Figure {number}",
        title=title,
        text=text,
        href=f"{article_stem}-g{number:03d}",
        kind=kind,
        **extra,
    )


def _sample_cases() -> list[_Case]:
    crr, jsp, cic, ijcm, adi = JOURNALS
    cases: list[_Case] = []

    # 1. One CT figure under CC BY, cited in two sentences in two sections.
    f1 = _Fig(
        "F1",
        "Figure 1",
        "Contrast-enhanced axial CT of the abdomen.",
        "A well-circumscribed 32 × 28 mm hypodense lesion in the spleen (arrow) with peripheral "
        "enhancement; attenuation 35 HU in the portal venous phase.",
        "crr-16-1012-g001",
        "ct",
        alt="Axial CT image of the upper abdomen showing a round splenic lesion.",
    )
    a1 = _base_article(
        1000001,
        crr,
        "CC BY",
        fpage=1012,
        lpage=1016,
        disease="splenic hamartoma",
        title="Incidental splenic hamartoma on contrast-enhanced CT: a case report",
        id_style="pmc",
        license_style="full",
    )
    a1.sections = [
        (
            "Introduction",
            [
                "Splenic hamartoma is a rare benign lesion, usually found incidentally "
                '[<xref ref-type="bibr" rid="B1">1</xref>].'
            ],
        ),
        (
            "Case presentation",
            [
                "A 54-year-old woman was referred for staging of a breast carcinoma. Contrast-enhanced "
                "CT showed a well-defined splenic lesion with peripheral enhancement "
                f"({_xf('F1', 'Figure 1')}). "
                "Laboratory tests were unremarkable.",
                f1,
            ],
        ),
        (
            "Discussion",
            [
                'The lesion in <xref ref-type="fig" rid="F1">Fig. 1</xref> shows the delayed homogeneous '
                "enhancement typical of hamartoma, which distinguishes it from haemangioma and lymphoma "
                '[<xref ref-type="bibr" rid="B2">2</xref>, <xref ref-type="bibr" rid="B3">3</xref>].',
                "No further treatment was required.",
            ],
        ),
        ("Conclusion", ["Knowledge of these features avoids unnecessary splenectomy."]),
    ]
    cases.append(_Case("single_ct_cc_by", a1, description="one CT figure, CC BY, cited in two sections"))

    # 2. Compound figures: "(A) ... (B) ... (C)" and "A, ... B, ..." caption styles; CC0.
    f2a = _Fig(
        "F1",
        "Figure 1",
        "Preoperative CT of the chest.",
        "(A) Axial CT image shows a 41 mm spiculated mass in the right upper lobe (arrow). (B) Coronal "
        "reformat demonstrates pleural tethering. (C) Sagittal image shows no chest wall invasion.",
        "cic-9-210-g001",
        "ct",
        panels=("A", "B", "C"),
    )
    f2b = _Fig(
        "F2",
        "Figure 2",
        "Histopathology of the resected specimen.",
        "A, Haematoxylin and eosin staining shows nests of atypical cells with eosinophilic cytoplasm "
        "(×200; scale bar, 50 μm). B, Immunohistochemistry for TTF-1 shows diffuse nuclear positivity "
        "(×400).",
        "cic-9-210-g002",
        "histology",
        panels=("A", "B"),
    )
    a2 = _base_article(
        1000002,
        cic,
        "CC0",
        volume=9,
        issue=2,
        fpage=210,
        lpage=215,
        date=(2020, 11, 17),
        id_style="pmcid",
        license_style="ali",
        title="Primary pulmonary carcinoid presenting as a spiculated mass",
    )
    a2.sections = [
        ("Introduction", ["Pulmonary carcinoid tumours account for 1–2% of lung neoplasms."]),
        (
            "Case presentation",
            [
                f"Axial CT showed a spiculated right upper lobe mass ({_xf('F1', 'Fig. 1A')}) with pleural "
                f"tethering on coronal and sagittal reformats ({_xf('F1', 'Fig. 1B, C')}).",
                f2a,
                f"Histology confirmed a neuroendocrine tumour ({_xf('F2', 'Figure 2')}), with TTF-1 "
                f"positivity ({_xf('F2', 'Fig. 2B')}).",
                f2b,
            ],
        ),
        ("Discussion", ["Spiculation does not exclude a carcinoid tumour."]),
    ]
    cases.append(_Case("compound_cc0", a2, description="compound figures (A)/(B)/(C) and A,/B, captions"))

    # 3. <fig-group> with two child figs, a <floats-group> fig and a fig inside <boxed-text>.
    group = _Group(
        "F1",
        "Figure 1",
        "MRI of the brain at presentation.",
        "Images obtained at 3 T show a cortically based lesion in the right temporal lobe.",
        (
            _Fig(
                "F1A",
                "(a)",
                "",
                "Axial T<sub>2</sub>-weighted image shows a hyperintense lesion "
                "with a hypointense rim (arrow).",
                "adi-7-44-g001a",
                "ct",
            ),
            _Fig(
                "F1B",
                "(b)",
                "",
                "Post-contrast T<sub>1</sub>-weighted image shows nodular enhancement.",
                "adi-7-44-g001b",
                "ct",
            ),
        ),
    )
    f3_float = _Fig(
        "F2",
        "Figure 2",
        "Histopathology.",
        "Sheets of atypical glial cells with microvascular proliferation (H&amp;E, ×100; scale "
        "bar, 100 μm). Inset: GFAP immunostaining.",
        "adi-7-44-g002",
        "histology",
    )
    f3_box = _Fig(
        "F3",
        "Figure 3",
        "Diagnostic algorithm.",
        "Flowchart for a cortically based lesion; DWI, diffusion-weighted imaging.",
        "adi-7-44-g003",
        "diagram",
    )
    a3 = _base_article(
        1000003,
        adi,
        "CC BY",
        volume=7,
        issue=1,
        fpage=44,
        lpage=49,
        date=(2019, 1, 28),
        id_style="both",
        license_style="href",
        http_license=True,
        title="A cortically based temporal lobe lesion in a young adult",
    )
    a3.floats = [f3_float]
    a3.sections = [
        (
            "Case presentation",
            [
                f"MRI showed a cortically based right temporal lesion ({_xf('F1', 'Figure 1')}).",
                group,
                'Biopsy showed a high-grade glioma (<xref ref-type="fig" rid="F2">Figure 2</xref>).',
            ],
        ),
        (
            "Discussion",
            [
                "The imaging work-up is summarised in the box below.",
                _Boxed(
                    "box1",
                    "Teaching point",
                    'Follow the algorithm in <xref ref-type="fig" rid="F3">Figure 3</xref> before biopsy.',
                    f3_box,
                ),
            ],
        ),
    ]
    cases.append(
        _Case(
            "fig_group_floats_boxed",
            a3,
            description="fig-group with two child figs, floats-group fig, fig in boxed-text",
        )
    )

    # 4. A TIFF full-size graphic and a PNG-only one, each with a GIF thumbnail.
    a4 = _base_article(
        1000004,
        ijcm,
        "CC BY",
        volume=12,
        issue=3,
        fpage=301,
        lpage=305,
        date=(2018, 6, 9),
        license_style="href",
        figures=[
            _fig(
                "ijcm-12-301",
                1,
                "xray",
                "Plain radiograph of the left knee.",
                "Anteroposterior view shows a lytic lesion with a sclerotic rim in the proximal "
                "tibia (arrowheads).",
                ext="tif",
            ),
            _fig(
                "ijcm-12-301",
                2,
                "chart",
                "C-reactive protein during treatment.",
                "Serum CRP (mg/L) on days 0–28; error bars, mean ± SD. <italic>P</italic> &lt; "
                "0.05 versus baseline.",
                ext="png",
            ),
        ],
    )
    cases.append(_Case("tiff_and_png", a4, description="TIFF graphic and PNG-only graphic, both with GIFs"))

    # 5. One good figure and one whose graphic has no member at all.
    a5 = _base_article(
        1000005,
        crr,
        "CC BY",
        volume=17,
        issue=1,
        fpage=88,
        lpage=92,
        date=(2022, 1, 11),
        figures=[
            _fig(
                "crr-17-88",
                1,
                "ct",
                "Non-contrast CT of the pelvis.",
                "Axial image shows a fat-containing lesion with a hyperdense rim in the right iliac fossa.",
            ),
            _fig(
                "crr-17-88",
                2,
                "histology",
                "Histology.",
                "Fat necrosis with a fibrous capsule (H&amp;E, ×40).",
                present=False,
            ),
        ],
    )
    cases.append(_Case("missing_graphic", a5, description="F2's graphic has no member: F2 graphic_missing"))

    # 6. Four figures of four kinds, cited as "Figure 1" and as the range "Figs. 2–4", plus "Fig. 3B".
    figs6 = [
        _fig(
            "jsp-4-120",
            1,
            "chart",
            "Laboratory course.",
            "Serum lactate dehydrogenase (U/L) and white cell count (×10<sup>9</sup>/L) over 6 weeks.",
        ),
        _fig(
            "jsp-4-120",
            2,
            "histology",
            "Core biopsy.",
            "Spindle cells in intersecting fascicles (H&amp;E, ×200; scale bar, 50 μm).",
        ),
        _fig(
            "jsp-4-120",
            3,
            "ct",
            "Follow-up CT.",
            "(A) Axial and (B) coronal images show a 6 cm mesenteric mass encasing the vessels.",
            panels=("A", "B"),
        ),
        _fig("jsp-4-120", 4, "diagram", "Treatment timeline.", "Timeline of imaging, biopsy and surgery."),
    ]
    a6 = _base_article(
        1000006,
        jsp,
        "CC BY-NC-ND",
        volume=4,
        issue=2,
        fpage=120,
        lpage=128,
        date=(2023, 2, 14),
        id_style="pmcid",
        disease="desmoid tumour",
    )
    a6.sections = [
        (
            "Case presentation",
            [
                'Inflammatory markers rose over six weeks (<xref ref-type="fig" rid="F1">Figure 1</xref>).',
                figs6[0],
                "Biopsy, follow-up CT and the treatment course are shown in "
                f"Figs. {_xf('F2', '2')}–{_xf('F4', '4')}.",
                figs6[1],
                figs6[2],
                figs6[3],
            ],
        ),
        (
            "Discussion",
            [
                'Encasement of the mesenteric vessels (<xref ref-type="fig" rid="F3">Fig. 3B</xref>) '
                "precluded complete resection."
            ],
        ),
    ]
    cases.append(_Case("xref_range", a6, description='"Figs. 2–4" range over chart, histology, CT, diagram'))

    # 7. CC BY-NC in both the file list and <license>.
    a7 = _base_article(
        1000007,
        ijcm,
        "CC BY-NC",
        volume=13,
        issue=8,
        fpage=455,
        lpage=459,
        date=(2019, 8, 2),
        license_style="full",
        figures=[
            _fig(
                "ijcm-13-455",
                1,
                "xray",
                "Chest radiograph.",
                "Posteroanterior view shows a right lower lobe consolidation.",
            )
        ],
    )
    cases.append(_Case("cc_by_nc", a7, description="CC BY-NC licence"))

    # 8. No <license> at all, and an empty <license/>: the licence must come from the file list.
    a8 = _base_article(
        1000008,
        cic,
        "CC BY",
        pmid="",
        volume=10,
        issue=4,
        fpage=77,
        lpage=80,
        date=(2021, 4, 20),
        license_style="none",
        figures=[
            _fig(
                "cic-10-77",
                1,
                "ct",
                "CT of the abdomen.",
                "Coronal image shows a target sign in the right abdomen.",
            )
        ],
    )
    cases.append(_Case("license_absent", a8, description="no <license>; file list says CC BY; empty PMID"))
    a9 = _base_article(
        1000009,
        cic,
        "CC BY",
        volume=10,
        issue=5,
        fpage=93,
        lpage=97,
        date=(2021, 5, 3),
        license_style="empty",
        figures=[
            _fig(
                "cic-10-93",
                1,
                "histology",
                "Histology.",
                "Mature adipose tissue with thick-walled vessels (H&amp;E, ×100).",
            )
        ],
    )
    cases.append(_Case("license_empty", a9, description="empty <license/>; file list says CC BY"))

    # 9-12. Whole-package failures.
    def bad(number: int, license: str, fpage: int) -> _Article:
        figs = [_fig(f"crr-18-{fpage}", 1, "ct", "CT of the abdomen.", "Axial image shows a renal lesion.")]
        return _base_article(
            number,
            crr,
            license,
            volume=18,
            issue=2,
            fpage=fpage,
            lpage=fpage + 3,
            date=(2023, 2, 1),
            figures=figs,
        )

    cases.append(
        _Case(
            "xml_malformed",
            bad(1000010, "NO-CC CODE", 501),
            mutation="malformed",
            quarantine=XML_MALFORMED,
            description="nxml not well-formed (unclosed <italic>)",
        )
    )
    cases.append(
        _Case(
            "unsafe_members",
            bad(1000011, "CC BY", 511),
            mutation="unsafe",
            quarantine=ARCHIVE_UNSAFE_MEMBER,
            description="members ../../evil.txt, /tmp/evil and a symlink",
        )
    )
    a12 = bad(1000012, "NO-CC CODE", 521)
    a12 = replace(
        a12,
        sections=_default_sections(
            _Text(random.Random(12), "thymoma", 6),
            [
                _fig(a12.stem, 1, "ct", "CT.", "Axial image."),
                _fig(a12.stem, 2, "histology", "Histology.", "H&amp;E."),
            ],
        ),
    )
    cases.append(
        _Case(
            "truncated_gzip",
            a12,
            mutation="truncated",
            quarantine=ARCHIVE_TRUNCATED,
            description="gzip stream cut after 60% of its bytes",
        )
    )
    cases.append(
        _Case(
            "billion_laughs",
            bad(1000013, "CC BY", 531),
            mutation="entities",
            quarantine=XML_ENTITIES,
            description="internal DTD subset with nested entities",
        )
    )

    # 13. Retracted. 14. On disk but not in the file list.
    a14 = _base_article(
        1000014,
        jsp,
        "CC BY-NC-ND",
        volume=5,
        issue=1,
        fpage=12,
        lpage=15,
        date=(2023, 9, 30),
        retracted=True,
        figures=[
            _fig(
                "jsp-5-12",
                1,
                "histology",
                "Histology.",
                "Sheets of atypical lymphoid cells; CD20 positive (×400).",
            )
        ],
    )
    cases.append(_Case("retracted", a14, description="Retracted = yes in the file list"))
    a15 = _base_article(
        1000015,
        adi,
        "CC BY",
        volume=8,
        issue=6,
        fpage=610,
        lpage=614,
        date=(2020, 6, 6),
        figures=[_fig("adi-8-610", 1, "ct", "CT.", "Axial image shows a renal lesion.")],
    )
    cases.append(
        _Case(
            "not_in_file_list",
            a15,
            in_file_list=False,
            description="package on disk, absent from oa_file_list.csv: ignored",
        )
    )
    # 16. A later article reprints case 1's figure under a narrower licence (PMC's figure reuse):
    # identical image bytes, so exact dedup keeps one copy, the original (older, more permissive).
    a16 = _base_article(
        1000016,
        cic,
        "CC BY-NC",
        volume=11,
        issue=2,
        fpage=88,
        lpage=93,
        date=(2023, 9, 1),
        disease="splenic hamartoma",
        title="Benign splenic lesions on CT: a pictorial review",
        figures=[
            _Fig(
                "F1",
                "Figure 1",
                "Splenic hamartoma on contrast-enhanced CT.",
                "Reproduced from an earlier case report: a well-circumscribed hypodense splenic lesion "
                "with peripheral enhancement.",
                "cic-11-88-g001",
                "ct",
                reprint_of=(1000001, 0),
            )
        ],
    )
    cases.append(_Case("figure_reprint", a16, description="reprints case 1's figure (a duplicate)"))
    return cases


BILLION_LAUGHS = '<!ENTITY lol "lol">\n' + "".join(
    f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10)
)


def _mutated_members(case: _Case, media: dict[str, tuple[bytes, bytes]]) -> list[_Member]:
    article = case.article
    if case.mutation == "malformed":
        xml = _article_xml(article).replace("<p>", "<p>The <italic>lesion was ", 1)  # never closed
        return _article_members(article, media, xml)
    if case.mutation == "entities":
        xml = _article_xml(article, BILLION_LAUGHS).replace("</abstract>", "<p>&lol9;</p></abstract>", 1)
        return _article_members(article, media, xml)
    members = _article_members(article, media)
    if case.mutation == "unsafe":
        members += [
            _Member("../../evil.txt", b"written outside the extraction folder\n"),
            _Member("/tmp/evil", b"written to an absolute path\n"),
            _Member(f"{article.pmcid}/evil-link.jpg", kind="symlink", link="../../../../etc/passwd"),
        ]
    return members


def _license_expectation(article: _Article) -> dict[str, Any]:
    code, url = LICENSES[article.license]
    from_xml = article.license_style not in ("none", "empty")
    return {
        "license": code,
        "license_url": article.license_url if from_xml else url,
        "license_source": "xml" if from_xml else "file_list",
        "file_list_license": article.license,
    }


def _figure_expectations(
    article: _Article, prefix: str, thumbnails: bool, package_quarantine: str | None = None
) -> list[dict[str, Any]]:
    """Per graphic-bearing fig, as authored; in a quarantined package no fig becomes a sample."""
    cites = _citations(article)
    formats = {"jpg": "jpeg", "png": "png", "tif": "tiff"}
    groups = {
        child.id: item
        for _, items in article.sections
        for item in items
        if isinstance(item, _Group)
        for child in item.children
    }
    out = []
    for fig, placement in article.figures():
        group = groups.get(fig.id)
        out.append(
            {
                "id": fig.id,
                "label": fig.label,
                "href": fig.href,
                "member": f"{prefix}{fig.href}.{fig.ext}" if fig.present else None,
                "thumbnail": f"{prefix}{fig.href}.gif" if fig.present and thumbnails else None,
                "format": formats[fig.ext],
                "kind": fig.kind,
                "panels": list(fig.panels),
                "placement": placement,  # body | fig-group | boxed-text | floats-group
                "caption_title": _caption_plain(fig.title),
                "caption_text": _caption_plain(fig.text),
                "cited_in": cites[fig.id]["cited_in"],
                "direct_citations": cites[fig.id]["direct"],
                "cited_via_range": cites[fig.id]["in_range"],
                "group": None
                if group is None
                else {
                    "id": group.id,
                    "label": group.label,
                    "caption_title": _caption_plain(group.title),
                    "caption_text": _caption_plain(group.text),
                },
                "sample": fig.present and package_quarantine is None,
                "quarantine": package_quarantine or (None if fig.present else GRAPHIC_MISSING),
            }
        )
    return out


def _write_classic_sample(root: Path) -> dict[str, Any]:
    _write_if_changed(root / "README.txt", README.encode("utf-8"))
    packages: dict[str, dict[str, Any]] = {}
    rows = []
    for case in _sample_cases():
        article = case.article
        media = _render_media(article, 1)
        data = _tar_gz(_mutated_members(case, media))
        if case.mutation == "truncated":
            data = data[: len(data) * 6 // 10]
        rel = _package_path(article.pmcid)
        _write_if_changed(root / rel, data)
        if case.in_file_list:
            rows.append(_file_list_row(article))
        figures = _figure_expectations(article, f"{article.pmcid}/", True, case.quarantine)
        whole = case.quarantine is not None
        packages[article.pmcid] = {
            "case": case.name,
            "description": case.description,
            "file": rel,
            "in_file_list": case.in_file_list,
            "nxml": f"{article.pmcid}/{article.stem}.nxml",
            "figures": 0 if whole else sum(f["sample"] for f in figures),
            # Reprints of another case's figure: read as samples, then removed by exact dedup.
            "duplicate_figures": sum(1 for fig, _ in article.figures() if fig.reprint_of),
            "quarantine": case.quarantine,
            "quarantined_figures": {}
            if whole
            else {f["id"]: f["quarantine"] for f in figures if f["quarantine"]},
            "retracted": article.retracted,
            "pmid": article.pmid or None,
            "doi": article.doi,
            "citation": article.citation,
            "title": _caption_plain(article.title),
            "last_updated": article.last_updated,
            **_license_expectation(article),
            "figure_list": figures,
        }
    rows.sort(key=lambda row: _accession_key(row[2]))
    file_list = root / FILE_LIST_NAME
    _write_if_changed(file_list, _csv_bytes(FILE_LIST_COLUMNS, rows))
    return _summary(root, file_list, packages, "packages")


def _summary(root: Path, file_list: Any, items: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """The totals a reader test asserts: samples, quarantines (package or ``PMCID/fig-id``), ignored."""
    counted = {k: v for k, v in items.items() if v["in_file_list"]}
    quarantined: dict[str, str] = {}
    for pmcid, item in counted.items():
        if item["quarantine"]:
            quarantined[pmcid] = item["quarantine"]
        for fig_id, reason in item["quarantined_figures"].items():
            quarantined[f"{pmcid}/{fig_id}"] = reason
    return {
        "root": root,
        "file_list": file_list,
        name: items,
        "cases": {item.get("case", pmcid): pmcid for pmcid, item in items.items()},
        "expected_samples": sum(item["figures"] for item in counted.values()),
        "expected_retracted_samples": sum(item["figures"] for item in counted.values() if item["retracted"]),
        "expected_duplicate_samples": sum(item.get("duplicate_figures", 0) for item in counted.values()),
        "expected_quarantined": quarantined,
        "ignored": sorted((k for k, v in items.items() if not v["in_file_list"]), key=_accession_key),
    }


def _cloud_articles() -> list[tuple[str, _Article, str]]:
    crr, jsp, cic, ijcm, adi = JOURNALS
    return [
        (
            "oa_comm",
            _base_article(
                2000001,
                crr,
                "CC BY",
                volume=19,
                issue=3,
                fpage=840,
                lpage=844,
                date=(2024, 3, 12),
                id_style="pmcid",
                figures=[
                    _fig(
                        "crr-19-840",
                        1,
                        "ct",
                        "CT of the chest.",
                        "Axial image shows a nodule with spiculated margins.",
                    ),
                    _fig(
                        "crr-19-840", 2, "chart", "Tumour markers.", "CEA (ng/mL) before and after resection."
                    ),
                ],
            ),
            "single",
        ),
        (
            "oa_comm",
            _base_article(
                2000002,
                cic,
                "CC0",
                volume=12,
                issue=1,
                fpage=15,
                lpage=19,
                date=(2024, 1, 8),
                id_style="both",
                figures=[
                    _fig(
                        "cic-12-15",
                        1,
                        "ct",
                        "Abdominal CT.",
                        "(A) Axial, (B) coronal and (C) sagittal images show a target "
                        "sign in the right abdomen.",
                        panels=("A", "B", "C"),
                    )
                ],
            ),
            "compound",
        ),
        (
            "oa_noncomm",
            _base_article(
                2000003,
                jsp,
                "CC BY-NC",
                volume=6,
                issue=2,
                fpage=201,
                lpage=206,
                date=(2024, 2, 2),
                license_style="ali",
                figures=[
                    _fig(
                        "jsp-6-201",
                        1,
                        "histology",
                        "Histology.",
                        "Nests of epithelioid cells (H&amp;E, ×200; 50 μm).",
                    ),
                    _fig(
                        "jsp-6-201",
                        2,
                        "histology",
                        "Immunohistochemistry.",
                        "HMB-45 shows strong cytoplasmic staining.",
                        present=False,
                    ),
                ],
            ),
            "missing_media",
        ),
        (
            "oa_noncomm",
            _base_article(
                2000004,
                ijcm,
                "CC BY-NC-ND",
                volume=14,
                issue=9,
                fpage=612,
                lpage=615,
                date=(2024, 4, 19),
                figures=[
                    _fig(
                        "ijcm-14-612",
                        1,
                        "xray",
                        "Chest radiograph.",
                        "Lateral view shows an anterior mediastinal mass.",
                    )
                ],
            ),
            "cc_by_nc_nd",
        ),
    ]


def _write_cloud_sample(root: Path) -> dict[str, Any]:
    _write_if_changed(root / "README.txt", README.encode("utf-8"))
    articles: dict[str, dict[str, Any]] = {}
    rows: dict[str, list[list[str]]] = {}
    for group, article, name in _cloud_articles():
        folder = f"{group}/{article.pmcid}"
        xml = _article_xml(article).encode("utf-8")
        key = f"{folder}/{article.pmcid}.xml"
        _write_if_changed(root / key, xml)
        for fig_id, (full, _) in _render_media(article, 2).items():
            fig = next(f for f, _ in article.figures() if f.id == fig_id)
            _write_if_changed(root / folder / f"{fig.href}.{fig.ext}", full)
        rows.setdefault(group, []).append(
            [
                key,
                f'"{hashlib.md5(xml).hexdigest()}"',
                article.citation,
                article.pmcid,
                article.last_updated,
                article.pmid,
                article.license,
                "yes" if article.retracted else "no",
            ]
        )
        figures = _figure_expectations(article, f"{folder}/", thumbnails=False)
        articles[article.pmcid] = {
            "case": name,
            "group": group,
            "key": key,
            "in_file_list": True,
            "figures": sum(f["sample"] for f in figures),
            "quarantine": None,
            "quarantined_figures": {f["id"]: f["quarantine"] for f in figures if f["quarantine"]},
            "retracted": article.retracted,
            "pmid": article.pmid or None,
            "doi": article.doi,
            "citation": article.citation,
            "title": _caption_plain(article.title),
            "last_updated": article.last_updated,
            **_license_expectation(article),
            "figure_list": figures,
        }
    file_lists = {}
    for group, group_rows in rows.items():
        group_rows.sort(key=lambda row: _accession_key(row[3]))
        path = root / group / "metadata" / f"{group}.filelist.csv"
        _write_if_changed(path, _csv_bytes(CLOUD_FILE_LIST_COLUMNS, group_rows))
        file_lists[group] = path
    return _summary(root, file_lists, articles, "articles")


def write_pmc_sample_corpus(root: Path) -> dict[str, Any]:
    """Write the classic sample under ``root/pmc`` and the cloud sample under ``root/pmc-cloud``.

    Returns what a correct PMC reader should make of them, so reader tests assert against one
    description instead of re-deriving it::

        {"classic": {"root": Path, "file_list": Path (oa_file_list.csv),
                     "packages": {pmcid: package}, "cases": {case_name: pmcid},
                     "expected_samples": int, "expected_retracted_samples": int,
                     "expected_quarantined": {"PMCnnn" or "PMCnnn/<fig id>": reason},
                     "ignored": [pmcid on disk but not listed]},
         "cloud": {same keys, but "file_list": {group: Path} and "articles" instead of "packages"}}

    ``expected_samples`` counts figures that become samples in listed, non-quarantined packages,
    retracted ones included (a retraction policy may then drop ``expected_retracted_samples``). Each
    package/article has ``case``, ``file`` (classic) or ``group``/``key`` (cloud), ``in_file_list``,
    ``figures`` (samples expected), ``quarantine`` (whole-package reason or None),
    ``quarantined_figures`` ({fig id: reason}), ``retracted``, ``pmid``, ``doi``, ``citation``, ``title``,
    ``last_updated``, ``license`` (normalised, e.g. ``cc-by``), ``license_url``, ``license_source``
    (``xml`` or ``file_list``), ``file_list_license`` and ``figure_list`` (one dict per graphic-bearing
    fig: id, label, href, member, thumbnail, format, kind, panels, placement, caption_title,
    caption_text, cited_in, direct_citations, cited_via_range, group, sample, quarantine).
    """
    root = Path(root)
    return {"classic": _write_classic_sample(root / "pmc"), "cloud": _write_cloud_sample(root / "pmc-cloud")}


# -- large mirrors for benchmarks --------------------------------------------------------------------------

CAPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "ct": (
        (
            "{modality} of the abdomen.",
            "Axial image shows {finding} in the {location} (arrow), measuring {a} × {b} mm.",
        ),
        ("CT at follow-up.", "Coronal reformat shows {finding} with surrounding fat stranding."),
    ),
    "xray": (
        ("Chest radiograph.", "Posteroanterior view shows {finding} in the {location} (arrowheads)."),
        ("Plain radiograph.", "Lateral view shows a lytic lesion with a sclerotic rim."),
    ),
    "histology": (
        (
            "Histopathological findings.",
            "Haematoxylin and eosin staining shows {histo} (×{mag}; scale bar, {bar} μm).",
        ),
        (
            "Immunohistochemistry.",
            "Tumour cells are diffusely positive for {m1} and negative for {m2} (×{mag}).",
        ),
    ),
    "chart": (
        (
            "Laboratory course.",
            "Serum C-reactive protein (mg/L) and white cell count (×10<sup>9</sup>/L) "
            "over {days} days; error bars, mean ± SD.",
        ),
        (
            "Tumour size during treatment.",
            "Longest diameter (mm) at each visit; <italic>P</italic> &lt; 0.05 versus baseline.",
        ),
    ),
    "diagram": (
        ("Diagnostic algorithm.", "Flowchart of the work-up of {finding}; boxes mark decision points."),
        ("Timeline.", "Timeline of presentation, imaging, biopsy and {treatment}."),
    ),
}
_KINDS = ("ct", "ct", "xray", "histology", "histology", "chart", "diagram")


def _fill(template: str, rng: random.Random) -> str:
    return template.format(**{key: _FILLERS[key](rng) for key in _FIELD.findall(template)})


def _image_pool(seed: int, size: int) -> list[tuple[str, tuple[str, ...], bytes, bytes]]:
    """A few pre-encoded figures (kind, panels, jpeg, gif) reused across packages with new comments."""
    pool = []
    for index in range(size):
        rng = np.random.default_rng([SEED, 3, seed, index])
        kind = _KINDS[index % len(_KINDS)]
        panels = ("A", "B", "C")[: 2 + index % 2] if index % 5 == 4 and kind in ("ct", "histology") else ()
        image = _figure_image(kind, panels, rng)
        if not panels and max(image.size) > 384:  # keep benchmark packages a realistic but modest size
            image.thumbnail((384, 384))
        pool.append((kind, panels, _encode(image, "JPEG", quality=82), _thumbnail_gif(image)))
    return pool


def _random_article(
    rng: random.Random, number: int, n_figures: int, pool: Sequence[tuple[str, tuple[str, ...]]]
) -> tuple[_Article, list[int]]:
    """A plausible 20-60 KB case report citing ``n_figures`` figures drawn from ``pool`` (kind, panels).

    Returns the article and, per figure, the index of the pooled image it shows.
    """
    journal = rng.choice(JOURNALS)
    year = rng.randint(2012, 2024)
    volume, fpage = year - 2005, rng.randint(10, 2400)
    disease = rng.choice(DISEASES)
    n_refs = rng.randint(12, 40)
    text = _Text(rng, disease, n_refs)
    picks = [rng.randrange(len(pool)) for _ in range(n_figures)]
    stem = f"{journal.prefix}-{volume}-{fpage}"
    figs = []
    for i, pick in enumerate(picks, 1):
        kind, panels = pool[pick]
        if panels:  # compound: one "(A) ... (B) ..." caption over the panels
            title = _fill(CAPTIONS[kind][0][0], rng)
            caption = " ".join(f"({p}) {_fill(rng.choice(CAPTIONS[kind])[1], rng)}" for p in panels)
        else:
            title, caption = (_fill(t, rng) for t in rng.choice(CAPTIONS[kind]))
        figs.append(_fig(stem, i, kind, title, caption, panels=panels))
    target = rng.randint(20_000, 60_000) - 6_000 - 450 * n_refs - 500 * n_figures
    sections: dict[str, list[_Item]] = {
        "Introduction": [],
        "Case presentation": [],
        "Discussion": [],
        "Conclusion": [],
    }
    pools = {
        "Introduction": INTRO,
        "Case presentation": CASE,
        "Discussion": DISCUSSION,
        "Conclusion": DISCUSSION,
    }
    size = 0
    # Each figure is cited in the case presentation and placed after its citing paragraph; with three
    # or more figures some articles cite a run of them as a range ("Figs. 2–4").
    use_range = n_figures >= 3 and rng.random() < 0.4
    for i, fig in enumerate(figs, 1):
        if use_range and i == 2:
            cite = (
                f'Figs. <xref ref-type="fig" rid="F2">2</xref>–<xref ref-type="fig" rid="F{n_figures}">'
                f"{n_figures}</xref> show the subsequent work-up."
            )
        elif use_range and i > 2:
            cite = ""
        else:
            styles = (f"Figure {i}", f"Fig. {i}", f"Fig. {i}{fig.panels[0]}" if fig.panels else f"Fig. {i}")
            cite = text.citing(fig, rng.choice(styles))
        paragraph = f"{text.paragraph(CASE, 2, 5)} {cite}".strip()
        sections["Case presentation"] += [paragraph, fig]
        size += len(paragraph)
    sections["Introduction"] = [text.paragraph(INTRO, 3, 5) for _ in range(rng.randint(1, 3))]
    sections["Conclusion"] = [text.paragraph(DISCUSSION, 1, 3)]
    size += sum(len(p) for p in (*sections["Introduction"], *sections["Conclusion"]))
    while size < target:
        name = "Discussion" if rng.random() < 0.6 else "Case presentation"
        paragraph = text.paragraph(pools[name], 4, 9)
        if name == "Discussion" and figs and rng.random() < 0.3:
            fig = rng.choice(figs)
            paragraph += f" As shown in {_xf(fig.id, fig.label)}, the margins were well defined."
        sections[name].insert(0 if name == "Case presentation" else len(sections[name]), paragraph)
        size += len(paragraph)
    if not sections["Discussion"]:
        sections["Discussion"].append(text.paragraph(DISCUSSION, 2, 4))
    licence = rng.choices(list(LICENSES), weights=(60, 6, 15, 12, 7))[0]
    article = _Article(
        pmc_number=number,
        journal=journal,
        pmid=str(20000000 + number * 3) if rng.random() < 0.93 else "",
        date=(year, rng.randint(1, 12), rng.randint(1, 28)),
        volume=volume,
        issue=rng.randint(1, 12),
        fpage=fpage,
        lpage=fpage + rng.randint(3, 12),
        title=f"{disease[0].upper()}{disease[1:]} presenting with {rng.choice(SYMPTOMS)}: a case report",
        authors=[(rng.choice(SURNAMES), rng.choice(GIVEN)) for _ in range(rng.randint(2, 8))],
        license=licence,
        sections=list(sections.items()),
        abstract=text.paragraph(CASE, 4, 6),
        keywords=[disease, "case report", rng.choice(("CT", "MRI", "histopathology", "radiography"))],
        refs=_references(rng, n_refs),
        license_style=rng.choice(("full", "href", "ali")),
        id_style=rng.choice(("pmc", "pmcid", "both")),
        article_type=rng.choices(("case-report", "research-article"), weights=(4, 1))[0],
        department=rng.choice(DEPARTMENTS),
        place=rng.choice(PLACES),
        last_updated=f"{rng.randint(year, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
        http_license=rng.random() < 0.2,
    )
    return article, picks


def write_pmc_mirror(
    root: Path,
    n_packages: int,
    *,
    seed: int = 0,
    figures_per_package: tuple[int, int] = (1, 6),
    image_pool: int = 48,
) -> Path:
    """Write a classic-layout mirror of ``n_packages`` good packages under ``root``; returns the file list.

    Images come from a pool of ``image_pool`` pre-encoded figures, made unique per package by a JPEG/GIF
    comment (new bytes, same pixels) instead of re-encoding: 2,000 packages take seconds, not minutes.
    Perceptual dedup will therefore group the figures; exact-byte dedup will not.
    """
    root = Path(root)
    low, high = figures_per_package
    if not 1 <= low <= high:
        raise ValueError(f"figures_per_package must be 1 <= low <= high, got {figures_per_package}")
    pool = _image_pool(seed, max(1, image_pool))
    kinds = [(kind, panels) for kind, panels, _, _ in pool]
    _write_if_changed(root / "README.txt", README.encode("utf-8"))
    base = 3_000_000 + seed * 1_000_000
    rows = []
    for index in range(n_packages):
        rng = random.Random(f"medcurate-pmc-mirror:{seed}:{index}")
        n_figures = rng.randint(low, high)
        article, picks = _random_article(rng, base + index, n_figures, kinds)
        media = {}
        for (fig, _), pick in zip(article.figures(), picks, strict=True):
            _, _, jpeg, gif = pool[pick]
            tag = f"medcurate synthetic {article.pmcid} {fig.id}"
            media[fig.id] = (_jpeg_with_comment(jpeg, tag), _gif_with_comment(gif, tag))
        data = _tar_gz(_article_members(article, media), level=6)
        _write_if_changed(root / _package_path(article.pmcid), data)
        rows.append(_file_list_row(article))
    rows.sort(key=lambda row: _accession_key(row[2]))
    file_list = root / FILE_LIST_NAME
    _write_if_changed(file_list, _csv_bytes(FILE_LIST_COLUMNS, rows))
    return file_list


__all__ = [
    "ARCHIVE_TRUNCATED",
    "ARCHIVE_UNSAFE_MEMBER",
    "CLOUD_FILE_LIST_COLUMNS",
    "CLOUD_GROUPS",
    "FILE_LIST_COLUMNS",
    "FILE_LIST_NAME",
    "GRAPHIC_MISSING",
    "LICENSES",
    "XML_ENTITIES",
    "XML_MALFORMED",
    "edit_last_updated",
    "remove_from_file_list",
    "set_license",
    "write_pmc_mirror",
    "write_pmc_sample_corpus",
]
