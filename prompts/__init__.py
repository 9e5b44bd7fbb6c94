"""Registry of versioned prompts and text templates, stored as YAML next to this module.

A prompt is addressed as ``"labels.chest_xray"`` (its highest version) or ``"labels.chest_xray@1"``;
id ``a.b`` lives in ``a/b.v<N>.yaml``. Files are immutable once released: a wording change is a new
version, and every text a stage writes records ``id@version`` plus the file's sha256 in its lineage,
so any caption can be traced back to the exact template bytes that produced it.

Files are found relative to this package, so the registry works from a source tree and after a
non-editable install alike (the YAML files ship as package data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medcurate.hashing import sha256_bytes

#: Where the prompt files live.
PROMPTS_DIR = Path(__file__).resolve().parent

#: Fields every prompt file must define.
REQUIRED_FIELDS = ("id", "version", "kind", "description")

_SEGMENT = re.compile(r"[a-z0-9_]+")
_FILENAME = re.compile(r"(?P<name>[a-z0-9_]+)\.v(?P<version>[0-9]+)\.yaml")


class UnknownPrompt(KeyError):
    """No prompt file matches the ref; the message lists what is available."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Prompt:
    """One prompt file: identity, the hash of its exact bytes, and its parsed content."""

    id: str
    version: int
    sha256: str
    data: dict[str, Any] = field(hash=False, compare=False, repr=False)

    @property
    def ref(self) -> str:
        """The pinned reference, ``id@version``, as written into lineage and caption authors."""
        return f"{self.id}@{self.version}"

    @property
    def kind(self) -> str:
        return str(self.data["kind"])


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split ``"a.b@3"`` into ``("a.b", 3)``; the version is None when not pinned."""
    prompt_id, sep, version = ref.partition("@")
    if not prompt_id or not all(_SEGMENT.fullmatch(part) for part in prompt_id.split(".")):
        raise ValueError(f"invalid prompt ref {ref!r}: expected 'group.name' or 'group.name@N'")
    if not sep:
        return prompt_id, None
    if not version.isdigit():
        raise ValueError(f"invalid prompt ref {ref!r}: version must be an integer")
    return prompt_id, int(version)


def available_prompts(root: Path | None = None) -> dict[str, list[int]]:
    """Every prompt id under ``root`` (default: this package) with its sorted versions."""
    root = PROMPTS_DIR if root is None else Path(root)
    found: dict[str, list[int]] = {}
    for path in sorted(root.rglob("*.yaml")):
        match = _FILENAME.fullmatch(path.name)
        dirs = path.relative_to(root).parts[:-1]
        if not match or not all(_SEGMENT.fullmatch(part) for part in dirs):
            continue
        prompt_id = ".".join([*dirs, match["name"]])
        found.setdefault(prompt_id, []).append(int(match["version"]))
    return {prompt_id: sorted(versions) for prompt_id, versions in sorted(found.items())}


def load_prompt(ref: str, root: Path | None = None) -> Prompt:
    """The prompt named by ``ref`` (highest version unless pinned with ``@N``).

    Raises ``UnknownPrompt`` (a ``KeyError``) naming the available ids and versions when there is no
    such prompt, and ``ValueError`` when the file disagrees with its name or lacks required fields.
    """
    root = PROMPTS_DIR if root is None else Path(root)
    prompt_id, version = parse_ref(ref)
    available = available_prompts(root)
    versions = available.get(prompt_id)
    if not versions or (version is not None and version not in versions):
        listing = ", ".join(f"{pid}@{'/'.join(map(str, vs))}" for pid, vs in available.items()) or "none"
        raise UnknownPrompt(f"unknown prompt {ref!r}; available: {listing}")
    version = versions[-1] if version is None else version
    *dirs, name = prompt_id.split(".")
    path = root.joinpath(*dirs, f"{name}.v{version}.yaml")
    raw = path.read_bytes()
    data = yaml.safe_load(raw)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a prompt file must be a YAML mapping")
    missing = [key for key in REQUIRED_FIELDS if key not in data]
    if missing:
        raise ValueError(f"{path}: missing required field(s) {missing}")
    if data["id"] != prompt_id or type(data["version"]) is not int or data["version"] != version:
        raise ValueError(
            f"{path}: declares {data['id']}@{data['version']} but its file name says {prompt_id}@{version}"
        )
    return Prompt(id=prompt_id, version=version, sha256=sha256_bytes(raw), data=data)


__all__ = ["PROMPTS_DIR", "Prompt", "UnknownPrompt", "available_prompts", "load_prompt", "parse_ref"]
