"""Embed each record's image with the ``embed`` model into the lake's vector store (a map stage).

This is the partitioned half of semantic dedup: it runs where the model is (Spark executors, one
whole partition per call so the embedder batches it), and ``semantic_dedup``'s ``fit`` then reads the
vectors on the driver. Vectors go to ``medcurate.dedup.vectors`` keyed by image sha256, never into the
record (it ships in every shard's ``.json``); an image already in the store costs no model call, so a
re-run, or the same image in another source or run, embeds nothing. Records pass unchanged apart from
one lineage event naming the model and whether their vector was computed or already stored.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa

from medcurate.dedup.vectors import VectorStore, vector_namespace, vector_store
from medcurate.models.registry import load_embedder
from medcurate.schemas.record import to_batch
from medcurate.stages.base import StageContext, StageResult
from medcurate.stages.model_stage import ModelStage

#: Vectors per store file: few enough files for 1M images (~500), little lost to a crash mid-partition.
FLUSH_ROWS = 2048


def image_key(record: dict[str, Any]) -> str | None:
    """The store key of a record's image (its sha256), None when it has no image to embed."""
    image = record.get("image") or {}
    return image.get("sha256") if image.get("bytes") else None


class EmbedStage(ModelStage):
    """Params: ``role`` (model role, default ``embed``). Needs a lake to keep the vectors in."""

    name = "embed"
    version = "1"
    role = "embed"
    known_params = ("role",)
    whole_partition: ClassVar[bool] = True

    def store(self, ctx: StageContext) -> VectorStore:
        if ctx.lake_uri is None:
            raise RuntimeError(f"stage {self.name!r} keeps vectors in the lake and runs only with one")
        return vector_store(ctx.lake_uri, vector_namespace(self.require_model()))

    def process(self, batch: pa.RecordBatch, ctx: StageContext) -> StageResult:
        records = batch.to_pylist()
        store = self.store(ctx)
        keys = [image_key(record) for record in records]
        todo = set(store.missing([key for key in keys if key]))
        if todo:
            self._embed(records, keys, todo, store)
        extras = self.lineage_model()
        for record, key in zip(records, keys, strict=True):
            state = "skipped: no image" if key is None else "computed" if key in todo else "stored"
            record["lineage"].append(self.event(ctx, "kept", **extras, embedding=state))
        return StageResult(to_batch(records), to_batch([]))

    def _embed(
        self, records: list[dict[str, Any]], keys: list[str | None], todo: set[str], store: VectorStore
    ) -> None:
        """Embed one image per missing key, in the embedder's batches, flushing every FLUSH_ROWS."""
        embedder = load_embedder(self.require_model())
        data_of = {key: rec["image"]["bytes"] for rec, key in zip(records, keys, strict=True) if key in todo}
        ordered = sorted(data_of)
        for start in range(0, len(ordered), FLUSH_ROWS):
            chunk = ordered[start : start + FLUSH_ROWS]
            store.put(chunk, embedder.embed_images([data_of[key] for key in chunk]))


__all__ = ["EmbedStage", "image_key"]
