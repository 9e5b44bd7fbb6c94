"""Measure each sample: image size and shape, caption length and language, image-caption similarity.

This stage only measures; ``quality_filter`` decides. Keeping the two apart means thresholds can change
(and a release be re-cut) without recomputing anything, and every number a filter used is in the
record. Rule-based signals always run; ``clip_similarity`` needs an embedding model (role ``embed``)
and is skipped without one. Similarities are cached in the lake by (image, caption) so a re-run, or a
caption that did not change, costs no model call. Scores are replaced by name, so re-running is a no-op.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from medcurate.hashing import canonical_json, sha256_bytes, sha256_text
from medcurate.models.registry import load_embedder
from medcurate.schemas.record import set_score, to_batch
from medcurate.stages.base import StageContext, StageResult
from medcurate.stages.model_stage import ModelStage

CLIP_TASK = "clip_similarity"


@lru_cache(maxsize=1)
def _language_identifier() -> Any:
    """py3langid's model with normalised probabilities, loaded once per process (~0.5 s)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language_of(text: str | None) -> tuple[str | None, float | None]:
    """(ISO 639-1 code, probability) of ``text``; (None, None) when there is no text to judge."""
    if not text or not text.strip():
        return None, None
    code, probability = _language_identifier().classify(text)
    return str(code), float(probability)


def rule_signals(record: dict[str, Any]) -> dict[str, float]:
    """Image geometry and caption length; the source's size first (before any resize by normalize)."""
    image = record.get("image") or {}
    width = image.get("source_width") or image.get("width")
    height = image.get("source_height") or image.get("height")
    caption = (record.get("text") or {}).get("final_caption") or ""
    signals = {"caption.words": float(len(caption.split())), "caption.chars": float(len(caption))}
    if width and height:
        signals["image.min_side"] = float(min(width, height))
        signals["image.megapixels"] = width * height / 1e6
        signals["image.aspect_ratio"] = max(width, height) / min(width, height)
    return signals


def similarity_key(image_sha256: str, caption: str) -> str:
    """Cache key of one (image, caption) pair: what the similarity depends on, given the model."""
    return sha256_text(f"{image_sha256}\x1f{sha256_text(caption)}")


class QualitySignalsStage(ModelStage):
    """Params: ``role`` (model role, default ``embed``). Works without a model (rule signals only)."""

    name = "quality_signals"
    version = "1"
    role = "embed"
    model_optional = True  # rule signals need no model; only clip_similarity waits for one

    def process(self, batch: pa.RecordBatch, ctx: StageContext) -> StageResult:
        records = batch.to_pylist()
        details: list[dict[str, Any]] = [{} for _ in records]
        for record, facts in zip(records, details, strict=True):
            signals = rule_signals(record)
            for name, value in signals.items():
                set_score(record, name, value)
            language, confidence = language_of((record.get("text") or {}).get("final_caption"))
            quality = record["quality"] = dict(record.get("quality") or {})
            quality.update(language=language, language_confidence=confidence)
            facts.update(signals=sorted(signals), language=language)
        if self.model is not None:
            self._clip_similarity(records, details, ctx)
        extras = self.lineage_model() if self.model is not None else {}
        for record, facts in zip(records, details, strict=True):
            record["lineage"].append(self.event(ctx, "kept", **extras, **facts))
        return StageResult(to_batch(records), to_batch([]))

    def _clip_similarity(self, records: list[dict[str, Any]], details: list[dict], ctx: StageContext) -> None:
        """Cosine of image and caption embeddings for the whole batch; cached rows are not recomputed."""
        model = self.require_model()
        pairs: dict[int, tuple[str, bytes, str]] = {}
        for i, record in enumerate(records):
            data = (record.get("image") or {}).get("bytes")
            caption = ((record.get("text") or {}).get("final_caption") or "").strip()
            if not data or not caption:
                details[i]["clip_similarity"] = "skipped: no image or no caption"
                continue
            image_sha = record["image"].get("sha256") or sha256_bytes(data)
            pairs[i] = (similarity_key(image_sha, caption), data, caption)
        cache = self.cache(ctx, CLIP_TASK)
        cached = cache.get_many(key for key, _, _ in pairs.values()) if cache is not None else {}
        values = {key: float(row["value"]) for key, row in cached.items() if row.get("value") is not None}
        todo = {key: (data, caption) for key, data, caption in pairs.values() if key not in values}
        if todo:
            computed = self._embed_and_compare(list(todo.items()))
            values.update(computed)
            if cache is not None:
                cache.put(
                    [
                        {"key": key, "value": canonical_json(value), "attempts": 1, "run_id": ctx.run_id}
                        for key, value in computed.items()
                    ]
                )
        for i, (key, _, _) in pairs.items():
            set_score(records[i], CLIP_TASK, values[key], model.ref)
            details[i]["clip_similarity"] = "computed" if key in todo else "cached"

    def _embed_and_compare(self, items: list[tuple[str, tuple[bytes, str]]]) -> dict[str, float]:
        embedder = load_embedder(self.require_model())
        size = max(1, embedder.batch_size)
        out: dict[str, float] = {}
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            images = embedder.embed_images([data for _, (data, _) in chunk])
            texts = embedder.embed_texts([caption for _, (_, caption) in chunk])
            cosines = np.clip(
                np.sum(np.asarray(images, np.float64) * np.asarray(texts, np.float64), 1), -1, 1
            )
            out.update({key: float(c) for (key, _), c in zip(chunk, cosines, strict=True)})
        return out


__all__ = ["QualitySignalsStage", "language_of", "rule_signals"]
