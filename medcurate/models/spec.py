"""Which model plays which role, and its identity: a name and a revision hashed from its files.

A model is loaded from a local path only (never a hub). Its revision is the sha256 of every file
under that path (names and contents), so lineage and cache keys name the exact weights, and a
copy of the same model at another path is the same model. For the HTTP backend the weights live on
the server; the revision is hashed from the same path when this machine can read it (a shared
volume) and must otherwise be given in the config.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from medcurate.hashing import CHUNK, sha256_json

ROLES = ("caption", "judge", "embed")
GENERATION_BACKENDS = ("transformers", "vllm", "http")
EMBEDDING_BACKENDS = ("transformers",)


class ModelError(ValueError):
    """A model is misconfigured (unknown role or backend, missing path); the message says how to fix it."""


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: what to load, how, and what to call it in lineage and cache keys."""

    role: str
    path: str
    backend: str
    revision: str
    endpoint: str | None = None
    #: Backend options (device, dtype, batch_size, concurrency, timeout_s, ...); not part of the identity.
    options: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        return Path(self.path.rstrip("/")).name or self.path

    @property
    def ref(self) -> str:
        """``name@revision``: what lineage ``model`` fields and caption authors say."""
        return f"{self.name}@{self.revision[:12]}"

    def identity(self) -> dict[str, str]:
        """What results depend on: the weights, not where they lie or which backend ran them."""
        return {"role": self.role, "name": self.name, "revision": self.revision}

    @property
    def cache_namespace(self) -> str:
        return sha256_json(self.identity())[:16]


def parse_model_option(text: str) -> tuple[str, str, str | None]:
    """``ROLE=PATH[@backend]`` from the command line -> (role, path, backend or None)."""
    role, sep, rest = text.partition("=")
    if not sep or not role or not rest:
        raise ModelError(f"--model expects ROLE=PATH[@backend], got {text!r}")
    path, at, backend = rest.rpartition("@")
    if not at or backend not in (*GENERATION_BACKENDS, *EMBEDDING_BACKENDS):
        path, backend = rest, None
    if role not in ROLES:
        raise ModelError(f"--model {text!r}: unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role, path, backend


@lru_cache(maxsize=64)
def _revision_of(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    """sha256 over (relative name, file sha256) of every file; cached per unchanged listing."""
    outer = hashlib.sha256()
    root = Path(path)
    for rel, _size, _mtime in stamp:
        inner = hashlib.sha256()
        with open(root / rel, "rb") as handle:
            while chunk := handle.read(CHUNK):
                inner.update(chunk)
        outer.update(f"{rel}\x1f{inner.hexdigest()}\n".encode())
    return outer.hexdigest()


def model_revision(path: str | os.PathLike[str]) -> str:
    """The content hash of a model folder (or single file), hidden files and folders excluded."""
    root = Path(path)
    if not root.exists():
        raise ModelError(f"model path {root} does not exist (models load from a local path only)")
    if root.is_file():
        files = [root]
        base = root.parent
    else:
        base = root
        files = [
            p
            for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ]
    if not files:
        raise ModelError(f"model path {root} holds no files")
    stamp = tuple((str(p.relative_to(base)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _revision_of(str(base), stamp)


def resolve_model(
    role: str,
    path: str,
    backend: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Check a configured model and compute its revision; every error names the fix."""
    if role not in ROLES:
        raise ModelError(f"unknown model role {role!r}; roles are {', '.join(ROLES)}")
    allowed = EMBEDDING_BACKENDS if role == "embed" else GENERATION_BACKENDS
    backend = backend or "transformers"
    if backend not in allowed:
        raise ModelError(f"role {role!r} cannot use backend {backend!r}; use one of {', '.join(allowed)}")
    if backend == "http" and not endpoint:
        raise ModelError(f"model {role}: the http backend needs an endpoint (e.g. http://gpu-01:8000/v1)")
    if revision is None:
        if backend == "http" and not Path(path).exists():
            raise ModelError(
                f"model {role}: {path} is not readable here, so its revision cannot be hashed; "
                "give models.<role>.revision (the served weights' content hash or commit)"
            )
        revision = model_revision(path)
    return ModelSpec(role, str(path), backend, revision, endpoint, dict(options or {}))
