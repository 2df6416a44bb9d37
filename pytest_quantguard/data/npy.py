"""``inputs.npy`` + ``labels.npy`` (+ groups, slices arrays): memory-mapped, read one window at a time.

A long-lived map keeps every page it ever touched resident: streaming a 1 GB ``inputs.npy``
through one map was measured at ~981 MB RSS. The inputs are therefore re-mapped every
``WINDOW_BYTES`` and each batch is copied out, so dropping the old map drops its pages (munmap);
only the headers are parsed up front, and nothing is ever unpickled.
"""

from __future__ import annotations

import math
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pytest_quantguard.data.checks import (
    LANGUAGE_MODEL,
    check_dtype,
    check_groups,
    check_label_header,
    check_labels,
    check_slices,
    check_token_shapes,
    warn_unused_arrays,
)
from pytest_quantguard.data.source import (
    CHANGED,
    DEFAULT_INPUT_NAME,
    DEFAULT_LABEL_NAME,
    MANIFEST_NAME,
    FileDigest,
    Loaded,
    Part,
    listing,
)
from pytest_quantguard.errors import QuantGuardError

# Bytes of input rows mapped at once: large enough that re-opening costs nothing (~0.3 ms per
# window), small enough that resident pages stay bounded whatever the file size.
WINDOW_BYTES = 16 << 20
NPY_HOWTO = "np.save(folder / 'inputs.npy', x); np.save(folder / 'labels.npy', y)"


def read_npy_header(handle: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an open ``.npy`` stream, reading the header only."""
    version = np.lib.format.read_magic(handle)
    reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
              else np.lib.format.read_array_header_2_0)
    return reader(handle)


class NpyArray:
    """One ``.npy`` file, checked from its header: numeric, complete, rows first."""

    def __init__(self, file: Path, role: str):
        self.file = file
        try:
            with file.open("rb") as handle:
                self.shape, self.fortran_order, self.dtype = read_npy_header(handle)
                offset = handle.tell()
            self.stamp = self._stamp()
        except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError) as error:
            # a garbled header makes numpy's literal parser raise tokenize's own errors
            raise QuantGuardError(f"{file}: not a readable .npy file ({error}); re-save the {role} "
                                  f"with {NPY_HOWTO}") from None
        if any(size < 0 for size in self.shape):
            raise QuantGuardError(f"{file}: the header gives a negative size (shape "
                                  f"{list(self.shape)}); copy or re-save the file")
        if self.dtype.hasobject:
            raise QuantGuardError(f"{file}: the {role} array holds Python objects (a pickled object "
                                  "array); quantguard never unpickles data. Save a plain numeric "
                                  f"array instead: {NPY_HOWTO} with a numeric dtype")
        expected = offset + math.prod(self.shape) * self.dtype.itemsize
        size = file.stat().st_size
        if size < expected:
            raise QuantGuardError(f"{file}: truncated ({size} bytes, the header promises {expected} "
                                  f"for shape {list(self.shape)}); copy or re-save the file")
        if not self.shape:
            raise QuantGuardError(f"{file}: a scalar; the {role} array needs one row per sample")

    def _stamp(self) -> tuple[int, int] | None:
        try:
            status = self.file.stat()
        except OSError:
            return None
        return status.st_size, status.st_mtime_ns

    @property
    def n(self) -> int:
        return self.shape[0]

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def open(self) -> np.ndarray:
        """The whole array, memory-mapped (pages load on first touch)."""
        if self._stamp() != self.stamp:  # the digest no longer describes it (docs/data.md, "Digest")
            raise QuantGuardError(f"{self.file}: {CHANGED}")
        try:
            return np.load(self.file, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise QuantGuardError(f"{self.file}: could not be read ({error}); was it changed or "
                                  f"removed after loading? Re-save it with {NPY_HOWTO}") from None

    def read(self) -> np.ndarray:
        """The whole array in memory (labels, groups, slices: small, one row per sample)."""
        return np.array(self.open())

    def rows(self, batch_size: int) -> Iterator[np.ndarray]:
        """Consecutive row blocks of ``batch_size``, copied out of a map re-opened per window."""
        window_rows = max(batch_size, WINDOW_BYTES // max(self.row_bytes, 1))
        mapped, window_stop = None, 0
        for start in range(0, self.n, batch_size):
            stop = min(start + batch_size, self.n)
            if mapped is None or stop > window_stop:
                mapped = None  # unmap the old window before mapping the next
                mapped, window_stop = self.open(), start + window_rows
            yield np.array(mapped[start:stop], order="C")


def load_npy(folder: Path, manifest: dict[str, Any], digest: FileDigest) -> Loaded:
    """The arrays named by the manifest (default ``inputs.npy``, ``labels.npy`` if present)."""
    present = sorted(path for path in folder.glob("*.npy") if path.is_file())
    input_names = list(manifest.get("inputs", [DEFAULT_INPUT_NAME]))
    inputs = {name: NpyArray(_named_file(folder, name, "inputs", manifest, present), f"input {name!r}")
              for name in input_names}
    for name, array in inputs.items():
        check_dtype(array.dtype, str(array.file), f"input {name!r}")
    label_name = manifest.get("labels", DEFAULT_LABEL_NAME)
    labels_file = folder / f"{label_name}.npy"
    if "labels" in manifest:
        _named_file(folder, label_name, "labels", manifest, present)
    labels = NpyArray(labels_file, "labels") if labels_file.is_file() else None
    group_name, slice_name = manifest.get("groups"), manifest.get("slices")
    groups = (None if group_name is None
              else NpyArray(_named_file(folder, group_name, "groups", manifest, present), "groups"))
    slices = (None if slice_name is None
              else NpyArray(_named_file(folder, slice_name, "slices", manifest, present), "slices"))
    task = manifest.get("task")
    n = _check_lengths(inputs, labels, groups, slices, task)
    # each file once, in load order (the slices may be, say, the groups array)
    read = [*inputs.values(), *(a for a in (labels, groups, slices) if a is not None)]
    for file in dict.fromkeys(array.file for array in read):
        digest.add_file(file)
    _warn_unused(present, read, input_names, n, labels is not None, folder)

    def load(with_inputs: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        arrays = {name: array.open() for name, array in inputs.items()} if with_inputs else {}
        return arrays, None if labels is None else check_labels(labels.read(), n, str(labels.file),
                                                                task)

    def stream(batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        readers = {name: array.rows(batch_size) for name, array in inputs.items()}
        for _ in range(0, n, batch_size):
            yield {name: next(reader) for name, reader in readers.items()}

    def load_groups() -> np.ndarray:
        assert groups is not None
        return check_groups(groups.read(), n, f"{groups.file} [{group_name}]")

    def load_slices() -> np.ndarray:
        assert slices is not None
        return check_slices(slices.read(), n, f"{slices.file} [{slice_name}]")

    part = Part(n, str(inputs[input_names[0]].file), load,
                None if groups is None else load_groups, stream,
                load_slices=None if slices is None else load_slices)
    return Loaded(parts=[part], input_names=input_names, has_labels=labels is not None,
                  sample_shapes={name: array.shape[1:] for name, array in inputs.items()},
                  label_origins=None if labels is None else [str(labels.file)])


def _warn_unused(present: list[Path], read: list[NpyArray], input_names: list[str], n: int,
                 has_labels: bool, folder: Path) -> None:
    """The folder's other .npy files: arrays the user probably meant to use (headers only)."""
    used = {array.file for array in read}
    headers = {}
    for file in present:
        if file in used:
            continue
        try:
            with file.open("rb") as handle:
                shape, _, dtype = read_npy_header(handle)
        except (ValueError, OSError, EOFError):
            continue  # not an array the set could use anyway
        headers[file.stem] = (shape, dtype)
    warn_unused_arrays(headers, [], input_names, n, has_labels, str(folder),
                       str(folder / MANIFEST_NAME))


def _named_file(folder: Path, name: str, key: str, manifest: dict[str, Any],
                present: list[Path]) -> Path:
    file = folder / f"{name}.npy"
    if file.is_file():
        return file
    if key in manifest:
        raise QuantGuardError(f"{file}: not found, but {folder / MANIFEST_NAME} names {name!r} in "
                              f"{key}; the folder's .npy files are {listing(present)}. Save the array "
                              f"as {name}.npy or fix the name in {MANIFEST_NAME}")
    raise QuantGuardError(f"{folder}: no {name}.npy (the folder's .npy files are {listing(present)}); "
                          f"name the input array {name}.npy, or list the arrays in {MANIFEST_NAME}: "
                          'inputs = ["..."]')


def _check_lengths(inputs: dict[str, NpyArray], labels: NpyArray | None, groups: NpyArray | None,
                   slices: NpyArray | None = None, task: str | None = None) -> int:
    lengths = {array.file.name: array.n for array in inputs.values()}
    if len(set(lengths.values())) != 1:
        raise QuantGuardError(f"{next(iter(inputs.values())).file.parent}: the input arrays have "
                              f"different numbers of samples {lengths}; every input needs one row "
                              "per sample")
    n = next(iter(lengths.values()))
    if labels is not None:
        check_label_header(labels.shape, labels.dtype, n, str(labels.file), task)
    if task == LANGUAGE_MODEL and "input_ids" in inputs:
        check_token_shapes({name: array.shape for name, array in inputs.items()},
                           None if labels is None else labels.shape, str(inputs["input_ids"].file))
    if groups is not None and (len(groups.shape) != 1 or groups.n != n):
        raise QuantGuardError(f"{groups.file}: group array has shape {list(groups.shape)}; it needs "
                              f"one id per sample ({n})")
    if slices is not None and (len(slices.shape) != 1 or slices.n != n):
        raise QuantGuardError(f"{slices.file}: slice array has shape {list(slices.shape)}; it needs "
                              f"one label per sample ({n})")
    return n
