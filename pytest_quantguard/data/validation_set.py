"""``ValidationSet``: the samples both models are scored on, streamed as batches of named arrays."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_quantguard._files import shown
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.vocabulary import TASKS

if TYPE_CHECKING:
    from pytest_quantguard.data.preprocess import Preprocess

LANGUAGE_MODEL = "language-model"
# The label of a token position the loss ignores (PyTorch's and Hugging Face's ignore_index).
IGNORE_INDEX = -100
DEFAULT_INPUT_NAME = "inputs"
# Samples per batch when the set is scanned for itself (duplicate rows), not for a model.
SCAN_BATCH_SIZE = 1024


@dataclass(frozen=True)
class Batch:
    """One slice of the set: named inputs, labels (or None), global sample ids, and where it came from.

    Labels are one per sample, or for a language model one target token id per position
    (samples × seq_len, ``IGNORE_INDEX`` where ignored).
    """

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
    # stream(batch_size) -> the inputs of consecutive batches, each read on its own (memory-mapped
    # arrays, images); None: batches are sliced from load(True)
    stream: Callable[[int], Iterator[dict[str, np.ndarray]]] | None = None
    # load_slices() -> the slice label of each sample (None: the set has no slices)
    load_slices: Callable[[], np.ndarray] | None = None


class ValidationSet:
    """The validation samples: inputs (an array or named arrays), optional labels, a task.

    Build one from arrays (``ValidationSet(inputs, labels)``) or from a folder
    (``ValidationSet.from_folder(path)``, see SPEC §3: .npz shards, memory-mapped .npy arrays, CSV
    tables, image class folders). Folder sets load part by part; ``batches()`` applies the
    manifest's ``[preprocess]``; ``duplicate_count()`` says how many samples repeat. ``groups``
    (cluster ids) and ``slices`` (a label such as "camera=night" per sample) are optional.
    """

    def __init__(self, inputs: np.ndarray | Mapping[str, np.ndarray], labels: np.ndarray | None = None,
                 groups: np.ndarray | None = None, task: str | None = None, *,
                 slices: np.ndarray | Sequence[str | int] | None = None):
        named = _named_inputs(inputs, "ValidationSet(inputs=...)")
        n = _common_length(named, "ValidationSet(inputs=...)")
        task = _resolve_task(task, labels is not None, "ValidationSet(task=...)")
        if labels is not None:
            labels = _check_labels(np.asarray(labels), n, "ValidationSet(labels=...)", task)
        if task == LANGUAGE_MODEL:
            check_token_shapes({name: array.shape for name, array in named.items()},
                               None if labels is None else labels.shape, "ValidationSet(...)")
        if groups is not None:
            groups = check_groups(np.asarray(groups), n, "ValidationSet(groups=...)")
        if slices is not None:
            slices = check_slices(np.asarray(slices), n, "ValidationSet(slices=...)")
        arrays = list(named.items())
        for name, array in (("labels", labels), ("groups", groups), ("slices", slices)):
            if array is not None:
                arrays.append((name, array))
        self._init(parts=[Part(n, "in-memory arrays", lambda _inputs=True: (named, labels),
                               None if groups is None else (lambda: groups),
                               load_slices=None if slices is None else (lambda: slices))],
                   input_names=list(named), has_labels=labels is not None, task=task,
                   digest=_arrays_digest(arrays), path=None, manifest={})

    @classmethod
    def _from_parts(cls, *, parts: Sequence[Part], input_names: list[str], has_labels: bool,
                    task: str, digest: str, path: Path, manifest: dict[str, Any],
                    preprocess: Preprocess | None = None,
                    class_names: list[str] | None = None) -> ValidationSet:
        self = cls.__new__(cls)
        self._init(parts=parts, input_names=input_names, has_labels=has_labels, task=task,
                   digest=digest, path=path, manifest=manifest, preprocess=preprocess,
                   class_names=class_names)
        return self

    def _init(self, *, parts, input_names, has_labels, task, digest, path, manifest,
              preprocess=None, class_names=None) -> None:
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
        # the manifest's [preprocess], applied to every batch (None: inputs as stored)
        self.preprocess: Preprocess | None = preprocess
        # class index -> name (manifest class_names, or the class folders of an image folder)
        self.class_names: list[str] | None = class_names
        self._duplicates: int | None = None
        groups = self.groups
        self.n_groups: int | None = None if groups is None else len(np.unique(groups))
        # read (and so checked) now: a bad slice array fails the load, not a later report
        slices = self.slices
        self.n_slices: int | None = None if slices is None else len(np.unique(slices))

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
        """Yield batches of at most ``batch_size`` samples, in order, one part loaded at a time.

        The manifest's ``[preprocess]`` is applied to each batch. The first complete pass also
        counts duplicate samples on the way (see ``duplicate_count``).
        """
        hashes: list[np.ndarray] | None = [] if self._duplicates is None else None
        for batch in self._raw_batches(batch_size):
            if hashes is not None:
                hashes.append(_row_hashes(batch.inputs, len(batch)))
            if self.preprocess is not None:
                batch = replace(batch, inputs=self.preprocess.apply(batch.inputs))
            yield batch
        if hashes is not None:
            self._duplicates = _count_repeats(hashes)

    def _raw_batches(self, batch_size: int) -> Iterator[Batch]:
        """The stored inputs, batch by batch: a part's stream when it has one, else slices of it."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        start = 0
        for part in self._parts:
            offsets = range(0, part.n, batch_size)
            if part.stream is not None:
                labels = part.load(False)[1] if self.has_labels else None
                chunks: Iterator[dict[str, np.ndarray]] = part.stream(batch_size)
            else:
                inputs, labels = part.load(True)
                chunks = ({name: array[offset:offset + batch_size] for name, array in inputs.items()}
                          for offset in offsets)
            for offset, chunk in zip(offsets, chunks, strict=True):
                stop = min(offset + batch_size, part.n)
                yield Batch(inputs=chunk, labels=None if labels is None else labels[offset:stop],
                            ids=np.arange(start + offset, start + stop), origin=part.origin)
            start += part.n

    def duplicate_count(self) -> int:
        """How many samples repeat an earlier sample's inputs byte for byte (all named inputs).

        Duplicates make paired samples dependent, so an interval over them is falsely narrow. The
        count comes from a 64-bit hash of each stored sample, streamed batch by batch: free after a
        full ``batches()`` pass, one extra read of the inputs otherwise; cached.
        """
        if self._duplicates is None:
            self._duplicates = _count_repeats([_row_hashes(batch.inputs, len(batch))
                                               for batch in self._raw_batches(SCAN_BATCH_SIZE)])
        return self._duplicates

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

    @property
    def slices(self) -> np.ndarray | None:
        """The slice label of every sample (strings or integers, e.g. "camera=night"), or None:
        the subsets results can be broken down by."""
        if self._parts[0].load_slices is None:
            return None
        return np.concatenate([part.load_slices() for part in self._parts])

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
        groups, slices = self.groups, self.slices
        subset = ValidationSet(full_inputs, np.concatenate(labels)[indices] if labels else None,
                               groups=None if groups is None else groups[indices], task=self.task,
                               slices=None if slices is None else slices[indices])
        subset.class_names = self.class_names
        # the manifest still describes these samples (output, pooling, class_names), and they
        # still come from the same folder (reports and messages name it; the digest is the subset's)
        subset.manifest = dict(self.manifest)
        subset.path = self.path
        return subset


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


def _check_labels(labels: np.ndarray, n: int, where: str, task: str | None = None) -> np.ndarray:
    """Labels for ``n`` samples: 1-D (an (n, 1) column is squeezed), or for a language model
    integer token ids of shape (n, seq_len) with ``IGNORE_INDEX`` where ignored."""
    if labels.dtype.hasobject:
        raise QuantGuardError(f"{where}: an object array; give numeric labels (integers for classes)")
    check_label_header(labels.shape, labels.dtype, n, where, task, fix="give")
    if task == LANGUAGE_MODEL:
        bad = (labels < 0) & (labels != IGNORE_INDEX)
        if bad.any():
            raise QuantGuardError(f"{where}: label {labels[bad][0].item()} is not a token id; "
                                  f"language-model labels are token ids >= 0, or {IGNORE_INDEX} "
                                  "where a position is ignored")
    elif labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    return labels


def check_label_header(shape: tuple[int, ...], dtype: np.dtype, n: int, where: str,
                       task: str | None, fix: str = "save") -> None:
    """What the labels' shape and dtype alone tell (a .npy header is enough): one row per sample,
    1-D (or (n, 1)), or (n, seq_len) integers for a language model."""
    if task == LANGUAGE_MODEL:
        if len(shape) != 2:
            raise QuantGuardError(f"{where}: language-model labels are per-token targets of shape "
                                  f"(samples, seq_len), got shape {list(shape)}; {fix} one target "
                                  f"token id per input position ({IGNORE_INDEX} where ignored)")
        if not np.issubdtype(dtype, np.integer):
            raise QuantGuardError(f"{where}: language-model labels must be integer token ids, got "
                                  f"{dtype}; {fix} them as int64 ({IGNORE_INDEX} where ignored)")
    elif task == "regression" and len(shape) == 2:
        pass  # k targets per sample (multi-output regression)
    elif len(shape) != 1 and tuple(shape[1:]) != (1,):
        hint = (f' (per-token targets of a language model? set task = "{LANGUAGE_MODEL}"; k '
                'regression targets per sample? set task = "regression")'
                if len(shape) == 2 else "")
        raise QuantGuardError(f"{where}: labels must be 1-D (one per sample), got shape "
                              f"{list(shape)}{hint}")
    count = shape[0] if shape else 0
    if count != n:
        raise QuantGuardError(f"{where}: {count} labels for {n} input samples; {fix} exactly one "
                              "label per input sample")


def check_token_shapes(input_shapes: Mapping[str, tuple[int, ...]], label_shape: tuple[int, ...] | None,
                       where: str) -> None:
    """Language-model arrays line up: ``input_ids`` is (samples, seq_len), and ``attention_mask``
    and the per-token labels have its shape. Sets without ``input_ids`` are not checked."""
    ids = input_shapes.get("input_ids")
    if ids is None:
        return
    if len(ids) != 2:
        raise QuantGuardError(f"{where}: input_ids has shape {list(ids)}; language-model inputs are "
                              "token ids of shape (samples, seq_len)")
    mask = input_shapes.get("attention_mask")
    if mask is not None and tuple(mask) != tuple(ids):
        raise QuantGuardError(f"{where}: attention_mask has shape {list(mask)} but input_ids has "
                              f"{list(ids)}; give one mask value per token")
    if label_shape is not None and tuple(label_shape) != tuple(ids):
        raise QuantGuardError(f"{where}: labels have shape {list(label_shape)} but input_ids has "
                              f"{list(ids)}; language-model labels are one target token id per input "
                              f"position ({IGNORE_INDEX} where ignored)")


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


def check_slices(slices: np.ndarray, n: int, where: str) -> np.ndarray:
    """Slice labels: one per sample, strings or integers (bytes are decoded as UTF-8 to str; never
    objects, never NaN)."""
    if slices.dtype.hasobject:
        raise QuantGuardError(f"{where}: an object array; give slice labels as strings or integers "
                              "(e.g. np.asarray(slices, dtype=str))")
    if slices.ndim != 1 or len(slices) != n:
        raise QuantGuardError(f"{where}: slices must be 1-D with one label per sample ({n}), got shape "
                              f"{list(slices.shape)}")
    kind = slices.dtype.kind
    if kind == "S":
        try:
            return np.char.decode(slices, "utf-8")
        except UnicodeDecodeError:
            raise QuantGuardError(f"{where}: slice labels are bytes that are not UTF-8 text; save "
                                  "them as str (e.g. np.asarray(slices, dtype=str))") from None
    if kind == "T":  # numpy's variable-width StringDType
        return slices.astype(str)
    if kind == "f" and not np.isfinite(slices).all():
        raise QuantGuardError(f"{where}: NaN or Inf among the slice labels; give every sample its "
                              'slice (e.g. "unknown")')
    if kind not in "biufU":
        raise QuantGuardError(f"{where}: slice labels of dtype {slices.dtype}; give strings (e.g. "
                              '"camera=night") or integers')
    return slices


def _resolve_task(task: str | None, has_labels: bool, where: str) -> str:
    if task is None:
        return "classification" if has_labels else "fidelity"
    if task not in TASKS:
        raise QuantGuardError(f"{where}: unknown task {task!r}; use one of {', '.join(TASKS)}")
    return task


def _arrays_digest(arrays: Sequence[tuple[str, np.ndarray]]) -> str:
    """sha256 over each array's name, dtype, shape and bytes (SPEC §3, in-memory data), in order."""
    digest = hashlib.sha256()
    for name, array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()


_HASH_MULTIPLIERS = np.random.default_rng(0x5EED).integers(1, 2**63, size=4096, dtype=np.uint64) | 1


def _row_hashes(inputs: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """A 64-bit hash of each sample's bytes across all named inputs, vectorized over samples.

    Each sample's bytes are read as 64-bit words and folded in one multiply-xorshift step per word
    (fixed odd multipliers), so the cost is a few numpy passes over the batch, not a Python call
    per sample.
    """
    rows = [np.ascontiguousarray(array).reshape(n, -1).view(np.uint8) for array in inputs.values()]
    data = rows[0] if len(rows) == 1 else np.concatenate(rows, axis=1)
    width = data.shape[1]
    if width % 8:
        data = np.concatenate([data, np.zeros((n, 8 - width % 8), np.uint8)], axis=1)
    words = data.view(np.uint64)
    hashes = np.full(n, np.uint64(width), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            hashes ^= words[:, j]
            hashes *= _HASH_MULTIPLIERS[j % len(_HASH_MULTIPLIERS)]
            hashes ^= hashes >> np.uint64(29)
    return hashes


def _count_repeats(hashes: list[np.ndarray]) -> int:
    """Samples whose hash an earlier sample already had (a 64-bit collision: ~n²/2⁶⁵, negligible)."""
    if not hashes:
        return 0
    every = np.sort(np.concatenate(hashes))
    return int(np.count_nonzero(every[1:] == every[:-1]))
