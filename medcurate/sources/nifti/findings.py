"""Structured findings text from mask measurements, through a versioned YAML template.

RadGPT-style captions ("Liver lesion (label 1), right side, 23 mm largest axial diameter, volume
4.1 mL, ...") are generated, not written by a radiologist, so every word comes from a template in
``prompts/findings`` and the result carries the template's ``id@version`` and sha256: a wording
change is a new template version visible in lineage, never a silent code change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medcurate.prompts import Prompt, load_prompt
from medcurate.sources.nifti.masks import LabelFinding

DEFAULT_TEMPLATE = "findings.lesion"


@dataclass(frozen=True)
class FindingsText:
    """The rendered text and the exact template that produced it (for lineage)."""

    text: str
    sentences: tuple[str, ...]
    template_ref: str  # id@version
    template_sha256: str


class FindingsTemplate:
    """A parsed ``findings_template`` prompt."""

    def __init__(self, prompt: Prompt):
        if prompt.kind != "findings_template":
            raise ValueError(f"prompt {prompt.ref} is a {prompt.kind!r}, not a findings_template")
        self.prompt = prompt
        data = prompt.data
        self.names: Mapping[str, str] = data.get("names") or {}
        self.laterality: Mapping[str, str] = data["laterality"]
        self.numbers: Mapping[str, str] = data.get("numbers") or {}
        self.slice_base = int(data.get("slice_base", 0))
        self.sentence: Mapping[str, str] = data["sentence"]

    def fields(self, finding: LabelFinding) -> dict[str, Any]:
        """The values a sentence format may use, formatted as the template says."""
        name = self.names.get(finding.name) or self.names.get(finding.name.lower()) or finding.name
        first, last = finding.slice_range
        return {
            "name": name,
            "Name": name[:1].upper() + name[1:],
            "label": finding.label,
            "laterality": self.laterality[finding.laterality],
            "diameter_mm": format(finding.max_axial_diameter_mm, self.numbers.get("diameter_mm", ".0f")),
            "volume_ml": format(finding.volume_ml, self.numbers.get("volume_ml", ".1f")),
            "voxels": finding.voxels,
            "first_slice": first + self.slice_base,
            "last_slice": last + self.slice_base,
            "largest_slice": finding.largest_slice + self.slice_base,
        }

    def render(self, finding: LabelFinding) -> str:
        """One finding as one sentence."""
        first, last = finding.slice_range
        fmt = self.sentence["one_slice"] if first == last else self.sentence["slices"]
        return fmt.format(**self.fields(finding))


def load_findings_template(ref: str = DEFAULT_TEMPLATE) -> FindingsTemplate:
    """The findings template named by ``ref`` (``"findings.lesion"`` or pinned ``"findings.lesion@1"``)."""
    return FindingsTemplate(load_prompt(ref))


def _template(template: FindingsTemplate | str) -> FindingsTemplate:
    return template if isinstance(template, FindingsTemplate) else load_findings_template(template)


def finding_sentence(finding: LabelFinding, template: FindingsTemplate | str = DEFAULT_TEMPLATE) -> str:
    """One finding as one sentence through ``template`` (a template or a prompt ref)."""
    return _template(template).render(finding)


def findings_text(
    findings: Iterable[LabelFinding], template: FindingsTemplate | str = DEFAULT_TEMPLATE
) -> FindingsText:
    """All findings, one sentence each in the given order, joined; ``empty`` text when there are none."""
    tpl = _template(template)
    sentences = tuple(tpl.render(f) for f in findings)
    text = tpl.sentence["separator"].join(sentences) if sentences else tpl.sentence["empty"]
    return FindingsText(text, sentences, tpl.prompt.ref, tpl.prompt.sha256)


__all__ = [
    "DEFAULT_TEMPLATE",
    "FindingsTemplate",
    "FindingsText",
    "finding_sentence",
    "findings_text",
    "load_findings_template",
]
