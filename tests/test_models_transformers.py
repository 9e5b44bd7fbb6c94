"""The transformers backend against tiny random-weight models built here (no hub): batching with mixed
image sizes and text-only requests, determinism, schema-constrained JSON, fixed-length output, OOM
back-off, the CLIP embedder, and reproducible model files."""

from __future__ import annotations

import io
import json

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image

from medcurate.models import registry
from medcurate.models.base import GenerationRequest, OutOfMemory, Sampling
from medcurate.models.spec import model_revision, resolve_model
from medcurate.models.structured import generate_structured
from medcurate.models.tiny import write_tiny_clip, write_tiny_vlm

SCHEMA = {
    "type": "object",
    "properties": {
        "caption": {"type": "string", "maxLength": 40},
        "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
    },
    "required": ["caption", "score"],
    "additionalProperties": False,
}


def png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def requests(schema=None) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            "Describe the image.", png(40, 30, (200, 10, 10)), "You are a radiologist.", schema
        ),
        GenerationRequest("What organ is shown?", png(300, 500, (10, 90, 10)), schema=schema),  # > max_pixels
        GenerationRequest("Caption this figure.", png(17, 17, (10, 10, 250)), schema=schema),
        GenerationRequest("Answer without an image.", schema=schema),
    ]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    yield write_tiny_vlm(root / "tiny-vlm"), write_tiny_clip(root / "tiny-clip")
    registry.unload_all()


@pytest.fixture(scope="module")
def generator(model_dirs):
    return registry.load_generator(
        resolve_model("caption", str(model_dirs[0]), options={"max_pixels": 64 * 64})
    )


def test_batch_of_mixed_images_and_text_only_is_deterministic(generator):
    batch = requests()
    first = generator.generate(batch, Sampling(max_tokens=8))
    assert first == generator.generate(batch, Sampling(max_tokens=8))
    assert len(first) == 4
    assert all(0 < g.output_tokens <= 8 and g.finish_reason in ("stop", "length") for g in first)
    # An image adds its 16 placeholder tokens; the text-only prompt is the shortest.
    assert first[3].prompt_tokens < min(g.prompt_tokens for g in first[:3])
    sampled = Sampling(max_tokens=8, temperature=1.0, top_p=0.9, seed=7)
    assert generator.generate(batch, sampled) == generator.generate(batch, sampled)


def test_schema_constrains_output_to_valid_json(generator):
    for sampling in (Sampling(max_tokens=64), Sampling(max_tokens=64, temperature=1.0, seed=3)):
        outcomes = generate_structured(generator, requests(SCHEMA), sampling)
        assert [o.error for o in outcomes] == [None] * 4
        assert all(o.attempts == 1 for o in outcomes)  # valid at the first try, not by retrying
        for outcome in outcomes:
            jsonschema.validate(json.loads(outcome.raw), SCHEMA)  # strict JSON: no control characters
            assert len(outcome.output["caption"]) <= 40


def test_mixed_schema_and_free_text_in_one_batch(generator):
    batch = requests()
    batch[1] = requests(SCHEMA)[1]
    answers = generator.generate(batch, Sampling(max_tokens=64))
    jsonschema.validate(json.loads(answers[1].text), SCHEMA)
    assert answers[1].finish_reason == "stop"


def test_fixed_length_generates_exactly_max_tokens(generator):
    answers = generator.generate(requests(SCHEMA), Sampling(max_tokens=12, fixed_length=True))
    assert [(g.output_tokens, g.finish_reason) for g in answers] == [(12, "length")] * 4


def test_out_of_memory_halves_the_batch(generator, monkeypatch):
    real = generator.model.generate
    sizes: list[int] = []

    def tight(**kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(**kwargs)

    monkeypatch.setattr(generator.model, "generate", tight)
    with pytest.raises(OutOfMemory):
        generator.generate(requests()[:2], Sampling(max_tokens=4))
    sizes.clear()
    outcomes = generate_structured(generator, requests(SCHEMA), Sampling(max_tokens=64), batch_size=4)
    assert all(o.ok for o in outcomes) and len(outcomes) == 4
    assert sizes == [4, 2, 1, 1, 1, 1]


def test_embedder_gives_unit_vectors(model_dirs):
    embedder = registry.load_embedder(resolve_model("embed", str(model_dirs[1]), options={"batch_size": 4}))
    images = embedder.embed_images(
        [png(40, 30, (200, 0, 0)), png(300, 500, (0, 90, 0)), png(40, 30, (200, 0, 0))]
    )
    texts = embedder.embed_texts(["a chest x-ray", "an irregular pigmented skin lesion"])
    assert images.shape == (3, 32) and texts.shape == (2, 32)
    assert images.dtype == texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.vstack([images, texts]), axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(images[0], images[2]) and not np.allclose(images[0], images[1])
    assert embedder.embed_images([]).shape == (0, 32)


def test_tiny_vlm_files_are_reproducible(tmp_path, model_dirs):
    again = write_tiny_vlm(tmp_path / "again")
    names = sorted(p.name for p in model_dirs[0].iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert all((model_dirs[0] / n).read_bytes() == (again / n).read_bytes() for n in names)
    assert model_revision(again) == model_revision(model_dirs[0])
    assert model_revision(write_tiny_vlm(tmp_path / "other", seed=1)) != model_revision(again)
