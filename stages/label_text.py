"""Label-to-text: one plain sentence per record from its structured labels, via a YAML template.

Labeled datasets (CheXpert, ISIC, ...) come without captions; a deterministic template turns their
labels into text so they can join an image-text corpus. All wording lives in the versioned template
(``prompts/labels/*.yaml``); this module only applies it, so a wording change is a new template
version recorded in lineage rather than a silent code change.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from medcurate.prompts import Prompt, load_prompt
from medcurate.schemas.record import note_author
from medcurate.stages.base import Quarantine, RecordStage, StageContext

LABEL_VALUES = ("positive", "negative", "uncertain")
DEFAULT_TEMPLATE = "labels.generic"


class LabelTemplate:
    """A parsed ``label_template`` prompt that renders ``record["medical"]`` into a sentence."""

    def __init__(self, prompt: Prompt):
        if prompt.kind != "label_template":
            raise ValueError(f"prompt {prompt.ref} is a {prompt.kind!r}, not a label_template")
        self.prompt = prompt
        data = prompt.data
        self.defaults: Mapping[str, str] = data.get("defaults") or {}
        self.modalities: Mapping[str, str] = data.get("modalities") or {}
        self.body_parts: Mapping[str, str] = data.get("body_parts") or {}
        self.views: Mapping[str, str] = data.get("views") or {}
        self.subject: Mapping[str, Sequence[str]] = data["subject"]
        self.label_values: Mapping[str, str] = data["label_values"]
        self.label_names: Mapping[str, str] = data.get("label_names") or {}
        self.label_phrases: Mapping[str, Mapping[str, str]] = data.get("label_phrases") or {}
        self.acronyms = frozenset(data.get("acronyms") or ())
        self.sentence: Mapping[str, str] = data["sentence"]

    def normalise(self, name: str) -> str:
        """A label or class name as prose: underscores to spaces, lower-cased except acronyms."""
        if name in self.label_names:
            return self.label_names[name]
        words = name.replace("_", " ").split()
        return " ".join(w if (w.isupper() and len(w) > 1) or w in self.acronyms else w.lower() for w in words)

    @staticmethod
    def _lookup(table: Mapping[str, str], value: str | None) -> str | None:
        """``value`` through a phrase table (exact, then lower-case key); else lower-cased."""
        if not value:
            return None
        for key in (value, value.lower()):
            if key in table:
                return table[key]
        return value.lower()

    def subject_text(self, medical: Mapping[str, Any]) -> str:
        """The sentence's subject: the first subject format whose fields are all known."""
        known = {key: medical.get(key) or self.defaults.get(key) for key in ("modality", "body_part", "view")}
        code = known["modality"] or ""
        fields = {
            "modality": self.modalities.get(code) or self.modalities.get(code.upper()) or code or None,
            "body_part": self._lookup(self.body_parts, known["body_part"]),
            "view": self._lookup(self.views, known["view"]),
        }
        formats = self.subject.get(code) or self.subject.get(code.upper()) or self.subject["default"]
        for fmt in formats:
            names = {name for _, name, _, _ in string.Formatter().parse(fmt) if name}
            if all(fields.get(name) for name in names):
                return fmt.format(**fields)
        raise ValueError(f"template {self.prompt.ref}: no subject format fits {fields}")

    def label_phrase(self, name: str, value: str) -> str:
        special = self.label_phrases.get(name, {})
        if value in special:
            return special[value]
        return self.label_values[value].format(label=self.normalise(name))

    def join_list(self, items: Sequence[str]) -> str:
        if len(items) < 2:
            return "".join(items)
        return self.sentence["list_separator"].join(items[:-1]) + self.sentence["last_separator"] + items[-1]

    def render(self, medical: Mapping[str, Any]) -> str | None:
        """The sentence for ``medical``, or None when it has neither labels nor a class."""
        class_name = medical.get("class_name")
        labels = [
            label
            for label in medical.get("labels") or []
            # a class is also listed as its own positive label; say it once
            if not (class_name and label["name"] == class_name and label["value"] == "positive")
        ]
        if not labels and not class_name:
            return None
        for label in labels:
            if label["value"] not in LABEL_VALUES:
                raise Quarantine(
                    "invalid_label_value",
                    f"label {label['name']!r} has value {label['value']!r}, expected one of {LABEL_VALUES}",
                )
        by_value = {
            value: [self.label_phrase(lb["name"], value) for lb in labels if lb["value"] == value]
            for value in LABEL_VALUES
        }
        subject = self.subject_text(medical)
        if class_name:
            head = self.sentence["class"].format(subject=subject, class_name=self.normalise(class_name))
            clauses = [self.join_list(by_value["positive"])] if by_value["positive"] else []
        elif by_value["positive"]:
            positives = self.join_list(by_value["positive"])
            head = self.sentence["positives"].format(subject=subject, positives=positives)
            clauses = []
        else:
            head = self.sentence["no_positives"].format(subject=subject)
            clauses = []
        clauses += by_value["negative"] + by_value["uncertain"]
        text = self.sentence["clause_separator"].join([head, *clauses]) + self.sentence["end"]
        return text[:1].upper() + text[1:]


class LabelTextStage(RecordStage):
    """Write ``text.label_text`` (and a missing ``text.final_caption``) from the record's labels.

    Params: ``template`` (default prompt ref, ``"labels.generic"``) and ``templates`` (dataset name ->
    prompt ref, picked by ``source.dataset``). Refs may be pinned (``"labels.chest_xray@1"``); an
    unpinned ref resolves to the highest version present when the stage first uses it.
    """

    name: ClassVar[str] = "label_text"
    version: ClassVar[str] = "3"  # 2: captioned records without labels pass; 3: so do uncaptioned ones

    def template_for(self, dataset: str | None) -> LabelTemplate:
        by_dataset = self.params.get("templates") or {}
        ref = by_dataset.get(dataset) or self.params.get("template", DEFAULT_TEMPLATE)
        cache: dict[str, LabelTemplate] = self.__dict__.setdefault("_templates", {})
        if ref not in cache:
            cache[ref] = LabelTemplate(load_prompt(ref))
        return cache[ref]

    def apply(self, record: dict[str, Any], ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        template = self.template_for((record.get("source") or {}).get("dataset"))
        prompt = template.prompt
        text = template.render(record.get("medical") or {})
        if text is None:
            # A document figure brings its own caption; a scan without labels or report may still get a
            # model caption. Records left without any caption are filtered by caption_policy.
            has_caption = bool((record.get("text") or {}).get("final_caption"))
            return record, {"skipped": "no labels" + ("; the record has a caption" if has_caption else "")}
        fields = record["text"] = dict(record.get("text") or {})
        fields["label_text"] = text
        note_author(fields, "label_text", f"template:{prompt.ref}", prompt.ref, prompt.sha256)
        wrote_caption = not (fields.get("final_caption") or "").strip()
        if wrote_caption:
            fields["final_caption"] = text
            fields["final_caption_author"] = f"template:{prompt.ref}"
            note_author(fields, "final_caption", f"template:{prompt.ref}", prompt.ref, prompt.sha256)
        details = {"prompt_id": prompt.ref, "prompt_sha256": prompt.sha256, "final_caption": wrote_caption}
        return record, details


__all__ = ["DEFAULT_TEMPLATE", "LabelTemplate", "LabelTextStage"]
