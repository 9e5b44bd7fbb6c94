"""One loaded model per process and model: a Spark executor's Python worker loads its engine once and
reuses it for every partition it is fed (workers are reused between tasks), and in-process runs share
it across stages and roles: the same weights attached as both caption and judge are loaded once."""

from __future__ import annotations

import threading
from importlib import import_module

from medcurate.hashing import canonical_json
from medcurate.models.base import Embedder, Generator
from medcurate.models.spec import ModelError, ModelSpec

GENERATORS = {
    "transformers": "medcurate.models.transformers_backend:TransformersGenerator",
    "http": "medcurate.models.http_backend:HttpGenerator",
    "vllm": "medcurate.models.vllm_backend:VllmGenerator",
}
EMBEDDERS = {
    "transformers": "medcurate.models.transformers_backend:TransformersEmbedder",
}

_loaded: dict[tuple[str, ...], Generator | Embedder] = {}
_lock = threading.Lock()


def _class(table: dict[str, str], backend: str):
    if backend not in table:
        raise ModelError(f"no backend {backend!r}; known: {', '.join(sorted(table))}")
    module, _, name = table[backend].partition(":")
    try:
        return getattr(import_module(module), name)
    except ImportError as exc:
        hint = " (install the 'gpu' extra on a GPU node: pip install 'medcurate[gpu]')"
        hint = hint if backend == "vllm" else ""
        raise ModelError(f"backend {backend!r} cannot be imported: {exc}{hint}") from exc


def model_key(kind: str, spec: ModelSpec) -> tuple[str, ...]:
    """What makes two loaded models the same: the weights and how they are run, not the role."""
    return (
        kind,
        spec.path,
        spec.backend,
        spec.revision,
        str(spec.endpoint),
        canonical_json(dict(spec.options)),
    )


def _load(kind: str, table: dict[str, str], spec: ModelSpec):
    key = model_key(kind, spec)
    with _lock:
        if key not in _loaded:
            _loaded[key] = _class(table, spec.backend)(spec)
        return _loaded[key]


def load_generator(spec: ModelSpec) -> Generator:
    return _load("generator", GENERATORS, spec)


def load_embedder(spec: ModelSpec) -> Embedder:
    return _load("embedder", EMBEDDERS, spec)


def unload_all() -> None:
    """Close every model this process loaded (end of a run, or tests)."""
    with _lock:
        for model in _loaded.values():
            model.close()
        _loaded.clear()
