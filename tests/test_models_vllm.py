"""The in-process vLLM backend, run wherever vLLM is installed (a GPU node with the ``gpu`` extra).

vLLM 0.33's wheel is CUDA-only, so these tests skip on CPU machines; they exercise the same request
translation as production: ``LLM.chat`` with per-request structured-output sampling parameters.
"""

from __future__ import annotations

import io

import pytest

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm")

from medcurate.models.base import GenerationRequest, Sampling  # noqa: E402
from medcurate.models.registry import load_generator  # noqa: E402
from medcurate.models.spec import resolve_model  # noqa: E402
from medcurate.models.structured import generate_structured  # noqa: E402
from medcurate.models.tiny import write_tiny_vlm  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "caption": {"type": "string", "maxLength": 40},
        "score": {"type": "integer", "enum": [1, 2, 3]},
    },
    "required": ["caption", "score"],
    "additionalProperties": False,
}


def _png(side: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (side, side), color=side % 255).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    path = write_tiny_vlm(tmp_path_factory.mktemp("vlm") / "tiny-vlm")
    spec = resolve_model(
        "caption", str(path), "vllm", options={"max_model_len": 512, "gpu_memory_utilization": 0.3}
    )
    return load_generator(spec)


def test_structured_answers_validate(generator):
    requests = [
        GenerationRequest(f"Describe image {i}.", _png(32 + 8 * i), "Answer in JSON.", SCHEMA)
        for i in range(6)
    ]
    outcomes = generate_structured(generator, requests, Sampling(max_tokens=64), batch_size=6)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]


def test_fixed_length_and_determinism(generator):
    requests = [GenerationRequest("Describe.", _png(40))] * 3
    first = generator.generate(requests, Sampling(max_tokens=16, fixed_length=True))
    again = generator.generate(requests, Sampling(max_tokens=16, fixed_length=True))
    assert [g.output_tokens for g in first] == [16, 16, 16]
    assert [g.text for g in first] == [g.text for g in again]
