"""Nightly schedules: a pipeline config becomes a Prefect deployment with a cron schedule."""

from __future__ import annotations

from medcurate.config import PipelineConfig
from medcurate.lake import default_lake_uri
from medcurate.pipelines.flow import curate


def deployment_for(cfg: PipelineConfig, cron: str, lake: str | None = None):
    """A runner deployment of the curation flow; ``prefect.serve`` (or ``medcurate schedule``) runs it."""
    return curate.to_deployment(
        name=f"{cfg.name}-nightly",
        cron=cron,
        parameters={"config": cfg.model_dump(), "lake_uri": lake or default_lake_uri(cfg.lake)},
        description=cfg.description or f"medcurate pipeline {cfg.name}",
    )
