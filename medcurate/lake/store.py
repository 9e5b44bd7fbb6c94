"""The lake: one root URI, read and written through pyarrow filesystems, with atomic writes.

Every write goes to a temporary name beside its target and is then moved into place, so a crash never
leaves a partial file under a final name. On local disks the move is an atomic rename; on object
stores, where it is not, readers treat a release as complete only once its ``release.json`` exists.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class Lake:
    """A root folder (local path or filesystem URI) holding state/, runs/ and releases/."""

    def __init__(self, root: str):
        if "://" not in root:
            root = str(Path(root).expanduser().resolve())
        self.root_uri = root
        self.fs, self.base = pafs.FileSystem.from_uri(root)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        self.fs.create_dir(self.base, recursive=True)

    def path(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts])

    def uri(self, *parts: str) -> str:
        """A URI that other processes (Spark executors) can open."""
        full = self.path(*parts)
        return f"file://{full}" if self.is_local else f"{self.root_uri.split('://')[0]}://{full}"

    def local_path(self, *parts: str) -> Path:
        if not self.is_local:
            raise ValueError(f"lake {self.root_uri} is not on the local filesystem")
        return Path(self.path(*parts))

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def listdir(self, *parts: str) -> list[str]:
        """Names directly below a folder, sorted; empty when it does not exist."""
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector))

    def walk_files(self, *parts: str, suffix: str = "") -> Iterator[str]:
        """Paths (relative to the lake root) of every file below a folder, sorted."""
        selector = pafs.FileSelector(self.path(*parts), recursive=True, allow_not_found=True)
        base = self.base.rstrip("/") + "/"
        infos = self.fs.get_file_info(selector)
        for info in sorted(infos, key=lambda i: i.path):
            if info.type == pafs.FileType.File and info.path.endswith(suffix) and "/_tmp-" not in info.path:
                yield info.path[len(base) :]

    def _tmp_sibling(self, target: str) -> str:
        parent, name = target.rsplit("/", 1)
        return f"{parent}/_tmp-{uuid.uuid4().hex[:12]}-{name}"

    def write_bytes(self, rel: str, data: bytes) -> None:
        target = self.path(rel)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        tmp = self._tmp_sibling(target)
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, target)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_file(self.path(rel)) as stream:
            return stream.read()

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        sink = io.BytesIO()
        # Image bytes are already compressed (PNG/JPEG): compressing them again only costs time.
        codecs = {name: "snappy" for name in _leaf_paths(table.schema)}
        codecs.update({name: "none" for name in codecs if name.endswith("bytes")})
        pq.write_table(table, sink, compression=codecs, write_statistics=False)
        self.write_bytes(rel, sink.getvalue())

    def read_parquet(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path(rel), columns=columns, filesystem=self.fs)

    def delete(self, rel: str) -> None:
        info = self.fs.get_file_info(self.path(rel))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(rel))
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path(rel))

    def move(self, src_rel: str, dst_rel: str) -> None:
        self.fs.move(self.path(src_rel), self.path(dst_rel))


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """Dotted paths of every leaf column, as parquet names them for per-column settings."""

    def walk(prefix: str, data_type: pa.DataType) -> list[str]:
        if pa.types.is_struct(data_type):
            return [p for field in data_type for p in walk(f"{prefix}.{field.name}", field.type)]
        if pa.types.is_list(data_type):
            return walk(f"{prefix}.list.element", data_type.value_type)
        return [prefix]

    return [p for field in schema for p in walk(field.name, field.type)]


def default_lake_uri(configured: str | None) -> str:
    """``--lake`` beats ``MEDCURATE_LAKE`` beats the pipeline's ``lake`` beats ``./lake``."""
    return os.environ.get("MEDCURATE_LAKE") or configured or "lake"
