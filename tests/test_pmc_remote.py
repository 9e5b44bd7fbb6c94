"""A mirror on a non-local filesystem (fsspec's in-memory one) reads exactly like the same local mirror."""

from __future__ import annotations

from pathlib import Path

import fsspec

from medcurate.sources import SourceContext, make_source

CTX = SourceContext(stat_cache=lambda *args: None)


def _read_all(uri: str) -> list[dict]:
    source = make_source("pmc", "pmc", uri, {}, CTX)
    return [record for item in source.list_inputs() for record in source.read(item)]


def test_memory_mirror_gives_the_same_samples_as_the_local_one(corpus_root):
    local_root = corpus_root / "pmc"
    memory = fsspec.filesystem("memory")
    for path in sorted(local_root.rglob("*")):
        if path.is_file():
            memory.pipe(f"/mirror/{path.relative_to(local_root).as_posix()}", path.read_bytes())
    try:
        remote = _read_all("memory://mirror")
        local = _read_all(str(local_root))
    finally:
        memory.rm("/mirror", recursive=True)

    def comparable(record: dict) -> tuple:
        return (
            record["sample_id"],
            record["status"],
            (record["status_reason"] or "").split(":")[0],
            record["image"].get("sha256"),
            record["source"].get("member"),
            record["source"].get("license"),
        )

    assert sorted(map(comparable, remote)) == sorted(map(comparable, local))
    assert all(r["source"]["uri"].startswith("memory://") for r in remote)
    assert sum(r["status"] == "active" for r in remote) > 10
    assert Path(str(local_root)).exists()
