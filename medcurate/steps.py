"""The steps of a curation run, as plain functions over the lake; ``pipelines/flow.py`` makes each a task.

Layout of one run (``run_id`` is derived from the config and the listed inputs, so re-running the
same thing resumes the same run and yields the same lineage):

    runs/<run_id>/<stage>/<source>/part-<hash>.parquet           active records after the stage
    runs/<run_id>/excluded/<stage>/<source>/part-<hash>.parquet  records the stage filtered/quarantined
    runs/<run_id>/ledger.json, runs/<run_id>/attempts/<time>.json

Part names hash the inputs they hold, so a resumed run recognises finished parts whatever else
changed, and a crash loses at most the part in flight.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from medcurate.config import PipelineConfig
from medcurate.engines import Engine, PartRef
from medcurate.engines.base import restrict, sort_records
from medcurate.hashing import canonical_json, sha256_json
from medcurate.lake import Catalogue, Lake, Ledger
from medcurate.lake.file_facts import FileFactsCache
from medcurate.models.spec import ModelSpec, resolve_model
from medcurate.release.changes import CurrentFacts
from medcurate.schemas.record import ACTIVE, QUARANTINED, RECORD_SCHEMA, lineage_event, validate_batch
from medcurate.sources import make_source
from medcurate.sources.base import INGEST_DETAILS, InputItem, Source, SourceContext
from medcurate.stages import make_stage
from medcurate.stages.base import GlobalStage, MapStage, Stage, StageContext, split_by_status
from medcurate.stages.model_stage import UsesModel

INGEST = "ingest"


@dataclass
class SourcePlan:
    name: str
    source: Source
    catalogue: Catalogue
    items: list[InputItem]
    new_items: list[InputItem]
    parts: list[str] = field(default_factory=list)  # active parts of this run, after the last stage so far


@dataclass
class RunPlan:
    run_id: str
    config_hash: str
    sources: list[SourcePlan]
    per_input_stages: list[MapStage]
    dataset_stages: list[Stage]
    #: The release name this run publishes to (dedup stages read its earlier versions).
    release: str | None = None
    #: Model stages left out for want of a model, with why ("caption: no model for role 'caption'").
    skipped_stages: list[str] = field(default_factory=list)


def resolve_models(config: PipelineConfig) -> dict[str, ModelSpec]:
    """Each configured role's model, checked and content-hashed (the revision goes into lineage)."""
    return {
        role: resolve_model(role, m.path, m.backend, m.revision, m.endpoint, m.options)
        for role, m in sorted(config.models.items())
    }


def build_stages(config: PipelineConfig) -> tuple[list[MapStage], list[Stage], list[str]]:
    """The configured stages with their models attached, split where the first global stage begins.

    Map stages before the first global one run once per input. A model stage whose role has no model
    is left out (unless it can run without one) and named in the third list.
    """
    models = resolve_models(config)
    stages, skipped = [], []
    for name, params in config.stages.items():
        stage = make_stage(name, params)
        if isinstance(stage, UsesModel):  # map and global model stages
            stage.model = models.get(stage.model_role)
            if stage.model is None and not stage.model_optional:
                skipped.append(f"{name}: no model for role {stage.model_role!r}")
                continue
        stages.append(stage)
    first_global = next((i for i, s in enumerate(stages) if isinstance(s, GlobalStage)), len(stages))
    return stages[:first_global], stages[first_global:], skipped


def processing_key(source: Source, per_input: list[MapStage]) -> str:
    """What the cached per-input work depends on besides the input itself: reader and stage configs.

    Changing a source's params or version, or a per-input stage's params or version, re-reads every
    input of that source; changing only dataset stages does not.
    """
    stages = [(stage.name, stage.version, stage.config_hash) for stage in per_input]
    return sha256_json([source.kind, source.version, source.params, stages])[:16]


def plan_run(config: PipelineConfig, lake: Lake) -> RunPlan:
    """List every source's inputs (hashing only files the catalogue does not know) and name the run."""
    per_input, dataset, skipped = build_stages(config)
    plans = []
    for source_cfg in config.sources:
        catalogue = Catalogue(lake, source_cfg.name)
        uri = source_cfg.uri if "://" in source_cfg.uri else str(Path(source_cfg.uri).resolve())
        ctx = SourceContext(
            stat_cache=catalogue.known_sha256,
            pseudonym_key=config.resolved_pseudonym_key(),
            history=catalogue.keys_at,
            file_facts=FileFactsCache.load(lake, source_cfg.name),
        )
        source = make_source(source_cfg.kind, source_cfg.name, uri, source_cfg.params, ctx)
        listed = tqdm(source.list_inputs(), desc=f"list {source_cfg.name}", unit="input", disable=None)
        processing = processing_key(source, per_input)
        items = [replace(item, key=sha256_json([item.key, processing])[:32]) for item in listed]
        ctx.file_facts.commit(lake, source_cfg.name)
        ctx.path_map.commit(lake, source_cfg.name)
        new_items = [item for item in items if item.key not in catalogue]
        plans.append(SourcePlan(source_cfg.name, source, catalogue, items, new_items))
    listing = {plan.name: sorted(item.key for item in plan.items) for plan in plans}
    # Stage hashes carry the attached models' revisions, which the config hash leaves out.
    stage_hashes = [stage.config_hash for stage in [*per_input, *dataset]]
    run_id = sha256_json([config.config_hash, listing, stage_hashes])[:16]
    return RunPlan(run_id, config.config_hash, plans, per_input, dataset, config.release.name, skipped)


def _part_name(keys: list[str]) -> str:
    return f"part-{sha256_json(sorted(keys))[:16]}.parquet"


def _write_outcome(lake: Lake, run_id: str, stage: str, group: str, part: str, table: pa.Table) -> str:
    """Write excluded rows, then active rows (the completion marker); return the active part."""
    active, excluded = split_by_status(table)
    if excluded.num_rows:
        lake.write_parquet(f"runs/{run_id}/excluded/{stage}/{group}/{part}", excluded)
    active_rel = f"runs/{run_id}/{stage}/{group}/{part}"
    lake.write_parquet(active_rel, active)
    return active_rel


def ingest_event(
    source: Source, run_id: str, record: dict[str, Any], details: dict[str, Any] | None
) -> dict[str, Any]:
    return lineage_event(
        f"{INGEST}.{source.kind}",
        source.version,
        sha256_json({"kind": source.kind, "params": source.params})[:16],
        run_id,
        "kept" if record["status"] == ACTIVE else record["status"],
        record["status_reason"],
        details=canonical_json(details) if details else None,
    )


def ingest(lake: Lake, plan: SourcePlan, run_id: str, part_size: int) -> list[str]:
    """Read new inputs into record parts (raw image bytes); bad inputs become quarantined records."""
    parts = []
    chunks = [plan.new_items[i : i + part_size] for i in range(0, len(plan.new_items), part_size)]
    for chunk in tqdm(chunks, desc=f"ingest {plan.name}", unit="part", disable=None):
        name = _part_name([item.key for item in chunk])
        active_rel = f"runs/{run_id}/{INGEST}/{plan.name}/{name}"
        if not lake.exists(active_rel):
            records = []
            for item in chunk:
                born = plan.source.read(item) or [
                    plan.source.quarantined_record(item, "empty_input: no sample found in this input")
                ]
                item_details = plan.source.details(item) or {}
                for record in born:
                    details = {**item_details, **record.pop(INGEST_DETAILS, {})}
                    record["source"]["input_key"] = item.key
                    if record["status"] == QUARANTINED:
                        record["status_stage"] = f"{INGEST}.{plan.source.kind}"
                    record["lineage"].append(ingest_event(plan.source, run_id, record, details))
                    records.append(record)
            table = sort_records(pa.Table.from_pylist(records, RECORD_SCHEMA))
            validate_batch(table, f"source {plan.name!r}")
            _write_outcome(lake, run_id, INGEST, plan.name, name, table)
        parts.append(active_rel)
    return parts


def apply_map_stage(
    lake: Lake, engine: Engine, stage: MapStage, group: str, parts: list[PartRef], run_id: str
) -> list[str]:
    """Run a map stage over parts; parts already done in this run are skipped (resumption)."""
    ctx = StageContext(run_id=run_id, lake_uri=lake.root_uri)
    outputs = []
    for part in tqdm(parts, desc=stage.name, unit="part", disable=None):
        # A whole part keeps its name from stage to stage (the catalogue finds its exclusions by it);
        # a restricted part is a new selection and gets a name of its own.
        name = (
            part.path.rsplit("/", 1)[1]
            if part.sample_ids is None
            else _part_name([part.path, *part.sample_ids])
        )
        active_rel = f"runs/{run_id}/{stage.name}/{group}/{name}"
        if not lake.exists(active_rel):
            table = engine.map_part(stage, part, ctx)
            _write_outcome(lake, run_id, stage.name, group, name, table)
        outputs.append(active_rel)
    return outputs


def commit_catalogue(lake: Lake, plan: SourcePlan, run_id: str, stage_names: list[str]) -> None:
    """Record, per new input, what became of each of its records and which part holds it."""
    items = {item.key: item for item in plan.new_items}
    for final_part in plan.parts:
        name = final_part.rsplit("/", 1)[1]
        locations = [final_part] + [
            f"runs/{run_id}/excluded/{stage}/{plan.name}/{name}" for stage in [INGEST, *stage_names]
        ]
        rows = []
        for rel in locations:
            if not lake.exists(rel):
                continue
            columns = ["sample_id", "status", "status_reason", "status_stage", "source"]
            for record in lake.read_parquet(rel, columns=columns).to_pylist():
                item = items[record["source"]["input_key"]]
                rows.append(
                    {
                        "source": plan.name,
                        "input_key": item.key,
                        "sample_id": record["sample_id"],
                        "uri": item.uri,
                        "size": item.size,
                        "mtime_ns": item.mtime_ns,
                        "sha256": item.sha256,
                        "status": record["status"],
                        "status_reason": record["status_reason"],
                        "status_stage": record["status_stage"],
                        "part": rel,
                        "run_id": run_id,
                    }
                )
        plan.catalogue.commit(f"{run_id}-{name.removesuffix('.parquet')}", rows)


def assemble(plans: list[SourcePlan], ledger: Ledger) -> list[PartRef]:
    """Active records of every listed input (new or cached), as restricted parts; count the rest."""
    by_part: dict[str, set[str]] = {}
    for plan in plans:
        counts = ledger.source(plan.name)
        counts.inputs, counts.new_inputs = len(plan.items), len(plan.new_items)
        keys = sorted({item.key for item in plan.items})
        lost = [key for key in keys if key not in plan.catalogue]
        if lost:
            raise RuntimeError(
                f"source {plan.name}: {len(lost)} listed input(s) have no catalogue entry: {lost[:3]}"
            )
        for entry in plan.catalogue.entries(keys):
            counts.candidates += 1
            if entry.status == ACTIVE:
                by_part.setdefault(entry.part, set()).add(entry.sample_id)
            else:
                counts.count(entry.status, entry.status_reason)
    return [PartRef(path, frozenset(ids)) for path, ids in sorted(by_part.items())]


def apply_dataset_stage(
    lake: Lake,
    engine: Engine,
    stage: Stage,
    parts: list[PartRef],
    run_id: str,
    ledger: Ledger,
    release: str | None = None,
) -> list[PartRef]:
    """A stage over the whole dataset: fit first if global, then map every part; count exclusions."""
    ctx = StageContext(run_id=run_id, lake_uri=lake.root_uri, release=release)
    if isinstance(stage, GlobalStage):
        state = stage.fit(engine.fit_table(parts, list(stage.fit_columns)), ctx)
        mapper = stage.bind(state)
    else:
        mapper = stage
    outputs = apply_map_stage(lake, engine, mapper, "dataset", parts, run_id)
    if mapper.derives_records:
        _count_derived(lake, stage.name, outputs, ledger)
    for rel in outputs:
        name = rel.rsplit("/", 1)[1]
        excluded_rel = f"runs/{run_id}/excluded/{stage.name}/dataset/{name}"
        if lake.exists(excluded_rel):
            for row in lake.read_parquet(
                excluded_rel, columns=["source", "status", "status_reason"]
            ).to_pylist():
                ledger.source(row["source"]["dataset"]).count(row["status"], row["status_reason"])
    return [PartRef(rel) for rel in outputs]


def _count_derived(lake: Lake, stage_name: str, outputs: list[str], ledger: Ledger) -> None:
    """Add the samples this stage made from others to their source's ``derived`` count."""
    for rel in outputs:
        table = lake.read_parquet(rel, columns=["source", "lineage"])
        for row in table.to_pylist():
            last = row["lineage"][-1] if row["lineage"] else {}
            if last.get("stage") == stage_name and last.get("decision") == "derived":
                ledger.source(row["source"]["dataset"]).derived += 1


#: Wraps one step before it is called, given a name for this call (the flow makes it a Prefect task).
StepWrapper = Callable[[Callable[..., Any], str], Callable[..., Any]]


def _as_is(step: Callable[..., Any], name: str) -> Callable[..., Any]:
    return step


def run_stages(
    lake: Lake, engine: Engine, plan: RunPlan, part_size: int, wrap: StepWrapper = _as_is
) -> tuple[list[PartRef], Ledger]:
    """Every step of a run before the release, in order: per source, ingest its new inputs, run the
    per-input stages and commit its catalogue; then the dataset stages over everything listed.

    One sequence for the Prefect flow (``wrap`` makes each call a named task), tests and benchmarks.
    """
    for source in plan.sources:
        source.parts = wrap(ingest, f"ingest-{source.name}")(lake, source, plan.run_id, part_size)
        for stage in plan.per_input_stages:
            source.parts = wrap(apply_map_stage, f"{stage.name}-{source.name}")(
                lake, engine, stage, source.name, [PartRef(p) for p in source.parts], plan.run_id
            )
        wrap(commit_catalogue, f"catalogue-{source.name}")(
            lake, source, plan.run_id, [s.name for s in plan.per_input_stages]
        )
    ledger = Ledger(plan.run_id)
    parts = wrap(assemble, "assemble")(plan.sources, ledger)
    for stage in plan.dataset_stages:
        parts = wrap(apply_dataset_stage, stage.name)(
            lake, engine, stage, parts, plan.run_id, ledger, plan.release
        )
    return parts, ledger


def iter_sorted_records(lake: Lake, parts: list[PartRef], batch_rows: int = 256) -> Iterator[dict[str, Any]]:
    """All active records of the parts, merged in sample_id order without loading them all at once."""

    def one_part(part: PartRef) -> Iterator[dict[str, Any]]:
        table = restrict(lake.read_parquet(part.path), part.sample_ids).sort_by("sample_id")
        for batch in table.to_batches(max_chunksize=batch_rows):
            yield from batch.to_pylist()

    yield from heapq.merge(*(one_part(part) for part in parts), key=lambda record: record["sample_id"])


def current_facts(
    lake: Lake, plans: list[SourcePlan], run_id: str, dataset_stages: list[str]
) -> CurrentFacts:
    """What this run knows to explain a release's changes: listings, old inputs, exclusions."""
    facts = CurrentFacts()
    catalogues = {plan.name: plan.catalogue for plan in plans}
    for plan in plans:
        for item in plan.items:
            facts.listed_keys.add(item.key)
            details = plan.source.details(item) or {}
            scalars = {k: v for k, v in details.items() if isinstance(v, str | int | float | bool)}
            facts.listed_by_uri[(plan.name, item.uri)] = {"input_key": item.key, "facts": scalars}
        for entry in plan.catalogue.entries(sorted({item.key for item in plan.items})):
            if entry.status != ACTIVE:
                facts.excluded[entry.sample_id] = entry.status_reason or entry.status
    for stage in dataset_stages:
        for rel in lake.walk_files(f"runs/{run_id}/excluded/{stage}", suffix=".parquet"):
            for row in lake.read_parquet(rel, columns=["sample_id", "status_reason"]).to_pylist():
                facts.excluded[row["sample_id"]] = row["status_reason"]

    def input_uri(dataset: str, key: str) -> str | None:
        catalogue = catalogues.get(dataset)
        entries = catalogue.entries([key]) if catalogue else []
        return entries[0].uri if entries else None

    facts.input_uri = input_uri
    return facts
