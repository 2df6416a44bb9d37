"""A validation folder: an optional ``quantguard.toml`` manifest and one data format (SPEC §3).

The formats: ``*.npz`` shards (here), ``inputs.npy`` + ``labels.npy`` memory-mapped (npy.py),
``*.csv`` tables (tables.py) and image class folders (images.py). This module reads the manifest,
finds the one format in the folder, hands it the files and digests what it reads.
"""

from __future__ import annotations

import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard.data.images import IMAGE_HOWTO, class_folders, is_image, load_images
from pytest_quantguard.data.npy import NPY_HOWTO, load_npy, read_npy_header
from pytest_quantguard.data.preprocess import Preprocess
from pytest_quantguard.data.source import (
    DEFAULT_LABEL_NAME,
    MANIFEST_NAME,
    FileDigest,
    Loaded,
    natural_key,
)
from pytest_quantguard.data.tables import load_csv
from pytest_quantguard.data.validation_set import (
    DEFAULT_INPUT_NAME,
    LANGUAGE_MODEL,
    TASKS,
    Part,
    ValidationSet,
    _check_labels,
    _resolve_task,
    check_groups,
    check_label_header,
    check_slices,
    check_token_shapes,
)
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.vocabulary import POOLINGS

__all__ = ["MANIFEST_NAME", "load_folder"]

# Every manifest key of SPEC §3; anything else is an error naming the file.
MANIFEST_KEYS = ("task", "inputs", "labels", "groups", "slices", "class_names", "output",
                 "label_column", "pooling", "preprocess")
FORMATS = {"npz": ".npz shards", "npy": ".npy arrays", "csv": "CSV tables",
           "images": "image class folders"}
NPZ_HOWTO = "np.savez(folder / 'shard_0.npz', inputs=x, labels=y)"


def load_folder(path: Path) -> ValidationSet:
    """Read the manifest, find the one data format, load and check it, digest what was read."""
    path = Path(path)
    if not path.exists():
        raise QuantGuardError(f"validation data folder not found: {path}. Pass an existing folder "
                              "of validation data (.npz shards, inputs.npy + labels.npy, .csv tables "
                              "or image class folders) with --quant-data DIR, or quant_data in the "
                              "ini file")
    folder, single = (path.parent, path) if path.is_file() else (path, None)
    manifest_file = folder / MANIFEST_NAME
    manifest = _read_manifest(manifest_file)
    preprocess = (Preprocess.from_table(manifest["preprocess"], manifest_file)
                  if "preprocess" in manifest else None)
    kind, files = _single_file(single) if single is not None else _find_format(folder, manifest)
    _check_keys_fit(kind, manifest, manifest_file)
    digest = FileDigest(folder)
    if kind == "npz":
        loaded = _load_npz(folder, files, manifest, digest)
    elif kind == "npy":
        loaded = load_npy(folder, manifest, digest)
    elif kind == "csv":
        loaded = load_csv(folder, files, manifest, digest)
    else:
        loaded = load_images(folder, files, manifest, digest)
    if preprocess is not None:
        preprocess = preprocess.bind(loaded.input_names, loaded.sample_shapes, manifest_file)
    task = _resolve_task(manifest.get("task"), loaded.has_labels, str(manifest_file))
    class_names = loaded.class_names or manifest.get("class_names")
    dataset = ValidationSet._from_parts(parts=loaded.parts, input_names=loaded.input_names,
                                        has_labels=loaded.has_labels, task=task,
                                        digest=digest.finish(manifest), path=path, manifest=manifest,
                                        preprocess=preprocess, class_names=class_names)
    if class_names is not None and loaded.has_labels and task == "classification":
        _check_label_range(loaded, class_names, manifest_file)
    return dataset


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
    if "slices" in manifest and not isinstance(manifest["slices"], str):
        raise QuantGuardError(f"{file}: slices must be a name (string) of the array or column holding "
                              'each sample\'s slice label, e.g. slices = "camera"')
    if "pooling" in manifest and manifest["pooling"] not in POOLINGS:
        raise QuantGuardError(f"{file}: pooling = {manifest['pooling']!r} is unknown; use one of "
                              f"{', '.join(map(repr, POOLINGS))} (how per-token outputs are reduced to "
                              "one vector per sample)")
    if "label_column" in manifest and not isinstance(manifest["label_column"], str):
        raise QuantGuardError(f'{file}: label_column must be a column name, e.g. label_column = "y"')
    return manifest


def _single_file(file: Path) -> tuple[str, list[Path]]:
    suffix = file.suffix.lower()
    if suffix in (".npz", ".csv"):
        return suffix[1:], [file]
    if suffix == ".npy":
        raise QuantGuardError(f"{file}: pass the folder that holds it ({file.parent}); .npy data is "
                              f"read as a folder of named arrays: {NPY_HOWTO}")
    raise QuantGuardError(f"{file}: not a validation data file; pass a .npz or .csv file, or a folder "
                          "(.npz shards, inputs.npy + labels.npy, .csv tables or image class folders)")


def _find_format(folder: Path, manifest: dict[str, Any]) -> tuple[str, list[Path]]:
    """The one format in ``folder`` and its files (shards in natural order, class folders sorted)."""
    files = sorted((p for p in folder.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.name != MANIFEST_NAME),
                   key=natural_key)
    found = {kind: [p for p in files if p.suffix.lower() == f".{kind}"] for kind in ("npz", "npy", "csv")}
    found["images"] = class_folders(folder)
    present = [kind for kind, paths in found.items() if paths]
    loose_images = [p for p in files if is_image(p)]
    if loose_images and not present:
        raise QuantGuardError(f"{folder}: images ({loose_images[0].name}) must sit in one folder per "
                              f"class ({IMAGE_HOWTO}); the folder name is the class")
    if not present:
        raise QuantGuardError(f"{folder}: no validation data found (the folder has no .npz files); "
                              f"write the samples as .npz shards: {NPZ_HOWTO}, or use inputs.npy + "
                              "labels.npy, .csv tables or image class folders (CLASS/*.png)")
    if len(present) == 1 and not loose_images:
        return present[0], found[present[0]]
    chosen = _named_by_manifest(folder, manifest, found)
    if chosen is None:
        examples = [found[kind][0].name for kind in present] + [p.name for p in loose_images[:1]]
        raise QuantGuardError(
            f"{folder}: mixed data formats ({', '.join(examples)}); keep one format per folder, or "
            f"say in {MANIFEST_NAME} which to load: inputs = [...] naming the .npy arrays, or "
            "label_column = \"...\" for the CSV tables")
    return chosen, found[chosen]


def _named_by_manifest(folder: Path, manifest: dict[str, Any],
                       found: dict[str, list[Path]]) -> str | None:
    """In a folder of several formats, the one the manifest names unambiguously (else None)."""
    if "label_column" in manifest and found["csv"]:
        return "csv"
    if "inputs" in manifest and all((folder / f"{name}.npy").is_file() for name in manifest["inputs"]):
        return "npy"
    return None


def _check_keys_fit(kind: str, manifest: dict[str, Any], file: Path) -> None:
    """Keys that mean nothing for this format are errors, not silently ignored."""
    if "label_column" in manifest and kind != "csv":
        raise QuantGuardError(f"{file}: label_column names a CSV column, but the data are "
                              f"{FORMATS[kind]}; remove it" +
                              (' (name the labels array with labels = "...")'
                               if kind in ("npz", "npy") else ""))
    if kind == "csv" and "labels" in manifest:
        raise QuantGuardError(f"{file}: for CSV tables name the label column with label_column = "
                              f"{manifest['labels']!r} instead of labels")
    for key in ("labels", "groups"):
        if kind == "images" and key in manifest:
            raise QuantGuardError(f"{file}: image folders take their labels from the class folders "
                                  f"and have no groups; remove {key}")
    if kind == "images" and "slices" in manifest:
        raise QuantGuardError(f"{file}: image folders have no per-sample arrays to hold slices; remove "
                              "slices, or save the images as .npz shards with a slice array: "
                              "np.savez(path, inputs=x, labels=y, camera=names)")
    if manifest.get("task") == LANGUAGE_MODEL and kind in ("csv", "images"):
        raise QuantGuardError(f'{file}: task = "{LANGUAGE_MODEL}" needs token arrays (input_ids, '
                              f"attention_mask, per-token labels), which {FORMATS[kind]} cannot hold; "
                              "save them as .npz shards or .npy arrays: np.savez(path, "
                              "input_ids=ids, attention_mask=mask, labels=targets)")


def _check_label_range(loaded: Loaded, class_names: list[str], file: Path) -> None:
    """With class_names, every label must be a class index in [0, len(class_names))."""
    origins = loaded.label_origins or [part.origin for part in loaded.parts]
    for part, origin in zip(loaded.parts, origins, strict=True):
        labels = part.load(False)[1]
        if labels is None or not len(labels):
            continue
        bad = ~np.isin(labels, np.arange(len(class_names)))
        if bad.any():
            raise QuantGuardError(f"{origin}: label {labels[bad][0].item()!r} is not a class index for "
                                  f"the {len(class_names)} class_names of {file}; labels must be "
                                  f"0..{len(class_names) - 1}")


def _load_npz(folder: Path, files: list[Path], manifest: dict[str, Any],
              digest: FileDigest) -> Loaded:
    input_names = list(manifest.get("inputs", [DEFAULT_INPUT_NAME]))
    label_name = manifest.get("labels", DEFAULT_LABEL_NAME)
    group_name, slice_name = manifest.get("groups"), manifest.get("slices")
    task = manifest.get("task")
    shards = [_inspect_npz(file, input_names, label_name, "labels" in manifest, group_name,
                           slice_name, task)
              for file in files]
    _check_consistent(shards)
    has_labels = shards[0]["has_labels"]
    parts = []
    for shard in shards:
        file, n = shard["file"], shard["n"]
        digest.add_file(file)
        parts.append(Part(n, str(file),
                          _loader(file, n, input_names, label_name if has_labels else None, task),
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
    label_shape = None
    if has_labels:
        label_shape, label_dtype = headers[label_name]
        check_label_header(label_shape, label_dtype, n, str(file), task)
    # one label's shape: (seq_len,) for a language model's targets, else () ((n, 1) is squeezed)
    label_sample_shape = None if label_shape is None else (
        tuple(label_shape[1:]) if task == LANGUAGE_MODEL else ())
    if task == LANGUAGE_MODEL:
        check_token_shapes({name: headers[name][0] for name in input_names}, label_shape, str(file))
    if group_name is not None:
        _check_per_sample_header(file, headers, group_name, n, "groups", "group", "id")
    slice_kind = None
    if slice_name is not None:
        _check_per_sample_header(file, headers, slice_name, n, "slices", "slice", "label")
        slice_kind = "text" if headers[slice_name][1].kind in "SUT" else "number"
    return {"file": file, "n": n, "has_labels": has_labels, "label_shape": label_sample_shape,
            "slice_kind": slice_kind,
            "inputs": {name: (headers[name][0][1:], headers[name][1]) for name in input_names}}


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


def _loader(file: Path, n: int, input_names: list[str], label_name: str | None, task: str | None):
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
            labels = _check_labels(labels, n, str(file), task)
        return inputs, labels

    return load


def _array_loader(file: Path, n: int, name: str, check: Callable[[np.ndarray, int, str], np.ndarray]):
    """Load one per-sample array of the shard (groups, slices) and check it."""
    def load_array() -> np.ndarray:
        try:
            with np.load(file, allow_pickle=False) as archive:
                values = archive[name]
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise QuantGuardError(f"{file}: could not be read ({error}); re-save it with "
                                  f"{NPZ_HOWTO}") from None
        return check(values, n, f"{file} [{name}]")

    return load_array
