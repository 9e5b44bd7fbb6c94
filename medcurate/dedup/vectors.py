"""Image embeddings in the lake, keyed by image sha256, one namespace per embedding model.

Layout: ``state/vectors/<namespace>/part-<hash>.parquet`` with columns ``key`` (string) and ``vector``
(``fixed_size_list<float32, d>``); the namespace is ``image-<model cache namespace>``, so other weights
never mix into a search, and the same weights at another path share their vectors.

Why not a record column: every record field ships in every release shard's ``.json``, and a 512-d
float vector is ~10 KB of JSON per sample that no consumer of the release asked for. Vectors are also
keyed by what determines them (the image bytes and the model), not by sample: a re-run, another run or
another source with the same image embeds nothing again.

Stored like ``models.cache``, through ``lake.keyed_files``: one immutable file per batch, named by its
keys, a key written once never rewritten, lookups through a per-process key index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from medcurate.lake.keyed_files import KeyedFiles, PerProcess
from medcurate.lake.store import Lake
from medcurate.models.spec import ModelSpec

VECTOR_ROOT = "state/vectors"


def vector_namespace(model: ModelSpec) -> str:
    """The namespace of a model's image embeddings (its identity: name, role and revision)."""
    return f"image-{model.cache_namespace}"


def vector_table(keys: Sequence[str], vectors: np.ndarray) -> pa.Table:
    """``keys`` and their rows as a table of the store's schema."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
    return pa.table({"key": pa.array(list(keys), pa.string()), "vector": column})


def table_vectors(table: pa.Table) -> np.ndarray:
    """The ``vector`` column as a ``[n, d]`` float32 array (no Python objects per row)."""
    column = table.column("vector").combine_chunks()
    dim = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)


class VectorStore:
    """Append-only vectors of one namespace; safe to share between threads and processes."""

    def __init__(self, lake: Lake, namespace: str):
        self.lake = lake
        self.folder = f"{VECTOR_ROOT}/{namespace}"
        # Executors embed and the driver reads: an unknown key re-reads what others wrote since.
        self._files = KeyedFiles(lake, self.folder, "part")

    def __len__(self) -> int:
        return len(self._files)

    def missing(self, keys: Sequence[str]) -> list[str]:
        """The distinct ``keys`` with no vector yet, sorted."""
        index = self._files.index(keys, refresh_on_miss=True)
        return sorted({key for key in keys if key not in index})

    def read(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(``[len(keys), d]`` float32 vectors, bool mask of the keys found); rows not found are 0."""
        keys = list(keys)
        uniq, inverse = np.unique(np.array(keys, dtype=object), return_inverse=True)
        found = np.zeros(len(uniq), bool)
        out: np.ndarray | None = None
        for table in self._files.tables(keys, refresh_on_miss=True):
            rows = np.searchsorted(uniq, np.array(table.column("key").to_pylist(), dtype=object))
            vectors = table_vectors(table)
            if out is None:
                out = np.zeros((len(uniq), vectors.shape[1]), np.float32)
            elif out.shape[1] != vectors.shape[1]:
                raise ValueError(f"{self.folder}: mixed {vectors.shape[1]}-d and {out.shape[1]}-d vectors")
            out[rows], found[rows] = vectors, True
        if out is None:
            out = np.zeros((len(uniq), 0), np.float32)
        return out[inverse.reshape(-1)], found[inverse.reshape(-1)]

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> str | None:
        """Write the vectors of keys not stored yet as one immutable file; return it (None: nothing new).

        A key already stored keeps its first vector: the same weights on the same bytes give the same
        vector up to float noise, and readers must never see a value change under them.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise ValueError(f"need one vector row per key: {len(keys)} keys, shape {vectors.shape}")
        index = self._files.index(keys, refresh_on_miss=True)
        first: dict[str, int] = {}
        for row, key in enumerate(keys):
            if key not in index:
                first.setdefault(key, row)
        if not first:
            return None
        new_keys = sorted(first)
        return self._files.write(vector_table(new_keys, vectors[[first[k] for k in new_keys]]))


_STORES = PerProcess(VectorStore)


def vector_store(lake_uri: str, namespace: str) -> VectorStore:
    """The process's store object for a namespace (its index is read once per process)."""
    return _STORES.get(lake_uri, namespace)


def stored_vectors(
    stage: str, model: ModelSpec, lake_uri: str | None, keys: Sequence[str], labels: Sequence[str]
) -> np.ndarray:
    """The stored vector of each key (``[len(keys), d]``), for a global stage reading what ``embed``
    wrote; a missing one is a pipeline mistake, named with its fix (``labels``: what to name per key,
    e.g. sample ids)."""
    if lake_uri is None:
        raise RuntimeError(f"stage {stage!r} reads image vectors from the lake and needs one")
    vectors, found = vector_store(lake_uri, vector_namespace(model)).read(keys)
    if not found.all():
        missing = [label for label, ok in zip(labels, found.tolist(), strict=True) if not ok]
        raise RuntimeError(
            f"{stage}: {len(missing)} of {len(keys)} images have no vector from {model.ref} "
            f"(e.g. {missing[:3]}); run the 'embed' stage with the same embed model before "
            f"{stage!r} in the pipeline"
        )
    return vectors


__all__ = [
    "VECTOR_ROOT",
    "VectorStore",
    "stored_vectors",
    "table_vectors",
    "vector_namespace",
    "vector_store",
    "vector_table",
]
