"""A validation folder: an optional ``quantguard.toml`` manifest and ``*.npz`` shards (SPEC §3)."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard._files import hash_file
from pytest_quantguard.data.validation_set import (
    DEFAULT_INPUT_NAME,
    TASKS,
    Part,
    ValidationSet,
    _check_labels,
    _resolve_task,
    check_groups,
)
from pytest_quantguard.errors import QuantGuardError

MANIFEST_NAME = "quantguard.toml"
DEFAULT_LABEL_NAME = "labels"
# Every manifest key of SPEC §3. The supported ones work; the others are named, not ignored.
MANIFEST_KEYS = ("task", "inputs", "labels", "groups", "class_names", "output", "label_column",
                 "preprocess")
NOT_YET_SUPPORTED = {
    "label_column": "CSV data",
    "preprocess": "manifest preprocessing",
}
# Formats SPEC §3 names that this version does not load yet: named in the error, never skipped.
LATER_FORMATS = {".npy": "inputs.npy + labels.npy", ".csv": "CSV tables", ".png": "image folders",
                 ".jpg": "image folders", ".jpeg": "image folders"}
NPZ_HOWTO = "np.savez(folder / 'shard_0.npz', inputs=x, labels=y)"


def load_folder(path: Path) -> ValidationSet:
    """Read the manifest, find the shards in natural order, check them, digest them."""
    path = Path(path)
    if not path.exists():
        raise QuantGuardError(f"validation data folder not found: {path}. Pass an existing folder "
                              "of .npz shards (--quant-data DIR, or quant_data in the ini file)")
    folder, files = (path.parent, [path]) if path.is_file() else (path, None)
    manifest = _read_manifest(folder / MANIFEST_NAME)
    if files is None:
        files = _data_files(folder)
    if files[0].suffix != ".npz":
        raise QuantGuardError(f"{files[0]}: only .npz validation data is supported by this version; "
                              f"convert it with {NPZ_HOWTO}")
    input_names = list(manifest.get("inputs", [DEFAULT_INPUT_NAME]))
    label_name = manifest.get("labels", DEFAULT_LABEL_NAME)
    group_name = manifest.get("groups")
    shards = [_inspect_npz(file, input_names, label_name, "labels" in manifest, group_name)
              for file in files]
    _check_consistent(shards)
    has_labels = shards[0]["has_labels"]
    digest = hashlib.sha256()
    parts = []
    for shard in shards:
        file = shard["file"]
        relative = file.relative_to(folder).as_posix()
        digest.update(f"{relative}\0{file.stat().st_size}\0".encode())
        hash_file(digest, file)
        parts.append(Part(shard["n"], str(file),
                          _loader(file, shard["n"], input_names,
                                  label_name if has_labels else None),
                          None if group_name is None else _group_loader(file, shard["n"], group_name)))
    digest.update(json.dumps(manifest, sort_keys=True).encode())
    task = _resolve_task(manifest.get("task"), has_labels, str(folder / MANIFEST_NAME))
    return ValidationSet._from_parts(parts=parts, input_names=input_names, has_labels=has_labels,
                                     task=task, digest=digest.hexdigest(), path=path,
                                     manifest=manifest)


def _read_manifest(file: Path) -> dict[str, Any]:
    if not file.exists():
        return {}
    try:
        manifest = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise QuantGuardError(f"{file}: not valid TOML ({error}); fix the syntax") from None
    unknown = sorted(set(manifest) - set(MANIFEST_KEYS))
    if unknown:
        raise QuantGuardError(f"{file}: unknown key(s) {', '.join(unknown)}; the manifest keys are "
                              f"{', '.join(MANIFEST_KEYS)}")
    for key, what in NOT_YET_SUPPORTED.items():
        if key in manifest:
            raise QuantGuardError(f"{file}: key {key!r} ({what}) is part of the contract but not "
                                  "supported by this version yet; remove it")
    if "task" in manifest and manifest["task"] not in TASKS:
        raise QuantGuardError(f"{file}: task = {manifest['task']!r} is unknown; use one of "
                              f"{', '.join(TASKS)}")
    inputs = manifest.get("inputs")
    if inputs is not None and (not isinstance(inputs, list) or not inputs
                               or not all(isinstance(name, str) for name in inputs)):
        raise QuantGuardError(f"{file}: inputs must be a non-empty list of array names, "
                              f'e.g. inputs = ["inputs"]')
    names = manifest.get("class_names")
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(name, str) for name in names)):
        raise QuantGuardError(f"{file}: class_names must be a list of strings")
    for key in ("labels", "output"):
        if key in manifest and not isinstance(manifest[key], (str, int)):
            raise QuantGuardError(f"{file}: {key} must be a name (string)")
    if "groups" in manifest and not isinstance(manifest["groups"], str):
        raise QuantGuardError(f"{file}: groups must be a name (string) of the array holding each "
                              'sample\'s group id, e.g. groups = "doc_id"')
    return manifest


def _natural_key(path: Path) -> list[Any]:
    return [int(token) if token.isdigit() else token.lower()
            for token in re.split(r"(\d+)", path.name)]


def _data_files(folder: Path) -> list[Path]:
    candidates = sorted((p for p in folder.iterdir()
                         if p.is_file() and not p.name.startswith(".") and p.name != MANIFEST_NAME),
                        key=_natural_key)
    npz = [p for p in candidates if p.suffix.lower() == ".npz"]
    later = [p for p in candidates if p.suffix.lower() in LATER_FORMATS]
    if npz and later:
        raise QuantGuardError(f"{folder}: mixed data formats ({npz[0].name}, {later[0].name}); keep one "
                              "format per folder")
    if later:
        raise QuantGuardError(f"{folder}: {LATER_FORMATS[later[0].suffix.lower()]} "
                              f"({later[0].name}) are not supported by this version yet; convert "
                              f"the data to .npz shards: {NPZ_HOWTO}")
    if not npz:
        raise QuantGuardError(f"{folder}: no validation data found (the folder has no .npz files); "
                              f"write the samples as .npz shards: {NPZ_HOWTO}")
    return npz


def _inspect_npz(file: Path, input_names: list[str], label_name: str,
                 labels_required: bool, group_name: str | None = None) -> dict[str, Any]:
    """Read the array headers only (no data, nothing unpickled) and check what the set needs."""
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(file) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = reader(handle)
                headers[member[:-4]] = (shape, dtype)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise QuantGuardError(f"{file}: not a readable .npz file ({error}); re-save it with "
                              f"{NPZ_HOWTO}") from None
    for name, (_, dtype) in headers.items():
        if dtype.hasobject:
            raise QuantGuardError(f"{file}: array {name!r} holds Python objects (a pickled object "
                                  "array); quantguard never unpickles data. Save plain numeric "
                                  f"arrays instead: {NPZ_HOWTO} with numeric dtypes")
    missing = [name for name in input_names if name not in headers]
    if missing:
        raise QuantGuardError(f"{file}: no array named {', '.join(map(repr, missing))} (it has "
                              f"{', '.join(map(repr, headers)) or 'no arrays'}); name the input array "
                              f"{DEFAULT_INPUT_NAME!r} or list the names in {MANIFEST_NAME}: "
                              'inputs = ["..."]')
    if labels_required and label_name not in headers:
        raise QuantGuardError(f"{file}: no labels array {label_name!r} (named by {MANIFEST_NAME}); "
                              f"it has {', '.join(map(repr, headers))}")
    lengths = {name: headers[name][0][0] if headers[name][0] else None for name in input_names}
    if None in lengths.values() or len(set(lengths.values())) != 1:
        raise QuantGuardError(f"{file}: the input arrays need one row per sample and the same "
                              f"number of rows; got shapes "
                              f"{ {name: headers[name][0] for name in input_names} }")
    n = next(iter(lengths.values()))
    has_labels = label_name in headers
    if has_labels:
        shape = headers[label_name][0]
        count = shape[0] if shape else 0
        if count != n:
            raise QuantGuardError(f"{file}: {count} labels for {n} input samples; save exactly one "
                                  "label per input sample")
    if group_name is not None:
        if group_name not in headers:
            raise QuantGuardError(f"{file}: no group array {group_name!r} (named by groups = "
                                  f"{group_name!r} in {MANIFEST_NAME}); it has "
                                  f"{', '.join(map(repr, headers))}. Save one group id per sample "
                                  f"(np.savez(path, inputs=x, labels=y, {group_name}=ids))")
        shape = headers[group_name][0]
        if len(shape) != 1 or shape[0] != n:
            raise QuantGuardError(f"{file}: group array {group_name!r} has shape {list(shape)}; it "
                                  f"needs one id per sample ({n})")
    return {"file": file, "n": n, "has_labels": has_labels,
            "inputs": {name: (headers[name][0][1:], headers[name][1]) for name in input_names}}


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


def _loader(file: Path, n: int, input_names: list[str], label_name: str | None):
    def load(with_inputs: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Read the shard's arrays (only its labels when ``with_inputs`` is False)."""
        try:
            with np.load(file, allow_pickle=False) as archive:
                inputs = {name: archive[name] for name in (input_names if with_inputs else [])}
                labels = archive[label_name] if label_name is not None else None
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise QuantGuardError(f"{file}: could not be read ({error}); re-save it with "
                                  f"{NPZ_HOWTO}") from None
        if labels is not None:
            labels = _check_labels(labels, n, str(file))
        return inputs, labels

    return load


def _group_loader(file: Path, n: int, group_name: str):
    def load_groups() -> np.ndarray:
        try:
            with np.load(file, allow_pickle=False) as archive:
                groups = archive[group_name]
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise QuantGuardError(f"{file}: could not be read ({error}); re-save it with "
                                  f"{NPZ_HOWTO}") from None
        return check_groups(groups, n, f"{file} [{group_name}]")

    return load_groups
