"""Model plumbing that needs no model: specs and revisions, output parsing, retries, OOM back-off,
the result cache and generation prompts."""

from __future__ import annotations

import json

import pytest

from medcurate.lake import Lake
from medcurate.models.base import Generation, GenerationRequest, Generator, OutOfMemory, Sampling
from medcurate.models.cache import ResultCache
from medcurate.models.prompting import GenerationPrompt, load_generation_prompt, record_variables
from medcurate.models.spec import ModelError, model_revision, parse_model_option, resolve_model
from medcurate.models.structured import generate_structured, parse_output
from medcurate.prompts import available_prompts, load_prompt
from medcurate.schemas.record import new_record

SCHEMA = {
    "type": "object",
    "properties": {"caption": {"type": "string", "maxLength": 20}},
    "required": ["caption"],
    "additionalProperties": False,
}


class ScriptedGenerator(Generator):
    """Answers from a script per (prompt, seed); raises OutOfMemory above ``fits`` requests a call."""

    backend = "scripted"

    def __init__(self, script, fits: int = 1000):
        self.script, self.fits, self.calls = script, fits, []

    def generate(self, requests, sampling):
        self.calls.append((len(requests), sampling.seed))
        if len(requests) > self.fits:
            raise OutOfMemory("CUDA out of memory")
        return [Generation(self.script(r.prompt, sampling.seed), 3, 5) for r in requests]


def test_model_option_parsing():
    assert parse_model_option("caption=/m/qwen@http") == ("caption", "/m/qwen", "http")
    assert parse_model_option("embed=/m/clip") == ("embed", "/m/clip", None)
    assert parse_model_option("judge=/m/a@b") == ("judge", "/m/a@b", None)  # '@b' is no backend
    for bad in ("caption", "=x", "painter=/m"):
        with pytest.raises(ModelError):
            parse_model_option(bad)


def test_revision_is_a_content_hash(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        (folder / "sub").mkdir(parents=True)
        (folder / "config.json").write_text('{"x": 1}')
        (folder / "sub" / "weights.bin").write_bytes(b"\0" * 100)
        (folder / ".cache").mkdir()
        (folder / ".cache" / "lock").write_text(str(folder))  # hidden files do not count
    assert model_revision(a) == model_revision(b)
    (b / "sub" / "weights.bin").write_bytes(b"\1" * 100)
    assert model_revision(a) != model_revision(b)
    spec_a, spec_b = resolve_model("caption", str(a)), resolve_model("caption", str(tmp_path / "a"))
    assert spec_a.identity() == spec_b.identity() and spec_a.ref.startswith("a@")


def test_model_errors_say_what_to_do(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model("caption", str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="needs an endpoint"):
        resolve_model("caption", "/srv/models/qwen", "http")
    with pytest.raises(ModelError, match="revision"):
        resolve_model("caption", "/srv/models/qwen", "http", endpoint="http://127.0.0.1:9/v1")
    spec = resolve_model(
        "caption", "/srv/models/qwen", "http", revision="abc", endpoint="http://127.0.0.1:9/v1"
    )
    assert spec.ref == "qwen@abc"
    with pytest.raises(ModelError, match="cannot use backend"):
        resolve_model("embed", str(tmp_path), "vllm")


def test_parse_output():
    assert parse_output('{"caption": "ok"}', SCHEMA) == ({"caption": "ok"}, None)
    assert parse_output('```json\n{"caption": "ok"}\n```', SCHEMA)[0] == {"caption": "ok"}
    assert parse_output('{"caption": "ok"', SCHEMA)[1].startswith("invalid_json")
    assert parse_output('{"caption": "' + "x" * 30 + '"}', SCHEMA)[1].startswith("schema_mismatch: caption")
    assert parse_output("  free text ", None) == ("free text", None)


def test_invalid_output_is_retried_once_with_the_next_seed_then_reported():
    def script(prompt, seed):
        if prompt == "good":
            return '{"caption": "fine"}'
        if prompt == "second-try":
            return '{"caption": "fixed"}' if seed == 1 else "not json"
        return "never json"

    gen = ScriptedGenerator(script)
    requests = [GenerationRequest(p, schema=SCHEMA) for p in ("good", "second-try", "bad")]
    outcomes = generate_structured(gen, requests, Sampling(seed=0), batch_size=8)
    assert [o.output for o in outcomes] == [{"caption": "fine"}, {"caption": "fixed"}, None]
    assert [o.attempts for o in outcomes] == [1, 2, 2]
    assert outcomes[2].error.startswith("invalid_json") and outcomes[2].raw == "never json"
    assert gen.calls == [(3, 0), (2, 1)]  # one retry batch for both failures, next seed


def test_out_of_memory_halves_the_batch_and_goes_on():
    gen = ScriptedGenerator(lambda p, s: json.dumps({"caption": p}), fits=2)
    requests = [GenerationRequest(str(i), schema=SCHEMA) for i in range(7)]
    outcomes = generate_structured(gen, requests, Sampling(), batch_size=8)
    assert [o.output["caption"] for o in outcomes] == [str(i) for i in range(7)]
    assert [n for n, _ in gen.calls] == [7, 4, 2, 2, 2, 1]
    with pytest.raises(OutOfMemory):
        generate_structured(ScriptedGenerator(lambda p, s: "{}", fits=0), requests[:1], Sampling(), 4)


def test_result_cache_round_trip_across_processes_views(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    row = {"key": "k1", "value": '{"caption":"x"}', "error": None, "raw": "r", "attempts": 1}
    first = ResultCache(lake, "caption-abc")
    first.put([row, {**row, "key": "k2", "value": None, "error": "invalid_json: x"}])
    second = ResultCache(lake, "caption-abc")  # a new process reads what the first wrote
    found = second.get_many(["k1", "k2", "k3"])
    assert set(found) == {"k1", "k2"} and found["k2"]["error"] == "invalid_json: x"
    assert len(second) == 2 and not ResultCache(lake, "caption-other").get_many(["k1"])


def test_shipped_generation_prompts_load_with_valid_schemas():
    refs = [pid for pid, _ in available_prompts().items() if load_prompt(pid).kind == "generation"]
    assert {"caption.context", "caption.panels", "caption.paraphrase", "judge.pair"} <= set(refs)
    for ref in refs:
        prompt = load_generation_prompt(ref)
        assert (prompt.schema is None or prompt.schema["type"] == "object") and prompt.sampling.max_tokens > 0


def test_caption_prompt_is_diagnosis_guided_only_with_labels():
    prompt = load_generation_prompt("caption.context")
    labeled = new_record(
        "a",
        medical={"modality": "XR", "labels": [{"name": "Pleural_Effusion", "value": "negative"}]},
        text={"label_text": "Chest X-ray; no pleural effusion."},
    )
    _, user = prompt.render(record_variables(labeled))
    assert "absent (ground truth" in user and "Pleural Effusion" in user
    _, plain = prompt.render(record_variables(new_record("b", text={"source_caption": "CT of the liver."})))
    assert "ground truth" not in plain and "Original caption: CT of the liver." in plain


def test_prompt_with_an_undeclared_variable_fails_at_load(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "p.v1.yaml").write_text(
        "id: t.p\nversion: 1\nkind: generation\ndescription: d\n"
        "variables: [modality]\nuser: '{{ modalty }}'\n"
    )
    with pytest.raises(ValueError, match="modalty"):
        GenerationPrompt(load_prompt("t.p", tmp_path))


def _longest_json(schema: dict) -> int:
    """Characters of the longest compact JSON a schema allows (strings unescaped)."""
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"])
    kind = schema["type"]
    if kind == "string":
        return schema["maxLength"] + 2
    if kind == "boolean":
        return 5
    if kind == "array":
        return 2 + schema["maxItems"] * (_longest_json(schema["items"]) + 1)
    if kind == "object":
        fields = [len(key) + 3 + _longest_json(value) for key, value in schema["properties"].items()]
        return 2 + sum(fields) + len(fields)
    raise AssertionError(f"unbounded schema type {kind}")


@pytest.mark.parametrize("ref", ["caption.context", "caption.panels", "caption.paraphrase", "judge.pair"])
def test_the_token_budget_covers_the_longest_answer_the_schema_allows(ref):
    """Constrained decoding of any model, random weights included, can always close its JSON."""
    prompt = load_generation_prompt(ref)
    assert _longest_json(prompt.schema) <= prompt.sampling.max_tokens


def test_an_empty_result_cache_is_still_a_cache(tmp_path):
    """An empty cache once read as falsy, and stages then never wrote to it."""
    assert ResultCache(Lake(str(tmp_path / "lake")), "caption-empty")
