"""The model interfaces every backend implements: generation (image + prompt -> text) and embedding.

Stages talk only to these, so the same caption or judge stage runs against a fleet of ``vllm serve``
servers over HTTP, a vLLM engine in this process, or transformers on a CPU, and tests exercise the
real stage code with a tiny random-weight model. Backends stay thin: batching policy, JSON validation,
retries of invalid output, OOM back-off and caching live once, in ``structured.py`` and the stages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Sampling:
    """Decoding parameters; part of every cache key, so equal parameters mean reusable results."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    #: Generate exactly ``max_tokens`` (benchmarks only: a fixed output length compares like with like).
    fixed_length: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> Sampling:
        values = dict(values or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown sampling parameter(s) {sorted(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class GenerationRequest:
    """One image (encoded bytes, or None for text-only) and the messages that ask about it.

    ``prompt`` holds no image placeholder: each backend puts the image where its chat format wants it.
    ``schema`` is the JSON schema the answer must satisfy; backends that can constrain decoding to it
    do (vLLM structured outputs, lm-format-enforcer for transformers), and every answer is validated
    afterwards regardless.
    """

    prompt: str
    image: bytes | None = None
    system: str | None = None
    schema: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class Generation:
    """What a backend returned for one request, before any parsing."""

    text: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None


class OutOfMemory(RuntimeError):  # noqa: N818 - named after the condition it reports
    """The accelerator ran out of memory on this batch; the caller halves the batch and goes on."""


class EndpointUnavailable(ConnectionError):
    """A model server cannot be reached; a ``ConnectionError`` so the flow's task retry applies."""


class Generator(ABC):
    """A loaded generation model. One per process and model (see ``registry``): loading is costly."""

    backend: ClassVar[str]

    #: Requests per ``generate`` call that the stage should aim for (the backend may batch further).
    batch_size: int = 8

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[Generation]:
        """One ``Generation`` per request, in order. Raises ``OutOfMemory`` or ``EndpointUnavailable``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model (GPU memory, connections)."""


class Embedder(ABC):
    """A CLIP-style encoder: images and texts into one space, L2-normalised float32 rows."""

    backend: ClassVar[str]
    batch_size: int = 32

    @abstractmethod
    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        """``(len(images), dim)`` unit vectors."""

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` unit vectors in the same space as the images."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model."""
