"""CSV tables: a header row, one sample per row; several files are shards in natural order.

The feature columns become one float32 input ``inputs`` (samples × columns); ``label_column``
(default ``label``) gives the labels, ``groups`` may name a group-id column and ``slices`` a
slice-label column (both read as text). Read with the ``csv`` module and numpy only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard.data.checks import check_groups, check_slices
from pytest_quantguard.data.source import (
    DEFAULT_INPUT_NAME,
    MANIFEST_NAME,
    FileDigest,
    Loaded,
    Part,
    read_bytes,
    read_unchanged,
)
from pytest_quantguard.errors import QuantGuardError

DEFAULT_LABEL_COLUMN = "label"


@dataclass(frozen=True)
class Columns:
    """Which columns are what, fixed by the first file; every shard must have its header."""

    header: tuple[str, ...]
    features: tuple[str, ...]
    label: str | None
    group: str | None
    slices: str | None
    first_file: str
    class_names: tuple[str, ...] | None


@dataclass(frozen=True)
class Table:
    """One CSV file's cells as text, with the line each row ends on (for messages)."""

    file: Path
    header: tuple[str, ...]
    rows: list[list[str]]
    lines: list[int]

    def cells(self, column: str) -> list[str]:
        index = self.header.index(column)
        return [row[index] for row in self.rows]


def load_csv(folder: Path, files: list[Path], manifest: dict[str, Any], digest: FileDigest) -> Loaded:
    """Check every file now (header, numbers, labels), keep none of it: parts re-read on demand."""
    columns: Columns | None = None
    parts = []
    for file in files:
        data = read_bytes(file)
        read = digest.add_bytes(file, data)  # every later read must find these bytes
        table = parse_table(file, data)
        if columns is None:
            columns = choose_columns(table, manifest)
        _arrays(table, columns, with_inputs=True)
        parts.append(Part(len(table.rows), str(file), _loader(file, read, columns),
                          None if columns.group is None
                          else _column_loader(file, read, columns, columns.group, check_groups),
                          load_slices=None if columns.slices is None
                          else _column_loader(file, read, columns, columns.slices, check_slices)))
    assert columns is not None
    return Loaded(parts=parts, input_names=[DEFAULT_INPUT_NAME], has_labels=columns.label is not None,
                  sample_shapes={DEFAULT_INPUT_NAME: (len(columns.features),)})


def parse_table(file: Path, data: bytes) -> Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise QuantGuardError(f"{file}: not UTF-8 text ({error}); save the table as UTF-8 CSV") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: tuple[str, ...] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = tuple(cell.strip() for cell in row)
                continue
            if len(row) != len(header):
                raise QuantGuardError(f"{file}, line {reader.line_num}: {len(row)} cells but the "
                                      f"header has {len(header)} columns; give every row one cell "
                                      "per column")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as error:
        raise QuantGuardError(f"{file}, line {reader.line_num}: not valid CSV ({error}); fix the "
                              "row (quote cells that hold commas or quotes)") from None
    if header is None:
        raise QuantGuardError(f"{file}: empty (no header row); the first row names the columns, "
                              "e.g. f1,f2,label")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise QuantGuardError(f"{file}: the header repeats column(s) {repeated}; give every column "
                              "its own name")
    return Table(file, header, rows, lines)


def choose_columns(table: Table, manifest: dict[str, Any]) -> Columns:
    """Label, group and feature columns from the manifest, or the defaults, checked on ``table``."""
    file, header = table.file, table.header
    label: str | None = manifest.get("label_column", DEFAULT_LABEL_COLUMN)
    if label not in header:
        if "label_column" in manifest or manifest.get("task") != "fidelity":
            named = f"named by label_column in {MANIFEST_NAME}" if "label_column" in manifest \
                else "the default"
            raise QuantGuardError(f"{file}: no label column {label!r} ({named}); the columns are "
                                  f"{_names(header)}. Name the label column in {MANIFEST_NAME}: "
                                  'label_column = "...", or set task = "fidelity" there for a '
                                  "table without labels")
        label = None
    group, slices = manifest.get("groups"), manifest.get("slices")
    for key, name in (("groups", group), ("slices", slices)):
        if name is not None and name not in header:
            raise QuantGuardError(f"{file}: no column {name!r} (named by {key} in {MANIFEST_NAME}); "
                                  f"the columns are {_names(header)}")
    if "inputs" in manifest:
        features = tuple(manifest["inputs"])
        missing = [name for name in features if name not in header]
        if missing:
            raise QuantGuardError(f"{file}: no column(s) {_names(missing)} (named by inputs in "
                                  f"{MANIFEST_NAME}); the columns are {_names(header)}")
        clash = [name for name in features if name in (label, group, slices)]
        if clash:
            raise QuantGuardError(f"{file}: column {clash[0]!r} is listed in inputs but is the label, "
                                  f"group or slice column; remove it from inputs in {MANIFEST_NAME}")
    else:
        others = [(index, name) for index, name in enumerate(header)
                  if name not in (label, group, slices)]
        unnamed = [index + 1 for index, name in others if not name]
        if unnamed:
            raise QuantGuardError(f"{file}: column {unnamed[0]} has no name (a saved DataFrame "
                                  "index?); name it, save without it (df.to_csv(path, index=False)), "
                                  f"or list the feature columns in {MANIFEST_NAME}: inputs = [...]")
        # without rows nothing tells text from numbers: take them all (the set is empty anyway)
        features = tuple(name for _, name in others
                         if not table.rows or _looks_numeric(table.cells(name)))
        if not features:
            raise QuantGuardError(f"{file}: no numeric feature columns besides the label; the "
                                  f"columns are {_names(header)}")
    class_names = manifest.get("class_names")
    return Columns(header, features, label, group, slices, table.file.name,
                   None if class_names is None else tuple(class_names))


def _arrays(table: Table, columns: Columns, *, with_inputs: bool
            ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(features float32, labels) of one table, every cell checked."""
    _check_header(table, columns)
    features = None
    if with_inputs:
        values = [_numbers(table, name) for name in columns.features]
        features = (np.stack(values, axis=1) if table.rows
                    else np.zeros((0, len(values)))).astype(np.float32)
    labels = None if columns.label is None else _labels(table, columns.label, columns.class_names)
    return features, labels


def _check_header(table: Table, columns: Columns) -> None:
    if table.header != columns.header:
        raise QuantGuardError(f"{table.file}: its columns ({_names(table.header)}) differ from "
                              f"{columns.first_file}'s ({_names(columns.header)}); give every CSV "
                              "shard the same header")


def _text_column(table: Table, column: str) -> np.ndarray:
    """A column's cells as stripped strings (group ids, slice labels)."""
    return np.array([cell.strip() for cell in table.cells(column)], dtype=str)


def _numbers(table: Table, column: str) -> np.ndarray:
    cells = table.cells(column)
    try:
        return np.array(cells, dtype=str).astype(np.float64)
    except ValueError:
        pass
    for cell, line in zip(cells, table.lines, strict=True):
        where = f"{table.file}, line {line}, column {column!r}"
        if not cell.strip():
            raise QuantGuardError(f"{where}: empty cell; fill in the value (nan if it is unknown) or "
                                  f"leave the column out (inputs = [...] in {MANIFEST_NAME})")
        try:
            float(cell)
        except ValueError:
            raise QuantGuardError(f"{where}: {cell!r} is not a number; feature columns must be "
                                  f"numeric (list the feature columns in {MANIFEST_NAME}: "
                                  "inputs = [...])") from None
    return np.array([float(cell) for cell in cells])


def _labels(table: Table, column: str, class_names: tuple[str, ...] | None) -> np.ndarray:
    """Class indices (int64) when every label is a whole number or a class name, else float64."""
    cells = [cell.strip() for cell in table.cells(column)]
    if class_names is not None and all(cell in class_names for cell in cells):
        index = {name: i for i, name in enumerate(class_names)}
        return np.array([index[cell] for cell in cells], dtype=np.int64)
    try:
        values = np.array(cells, dtype=str).astype(np.float64)
    except ValueError:
        cell, line = next((cell, line) for cell, line in zip(cells, table.lines, strict=True)
                          if not _is_number(cell))
        known = (f"it is not one of class_names {list(class_names)} in {MANIFEST_NAME}"
                 if class_names is not None else
                 f"write class indices (0, 1, …) or list the class names in {MANIFEST_NAME} "
                 "(class_names = [...]) to map names to indices")
        raise QuantGuardError(f"{table.file}, line {line}, column {column!r}: label {cell!r} is not a "
                              f"number; {known}") from None
    if not np.isfinite(values).all():  # (docs/data.md, "Tasks and labels")
        cell, line = next((cell, line) for cell, line, value in zip(cells, table.lines, values,
                                                                    strict=True) if not np.isfinite(value))
        raise QuantGuardError(f"{table.file}, line {line}, column {column!r}: label {cell!r} is not "
                              "finite; labels are class indices or finite regression targets")
    if (values == np.round(values)).all() and (np.abs(values) < 2**53).all():
        return values.astype(np.int64)
    return values


def _loader(file: Path, read: bytes, columns: Columns):
    def load(with_inputs: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Re-read the table (only the label column is converted when ``with_inputs`` is False)."""
        features, labels = _arrays(parse_table(file, read_unchanged(file, read)), columns,
                                   with_inputs=with_inputs)
        return ({DEFAULT_INPUT_NAME: features} if features is not None else {}), labels

    return load


def _column_loader(file: Path, read: bytes, columns: Columns, column: str,
                   check: Callable[[np.ndarray, int, str], np.ndarray]):
    """Re-read one per-sample text column (groups, slices) and check it."""
    def load_column() -> np.ndarray:
        table = parse_table(file, read_unchanged(file, read))
        _check_header(table, columns)
        return check(_text_column(table, column), len(table.rows), f"{file} [{column}]")

    return load_column


def _looks_numeric(cells: list[str]) -> bool:
    """A column is numeric when at least half its non-empty cells are numbers: a text column is
    left out, a numeric one with a stray text cell is a feature whose bad cell is named (a text
    first cell once dropped such a column silently)."""
    filled = [cell for cell in cells if cell.strip()]
    try:
        np.array(filled, dtype=str).astype(np.float64)  # all numbers: the usual case, vectorized
        return bool(filled)
    except ValueError:
        pass
    numbers = sum(_is_number(cell) for cell in filled)
    return bool(filled) and 2 * numbers >= len(filled)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _names(names: Any) -> str:
    return ", ".join(repr(name) for name in names)
