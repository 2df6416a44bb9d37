"""A validation folder: an optional ``quantguard.toml`` manifest and one data format
(docs/data.md: formats, manifest keys).

The formats: ``*.npz`` shards (npz.py), ``inputs.npy`` + ``labels.npy`` memory-mapped (npy.py),
``*.csv`` tables (tables.py) and image class folders (images.py). This module reads the manifest,
finds the one format in the folder, hands it the files and digests what it reads; the ``Folder``
it returns is what ``ValidationSet.from_folder`` builds a set of.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard.data.checks import LANGUAGE_MODEL, resolve_task
from pytest_quantguard.data.images import IMAGE_HOWTO, class_folders, is_image, load_images
from pytest_quantguard.data.npy import NPY_HOWTO, load_npy
from pytest_quantguard.data.npz import NPZ_HOWTO, load_npz
from pytest_quantguard.data.preprocess import Preprocess
from pytest_quantguard.data.source import MANIFEST_NAME, FileDigest, Loaded, natural_key
from pytest_quantguard.data.tables import load_csv
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.vocabulary import POOLINGS, TASKS

__all__ = ["MANIFEST_NAME", "Folder", "read_folder"]

# Every manifest key (docs/data.md: manifest keys); anything else is an error naming the file.
MANIFEST_KEYS = ("task", "inputs", "labels", "groups", "slices", "class_names", "output",
                 "label_column", "pooling", "preprocess", "ignore_label")
# Where a folder's path came from when the caller does not say (the plugin's option and ini key).
GIVEN_BY = "--quant-data DIR, or quant_data in the ini file"
FORMATS = {"npz": ".npz shards", "npy": ".npy arrays", "csv": "CSV tables",
           "images": "image class folders"}


@dataclass(frozen=True)
class Folder:
    """A validation folder read and checked: its format's parts, the manifest and the digest."""

    path: Path  # as given: the folder, or the one .npz or .csv file in it
    manifest_file: Path
    manifest: dict[str, Any]
    # the format's parts; class_names: the format's own (image folders), else the manifest's
    loaded: Loaded
    task: str
    digest: str
    preprocess: Preprocess | None

    def check_label_range(self) -> None:
        """With class_names, every label of a classification set must be a class index in
        [0, len(class_names))."""
        class_names = self.loaded.class_names
        if class_names is None or not self.loaded.has_labels or self.task != "classification":
            return
        origins = self.loaded.label_origins or [part.origin for part in self.loaded.parts]
        for part, origin in zip(self.loaded.parts, origins, strict=True):
            labels = part.load(False)[1]
            if labels is None or not len(labels):
                continue
            bad = ~np.isin(labels, np.arange(len(class_names)))
            if "ignore_label" in self.manifest:
                bad &= labels != self.manifest["ignore_label"]
            if bad.any():
                raise QuantGuardError(f"{origin}: label {labels[bad][0].item()!r} is not a class index "
                                      f"for the {len(class_names)} class_names of {self.manifest_file}; "
                                      f"labels must be 0..{len(class_names) - 1}")


def read_folder(path: Path, given_by: str = GIVEN_BY) -> Folder:
    """Read the manifest, find the one data format, load and check it, digest what was read.
    ``given_by`` names where the path came from (``data=``, the option), for the not-found fix."""
    path = Path(path)
    if not path.exists():
        raise QuantGuardError(f"validation data folder not found: {path}. Pass an existing folder "
                              "of validation data (.npz shards, inputs.npy + labels.npy, .csv tables "
                              f"or image class folders) with {given_by}")
    folder, single = (path.parent, path) if path.is_file() else (path, None)
    manifest_file = folder / MANIFEST_NAME
    manifest = _read_manifest(manifest_file)
    preprocess = (Preprocess.from_table(manifest["preprocess"], manifest_file)
                  if "preprocess" in manifest else None)
    kind, files = _single_file(single) if single is not None else _find_format(folder, manifest)
    _check_keys_fit(kind, manifest, manifest_file)
    digest = FileDigest(folder)
    if kind == "npz":
        loaded = load_npz(folder, files, manifest, digest)
    elif kind == "npy":
        loaded = load_npy(folder, manifest, digest)
    elif kind == "csv":
        loaded = load_csv(folder, files, manifest, digest)
    else:
        loaded = load_images(folder, files, manifest, digest)
    if preprocess is not None:
        preprocess = preprocess.bind(loaded.input_names, loaded.sample_shapes, manifest_file)
    task = resolve_task(manifest.get("task"), loaded.has_labels, str(manifest_file))
    _check_ignore_label(manifest, task, loaded.has_labels, manifest_file)
    class_names = loaded.class_names or manifest.get("class_names")
    return Folder(path, manifest_file, manifest, replace(loaded, class_names=class_names), task,
                  digest.finish(manifest), preprocess)


def _read_manifest(file: Path) -> dict[str, Any]:
    if not file.exists():
        return {}
    try:
        manifest = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise QuantGuardError(f"{file}: not valid TOML ({error}); fix the syntax") from None
    unknown = sorted(set(manifest) - set(MANIFEST_KEYS))
    if unknown:
        close = {key: difflib.get_close_matches(key, MANIFEST_KEYS, n=1, cutoff=0.5) for key in unknown}
        hints = "".join(f" ({key}: did you mean {match[0]}?)" for key, match in close.items() if match)
        raise QuantGuardError(f"{file}: unknown key(s) {', '.join(unknown)}{hints}; the manifest keys "
                              f"are {', '.join(MANIFEST_KEYS)}")
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
        if key in manifest and (not isinstance(manifest[key], (str, int)) or isinstance(
                manifest[key], bool) or (isinstance(manifest[key], int) and manifest[key] < 0)):
            raise QuantGuardError(f"{file}: {key} must be a name (string) or an index >= 0")
    for key in ("inputs", "class_names"):
        repeated = sorted({name for name in manifest.get(key) or () if manifest[key].count(name) > 1})
        if repeated:
            raise QuantGuardError(f"{file}: {key} repeats {', '.join(map(repr, repeated))}; name each "
                                  "once")
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


def _check_ignore_label(manifest: dict[str, Any], task: str, has_labels: bool, file: Path) -> None:
    """``ignore_label``: one integer, the class label of samples that belong to no class (open-set
    data), left out before scoring (docs/data.md, "Ignored labels")."""
    if "ignore_label" not in manifest:
        return
    value = manifest["ignore_label"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise QuantGuardError(f"{file}: ignore_label must be one integer class label (e.g. "
                              f"ignore_label = -1), got {value!r}")
    if not has_labels or task != "classification":
        raise QuantGuardError(f"{file}: ignore_label leaves out samples by their class label, but "
                              f"this is a {task} set{'' if has_labels else ' without labels'}; "
                              "remove it")


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
    if manifest.get("task") == "detection" and kind != "npz":
        raise QuantGuardError(f'{file}: task = "detection" reads its boxes from .npz shards, which '
                              f"{FORMATS[kind]} are not; save them as np.savez(path, inputs=x, "
                              "box_offsets=offsets, boxes=boxes, box_classes=classes) "
                              '(docs/data.md, "Detection ground truth")')

