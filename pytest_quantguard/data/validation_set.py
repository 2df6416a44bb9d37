"""``ValidationSet``: the samples both models are scored on, streamed as batches of named arrays."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard._files import shown
from pytest_quantguard.errors import QuantGuardError

TASKS = ("classification", "regression", "language-model", "fidelity")
DEFAULT_INPUT_NAME = "inputs"


@dataclass(frozen=True)
class Batch:
    """One slice of the set: named inputs, labels (or None), global sample ids, and where it came from."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    ids: np.ndarray
    origin: str

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Part:
    """A piece of the set that loads on demand (one shard file, or the in-memory arrays)."""

    n: int
    origin: str
    # load(with_inputs) -> (inputs, labels); with_inputs=False may skip reading the inputs
    load: Callable[[bool], tuple[dict[str, np.ndarray], np.ndarray | None]]
    # load_groups() -> the group id of each sample (None: the set has no groups)
    load_groups: Callable[[], np.ndarray] | None = None


class ValidationSet:
    """The validation samples: inputs (an array or named arrays), optional labels, a task.

    Build one from arrays (``ValidationSet(inputs, labels)``) or from a folder
    (``ValidationSet.from_folder(path)``, see SPEC §3). Folder sets load shard by shard.
    """

    def __init__(self, inputs: np.ndarray | Mapping[str, np.ndarray], labels: np.ndarray | None = None,
                 groups: np.ndarray | None = None, task: str | None = None):
        named = _named_inputs(inputs, "ValidationSet(inputs=...)")
        n = _common_length(named, "ValidationSet(inputs=...)")
        if labels is not None:
            labels = _check_labels(np.asarray(labels), n, "ValidationSet(labels=...)")
        if groups is not None:
            groups = check_groups(np.asarray(groups), n, "ValidationSet(groups=...)")
        arrays = dict(named)
        if labels is not None:
            arrays["labels"] = labels
        if groups is not None:
            arrays["groups"] = groups
        self._init(parts=[Part(n, "in-memory arrays", lambda _inputs=True: (named, labels),
                               None if groups is None else (lambda: groups))],
                   input_names=list(named), has_labels=labels is not None,
                   task=_resolve_task(task, labels is not None, "ValidationSet(task=...)"),
                   digest=_arrays_digest(arrays), path=None, manifest={})

    @classmethod
    def _from_parts(cls, *, parts: Sequence[Part], input_names: list[str], has_labels: bool,
                    task: str, digest: str, path: Path, manifest: dict[str, Any]) -> ValidationSet:
        self = cls.__new__(cls)
        self._init(parts=parts, input_names=input_names, has_labels=has_labels, task=task,
                   digest=digest, path=path, manifest=manifest)
        return self

    def _init(self, *, parts, input_names, has_labels, task, digest, path, manifest) -> None:
        self._parts = list(parts)
        self.n = sum(part.n for part in self._parts)
        if self.n == 0:
            where = path if path is not None else "the in-memory arrays"
            raise QuantGuardError(f"{where}: the validation set is empty (0 samples); "
                                  "give it at least one sample")
        self.input_names = input_names
        self.has_labels = has_labels
        self.task = task
        self.digest = digest
        self.path = path
        self.manifest = manifest
        groups = self.groups
        self.n_groups: int | None = None if groups is None else len(np.unique(groups))

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str]) -> ValidationSet:
        from pytest_quantguard.data.folder import load_folder

        return load_folder(Path(path))

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "in-memory"
        return (f"ValidationSet({where}, n={self.n}, task={self.task!r}, inputs={self.input_names}, "
                f"labels={'yes' if self.has_labels else 'no'}, sha256={self.digest[:12]})")

    def __len__(self) -> int:
        return self.n

    @property
    def description(self) -> str:
        return shown(self.path) if self.path is not None else "in-memory data"

    @property
    def first_file(self) -> str:
        """Where the first samples come from: a shard file, or "in-memory arrays"."""
        return self._parts[0].origin

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Yield batches of at most ``batch_size`` samples, in order, one part loaded at a time."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        start = 0
        for part in self._parts:
            inputs, labels = part.load(True)
            for offset in range(0, part.n, batch_size):
                stop = min(offset + batch_size, part.n)
                yield Batch(inputs={name: array[offset:stop] for name, array in inputs.items()},
                            labels=None if labels is None else labels[offset:stop],
                            ids=np.arange(start + offset, start + stop), origin=part.origin)
            start += part.n

    @property
    def labels(self) -> np.ndarray | None:
        """All labels, concatenated (small: one value per sample)."""
        if not self.has_labels:
            return None
        return np.concatenate([part.load(False)[1] for part in self._parts])

    @property
    def groups(self) -> np.ndarray | None:
        """The group (cluster) id of every sample, or None: samples in one group are resampled
        together (documents of a language model, crops of one product)."""
        if self._parts[0].load_groups is None:
            return None
        return np.concatenate([part.load_groups() for part in self._parts])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ValidationSet:
        """An in-memory set of the given samples (for pilots and examples; loads what it needs)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1 or (len(indices) and (indices.min() < 0 or indices.max() >= self.n)):
            raise QuantGuardError(f"subset indices must be 1-D and within [0, {self.n})")
        inputs = {name: [] for name in self.input_names}
        labels = []
        for batch in self.batches(max(self.n, 1)):
            for name in self.input_names:
                inputs[name].append(batch.inputs[name])
            if batch.labels is not None:
                labels.append(batch.labels)
        full = {name: np.concatenate(arrays)[indices] for name, arrays in inputs.items()}
        if len(full) == 1 and DEFAULT_INPUT_NAME in full:
            full_inputs: np.ndarray | dict[str, np.ndarray] = full[DEFAULT_INPUT_NAME]
        else:
            full_inputs = full
        groups = self.groups
        return ValidationSet(full_inputs, np.concatenate(labels)[indices] if labels else None,
                             groups=None if groups is None else groups[indices], task=self.task)


def as_validation_set(data: Any, *, base_dir: Path | None = None) -> ValidationSet:
    """Accept what SPEC §3 allows: a folder, a ValidationSet, ``(inputs, labels)`` or ``inputs``."""
    if isinstance(data, ValidationSet):
        return data
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return ValidationSet.from_folder(path)
    if isinstance(data, tuple):
        if len(data) != 2:
            raise QuantGuardError(f"data=(inputs, labels) must have two items, got {len(data)}")
        return ValidationSet(data[0], data[1])
    if isinstance(data, (np.ndarray, Mapping)):
        return ValidationSet(data)
    raise QuantGuardError(f"data= must be a folder path, a ValidationSet, (inputs, labels) or an "
                          f"array; got {type(data).__name__}")


def _named_inputs(inputs: Any, where: str) -> dict[str, np.ndarray]:
    if isinstance(inputs, Mapping):
        if not inputs:
            raise QuantGuardError(f"{where}: no input arrays given")
        return {str(name): _plain_array(array, f"{where}[{name!r}]") for name, array in inputs.items()}
    return {DEFAULT_INPUT_NAME: _plain_array(inputs, where)}


def _plain_array(array: Any, where: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise QuantGuardError(f"{where}: an object array; give a numeric array (e.g. float32)")
    if array.ndim == 0:
        raise QuantGuardError(f"{where}: a scalar; give one row per sample")
    return array


def _common_length(named: Mapping[str, np.ndarray], where: str) -> int:
    lengths = {name: len(array) for name, array in named.items()}
    if len(set(lengths.values())) > 1:
        raise QuantGuardError(f"{where}: the input arrays have different numbers of samples "
                              f"{lengths}; every input needs one row per sample")
    return next(iter(lengths.values()))


def _check_labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
    if labels.dtype.hasobject:
        raise QuantGuardError(f"{where}: an object array; give numeric labels (integers for classes)")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise QuantGuardError(f"{where}: labels must be 1-D (one per sample), got shape {labels.shape}")
    if len(labels) != n:
        raise QuantGuardError(f"{where}: {len(labels)} labels for {n} input samples; "
                              "give exactly one label per input sample")
    return labels


def check_groups(groups: np.ndarray, n: int, where: str) -> np.ndarray:
    """Group ids: one per sample, integers or strings (never floats with NaN, never objects)."""
    if groups.dtype.hasobject:
        raise QuantGuardError(f"{where}: an object array; give group ids as integers or strings")
    if groups.ndim != 1 or len(groups) != n:
        raise QuantGuardError(f"{where}: groups must be 1-D with one id per sample ({n}), got shape "
                              f"{list(groups.shape)}")
    if np.issubdtype(groups.dtype, np.floating) and not np.isfinite(groups).all():
        raise QuantGuardError(f"{where}: NaN or Inf among the group ids; give every sample its group")
    return groups


def _resolve_task(task: str | None, has_labels: bool, where: str) -> str:
    if task is None:
        return "classification" if has_labels else "fidelity"
    if task not in TASKS:
        raise QuantGuardError(f"{where}: unknown task {task!r}; use one of {', '.join(TASKS)}")
    return task


def _arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over each array's name, dtype, shape and bytes (SPEC §3, in-memory data)."""
    digest = hashlib.sha256()
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()
