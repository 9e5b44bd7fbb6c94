"""The curation flow: each stage a Prefect task, built from a pipeline YAML, runnable with no server.

Tasks retry transient I/O errors only (a missing network share, a flaky object store); a bug or a
schema violation fails at once. State lives in the lake, not in Prefect: tasks pass lake paths, so a
flow killed at any point resumes from the parts already written.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from medcurate.config import PipelineConfig
from medcurate.engines import make_engine
from medcurate.lake import Lake, Ledger, default_lake_uri
from medcurate.models.registry import unload_all
from medcurate.release.builder import ReleaseSettings, build_release
from medcurate.steps import (
    apply_dataset_stage,
    apply_map_stage,
    assemble,
    commit_catalogue,
    current_facts,
    ingest,
    iter_sorted_records,
    plan_run,
    run_stages,
)

TRANSIENT = (ConnectionError, TimeoutError, InterruptedError, BlockingIOError)


def _is_transient(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:  # noqa: BLE001 - anything else is not worth retrying
        return False
    return False


def _step(fn: Any, name: str):
    """A lake step as a Prefect task: state is in the lake, so no Prefect caching or result storage."""
    return task(
        fn,
        name=name,
        retries=2,
        retry_delay_seconds=2,
        retry_condition_fn=_is_transient,
        persist_result=False,
        cache_policy=NO_CACHE,
    )


plan_task = _step(plan_run, "plan")
ingest_task = _step(ingest, "ingest")
map_stage_task = _step(apply_map_stage, "map-stage")
catalogue_task = _step(commit_catalogue, "catalogue")
assemble_task = _step(assemble, "assemble")
dataset_stage_task = _step(apply_dataset_stage, "dataset-stage")
release_task = _step(build_release, "release")
_TASKS = {
    ingest: ingest_task,
    apply_map_stage: map_stage_task,
    commit_catalogue: catalogue_task,
    assemble: assemble_task,
    apply_dataset_stage: dataset_stage_task,
}


def _as_task(step: Any, name: str) -> Any:
    """The step's Prefect task, named for this call (ingest-<source>, <stage>-<source>, ...)."""
    return _TASKS[step].with_options(name=name)


@dataclass
class RunSummary:
    run_id: str
    release_name: str
    release_version: str
    release_path: str
    content_hash: str
    published: bool
    sample_count: int
    ledger: dict[str, Any]
    skipped_stages: list[str]

    @property
    def quarantined(self) -> int:
        return sum(self.ledger["totals"]["quarantined"].values())

    @property
    def filtered(self) -> int:
        return sum(self.ledger["totals"]["filtered"].values())


@flow(name="medcurate", log_prints=True, persist_result=False, validate_parameters=False)
def curate(config: dict[str, Any], lake_uri: str | None = None) -> RunSummary:
    """Run a pipeline (a ``PipelineConfig`` as a dict) against a lake; return what it released."""
    started = time.time()
    cfg = PipelineConfig.model_validate(config)
    lake = Lake(lake_uri or default_lake_uri(cfg.lake))
    logger = get_run_logger()
    plan = plan_task(cfg, lake)
    logger.info(
        "run %s: %s",
        plan.run_id,
        ", ".join(f"{p.name}: {len(p.items)} inputs, {len(p.new_items)} new" for p in plan.sources),
    )
    for skipped in plan.skipped_stages:
        logger.warning("skipped model stage %s (attach one with --model ROLE=PATH)", skipped)
    engine = make_engine(cfg.engine.kind, lake, cfg.engine.batch_size, cfg.engine.spark.model_dump())
    try:
        parts, ledger = run_stages(lake, engine, plan, cfg.engine.part_size, _as_task)
    finally:
        engine.close()
        unload_all()  # free accelerator memory held by in-process models

    settings = ReleaseSettings(**cfg.release.model_dump())
    release_records = _count_released(iter_sorted_records(lake, parts), ledger)
    outcome = release_task(
        lake,
        settings,
        release_records,
        config={
            **cfg.model_dump(exclude={"lake", "pseudonym_key", "models"}),
            "models": _model_identities(plan),
        },
        config_hash=cfg.config_hash,
        run_id=plan.run_id,
        ledger=ledger.as_dict,
        facts=lambda: current_facts(lake, plan.sources, plan.run_id, [s.name for s in plan.dataset_stages]),
    )
    ledger.check()
    lake.write_json(f"runs/{plan.run_id}/ledger.json", ledger.as_dict())
    lake.write_json(
        f"runs/{plan.run_id}/attempts/{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}.json",
        {
            "run_id": plan.run_id,
            "pipeline": cfg.name,
            "engine": cfg.engine.kind,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "seconds": round(time.time() - started, 3),
            "release": {"version": outcome.release.version, "published": outcome.published},
        },
    )
    summary = RunSummary(
        run_id=plan.run_id,
        release_name=outcome.release.name,
        release_version=outcome.release.version,
        release_path=lake.uri(outcome.release.path).removeprefix("file://"),
        content_hash=outcome.release.content_hash,
        published=outcome.published,
        sample_count=outcome.release.info["sample_count"],
        ledger=ledger.as_dict(),
        skipped_stages=plan.skipped_stages,
    )
    logger.info(
        "release %s %s (%s): %d samples, %d filtered, %d quarantined",
        summary.release_name,
        summary.release_version,
        "new" if summary.published else "unchanged",
        summary.sample_count,
        summary.filtered,
        summary.quarantined,
    )
    return summary


def _model_identities(plan) -> dict[str, dict[str, str]]:
    """Role -> model name, revision and backend of the models this run used (no local paths)."""
    found = {}
    for stage in [*plan.per_input_stages, *plan.dataset_stages]:
        model = getattr(stage, "model", None)
        if model is not None:
            found[model.role] = {**model.identity(), "backend": model.backend}
    return dict(sorted(found.items()))


def _count_released(records, ledger: Ledger):
    for record in records:
        ledger.source(record["source"]["dataset"]).released += 1
        yield record
