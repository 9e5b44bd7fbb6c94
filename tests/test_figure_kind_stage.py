"""The figure_kind stage: classifies document figures from caption and pixels, leaves other records alone."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from medcurate.schemas.record import new_record, to_batch
from medcurate.stages import make_stage
from medcurate.stages.base import StageContext, run_map_stage

CTX = StageContext(run_id="test")


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _ct_like() -> bytes:
    yy, xx = np.mgrid[:128, :128]
    body = ((xx - 64) ** 2 / 50**2 + (yy - 64) ** 2 / 40**2) < 1
    noise = np.random.default_rng(0).integers(0, 40, (128, 128))
    return _png(np.where(body, 140 + noise, 5).astype(np.uint8))


def _figure(sample_id: str, caption: str, data: bytes) -> dict:
    return new_record(
        sample_id,
        image={"bytes": data},
        text={"source_caption": caption},
        figure={"panels": [], "citing": []},
    )


def test_figures_get_kind_modality_and_evidence_other_records_pass():
    stage = make_stage("figure_kind", {})
    chart = np.full((96, 128, 3), 255, np.uint8)
    chart[40:90, 20:40] = (30, 90, 200)
    batch = to_batch(
        [
            _figure("ct", "Axial contrast-enhanced CT shows a hypodense liver lesion.", _ct_like()),
            _figure("km", "Kaplan-Meier survival curves by treatment arm.", _png(chart)),
            new_record("labeled", image={"bytes": _ct_like()}, medical={"modality": "XR", "labels": []}),
        ]
    )
    result = run_map_stage(stage, batch, CTX)
    records = {r["sample_id"]: r for r in result.kept.to_pylist()}
    assert records["ct"]["figure"]["kind"] == "medical_image"
    assert records["ct"]["medical"]["modality"] == "ct"
    assert records["km"]["figure"]["kind"] == "chart" and records["km"]["medical"]["modality"] is None
    assert records["ct"]["figure"]["kind_method"] == "heuristic-v1"
    assert 0 < records["ct"]["figure"]["kind_confidence"] <= 1
    assert json.loads(records["ct"]["lineage"][-1]["details"])["evidence"]
    assert records["labeled"]["figure"] is None and records["labeled"]["medical"]["modality"] == "XR"


def test_unknown_classifier_is_refused():
    with pytest.raises(ValueError, match="unknown classifier"):
        make_stage("figure_kind", {"classifier": "no-such-model"})
