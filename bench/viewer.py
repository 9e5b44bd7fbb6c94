"""Benchmark: the audit viewer's search (``ReleaseView``, pyarrow over the loaded manifest) vs duckdb.

Data is generated: a release folder whose ``manifest.parquet`` has N rows shaped like real ones (keys,
PMC package uris, sha256s, PMCIDs on a third of rows, 0-3 labels from 40 names, captions of 80-200
characters); no shards, since search reads only the manifest. Ours opens the release once (its cost
and peak RSS are reported) and answers each query from memory. The baseline is what a viewer without
state would do: a fresh duckdb query per search over the parquet file (``ILIKE``, count plus the first
100 keys in key order), the way ``medcurate pull`` filters. Each variant runs in its own process; each
query is timed as the median of 3. Both must return the same count and the same first 100 keys.

    python bench/viewer.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import peak_rss_kib, print_markdown, run_child  # bench/harness.py

LABELS = [f"finding{i:02d}" for i in range(39)] + ["Pleural Effusion"]
QUERIES = [  # (field, query): chosen to match few, some and many rows
    ("id", "pmc-00ab"),
    ("source", "PMC0004242"),
    ("pmcid", "pmc00123"),
    ("label", "pleural effusion"),
    ("any", "finding07"),
]


def write_release(folder: Path, n: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medcurate.release.builder import MANIFEST_SCHEMA

    rng = np.random.default_rng(0)
    keys = [f"pmc-{hashlib.sha256(str(i).encode()).hexdigest()[:24]}" for i in range(n)]
    pmcids = [f"PMC{i // 4:07d}" for i in range(n)]
    label_counts = rng.integers(0, 4, n)
    label_names = rng.integers(0, len(LABELS), (n, 3))
    columns = {
        "key": keys,
        "shard": [f"shards/bench-{i // 1000:06d}.tar" for i in range(n)],
        "offset": list(range(n)),
        "members": [[{"ext": "json", "offset": 0, "data_offset": 512, "size": 100}]] * n,
        "source_kind": ["pmc"] * n,
        "dataset": ["pmc"] * n,
        "source_uri": [f"/data/pmc/oa_package/{i % 256:02x}/{p}.tar.gz" for i, p in enumerate(pmcids)],
        "source_sha256": [hashlib.sha256(k.encode()).hexdigest() for k in keys],
        "license": ["cc-by"] * n,
        "modality": [("CT", "MR", "XR", "US")[i % 4] for i in range(n)],
        "labels": [
            [{"name": LABELS[label_names[i, j]], "value": "positive"} for j in range(label_counts[i])]
            for i in range(n)
        ],
        "article_id": [p if i % 3 == 0 else None for i, p in enumerate(pmcids)],
        "final_caption": ["A figure caption " + "x" * int(rng.integers(60, 180)) for _ in range(n)],
    }
    arrays = [
        pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type)
        for f in MANIFEST_SCHEMA
    ]
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_arrays(arrays, schema=MANIFEST_SCHEMA), folder / "manifest.parquet")
    (folder / "checksums.sha256").write_text(f"{'0' * 64}  manifest.parquet\n")
    (folder / "release.json").write_text(json.dumps({"name": "bench", "version": "1.0.0"}))


def timed(call) -> tuple[float, object]:
    times, result = [], None
    for _ in range(3):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def run_ours(folder: Path) -> dict:
    from medcurate.viewer.release_view import ReleaseView

    started = time.perf_counter()
    view = ReleaseView(folder)
    opened = time.perf_counter() - started
    results = {}
    for field, query in QUERIES:
        seconds, (total, hits) = timed(lambda f=field, q=query: view.search(q, f, 100))
        results[f"{field}:{query}"] = {"s": seconds, "total": total, "keys": [h.key for h in hits]}
    return {"open_s": opened, "rss_kib": peak_rss_kib(), "queries": results}


SQL = {  # the same fields as ReleaseView.search, as duckdb expressions
    "id": "key",
    "source": "coalesce(source_uri, '') || ' ' || coalesce(source_sha256, '')",
    "pmcid": "coalesce(article_id, '')",
    "label": "coalesce(array_to_string(list_transform(labels, lambda l: l.name || '=' || l.value), ' '), '') "
    "|| ' ' || coalesce(class_name, '')",
    "any": "concat_ws(chr(10), key, coalesce(source_uri, '') || ' ' || coalesce(source_sha256, ''), "
    "coalesce(article_id, ''), coalesce(array_to_string(list_transform(labels, lambda l: l.name || '=' || "
    "l.value), ' '), '') || ' ' || coalesce(class_name, ''), source_kind, coalesce(dataset, ''), "
    "coalesce(modality, ''))",
}


def run_duckdb(folder: Path) -> dict:
    import duckdb

    path = str(folder / "manifest.parquet")
    results = {}
    for field, query in QUERIES:

        def search(field=field, query=query):
            connection = duckdb.connect()
            where = f"({SQL[field]}) ILIKE '%' || $q || '%'"
            source = f"read_parquet('{path}')"
            total = connection.execute(
                f"SELECT count(*) FROM {source} WHERE {where}", {"q": query}
            ).fetchone()
            keys = connection.execute(
                f"SELECT key FROM {source} WHERE {where} ORDER BY key LIMIT 100", {"q": query}
            ).fetchall()
            connection.close()
            return total[0], [k for (k,) in keys]

        seconds, (total, keys) = timed(search)
        results[f"{field}:{query}"] = {"s": seconds, "total": total, "keys": keys}
    return {"open_s": 0.0, "rss_kib": peak_rss_kib(), "queries": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--variant", choices=["ours", "duckdb"])
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.variant:
        run = run_ours if args.variant == "ours" else run_duckdb
        print(json.dumps(run(Path(args.folder))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "release"
        print(f"writing a {args.n:,}-row manifest ...", file=sys.stderr)
        write_release(folder, args.n)
        size = (folder / "manifest.parquet").stat().st_size
        runs = {
            v: run_child([__file__, "--variant", v, "--folder", str(folder)], v) for v in ("ours", "duckdb")
        }
    ours, base = runs["ours"], runs["duckdb"]
    print(f"\nN = {args.n:,} manifest rows ({size / 2**20:.0f} MiB parquet)\n")
    table = [("query", "matches", "ours ms", "duckdb per query ms", "speed", "same result")]
    for name, mine in ours["queries"].items():
        theirs = base["queries"][name]
        same = mine["total"] == theirs["total"] and mine["keys"] == theirs["keys"]
        speed = theirs["s"] / mine["s"]
        row = (name, f"{mine['total']:,}", f"{mine['s'] * 1e3:.0f}", f"{theirs['s'] * 1e3:.0f}")
        table.append((*row, f"{speed:.1f}x", "yes" if same else "NO"))
    print_markdown(table)
    print(
        f"\nours: open {ours['open_s']:.1f} s, peak RSS {ours['rss_kib'] / 1024:.0f} MiB; "
        f"duckdb: no open, peak RSS {base['rss_kib'] / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
