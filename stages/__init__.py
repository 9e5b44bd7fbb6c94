"""Stages: pure functions over Arrow batches of sample records (see ``base``)."""

from __future__ import annotations

from typing import Any

from medcurate.stages.base import GlobalStage, MapStage, Stage


def _registry() -> dict[str, type[Stage]]:
    # Imported here so that loading the contract does not pull in Pillow, imagehash, templates or torch.
    from medcurate.stages.allow import AllowStage
    from medcurate.stages.caption import CaptionStage
    from medcurate.stages.caption_dedup import CaptionDedupStage
    from medcurate.stages.caption_policy import CaptionPolicyStage
    from medcurate.stages.caption_repeats import CaptionRepeatsStage
    from medcurate.stages.decontaminate import DecontaminateStage
    from medcurate.stages.embed import EmbedStage
    from medcurate.stages.exact_dedup import ExactDedupStage
    from medcurate.stages.figure_kind import FigureKindStage
    from medcurate.stages.judge import JudgeStage
    from medcurate.stages.label_text import LabelTextStage
    from medcurate.stages.near_dedup import NearDedupStage
    from medcurate.stages.normalize import NormalizeStage
    from medcurate.stages.panel_rewrite import PanelRewriteStage
    from medcurate.stages.paraphrase import ParaphraseStage
    from medcurate.stages.quality_filter import QualityFilterStage
    from medcurate.stages.quality_signals import QualitySignalsStage
    from medcurate.stages.semantic_dedup import SemanticDedupStage
    from medcurate.stages.split import SplitStage

    stages = (
        NormalizeStage,
        LabelTextStage,
        FigureKindStage,
        AllowStage,
        SplitStage,
        ExactDedupStage,
        NearDedupStage,
        CaptionDedupStage,
        EmbedStage,
        SemanticDedupStage,
        DecontaminateStage,
        CaptionStage,
        PanelRewriteStage,
        ParaphraseStage,
        JudgeStage,
        CaptionPolicyStage,
        QualitySignalsStage,
        CaptionRepeatsStage,
        QualityFilterStage,
    )
    return {cls.name: cls for cls in stages}


def make_stage(name: str, params: dict[str, Any] | None) -> Stage:
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown stage {name!r}; known stages: {sorted(registry)}")
    return registry[name](dict(params or {}))


__all__ = ["GlobalStage", "MapStage", "Stage", "make_stage"]
