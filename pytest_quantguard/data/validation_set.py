"""``ValidationSet``: the samples both models are scored on, streamed as batches of named arrays."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_quantguard._files import shown
from pytest_quantguard.data.checks import (
    LANGUAGE_MODEL,
    check_dtype,
    check_groups,
    check_labels,
    check_slices,
    check_token_shapes,
    resolve_task,
)
from pytest_quantguard.data.detection import DETECTION, check_detection_labels
from pytest_quantguard.data.source import DEFAULT_INPUT_NAME, Loaded, Part
from pytest_quantguard.errors import QuantGuardError

if TYPE_CHECKING:
    from pytest_quantguard.data.preprocess import Preprocess

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


class ValidationSet:
    """The validation samples: inputs (an array or named arrays), optional labels, a task.

    Build one from arrays (``ValidationSet(inputs, labels)``) or from a folder
    (``ValidationSet.from_folder(path)``, see docs/data.md: .npz shards, memory-mapped .npy arrays,
    CSV tables, image class folders). Folder sets load part by part; ``batches()`` applies the
    manifest's ``[preprocess]``; ``duplicate_count()`` says how many samples repeat. ``groups``
    (cluster ids) and ``slices`` (a label such as "camera=night" per sample) are optional.
    """

    def __init__(self, inputs: np.ndarray | Mapping[str, np.ndarray], labels: np.ndarray | None = None,
                 groups: np.ndarray | None = None, task: str | None = None, *,
                 slices: np.ndarray | Sequence[str | int] | None = None,
                 ignore_label: int | None = None):
        named = _named_inputs(inputs, "ValidationSet(inputs=...)")
        n = _common_length(named, "ValidationSet(inputs=...)")
        # detection labels are padded boxes per image (docs/data.md, "Detection ground truth")
        task = DETECTION if task == DETECTION else resolve_task(task, labels is not None,
                                                                "ValidationSet(task=...)")
        if labels is not None:
            labels = (check_detection_labels(labels, n, "ValidationSet(labels=...)")
                      if task == DETECTION else
                      check_labels(np.asarray(labels), n, "ValidationSet(labels=...)", task))
        if task == LANGUAGE_MODEL:
            check_token_shapes({name: array.shape for name, array in named.items()},
                               None if labels is None else labels.shape, "ValidationSet(...)")
        if groups is not None:
            groups = check_groups(np.asarray(groups), n, "ValidationSet(groups=...)")
        if slices is not None:
            slices = check_slices(np.asarray(slices), n, "ValidationSet(slices=...)")
        keep, ignored = _kept(labels, ignore_label, task, "ValidationSet(ignore_label=...)")
        if ignored:
            named = {name: array[keep] for name, array in named.items()}
            labels, groups, slices = (None if array is None else array[keep]
                                      for array in (labels, groups, slices))
            n -= ignored
        arrays = list(named.items())
        for name, array in (("labels", labels), ("groups", groups), ("slices", slices)):
            if array is not None:
                arrays.append((name, array))
        part = Part(n, "in-memory arrays", lambda _inputs=True: (named, labels),
                    None if groups is None else (lambda: groups),
                    load_slices=None if slices is None else (lambda: slices))
        self._init(Loaded(parts=[part], input_names=list(named), has_labels=labels is not None,
                          sample_shapes={name: array.shape[1:] for name, array in named.items()}),
                   task=task, digest=_arrays_digest(arrays), path=None, manifest={})
        self.ignored_labels = ignored

    def _init(self, loaded: Loaded, *, task: str, digest: str, path: Path | None,
              manifest: dict[str, Any], preprocess: Preprocess | None = None) -> None:
        self._parts = list(loaded.parts)
        self.n = sum(part.n for part in self._parts)
        if self.n == 0:
            where = path if path is not None else "the in-memory arrays"
            raise QuantGuardError(f"{where}: the validation set is empty (0 samples); "
                                  "give it at least one sample")
        self.input_names = loaded.input_names
        self.has_labels = loaded.has_labels
        self.task = task
        self.digest = digest
        self.path = path
        self.manifest = manifest
        # the manifest's [preprocess], applied to every batch (None: inputs as stored)
        self.preprocess: Preprocess | None = preprocess
        # class index -> name (manifest class_names, or the class folders of an image folder)
        self.class_names: list[str] | None = loaded.class_names
        self._duplicates: int | None = None
        # samples left out because their label is the ignore label (docs/data.md, "Ignored labels")
        self.ignored_labels = 0
        groups = self.groups
        self.n_groups: int | None = None if groups is None else len(np.unique(groups))
        # read (and so checked) now: a bad slice array fails the load, not a later report
        slices = self.slices
        self.n_slices: int | None = None if slices is None else len(np.unique(slices))

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str], *, given_by: str | None = None) -> ValidationSet:
        """The set in a folder (or one .npz or .csv file): read, checked and digested now, its
        samples loaded part by part when batches are asked for. ``given_by`` says where the path
        came from (e.g. "data="), for the fix a missing folder's error suggests.

        With the manifest's ``ignore_label``, the samples holding it are left out here, before any
        model runs: the set is then the rest, in memory, under the folder's digest (the files and
        the manifest decide exactly which samples are scored)."""
        from pytest_quantguard.data.folder import read_folder

        folder = read_folder(Path(path)) if given_by is None else read_folder(Path(path), given_by)
        self = cls.__new__(cls)
        self._init(folder.loaded, task=folder.task, digest=folder.digest, path=folder.path,
                   manifest=folder.manifest, preprocess=folder.preprocess)
        folder.check_label_range()
        if "ignore_label" not in folder.manifest:
            return self
        keep, ignored = _kept(self.labels, folder.manifest["ignore_label"], self.task,
                              f"{folder.manifest_file} (ignore_label)")
        if not ignored:
            return self
        kept = self.subset(np.flatnonzero(keep))
        kept.digest, kept.ignored_labels = self.digest, ignored
        return kept

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
        subset.ignored_labels = self.ignored_labels
        return subset


def load_folder(path: str | os.PathLike[str]) -> ValidationSet:
    """The set in a folder: ``ValidationSet.from_folder(path)``."""
    return ValidationSet.from_folder(path)


def as_validation_set(data: Any, *, base_dir: Path | None = None) -> ValidationSet:
    """Accept what ``data=`` takes (docs/data.md): a folder, a ValidationSet, ``(inputs, labels)``
    or ``inputs``."""
    if isinstance(data, ValidationSet):
        return data
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return ValidationSet.from_folder(path, given_by="data=")
    if isinstance(data, tuple):
        if len(data) != 2:
            raise QuantGuardError(f"data=(inputs, labels) must have two items, got {len(data)}")
        return ValidationSet(data[0], data[1])
    if isinstance(data, (np.ndarray, Mapping)):
        return ValidationSet(data)
    raise QuantGuardError(f"data= must be a folder path, a ValidationSet, (inputs, labels) or an "
                          f"array; got {type(data).__name__}")


def _kept(labels: np.ndarray | None, ignore_label: int | None, task: str,
          where: str) -> tuple[np.ndarray | None, int]:
    """(which samples to keep, how many are left out): samples whose class label is the ignore
    label belong to no class the models know (open-set data) and are not scored."""
    if ignore_label is None:
        return None, 0
    if isinstance(ignore_label, bool) or not isinstance(ignore_label, (int, np.integer)):
        raise QuantGuardError(f"{where}: the ignore label must be one integer class label (e.g. "
                              f"-1), got {ignore_label!r}")
    if labels is None or task != "classification":
        raise QuantGuardError(f"{where}: an ignore label leaves out samples by their class label, "
                              f"but this is a {task} set{'' if labels is not None else ' without labels'}")
    keep = labels != ignore_label
    ignored = int(len(labels) - np.count_nonzero(keep))
    if ignored == len(labels):
        raise QuantGuardError(f"{where}: every one of the {ignored} labels is the ignore label "
                              f"{ignore_label}; no sample is left to score")
    return keep, ignored


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
    check_dtype(array.dtype, where, "input")
    return array


def _common_length(named: Mapping[str, np.ndarray], where: str) -> int:
    lengths = {name: len(array) for name, array in named.items()}
    if len(set(lengths.values())) > 1:
        raise QuantGuardError(f"{where}: the input arrays have different numbers of samples "
                              f"{lengths}; every input needs one row per sample")
    return next(iter(lengths.values()))


def _arrays_digest(arrays: Sequence[tuple[str, np.ndarray]]) -> str:
    """sha256 over each array's name, dtype, shape and bytes (docs/data.md: digests), in order."""
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
