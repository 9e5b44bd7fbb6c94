"""The prompt registry: refs, versions, hashes and clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import medcurate.prompts as prompts
from medcurate.prompts import PROMPTS_DIR, Prompt, UnknownPrompt, available_prompts, load_prompt, parse_ref


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def prompt_yaml(prompt_id: str, version: int, extra: str = "") -> str:
    return f"id: {prompt_id}\nversion: {version}\nkind: test\ndescription: a test prompt\n{extra}"


def test_shipped_label_templates_load():
    for ref in ("labels.chest_xray", "labels.generic", "labels.chest_xray@1", "labels.generic@1"):
        prompt = load_prompt(ref)
        assert prompt.kind == "label_template"
        assert prompt.ref == f"{prompt.id}@{prompt.version}"
        raw = (PROMPTS_DIR / "labels" / f"{prompt.id.split('.')[1]}.v{prompt.version}.yaml").read_bytes()
        assert prompt.sha256 == hashlib.sha256(raw).hexdigest()


def test_files_are_found_next_to_the_package_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Path(prompts.__file__).resolve().parent == PROMPTS_DIR
    assert "labels.chest_xray" in available_prompts()


def test_highest_version_unless_pinned(tmp_path):
    write(tmp_path, "a/b.v1.yaml", prompt_yaml("a.b", 1, "text: one\n"))
    write(tmp_path, "a/b.v2.yaml", prompt_yaml("a.b", 2, "text: two\n"))
    write(tmp_path, "a/b.v10.yaml", prompt_yaml("a.b", 10, "text: ten\n"))
    assert available_prompts(tmp_path) == {"a.b": [1, 2, 10]}
    assert load_prompt("a.b", tmp_path).data["text"] == "ten"  # numeric, not lexical, order
    pinned = load_prompt("a.b@2", tmp_path)
    assert (pinned.version, pinned.ref, pinned.data["text"]) == (2, "a.b@2", "two")


def test_unknown_prompt_lists_available_ids(tmp_path):
    write(tmp_path, "a/b.v1.yaml", prompt_yaml("a.b", 1))
    with pytest.raises(KeyError) as excinfo:
        load_prompt("a.c", tmp_path)
    assert isinstance(excinfo.value, UnknownPrompt)
    assert "a.c" in str(excinfo.value) and "a.b@1" in str(excinfo.value)
    with pytest.raises(UnknownPrompt, match="a.b@1"):
        load_prompt("a.b@7", tmp_path)


@pytest.mark.parametrize("ref", ["", "a.b@x", "../etc.passwd", "a/b", "A.B", "a.b@"])
def test_invalid_refs(ref):
    with pytest.raises(ValueError, match="invalid prompt ref"):
        parse_ref(ref)


def test_file_must_agree_with_its_name(tmp_path):
    write(tmp_path, "a/b.v1.yaml", prompt_yaml("a.other", 1))
    with pytest.raises(ValueError, match="declares a.other@1"):
        load_prompt("a.b", tmp_path)
    write(tmp_path, "a/c.v1.yaml", "id: a.c\nversion: 1\n")
    with pytest.raises(ValueError, match="missing required"):
        load_prompt("a.c", tmp_path)
    write(tmp_path, "a/d.v1.yaml", "- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_prompt("a.d", tmp_path)


def test_safe_load_refuses_python_tags(tmp_path):
    write(tmp_path, "a/b.v1.yaml", prompt_yaml("a.b", 1, "x: !!python/object/apply:os.system ['true']\n"))
    with pytest.raises(Exception, match="python/object"):
        load_prompt("a.b", tmp_path)


def test_prompt_is_frozen_and_hashable():
    prompt = load_prompt("labels.generic")
    assert isinstance(prompt, Prompt)
    with pytest.raises(AttributeError):
        prompt.version = 2  # type: ignore[misc]
    assert hash(prompt) == hash(load_prompt("labels.generic@1"))
    assert prompt == load_prompt("labels.generic@1")
