"""Pull a filtered subset of a release into a new, smaller, self-describing release.

The filter is one SQL boolean expression run by duckdb over the parent's ``manifest.parquet``, never
over the tars. It sees every manifest column (``MANIFEST_SCHEMA``) with two conveniences:

- ``scores`` is a STRUCT with one DOUBLE field per score name present in the release, so
  ``scores."judge.quality" >= 4`` works; a name's last dotted part is an alias when no other score or
  field has it (``scores.quality`` for ``judge.quality``, ``scores.words`` for ``caption.words``). A
  sample without that score reads NULL (so a comparison drops it); a name no sample has is an error
  that lists the names there are. The original list stays readable as ``score_list``.
- ``positive_labels`` lists the names of labels whose value is ``positive``
  (``list_contains(positive_labels, 'effusion')``).

duckdb runs in memory with file access switched off (and its settings locked) once the manifest is
registered, so a filter cannot read or write files; a filter with a second statement is refused.

Selected samples are copied member by member from the parent's shards at the manifest's offsets (each
member's tar header is re-read and must name ``<key>.<ext>``), in key order, into shards written with
the same fixed tar metadata as ``shards.write_shards``. Nothing in the output depends on the clock or
on where it was written: the same parent, filter and shard sizes give byte-identical files.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from medcurate.release.builder import code_version, manifest_rows_of, write_manifest
from medcurate.release.card import render_card
from medcurate.release.catalog import content_hash, file_sha256, lake_of_release, write_checksums
from medcurate.release.plots import write_plots
from medcurate.release.shards import ShardMemberError, read_member, write_member_shards
from medcurate.release.wids_index import write_wids_index

SPLITS = ("train", "val", "test")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ROW = "__row"


class PullError(ValueError):
    """A filter, split, name or output folder that cannot make a pull; the message says why."""


def _scores_struct(scores: pa.ChunkedArray) -> tuple[pa.Array, dict[str, str]]:
    """The ``scores`` list as a STRUCT (one field per name, aliases included) and alias -> name."""
    rows = scores.to_pylist()
    names = sorted({s["name"] for row in rows for s in row or []})
    short: dict[str, list[str]] = {}
    for name in names:
        if "." in name:
            short.setdefault(name.rsplit(".", 1)[1], []).append(name)
    aliases = {a: found[0] for a, found in sorted(short.items()) if len(found) == 1 and a not in names}
    fields = [*names, *aliases]
    values: dict[str, list[float | None]] = {field: [] for field in fields}
    for row in rows:
        by_name = {s["name"]: s["value"] for s in row or []}
        for field in fields:
            values[field].append(by_name.get(aliases.get(field, field)))
    if not fields:
        return pa.array([{}] * len(rows), pa.struct([])), aliases
    struct = pa.StructArray.from_arrays([pa.array(values[f], pa.float64()) for f in fields], fields)
    return struct, aliases


def _positive_labels(labels: pa.ChunkedArray) -> pa.Array:
    return pa.array(
        [
            [label["name"] for label in row or [] if label["value"] == "positive"]
            for row in labels.to_pylist()
        ],
        pa.list_(pa.string()),
    )


def _view(manifest: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    scores, aliases = _scores_struct(manifest.column("scores"))
    view = manifest.rename_columns(["score_list" if n == "scores" else n for n in manifest.column_names])
    view = view.append_column("scores", scores)
    view = view.append_column("positive_labels", _positive_labels(manifest.column("labels")))
    return view.append_column(_ROW, pa.array(range(manifest.num_rows), pa.int64())), aliases


def _splits(split: str | Sequence[str] | None) -> list[str]:
    chosen = [split] if isinstance(split, str) else list(split or [])
    unknown = sorted(set(chosen) - set(SPLITS))
    if unknown:
        raise PullError(f"unknown split {', '.join(unknown)}; use {', '.join(SPLITS)}")
    return sorted(set(chosen), key=SPLITS.index)


def _select(manifest: pa.Table, where: str, splits: list[str]) -> pa.Table:
    import duckdb

    if not where or not where.strip():
        raise PullError("--where is empty; give a boolean expression, e.g. \"split = 'train'\"")
    try:  # one expression, parsed alone: no ``;``, no parenthesis games that close the query early
        duckdb.SQLExpression(where)
    except duckdb.Error as exc:
        reason = str(exc).strip().replace("\n", " ")
        raise PullError(f"--where {where!r} is not one SQL expression: {reason}") from exc
    view, aliases = _view(manifest)
    # The expression sits on lines of its own, so a trailing ``--`` comment cannot swallow the ``)``.
    query = f"SELECT {_ROW}, key, split, (\n{where}\n) AS __keep FROM samples"
    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    with duckdb.connect(":memory:", config=config) as con:
        con.register("samples", view)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            statements = duckdb.extract_statements(query)
            if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
                raise PullError(f"--where must be one boolean expression, not statements: {where!r}")
            relation = con.sql(query)
            kind = str(relation.types[3])
            if kind != "BOOLEAN":
                raise PullError(f"--where must be a boolean expression; {where!r} is {kind}")
            chosen = relation.filter("__keep")
            if splits:
                chosen = chosen.filter("split IN (" + ", ".join(f"'{s}'" for s in splits) + ")")
            rows = chosen.order(f"key, {_ROW}").project(_ROW).arrow()
        except duckdb.Error as exc:
            names = [f for f in view.schema.field("scores").type.names if f not in aliases]
            hint = f" (scores here: {', '.join(names) or 'none'})" if "struct" in str(exc).lower() else ""
            reason = str(exc).strip().replace("\n", " ")
            raise PullError(f"--where {where!r} failed: {reason}{hint}") from exc
    if hasattr(rows, "read_all"):  # newer duckdb gives a RecordBatchReader
        rows = rows.read_all()
    picked = rows.column(_ROW).to_pylist()
    if len(set(picked)) != len(picked) or not all(0 <= i < manifest.num_rows for i in picked):
        raise PullError(f"--where {where!r} did not select manifest rows")  # only a subverted query
    return manifest.take(pa.array(picked, pa.int64()))


def select(manifest_path: Path, where: str, split: str | Sequence[str] | None = None) -> pa.Table:
    """Manifest rows (parent schema, unchanged) matching ``where`` and ``split``, sorted by key."""
    manifest = pq.read_table(manifest_path)
    return _select(manifest, where, _splits(split))


def shard_urls(parent: Path, selected: pa.Table) -> list[str]:
    """``file://`` URLs of the parent's shards that hold at least one selected sample, sorted."""
    root = parent.resolve()
    return sorted({(root / shard).as_uri() for shard in selected.column("shard").to_pylist()})


def _samples(parent: Path, rows: list[dict[str, Any]]) -> Iterator[dict[str, bytes | str]]:
    with ExitStack() as stack:
        open_shards: dict[str, IO[bytes]] = {}
        for row in rows:
            key = row["key"]
            shard = row["shard"]
            if shard not in open_shards:
                path = (parent / shard).resolve()
                if not path.is_relative_to(parent.resolve()):
                    raise PullError(f"manifest shard {shard!r} lies outside the release")
                open_shards[shard] = stack.enter_context(path.open("rb"))
            try:
                members = {m["ext"]: read_member(open_shards[shard], key, m) for m in row["members"]}
            except ShardMemberError as exc:
                raise PullError(str(exc)) from exc
            yield {"__key__": key, **members}


def _parent_ledger(parent: Path, info: dict[str, Any]) -> dict[str, Any] | None:
    """The ledger of the run that built the parent, when the parent still sits in its lake."""
    run_id, lake_root = info.get("run_id"), lake_of_release(parent)
    if not run_id or lake_root is None:
        return None
    ledger = lake_root / "runs" / run_id / "ledger.json"
    return json.loads(ledger.read_text()) if ledger.is_file() else None


def _pull_section(info: dict[str, Any], parent_count: int, ledger_found: bool) -> str:
    parent, where = info["parent"], info["filter"]
    splits = ", ".join(where["split"]) if where["split"] else "all"
    return (
        "\n## Pull\n\n"
        f"This release is a pull of **{parent['name']} {parent['version']}** "
        f"(content hash `{parent['content_hash']}`): {info['sample_count']} of its {parent_count} samples, "
        f"copied byte for byte and re-sharded (at most {info['sharding']['max_count']} samples, "
        f"{info['sharding']['max_bytes']} bytes per shard). No stage ran again.\n\n"
        f"- filter: `{where['where']}`\n- splits: {splits}\n\n"
        + (
            "Deduplication, decontamination and the ledger above are those of the parent's run.\n"
            if ledger_found
            else "The parent's run ledger was not found beside it: see the parent's card for it.\n"
        )
    )


def pull(
    parent: Path,
    where: str,
    split: str | Sequence[str] | None,
    out: Path,
    shard_max_count: int | None = None,
    shard_max_bytes: int | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Write the samples of ``parent`` matching ``where``/``split`` as a new release in ``out``.

    Shard sizes default to the parent's (its config's ``release`` section). Returns the new
    ``release.json``. ``out`` must not exist or be empty; it appears whole or not at all.
    """
    parent = Path(parent)
    out = Path(out)
    parent_info = json.loads((parent / "release.json").read_text())
    release_cfg = (parent_info.get("config") or {}).get("release") or {}
    max_count = int(shard_max_count or release_cfg.get("shard_max_count") or 1000)
    max_bytes = int(shard_max_bytes or release_cfg.get("shard_max_bytes") or 256 * 1024 * 1024)
    if max_count < 1 or max_bytes < 1024:
        raise PullError("--shard-max-count must be >= 1 and --shard-max-bytes >= 1024")
    name = name or f"{parent_info['name']}-pull"
    if not _NAME.fullmatch(name):
        raise PullError(f"release name {name!r}: use letters, digits, '.', '_' and '-'")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PullError(f"{out} exists and is not an empty folder")
    splits = _splits(split)
    manifest = pq.read_table(parent / "manifest.parquet")
    selected = _select(manifest, where, splits)
    if selected.num_rows == 0:
        raise PullError(
            f"no sample of {parent_info['name']} {parent_info['version']} matches; nothing written"
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f"_tmp-{uuid.uuid4().hex[:12]}-{out.name}"  # as Lake: no lister reads it
    try:
        staging.mkdir()
        rows = selected.to_pylist()
        shards = write_member_shards(_samples(parent, rows), staging / "shards", name, max_count, max_bytes)
        digests = [(shard.name, file_sha256(shard)) for shard in shards]
        plain = {
            row["key"]: {k: v for k, v in row.items() if k not in ("shard", "offset", "members")}
            for row in rows
        }
        manifest_rows = manifest_rows_of(shards, staging, plain)
        if [r["key"] for r in manifest_rows] != [r["key"] for r in rows]:
            raise PullError("shards read back do not hold the selected samples in order")
        table, per_shard = write_manifest(staging, manifest_rows)
        write_wids_index(staging, table, name=name)
        pull_filter = {"where": where, "split": splits or None}
        sharding = {"max_count": max_count, "max_bytes": max_bytes}
        info = {
            "name": name,
            "version": parent_info["version"],
            "content_hash": content_hash(digests),
            "sample_count": table.num_rows,
            "shards": [
                {"path": f"shards/{n}", "sha256": sha, "samples": per_shard.get(n, 0)} for n, sha in digests
            ],
            "schema_version": parent_info["schema_version"],
            "config": parent_info.get("config"),
            "config_hash": parent_info.get("config_hash"),
            "run_id": None,
            "code_version": code_version(),
            "parent": {
                "name": parent_info["name"],
                "version": parent_info["version"],
                "content_hash": parent_info["content_hash"],
            },
            "changes": None,
            "filter": pull_filter,
            "sharding": sharding,
            "decontamination": parent_info.get("decontamination"),
            "created_at": parent_info.get("created_at"),  # the parent's: a pull has no time of its own
        }
        ledger = _parent_ledger(parent, parent_info)
        counts = ledger or {"sources": {}}
        card = render_card(info, table, counts, write_plots(info, table, counts, staging))
        (staging / "card.md").write_text(card + _pull_section(info, manifest.num_rows, ledger is not None))
        (staging / "release.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
        write_checksums(staging)
        staging.replace(out)  # an empty ``out`` folder is replaced in the same rename
        return info
    finally:
        if staging.exists():
            shutil.rmtree(staging)
