"""Labeled image datasets on local disk: a CSV manifest (CheXpert style) or an ImageFolder tree.

Public datasets arrive with hostile corners (paths escaping the root, rows with a stray comma, files
missing from the archive, labels nobody documented), so listing validates every row and turns each
problem into an ``InputItem`` with an ``error``: the run keeps going and the bad input is quarantined
with its reason instead of crashing the source or silently disappearing.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, ClassVar

from medcurate.hashing import pseudonym, sha256_bytes, sha256_json
from medcurate.schemas.record import new_record
from medcurate.sources.base import InputItem, Source, SourceContext

PATH_COLUMNS = ("Path", "path", "image", "filename", "file")
DEFAULT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
DEFAULT_MAX_FILE_BYTES = 256 << 20
#: CheXpert semantics; a blank cell means "not mentioned" and yields no label at all.
LABEL_VALUES = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}
SEX_VALUES = {"m": "male", "male": "male", "f": "female", "female": "female"}
PARAMS = frozenset(
    {
        "layout",
        "manifest",
        "path_column",
        "label_columns",
        "class_column",
        "view_column",
        "patient_column",
        "patient_regex",
        "sex_column",
        "age_column",
        "modality",
        "body_part",
        "license",
        "license_url",
        "citation",
        "extensions",
        "max_file_bytes",
    }
)


def label_value(cell: str) -> str | None:
    """``"1.0"`` -> ``"positive"`` etc.; None for a blank cell; ValueError for anything else."""
    if not cell:
        return None
    try:
        number = float(cell)
    except ValueError:
        number = None
    if number not in LABEL_VALUES:
        raise ValueError(f"invalid label value {cell!r} (expected 1, 0, -1 or blank)")
    return LABEL_VALUES[number]


def age_band(cell: str) -> str | None:
    """Ten-year band (``"60-69"``), ``"90+"`` above 89 as HIPAA Safe Harbor asks; None if unusable."""
    try:
        age = float(cell)
    except ValueError:
        return None
    if not 0 <= age < 150:
        return None
    if age >= 90:
        return "90+"
    low = int(age) // 10 * 10
    return f"{low}-{low + 9}"


def _undecodable(text: str) -> bool:
    """Whether ``text`` holds bytes that were not UTF-8 (decoded with ``surrogateescape``)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


@dataclass
class _Row:
    """One manifest record: where it starts, its raw text, and its stripped cells (or why it is bad)."""

    line: int
    raw: str
    cells: list[str]
    error: str | None = None


class LabeledSource(Source):
    """A labeled dataset rooted at the local directory ``uri``; one record per image file.

    Params: ``layout`` (``"csv"`` | ``"imagefolder"``; default csv when the manifest exists),
    ``manifest`` (``labels.csv``), ``path_column``, ``label_columns`` (list or ``"auto"``),
    ``class_column``, ``view_column``, ``patient_column`` or ``patient_regex`` (searched in the
    relative path; group 1, else the whole match, is the patient id), ``sex_column``, ``age_column``,
    ``modality``, ``body_part``, ``license``, ``license_url``, ``citation``, ``extensions``
    (imagefolder) and ``max_file_bytes``.
    """

    kind: ClassVar[str] = "labeled"
    version: ClassVar[str] = "1"

    def __init__(self, name: str, uri: str, params: Mapping[str, Any], ctx: SourceContext):
        super().__init__(name, uri, params, ctx)
        unknown = sorted(set(self.params) - PARAMS)
        if unknown:
            raise ValueError(f"source {name!r}: unknown param(s) {unknown}; known: {sorted(PARAMS)}")
        self.root = Path(uri).expanduser().absolute()
        self.manifest = self.root / self.params.get("manifest", "labels.csv")
        self.layout = self.params.get("layout") or ("csv" if self.manifest.is_file() else "imagefolder")
        if self.layout not in ("csv", "imagefolder"):
            raise ValueError(f"source {name!r}: layout must be 'csv' or 'imagefolder', not {self.layout!r}")
        patient_params = [p for p in ("patient_column", "patient_regex") if self.params.get(p)]
        if len(patient_params) > 1:
            raise ValueError(f"source {name!r}: set patient_column or patient_regex, not both")
        if patient_params and ctx.pseudonym_key is None:
            raise ValueError(
                f"source {name!r}: {patient_params[0]} is set but no pseudonym key is configured; "
                "raw patient ids are never stored, so a key is needed to pseudonymise them"
            )
        try:
            self.patient_regex = (
                re.compile(self.params["patient_regex"]) if "patient_regex" in patient_params else None
            )
        except re.error as exc:
            raise ValueError(f"source {name!r}: invalid patient_regex: {exc}") from None
        for param in ("label_columns", "extensions"):
            value = self.params.get(param)
            if isinstance(value, str) and not (param == "label_columns" and value == "auto"):
                raise ValueError(f"source {name!r}: {param} must be a list, not the string {value!r}")
        extensions = self.params.get("extensions") or DEFAULT_EXTENSIONS
        self.extensions = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        self.max_file_bytes = int(self.params.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES))
        self.real_root = self.root  # resolved (symlinks followed) when listing starts

    # -- listing ------------------------------------------------------------------------------------

    def list_inputs(self) -> Iterator[InputItem]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"source {self.name!r}: dataset root {self.root} is not a directory")
        self.real_root = self.root.resolve()
        if self.layout == "csv":
            yield from self._list_csv()
        else:
            yield from self._list_folder()

    def _check_file(self, rel: str) -> tuple[Path | None, str | None]:
        """The real path of ``rel`` under the root, or the reason it cannot be used."""
        windows = PureWindowsPath(rel)
        if "\x00" in rel:
            return None, f"unsafe_path: {rel!r} contains a NUL byte"
        if PurePosixPath(rel).is_absolute() or windows.is_absolute() or windows.drive:
            return None, f"unsafe_path: {rel!r} is absolute"
        if ".." in windows.parts:  # splits on both / and \
            return None, f"unsafe_path: {rel!r} contains '..'"
        listed = self.real_root / rel
        try:
            real = listed.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loop
            return None, f"unsafe_path: {rel!r} cannot be resolved ({exc})"
        if not real.is_relative_to(self.real_root):
            return None, f"unsafe_path: {rel!r} resolves outside the dataset root"
        try:
            st = real.stat()
        except FileNotFoundError:
            return None, f"missing_file: {rel} not found under {self.root}"
        except OSError as exc:
            return None, f"unreadable_file: {rel}: {exc.strerror}"
        if not stat.S_ISREG(st.st_mode):
            return None, f"not_a_file: {rel} is not a regular file"
        if st.st_size > self.max_file_bytes:
            return None, f"file_too_large: {rel} has {st.st_size} bytes (limit {self.max_file_bytes})"
        return real, None

    def _item(self, rel: str, values: Mapping[str, Any], payload: dict[str, Any], error: str | None = None):
        """The item for one listed file: hashed via the stat cache, or carrying why it is unusable."""
        path = None
        if error is None:
            path, error = self._check_file(rel)
        if path is not None:
            try:
                sha, size, mtime_ns = self.file_sha256(path)
            except OSError as exc:  # vanished between stat and hash
                path, error = None, f"missing_file: {rel}: {exc.strerror}"
        if path is None:
            unsafe = error.startswith("unsafe_path") and self.layout == "csv"
            uri = str(self.manifest) if unsafe else str(self.real_root / rel)  # never follow a bad path
            key = sha256_json([self.name, rel, values, None])
            return InputItem(self.name, key, uri, payload=payload, error=error)
        key = sha256_json([self.name, rel, values, sha])
        return InputItem(self.name, key, str(path), sha, size, mtime_ns, payload=payload)

    def _bad_row(self, row: _Row) -> InputItem:
        """An item for a manifest row that could not be parsed; keyed by its line and raw text."""
        raw = row.raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        key = sha256_json([self.name, "line", row.line, raw])
        payload = {"line": row.line}
        return InputItem(self.name, key, str(self.manifest), payload=payload, error=row.error)

    def _read_manifest(self) -> tuple[list[str], list[_Row]]:
        """Header and rows of the CSV, each row with its starting line number and raw text."""
        text = self.manifest.read_bytes().decode("utf-8-sig", errors="surrogateescape")
        lines = list(io.StringIO(text, newline=""))
        consumed: list[str] = []

        def feed() -> Iterator[str]:
            for line in lines:
                consumed.append(line)
                yield line

        reader = csv.reader(feed())
        header: list[str] | None = None
        rows: list[_Row] = []
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
                error = None
            except StopIteration:
                break
            except csv.Error as exc:
                cells, error = [], f"malformed_row: line {start}: {exc}"
            raw = "".join(consumed[start - 1 : reader.line_num])
            if error is None and not any(cell.strip() for cell in cells):
                continue  # blank line
            if header is None:
                if error or _undecodable(raw):
                    raise ValueError(f"source {self.name!r}: unreadable header in {self.manifest}")
                header = [cell.strip() for cell in cells]
                continue
            row = _Row(start, raw, [cell.strip() for cell in cells], error)
            if row.error is None and _undecodable(raw):
                row.error = f"malformed_row: line {start}: not valid UTF-8"
            if row.error is None and len(cells) != len(header):
                row.error = f"malformed_row: line {start}: expected {len(header)} fields, got {len(cells)}"
            rows.append(row)
        if header is None:
            raise ValueError(f"source {self.name!r}: manifest {self.manifest} is empty")
        if len(set(header)) != len(header):
            raise ValueError(f"source {self.name!r}: duplicate column names in {self.manifest}: {header}")
        return header, rows

    def _column(self, header: list[str], param: str) -> str | None:
        column = self.params.get(param)
        if column is not None and column not in header:
            raise ValueError(f"source {self.name!r}: {param} {column!r} is not a column of {self.manifest}")
        return column

    def _label_columns(self, header: list[str], rows: list[_Row], reserved: set[str]) -> list[str]:
        """Configured label columns, or (``"auto"``) every other column holding only 1/0/-1/blank."""
        configured = self.params.get("label_columns", "auto")
        if configured != "auto":
            missing = [c for c in configured if c not in header]
            if missing:
                raise ValueError(f"source {self.name!r}: label_columns {missing} are not in {self.manifest}")
            return list(configured)
        columns = []
        for index, column in enumerate(header):
            if column in reserved:
                continue
            cells = [row.cells[index] for row in rows if row.error is None and row.cells[index]]
            try:
                if cells and all(label_value(cell) for cell in cells):
                    columns.append(column)
            except ValueError:
                continue
        return columns

    def _list_csv(self) -> Iterator[InputItem]:
        header, rows = self._read_manifest()
        path_column = self.params.get("path_column") or next((c for c in PATH_COLUMNS if c in header), None)
        if path_column not in header:
            raise ValueError(
                f"source {self.name!r}: no path column in {self.manifest} "
                f"(looked for {path_column or ' / '.join(PATH_COLUMNS)}; header: {header})"
            )
        special = {
            p: self._column(header, p)
            for p in ("class_column", "view_column", "patient_column", "sex_column", "age_column")
        }
        labels = self._label_columns(header, rows, {path_column, *filter(None, special.values())})
        position = {column: i for i, column in enumerate(header)}
        class_column = special["class_column"]
        classes: list[str] = []
        if class_column:
            classes = sorted({row.cells[position[class_column]] for row in rows if row.error is None} - {""})
        first_line: dict[str, int] = {}
        for row in rows:
            if row.error is None:
                row.error = self._row_error(row, position, path_column, labels, class_column, first_line)
            if row.error is not None:
                yield self._bad_row(row)
                continue
            values = dict(zip(header, row.cells, strict=True))
            rel = PurePosixPath(values[path_column]).as_posix()
            payload = self._payload(rel, row.line, values, special, labels, classes)
            if special["patient_column"]:  # the key may be stored; the raw id must not be
                values[special["patient_column"]] = payload["patient_pseudonym"]
            yield self._item(rel, values, payload)

    @staticmethod
    def _row_error(
        row: _Row,
        position: Mapping[str, int],
        path_column: str,
        labels: list[str],
        class_column: str | None,
        first_line: dict[str, int],
    ) -> str | None:
        """Why a well-shaped row still cannot be used (bad label, empty path, duplicate), or None."""
        cell = row.cells[position[path_column]]
        if not cell:
            return f"malformed_row: line {row.line}: empty {path_column!r}"
        for column in labels:
            try:
                label_value(row.cells[position[column]])
            except ValueError as exc:
                return f"malformed_row: line {row.line}: column {column!r}: {exc}"
        if class_column and not row.cells[position[class_column]]:
            return f"malformed_row: line {row.line}: empty class in {class_column!r}"
        rel = PurePosixPath(cell).as_posix()
        if rel in first_line:
            return f"malformed_row: line {row.line}: duplicate path {rel!r} (first on line {first_line[rel]})"
        first_line[rel] = row.line
        return None

    def _payload(
        self,
        rel: str,
        line: int,
        values: Mapping[str, str],
        special: Mapping[str, str | None],
        label_columns: list[str],
        classes: list[str],
    ) -> dict[str, Any]:
        """What ``read`` needs to build the record; never the raw patient id."""

        def cell(param: str) -> str | None:
            return (values[special[param]] or None) if special[param] else None

        labels = [
            {"name": column, "value": value}
            for column in label_columns
            if (value := label_value(values[column])) is not None
        ]
        class_name = cell("class_column")
        if class_name:
            labels.insert(0, {"name": class_name, "value": "positive"})
        patient = cell("patient_column") if special["patient_column"] else self._patient_from_path(rel)
        sex, age = cell("sex_column"), cell("age_column")
        return {
            "relpath": rel,
            "line": line,
            "labels": labels,
            "class_name": class_name,
            "class_index": classes.index(class_name) if class_name else None,
            "view": cell("view_column"),
            "patient_pseudonym": self._pseudonym(patient),
            "sex": SEX_VALUES.get(sex.lower(), "unknown") if sex else None,
            "age_band": age_band(age) if age else None,
        }

    def _patient_from_path(self, rel: str) -> str | None:
        match = self.patient_regex.search(rel) if self.patient_regex else None
        if match is None:
            return None
        return match.group(1) if match.re.groups else match.group(0)

    def _pseudonym(self, patient: str | None) -> str | None:
        return pseudonym(self.ctx.pseudonym_key, "patient", patient) if patient else None

    def _list_folder(self) -> Iterator[InputItem]:
        """Every image file below the root, sorted by relative path; class = first folder."""
        rels = []
        for dirpath, dirnames, filenames in os.walk(self.real_root):  # does not descend into symlinked dirs
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            base = Path(dirpath).relative_to(self.real_root)
            for filename in filenames:
                if not filename.startswith(".") and Path(filename).suffix.lower() in self.extensions:
                    rels.append((base / filename).as_posix())
        rels.sort()
        classes = sorted({rel.split("/", 1)[0] for rel in rels if "/" in rel})
        for rel in rels:
            if "/" not in rel:
                error = f"no_class: {rel} is not inside a class folder"
                yield self._item(rel, {"class": None}, {"relpath": rel}, error)
                continue
            class_name = rel.split("/", 1)[0]
            payload = {
                "relpath": rel,
                "line": None,
                "labels": [{"name": class_name, "value": "positive"}],
                "class_name": class_name,
                "class_index": classes.index(class_name),
                "patient_pseudonym": self._pseudonym(self._patient_from_path(rel)),
            }
            yield self._item(rel, {"class": class_name}, payload)

    # -- reading ------------------------------------------------------------------------------------

    def _source_fields(self, item: InputItem) -> dict[str, Any]:
        return {
            "manifest_uri": str(self.manifest) if self.layout == "csv" else None,
            "manifest_line": item.payload.get("line"),
            "license": self.params.get("license"),
            "license_url": self.params.get("license_url"),
            "citation": self.params.get("citation"),
        }

    def _read_bytes(self, item: InputItem) -> tuple[bytes | None, str | None]:
        """The file's bytes if it is still the file that was listed, else the reason it is not."""
        rel = item.payload["relpath"]
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(item.uri, flags)  # NONBLOCK: a FIFO swapped in cannot hang us
        except FileNotFoundError:
            return None, f"missing_file: {rel} vanished since listing"
        except OSError as exc:
            return None, f"file_changed: {rel} cannot be opened since listing ({exc.strerror})"
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                return None, f"file_changed: {rel} is no longer a regular file"
            data = stream.read(self.max_file_bytes + 1)
        if len(data) != item.size or sha256_bytes(data) != item.sha256:
            return None, f"file_changed: {rel} changed since listing"
        return data, None

    def read(self, item: InputItem) -> list[dict[str, Any]]:
        fields = self._source_fields(item)
        if item.error:
            return [self.quarantined_record(item, item.error, **fields)]
        data, error = self._read_bytes(item)
        if error:
            return [self.quarantined_record(item, error, **fields)]
        payload = item.payload
        record = new_record(
            self.sample_id(self.name, payload["relpath"], item.sha256),
            source=self.source_group(item.uri, item.sha256, item.size, member=None, **fields),
            image={"bytes": data, "sha256": item.sha256},
            subject={
                "patient_pseudonym": payload.get("patient_pseudonym"),
                "sex": payload.get("sex"),
                "age_band": payload.get("age_band"),
            },
            medical={
                "modality": self.params.get("modality"),
                "body_part": self.params.get("body_part"),
                "view": payload.get("view"),
                "labels": list(payload["labels"]),
                "class_name": payload.get("class_name"),
                "class_index": payload.get("class_index"),
            },
        )
        return [record]


__all__ = ["LabeledSource", "age_band", "label_value"]
