""".npz shards: one sample per row of each named array, several shards in natural order.

Only the array headers are read when the folder loads (shape, dtype: nothing unpickled); a shard's
arrays are read again when its batches are asked for (docs/data.md: formats, manifest keys).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from pytest_quantguard.data.detection import (
    DETECTION,
    NPZ_BOX_ARRAYS,
    NPZ_OPTIONAL_BOX_ARRAYS,
    check_box_headers,
    npz_labels,
)
from pytest_quantguard.data.npy import read_npy_header
from pytest_quantguard.data.source import (
    CHANGED,
    DEFAULT_INPUT_NAME,
    DEFAULT_LABEL_NAME,
    MANIFEST_NAME,
    FileDigest,
    Loaded,
    Part,
)
from pytest_quantguard.errors import QuantGuardError

NPZ_HOWTO = "np.savez(folder / 'shard_0.npz', inputs=x, labels=y)"


def load_npz(folder: Path, files: list[Path], manifest: dict[str, Any], digest: FileDigest) -> Loaded:
    """Check every shard's headers now (names, shapes, dtypes alike across shards); each part
    reads its shard when loaded."""
    input_names = list(manifest.get("inputs", [DEFAULT_INPUT_NAME]))
    label_name = manifest.get("labels", DEFAULT_LABEL_NAME)
    group_name, slice_name = manifest.get("groups"), manifest.get("slices")
    task = manifest.get("task")
    shards = [_inspect_npz(file, input_names, label_name, "labels" in manifest, group_name,
                           slice_name, task)
              for file in files]
    _check_consistent(shards)
    has_labels = shards[0]["has_labels"]
    label_arrays = [label_name]
    if task == DETECTION:  # (docs/data.md, "Detection ground truth")
        label_arrays = [*NPZ_BOX_ARRAYS, *(name for name in NPZ_OPTIONAL_BOX_ARRAYS
                                           if name in shards[0]["headers"])]
    used = [*input_names, *(label_arrays if has_labels else []), group_name, slice_name]
    warn_unused_arrays(shards[0]["headers"], [name for name in used if name], input_names,
                       shards[0]["n"], has_labels, str(files[0]), str(folder / MANIFEST_NAME))
    # detection labels are padded to the most boxes in one image over every shard
    width = max((int(np.diff(_read_arrays(shard["file"], ["box_offsets"])["box_offsets"]).max(
        initial=1)) for shard in shards), default=1) if task == DETECTION and has_labels else 0
    parts = []
    for shard in shards:
        file, n = shard["file"], shard["n"]
        digest.add_file(file)
        parts.append(Part(n, str(file),
                          _loader(file, n, input_names, label_arrays if has_labels else None,
                                  task, width),
                          None if group_name is None
                          else _array_loader(file, n, group_name, check_groups),
                          load_slices=None if slice_name is None
                          else _array_loader(file, n, slice_name, check_slices)))
    return Loaded(parts=parts, input_names=input_names, has_labels=has_labels,
                  sample_shapes={name: shape for name, (shape, _) in shards[0]["inputs"].items()})


def _inspect_npz(file: Path, input_names: list[str], label_name: str, labels_required: bool,
                 group_name: str | None = None, slice_name: str | None = None,
                 task: str | None = None) -> dict[str, Any]:
    """Read the array headers only (no data, nothing unpickled) and check what the set needs."""
    headers = _read_headers(file)
    missing = [name for name in input_names if name not in headers]
    if missing:
        raise QuantGuardError(f"{file}: no array named {', '.join(map(repr, missing))} (it has "
                              f"{', '.join(map(repr, headers)) or 'no arrays'}); name the input array "
                              f"{DEFAULT_INPUT_NAME!r} or list the names in {MANIFEST_NAME}: "
                              'inputs = ["..."]')
    if labels_required and label_name not in headers and task != DETECTION:
        raise QuantGuardError(f"{file}: no labels array {label_name!r} (named by {MANIFEST_NAME}); "
                              f"it has {', '.join(map(repr, headers))}")
    lengths = {name: headers[name][0][0] if headers[name][0] else None for name in input_names}
    if None in lengths.values() or len(set(lengths.values())) != 1:
        raise QuantGuardError(f"{file}: the input arrays need one row per sample and the same "
                              f"number of rows; got shapes "
                              f"{ {name: headers[name][0] for name in input_names} }")
    n = next(iter(lengths.values()))
    has_labels = label_name in headers
    label_shape = None
    if task == DETECTION:
        has_labels = check_box_headers(headers, n, str(file))
    elif has_labels:
        label_shape, label_dtype = headers[label_name]
        check_label_header(label_shape, label_dtype, n, str(file), task)
    # one label's shape: (seq_len,) for a language model's targets, else () ((n, 1) is squeezed)
    label_sample_shape = None if label_shape is None else (
        tuple(label_shape[1:]) if task == LANGUAGE_MODEL else ())
    if task == LANGUAGE_MODEL:
        check_token_shapes({name: headers[name][0] for name in input_names}, label_shape, str(file))
    if group_name is not None:
        _check_per_sample_header(file, headers, group_name, n, "groups", "group", "id")
    for name in input_names:  # (docs/data.md, "What is refused")
        check_dtype(headers[name][1], str(file), f"input {name!r}")
    slice_kind = None
    if slice_name is not None:
        _check_per_sample_header(file, headers, slice_name, n, "slices", "slice", "label")
        slice_kind = "text" if headers[slice_name][1].kind in "SUT" else "number"
    return {"file": file, "n": n, "has_labels": has_labels, "label_shape": label_sample_shape,
            "slice_kind": slice_kind, "headers": headers,
            "inputs": {name: (headers[name][0][1:], headers[name][1]) for name in input_names}}


def _read_headers(file: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Array name -> (shape, dtype) from the shard's .npy headers; object arrays are refused."""
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(file) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as handle:
                    shape, _, dtype = read_npy_header(handle)
                headers[member[:-4]] = (shape, dtype)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise QuantGuardError(f"{file}: not a readable .npz file ({error}); re-save it with "
                              f"{NPZ_HOWTO}") from None
    for name, (_, dtype) in headers.items():
        if dtype.hasobject:
            raise QuantGuardError(f"{file}: array {name!r} holds Python objects (a pickled object "
                                  "array); quantguard never unpickles data. Save plain numeric "
                                  f"arrays instead: {NPZ_HOWTO} with numeric dtypes")
    return headers


def _check_per_sample_header(file: Path, headers: dict[str, tuple[tuple[int, ...], np.dtype]],
                             name: str, n: int, key: str, noun: str, item: str) -> None:
    """The array a manifest key (groups, slices) names exists and holds one value per sample."""
    if name not in headers:
        raise QuantGuardError(f"{file}: no {noun} array {name!r} (named by {key} = {name!r} in "
                              f"{MANIFEST_NAME}); it has {', '.join(map(repr, headers))}. Save one "
                              f"{noun} {item} per sample (np.savez(path, inputs=x, labels=y, "
                              f"{name}={item}s))")
    shape = headers[name][0]
    if len(shape) != 1 or shape[0] != n:
        raise QuantGuardError(f"{file}: {noun} array {name!r} has shape {list(shape)}; it needs one "
                              f"{item} per sample ({n})")


def _check_consistent(shards: list[dict[str, Any]]) -> None:
    first = shards[0]
    for shard in shards[1:]:
        if shard["has_labels"] != first["has_labels"]:
            with_labels, without = (first, shard) if first["has_labels"] else (shard, first)
            raise QuantGuardError(f"{without['file']}: has no labels while {with_labels['file'].name} "
                                  "has; give every shard its labels (or none)")
        for name, (shape, dtype) in shard["inputs"].items():
            if (shape, dtype) != first["inputs"][name]:
                raise QuantGuardError(
                    f"{shard['file']}: array {name!r} has samples of shape {shape} ({dtype}) but "
                    f"{first['file'].name} has {first['inputs'][name][0]} "
                    f"({first['inputs'][name][1]}); every shard needs the same sample shape and dtype")
        if shard["label_shape"] != first["label_shape"]:
            raise QuantGuardError(f"{shard['file']}: labels of shape {shard['label_shape']} per sample "
                                  f"but {first['file'].name} has {first['label_shape']}; every shard "
                                  "needs the same label shape (one seq_len for token targets)")
        if shard["slice_kind"] != first["slice_kind"]:
            raise QuantGuardError(f"{shard['file']}: its slice labels are {shard['slice_kind']} but "
                                  f"{first['file'].name}'s are {first['slice_kind']}; save them the "
                                  "same way in every shard (strings, or integers)")


def _loader(file: Path, n: int, input_names: list[str], label_names: list[str] | None,
            task: str | None, width: int):
    stamp = file_stamp(file)

    def load(with_inputs: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Read the shard's arrays (only its labels when ``with_inputs`` is False)."""
        names = input_names if with_inputs else []
        arrays = _read_arrays(file, [*names, *(label_names or [])], stamp)
        inputs = {name: arrays[name] for name in names}
        if label_names is None:
            return inputs, None
        if task == DETECTION:
            return inputs, npz_labels(arrays, n, width, str(file))
        return inputs, check_labels(arrays[label_names[0]], n, str(file), task)

    return load


def _array_loader(file: Path, n: int, name: str, check: Callable[[np.ndarray, int, str], np.ndarray]):
    """Load one per-sample array of the shard (groups, slices) and check it."""
    stamp = file_stamp(file)

    def load_array() -> np.ndarray:
        return check(_read_arrays(file, [name], stamp)[name], n, f"{file} [{name}]")

    return load_array


def file_stamp(file: Path) -> tuple[int, int] | None:
    """Size and modification time: a file rewritten after the set was read (and digested) shows."""
    try:
        status = file.stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _read_arrays(file: Path, names: list[str],
                 stamp: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """The named arrays of a shard, read whole (never unpickled); refused when the file changed
    since ``stamp`` (docs/data.md, "Digest")."""
    if stamp is not None and file_stamp(file) != stamp:
        raise QuantGuardError(f"{file}: {CHANGED}")
    try:
        with np.load(file, allow_pickle=False) as archive:
            return {name: archive[name] for name in names}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise QuantGuardError(f"{file}: could not be read ({error}); re-save it with "
                              f"{NPZ_HOWTO}") from None
