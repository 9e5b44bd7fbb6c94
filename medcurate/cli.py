"""The ``medcurate`` command line.

Every command takes ``--lake`` (else ``MEDCURATE_LAKE``, else the pipeline's ``lake``, else ``./lake``).
``run`` exits 0 when the run completed, quarantined inputs included: they are reported, not fatal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import pyarrow.parquet as pq
import typer

# Prefect must not phone home (no network here) and should stay quiet unless asked.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

app = typer.Typer(
    help="Curate medical image-text corpora into versioned WebDataset releases.", no_args_is_help=True
)

LakeOption = Annotated[
    str | None, typer.Option("--lake", help="Lake root URI (default: MEDCURATE_LAKE or ./lake)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
ModelOption = Annotated[
    list[str],
    typer.Option("--model", help="Attach a model to a role: ROLE=PATH[@backend] (caption|judge|embed)"),
]


def _lake(uri: str | None, configured: str | None = None):
    from medcurate.lake import Lake, default_lake_uri

    return Lake(uri or default_lake_uri(configured))


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load(pipeline: Path, overrides: list[str], inputs: list[str], models: list[str] = ()):
    from medcurate.config import ConfigError, load_pipeline

    try:
        return load_pipeline(pipeline, overrides, inputs, models)
    except ConfigError as exc:
        _fail(str(exc))


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file")],
    input: Annotated[  # noqa: A002
        list[str], typer.Option("--input", help="URI, or NAME=URI for one source or evaluation set")
    ] = [],  # noqa: B006
    lake: LakeOption = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override a config value: dotted.key=value")] = [],  # noqa: B006
    model: Annotated[
        list[str],
        typer.Option("--model", help="Attach a model to a role: ROLE=PATH[@backend] (caption, judge, embed)"),
    ] = [],  # noqa: B006
    as_json: JsonOption = False,
) -> None:
    """Run a pipeline: ingest new inputs, apply stages, publish a release if its content changed."""
    cfg = _load(pipeline, set_, input, model)
    from medcurate.lake import default_lake_uri
    from medcurate.pipelines.flow import curate
    from medcurate.sources import SourceContext, make_source

    ctx = SourceContext(stat_cache=lambda *_: None, pseudonym_key=cfg.resolved_pseudonym_key())
    for src in cfg.sources:  # a config mistake (params, missing key) is told before any flow starts
        try:
            make_source(src.kind, src.name, src.uri, src.params, ctx)
        except ValueError as exc:
            _fail(str(exc))
    from medcurate.steps import resolve_models

    try:  # a missing model path or unknown backend is told before any flow starts
        resolve_models(cfg)
    except ValueError as exc:
        _fail(str(exc))

    summary = curate(cfg.model_dump(), lake or default_lake_uri(cfg.lake))
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(summary), indent=2, sort_keys=True))
        return
    totals = summary.ledger["totals"]
    typer.echo(f"run {summary.run_id}: {totals['inputs']} inputs ({totals['new_inputs']} new)")
    typer.echo(
        f"release {summary.release_name} {summary.release_version} "
        f"({'published' if summary.published else 'unchanged'}): {summary.sample_count} samples"
    )
    typer.echo(f"  path:          {summary.release_path}")
    typer.echo(f"  content hash:  {summary.content_hash}")
    typer.echo(f"  filtered:      {summary.filtered} {totals['filtered']}")
    typer.echo(f"  quarantined:   {summary.quarantined} {totals['quarantined']}")
    for skipped in summary.skipped_stages:
        typer.echo(f"  skipped:       {skipped} (attach one with --model ROLE=PATH)")


@app.command("sample-corpus")
def sample_corpus(directory: Annotated[Path, typer.Argument(help="Where to write the corpus")]) -> None:
    """Write the bundled, deterministic sample corpus (synthetic, format-real, no network)."""
    from medcurate.samplecorpus import write_sample_corpus

    for name, path in write_sample_corpus(directory).items():
        typer.echo(f"{name}: {path}")


@app.command("tiny-model")
def tiny_model(
    directory: Annotated[Path, typer.Argument(help="Where to write the model folder")],
    kind: Annotated[str, typer.Option(help="vlm (caption/judge roles) or clip (embed role)")] = "vlm",
    seed: Annotated[int, typer.Option(help="Weight seed; the same seed writes identical files")] = 0,
) -> None:
    """Write a tiny random-weight model for smoke runs anywhere (no download): its answers are noise."""
    from medcurate.models.tiny import write_tiny_clip, write_tiny_vlm

    writers = {"vlm": write_tiny_vlm, "clip": write_tiny_clip}
    if kind not in writers:
        _fail(f"--kind must be one of {sorted(writers)}")
    path = writers[kind](directory, seed=seed)
    role = "caption" if kind == "vlm" else "embed"
    typer.echo(f"{path}\nuse it with: medcurate run PIPELINE --model {role}={path}")


@app.command("serve-model")
def serve_model(
    path: Annotated[Path, typer.Argument(help="Local model folder")],
    backend: Annotated[str, typer.Option(help="transformers (CPU/GPU) or vllm")] = "transformers",
    host: Annotated[str, typer.Option(help="Bind address (loopback unless you mean it)")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    name: Annotated[str | None, typer.Option(help="Served model name (default: the folder name)")] = None,
    option: Annotated[list[str], typer.Option("--option", help="Backend option KEY=VALUE (YAML value)")] = [],  # noqa: B006
) -> None:
    """Serve a local model over the OpenAI-compatible API `vllm serve` speaks (for machines without vLLM)."""
    import yaml

    from medcurate.models.server import serve
    from medcurate.models.spec import ModelError, resolve_model

    options = {}
    for item in option:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--option expects KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    try:
        spec = resolve_model("caption", str(path), backend, options=options)
    except ModelError as exc:
        _fail(str(exc))
    serve(spec, host, port, name)


@app.command()
def releases(lake: LakeOption = None, as_json: JsonOption = False) -> None:
    """List releases with name, version, path, sample count and content hash."""
    from medcurate.release.catalog import list_releases

    store = _lake(lake)
    rows = [release.summary(store) for release in list_releases(store)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no releases in {store.root_uri}")
    for row in rows:
        hash_prefix = row["content_hash"][:16]
        typer.echo(f"{row['name']} {row['version']}  {row['samples']} samples  {hash_prefix}  {row['path']}")


@app.command()
def verify(
    release_path: Annotated[Path, typer.Argument(help="A release folder")], as_json: JsonOption = False
) -> None:
    """Re-check every checksum of a release; exit 1 on any mismatch."""
    from medcurate.release.catalog import verify_release

    problems = verify_release(release_path)
    if as_json:
        typer.echo(
            json.dumps({"release": str(release_path), "ok": not problems, "problems": problems}, indent=2)
        )
    else:
        for problem in problems:
            typer.echo(f"FAIL {problem}")
        typer.echo("OK: every checksum matches" if not problems else f"{len(problems)} problem(s)")
    if problems:
        raise typer.Exit(1)


def _release_folder(release: str, lake: str | None) -> Path:
    """A release folder given as a path, or as NAME[@VERSION] in the lake (latest version by default)."""
    folder = Path(release)
    if folder.is_dir():
        if not (folder / "release.json").is_file():
            _fail(f"{folder} is not a release folder (no release.json)")
        return folder
    from medcurate.release.catalog import list_releases

    store = _lake(lake)
    name, _, version = release.partition("@")
    found = [r for r in list_releases(store, name) if not version or r.version == version]
    if not found:
        _fail(f"no release {release} in {store.root_uri} (and no folder of that name)")
    try:
        return store.local_path(found[-1].path)
    except ValueError as exc:
        _fail(str(exc))


@app.command()
def pull(
    release: Annotated[str, typer.Argument(help="A release folder, or NAME or NAME@VERSION in the lake")],
    where: Annotated[
        str,
        typer.Option(
            "--where",
            help="One SQL boolean expression over manifest columns, e.g. "
            "\"modality IN ('CT','MR') AND scores.quality >= 4\" (see medcurate/release/pull.py)",
        ),
    ],
    split: Annotated[
        list[str], typer.Option("--split", help="train, val or test; repeat for more (default: all)")
    ] = [],  # noqa: B006
    out: Annotated[Path | None, typer.Option("--out", help="New release folder (absent or empty)")] = None,
    shard_max_count: Annotated[
        int | None, typer.Option("--shard-max-count", help="Samples per shard (default: the parent's)")
    ] = None,
    shard_max_bytes: Annotated[
        int | None, typer.Option("--shard-max-bytes", help="Bytes per shard (default: the parent's)")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Release name (default: PARENT-pull)")] = None,
    list_urls: Annotated[
        bool, typer.Option("--list-urls", help="Print the parent's shard URLs holding a match; copy nothing")
    ] = False,
    lake: LakeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the samples matching a filter as a new, smaller, re-sharded release (byte-reproducible)."""
    from medcurate.release.pull import PullError, select, shard_urls
    from medcurate.release.pull import pull as pull_release

    folder = _release_folder(release, lake)
    try:
        if list_urls:
            urls = shard_urls(folder, select(folder / "manifest.parquet", where, split))
            typer.echo(json.dumps(urls, indent=2) if as_json else "\n".join(urls))
            return
        if out is None:
            _fail("--out is required (or --list-urls to copy nothing)")
        info = pull_release(folder, where, split, out, shard_max_count, shard_max_bytes, name)
    except PullError as exc:
        _fail(str(exc))
    row = {
        "name": info["name"],
        "version": info["version"],
        "path": str(out),
        "samples": info["sample_count"],
        "shards": len(info["shards"]),
        "content_hash": info["content_hash"],
        "parent": info["parent"],
    }
    if as_json:
        typer.echo(json.dumps(row, indent=2))
        return
    parent = info["parent"]
    typer.echo(
        f"{row['name']} {row['version']}: {row['samples']} samples in {row['shards']} shards, "
        f"pulled from {parent['name']} {parent['version']}"
    )
    typer.echo(f"  path:          {out}")
    typer.echo(f"  content hash:  {row['content_hash']}")


@app.command()
def diff(
    older: Annotated[str, typer.Argument(help="Release A: a folder, or NAME@VERSION in the lake")],
    newer: Annotated[str, typer.Argument(help="Release B: a folder, or NAME@VERSION in the lake")],
    out: Annotated[Path | None, typer.Option(help="Also write the rows to this parquet file")] = None,
    lake: LakeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Samples added, removed (with the reason, from B's run or the releases between) and changed."""
    from medcurate.release.diff import diff_releases, summary

    table = diff_releases(_release_folder(older, lake), _release_folder(newer, lake))
    if out is not None:
        pq.write_table(table, out, compression="zstd")
    if as_json:
        typer.echo(json.dumps({"summary": summary(table), "rows": table.to_pylist()}, indent=2))
        return
    counts = summary(table)
    typer.echo(f"{older} -> {newer}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    for row in table.to_pylist():
        what = ", ".join(row["fields"]) if row["change"] == "changed" else row["dataset"]
        typer.echo(f"{row['change']:8} {row['key']}  {what}  {row['reason']}")


@app.command()
def audit(
    sample_id: Annotated[str | None, typer.Argument(help="A sample id (a shard member's key)")] = None,
    source: Annotated[
        str | None, typer.Option(help="An input uri: list every sample born from it, kept or dropped")
    ] = None,
    lake: LakeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a sample's record, source (re-hashed: does it still match?) and every lineage event,
    released or not; or with --source, every sample an input gave and why each was dropped."""
    from medcurate.audit import check_source, find_sample, render_text, samples_of_source

    store = _lake(lake)
    if source is not None:
        rows = samples_of_source(store, source)
        if not rows:
            _fail(f"no input {source} in any release, run or catalogue of {store.root_uri}", code=1)
        if as_json:
            typer.echo(json.dumps({"source": source, "samples": rows}, indent=2))
            return
        for row in rows:
            why = f" ({row['reason']}, stage {row['stage']})" if row["reason"] else ""
            typer.echo(f"{row['sample_id']}  {row['status']}{why}  {row['where']}")
        return
    if sample_id is None:
        _fail("give a SAMPLE_ID, or --source URI")
    result = find_sample(store, sample_id)
    if result is None:
        _fail(f"sample {sample_id} not found in any release or run", code=1)
    result.source_check = check_source(store, result.record)
    if as_json:
        payload = {"where": result.where, "source_check": result.source_check, "record": result.record}
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        typer.echo(render_text(result))


@app.command()
def serve(
    release: Annotated[str, typer.Argument(help="A release folder, or NAME or NAME@VERSION in the lake")],
    host: Annotated[
        str, typer.Option(help="Interface to listen on; 0.0.0.0 exposes the release")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port; the first line says which)")] = 8765,
    allow_host: Annotated[
        list[str], typer.Option("--allow-host", help="Also accept this Host header (a proxy's name)")
    ] = [],  # noqa: B006
    lake: LakeOption = None,
) -> None:
    """Audit viewer: a read-only local web page over a release: search by sample id, source, PMCID or
    label; each sample's image, texts with their authors, scores and lineage; the release card."""
    from medcurate.viewer.release_view import ReleaseError
    from medcurate.viewer.server import serve as serve_release

    try:
        serve_release(_release_folder(release, lake), host, port, tuple(allow_host))
    except ReleaseError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc}")


@app.command()
def reveal(
    uri: Annotated[str, typer.Argument(help="A pseudonymous clinical uri (a record's source.uri)")],
    lake: LakeOption = None,
) -> None:
    """For auditors: the real file behind a pseudonymous DICOM/NIfTI uri (needs access to restricted/)."""
    from medcurate.lake.restricted import reveal as lookup

    found = lookup(_lake(lake), uri)
    if not found:
        _fail(f"{uri} is not in this lake's restricted path map", code=1)
    for source, location in found:
        typer.echo(f"{source}\t{location}")


@app.command()
def schedule(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file")],
    cron: Annotated[str, typer.Option(help="Cron schedule, e.g. '0 2 * * *'")] = "0 2 * * *",
    lake: LakeOption = None,
    set_: Annotated[list[str], typer.Option("--set")] = [],  # noqa: B006
    model: ModelOption = [],  # noqa: B006
) -> None:
    """Serve the pipeline on a cron schedule through Prefect (runs until stopped)."""
    from prefect import serve

    from medcurate.pipelines.schedule import deployment_for

    cfg = _load(pipeline, set_, [], model)
    serve(deployment_for(cfg, cron, lake))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the sample record."""
    from medcurate.schemas.jsonschema import dumps

    sys.stdout.write(dumps())


if __name__ == "__main__":
    app()
