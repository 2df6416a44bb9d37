"""Results: a model's outputs on a validation set, kept in a folder any program can write, and read
back as a runner (docs/results.md, "The results layout").

A results folder holds ``results.json`` (format, version, the data digest, the count, the model,
the output names, provenance), ``ids.npy`` (the sample ids, in row order) or ``input_hashes.npy``
(each row's input hash, docs/results.md, "Input hashes") and one ``.npy`` per output, one row per
sample. ``Outputs(path)`` reads one back; the pipe replays its rows by sample
id (``outputs_for(batch)``) after ``check_data(dataset)`` has matched it to the validation set. A
single ``.npy`` file is a bare array: accepted with the count check and a warning that its order is
unverified (docs/results.md, "A bare array").
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard._files import hash_file, shown, write_atomically
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.results_files import (
    FORMAT,
    IDS_FILE,
    RESULTS_FILE,
    VERSION,
    load_array,
    read_document,
    sample_ids,
)

HASHES_FILE = "input_hashes.npy"  # in a results folder
EXPORTED_HASHES = "hashes.npy"  # beside ids.npy in an export-inputs folder
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def output_file(name: str) -> str:
    """The file an output is kept in: its name with characters other than letters, digits, '.',
    '_' and '-' replaced by '_', plus ``.npy``."""
    return _UNSAFE.sub("_", name) + ".npy"


def sample_hashes(inputs: Mapping[str, np.ndarray], dtypes: Mapping[str, Any] | None = None
                  ) -> np.ndarray:
    """Each sample's input hash (docs/results.md, "Input hashes"): the SHA-256 of the bytes of its
    model-ready inputs, in input order, each as a C-contiguous array of its dtype (``dtypes``: the
    exported dtype of each input, default: as given); ``uint8`` of shape (samples, 32)."""
    arrays = [np.asarray(value) if dtypes is None else np.asarray(value, dtype=dtypes[name])
              for name, value in inputs.items()]
    hashes = np.empty((len(arrays[0]), 32), dtype=np.uint8)
    for row in range(len(hashes)):
        digest = hashlib.sha256()
        for array in arrays:
            digest.update(np.ascontiguousarray(array[row]).tobytes())
        hashes[row] = np.frombuffer(digest.digest(), dtype=np.uint8)
    return hashes


def input_hashes(dataset: Any) -> np.ndarray:
    """The input hash of every sample of ``dataset``, in sample order, with the dtypes
    ``quantguard export-inputs`` writes (those of the first sample)."""
    from pytest_quantguard.batching import auto_batch, first_sample_shapes, input_bytes

    shapes = first_sample_shapes(dataset)
    dtypes = {name: dtype for name, (_, dtype) in shapes.items()}
    size = auto_batch(2 * input_bytes(shapes), 256 * 2**20, dataset.n)
    return np.concatenate([sample_hashes(batch.inputs, dtypes)
                           for batch in dataset.batches(size)])


def is_results(path: Path) -> bool:
    """A results folder (one holding ``results.json``) or a bare ``.npy`` array."""
    return (path.is_dir() and (path / RESULTS_FILE).is_file()) or (
        path.is_file() and path.suffix.lower() == ".npy")


def write_results(folder: str | Path, outputs: Mapping[str, np.ndarray], ids: np.ndarray, *,
                  data_digest: str | None, model: Mapping[str, Any] | None = None,
                  provenance: Mapping[str, Any] | None = None) -> Path:
    """Write a results folder: each output (one row per sample, in ``ids`` order), ``ids.npy`` and
    ``results.json``; returns the folder. Files already there are replaced."""
    writer = ResultsWriter(folder, np.asarray(ids, dtype=np.int64))
    writer.add(np.arange(len(writer.ids)), outputs)
    return writer.close(data_digest=data_digest, model=model, provenance=provenance)


class ResultsWriter:
    """A results folder written batch by batch: each output's rows go straight into a
    memory-mapped ``.npy`` (the outputs are never held whole); ``close`` writes ``ids.npy`` and,
    last, ``results.json``, so a folder without it is an unfinished one."""

    def __init__(self, folder: str | Path, ids: np.ndarray):
        self.folder, self.ids = Path(folder), np.asarray(ids, dtype=np.int64)
        self.arrays: dict[str, np.ndarray] = {}
        # an output kept as per-token NLL with its top-k log-probabilities: {output: {"k": K,
        # "logprobs": array name, "ids": ..., "scored": ...}} (docs/results.md, "Language models:
        # top-k log-probabilities")
        self.top_k: dict[str, dict[str, Any]] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / RESULTS_FILE).unlink(missing_ok=True)

    def add(self, rows: np.ndarray, outputs: Mapping[str, np.ndarray]) -> None:
        """Write ``outputs`` (one row per entry of ``rows``) at those row positions."""
        for name, value in outputs.items():
            value = np.asarray(value)
            if value.ndim == 0 or len(value) != len(rows):
                raise QuantGuardError(f"output {name!r} has shape {list(value.shape)} for "
                                      f"{len(rows)} samples: one row per sample")
            if name not in self.arrays:
                self.arrays[name] = np.lib.format.open_memmap(
                    self.folder / output_file(name), mode="w+", dtype=value.dtype,
                    shape=(len(self.ids), *value.shape[1:]))
            if value.shape[1:] != self.arrays[name].shape[1:]:
                raise QuantGuardError(f"output {name!r}: rows of shape {list(value.shape[1:])} "
                                      "after rows of shape "
                                      f"{list(self.arrays[name].shape[1:])}; a results folder "
                                      "holds one shape per output (pad to a fixed length)")
            self.arrays[name][rows] = value

    @property
    def outputs(self) -> list[str]:
        """The outputs written, without the top-k arrays kept beside them."""
        extra = {value for entry in self.top_k.values() for key, value in entry.items()
                 if key != "k"}
        return [name for name in self.arrays if name not in extra]

    def close(self, *, data_digest: str | None, model: Mapping[str, Any] | None = None,
              provenance: Mapping[str, Any] | None = None) -> Path:
        for array in self.arrays.values():
            array.flush()
        write_atomically(self.folder / IDS_FILE, lambda stream: np.save(stream, self.ids))
        document = {"format": FORMAT, "version": VERSION, "data_digest": data_digest,
                    "n": len(self.ids), "model": dict(model or {}),
                    "outputs": [{"name": name, "file": output_file(name)} for name in self.outputs],
                    "provenance": dict(provenance or {})}
        if self.top_k:
            document["top_k"] = {name: {key: value if key == "k" else output_file(value)
                                        for key, value in entry.items()}
                                 for name, entry in self.top_k.items()}
        text = json.dumps(document, indent=2) + "\n"
        write_atomically(self.folder / RESULTS_FILE, lambda stream: stream.write(text.encode()))
        return self.folder


class Outputs:
    """A results folder (or a bare ``.npy`` array) as a runner: its rows are replayed by sample id.

    ``description``, ``path``, ``sha256`` (of the results' files, so the reference cache never
    mistakes them for the model run here) and ``nbytes`` identify it, as for any runner."""

    nbytes = None

    def __init__(self, path: str | Path, *, base_dir: Path | None = None):
        path = Path(path)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        self.path = str(path)
        self.description = f"results {shown(path, base_dir)}"
        self.data_path: str | None = None
        if path.is_file() and path.suffix.lower() == ".npy":
            self.bare = True
            self.document: dict[str, Any] = {}
            self.arrays = {path.stem: load_array(path)}
            self.ids: np.ndarray | None = None
            self.hashes: np.ndarray | None = None
            self.top_k: dict[str, dict[str, Any]] = {}
            self.data_digest: str | None = None
            files = [path]
        elif path.is_dir() and (path / RESULTS_FILE).is_file():
            self.bare = False
            self.document = read_document(path / RESULTS_FILE)
            self.arrays, files = self._read_outputs(path)
            self.ids, self.hashes = self._read_keys(path, files)
            self.top_k = self._read_top_k(path, files)
            self.data_digest = self.document.get("data_digest")
            self.data_path = (self.document.get("provenance") or {}).get("data")
            self._check_counts(path)
        else:
            raise QuantGuardError(f"{path}: not a results folder (a folder holding {RESULTS_FILE}, "
                                  "see docs/results.md) nor a .npy array of outputs")
        digest = hashlib.sha256(f"{FORMAT}:{VERSION}".encode())
        for file in [*([path / RESULTS_FILE] if not self.bare else []), *files]:
            hash_file(digest, file)
        self.sha256 = digest.hexdigest()
        self.notes: tuple[str, ...] = ()
        self._rows: np.ndarray | None = None  # row of each sample position, after check_data
        self.matching: dict[str, Any] = {}  # how rows were matched to samples, after check_data

    @property
    def n(self) -> int:
        return len(next(iter(self.arrays.values())))

    def memory_per_sample(self, shapes: Any) -> Any:
        """The rows read back per sample, and no activations: a batch's estimate holds results as
        what they are (docs/models.md, "Batch size")."""
        from pytest_quantguard.batching import Footprint

        rows = sum(int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize
                   for array in self.arrays.values())
        return Footprint(rows, 0)

    def _read_outputs(self, folder: Path) -> tuple[dict[str, np.ndarray], list[Path]]:
        entries = self.document.get("outputs")
        if not isinstance(entries, list) or not entries:
            raise QuantGuardError(f"{folder / RESULTS_FILE}: 'outputs' must be a non-empty list of "
                                  "output names (or of {\"name\", \"file\"} objects)")
        arrays, files = {}, []
        for entry in entries:
            name = entry if isinstance(entry, str) else (
                entry.get("name") if isinstance(entry, dict) else None)
            given = entry.get("file") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name or not isinstance(given, str | None):
                raise QuantGuardError(f"{folder / RESULTS_FILE}: 'outputs' entry {entry!r} is "
                                      "neither a name nor a {\"name\": ..., \"file\": ...} object "
                                      "of strings")
            if name in arrays:
                raise QuantGuardError(f"{folder / RESULTS_FILE}: output {name!r} is listed twice "
                                      "in 'outputs'")
            file = folder / (given or output_file(name))
            if file.parent.resolve() != folder.resolve():
                raise QuantGuardError(f"{folder / RESULTS_FILE}: output {name!r} names the file "
                                      f"{file.name!r} outside the results folder")
            arrays[name] = load_array(file)
            files.append(file)
        return arrays, files

    def _read_keys(self, folder: Path, files: list[Path]
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``ids.npy`` and/or ``input_hashes.npy``: at least one names each row's sample."""
        ids = hashes = None
        if (folder / HASHES_FILE).is_file():
            hashes = np.asarray(load_array(folder / HASHES_FILE))
            files.append(folder / HASHES_FILE)
            if hashes.dtype != np.uint8 or hashes.ndim != 2 or hashes.shape[1] != 32:
                raise QuantGuardError(f"{folder / HASHES_FILE}: dtype {hashes.dtype}, shape "
                                      f"{list(hashes.shape)}; input hashes are uint8 of shape "
                                      "(n, 32), one SHA-256 digest per row (see "
                                      "docs/results.md on input hashes)")
        if hashes is None or (folder / IDS_FILE).is_file():
            ids = sample_ids(folder / IDS_FILE)
            files.append(folder / IDS_FILE)
        return ids, hashes

    def _read_top_k(self, folder: Path, files: list[Path]) -> dict[str, dict[str, Any]]:
        """``top_k``: per output, K and its (n, tokens, K) log-probabilities and token ids, and
        the (n, tokens) positions scored."""
        found = {}
        for name, entry in (self.document.get("top_k") or {}).items():
            where = f"{folder / RESULTS_FILE}: top_k[{name!r}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("k"), int) or not all(
                    isinstance(entry.get(key), str) for key in ("logprobs", "ids", "scored")):
                raise QuantGuardError(f"{where} must hold k (an integer) and the files logprobs, "
                                      "ids and scored")
            arrays = {}
            for key in ("logprobs", "ids", "scored"):
                file = folder / entry[key]
                if file.parent.resolve() != folder.resolve():
                    raise QuantGuardError(f"{where}: {key} names a file outside the folder")
                arrays[key] = load_array(file)
                files.append(file)
            k, (values, ids, scored) = entry["k"], arrays.values()
            if values.shape != ids.shape or values.ndim != 3 or values.shape[2] != k or \
                    scored.shape != values.shape[:2]:
                raise QuantGuardError(f"{where}: logprobs {list(values.shape)}, ids "
                                      f"{list(ids.shape)} and scored {list(scored.shape)}: "
                                      f"(n, tokens, {k}) twice and (n, tokens)")
            found[name] = {"k": k, **arrays}
        return found

    def _check_counts(self, folder: Path) -> None:
        stated = self.document.get("n")
        keys = [(file, array) for file, array in ((IDS_FILE, self.ids), (HASHES_FILE, self.hashes))
                if array is not None]
        file, keyed = keys[0]
        top_k = [(f"{name}.{key}", array) for name, entry in self.top_k.items()
                 for key, array in entry.items() if key != "k"]
        for name, array in [*self.arrays.items(), *keys[1:], *top_k]:
            if array.ndim == 0 or len(array) != len(keyed):
                raise QuantGuardError(
                    f"{folder}: {name!r} has {0 if array.ndim == 0 else len(array)} rows but "
                    f"{file} holds {len(keyed)}: one row per sample, in the order of {file}")
        if stated is not None and stated != len(keyed):
            raise QuantGuardError(f"{folder / RESULTS_FILE}: n is {stated} but {file} holds "
                                  f"{len(keyed)} rows")
        if self.ids is not None and len(np.unique(self.ids)) != len(self.ids):
            raise QuantGuardError(f"{folder / IDS_FILE}: the sample ids must be a 1-D array of "
                                  "distinct integers")

    def check_data(self, dataset: Any) -> None:
        """Match the results to ``dataset`` (its digest, count and sample ids) before any row is
        replayed; a mismatch is an error naming both sides (docs/results.md, "What is checked")."""
        data = f"the validation set {dataset.description} ({dataset.n} samples, sha256 " \
               f"{dataset.digest[:12]})"
        if self.data_digest is not None and self.data_digest != dataset.digest:
            raise QuantGuardError(
                f"{self.description} were made on data with sha256 {self.data_digest[:12]}, not "
                f"{data}: run the model again on this set (quantguard export-inputs / validate)")
        if self.n != dataset.n:
            raise QuantGuardError(f"{self.description} hold {self.n} samples, {data} has "
                                  f"{dataset.n}: results must cover every sample once")
        if self.bare:
            warnings.warn(QuantGuardWarning(
                f"{self.description}: a bare array without sample ids or data digest; only its "
                f"count ({self.n}) is checked and its row order is unverified: write a results "
                "folder (docs/results.md) to have it checked"), stacklevel=2)
            self._rows = np.arange(self.n)
            self.matching = {"by": "position"}
            return
        if self.ids is None:
            self._rows, self.matching = self._match_hashes(dataset, data)
            return
        self._rows, self.matching = self._match_ids(dataset, data), {"by": "ids"}
        if self.hashes is not None:
            self._verify_hashes(dataset, data)

    def _match_ids(self, dataset: Any, data: str) -> np.ndarray:
        order = np.argsort(self.ids, kind="stable")
        expected = np.arange(dataset.n)
        if not np.array_equal(self.ids[order], expected):
            missing = np.setdiff1d(expected, self.ids)
            extra = np.setdiff1d(self.ids, expected)
            raise QuantGuardError(
                f"{self.description}: {IDS_FILE} does not hold the sample ids of {data} (ids 0 to "
                f"{dataset.n - 1}): {len(missing)} missing (first {missing[:3].tolist()}), "
                f"{len(extra)} unknown (first {extra[:3].tolist()}); write the ids dataset.json "
                "lists, in the order of the rows")
        return order  # the row holding each sample, by its position in the set

    def _match_hashes(self, dataset: Any, data: str) -> tuple[np.ndarray, dict[str, Any]]:
        """Rows matched to samples by input hash; rows of identical inputs (one hash, several
        samples) are paired in order of appearance (docs/results.md, "Input hashes")."""
        expected = _hash_keys(input_hashes(dataset))
        given = _hash_keys(self.hashes)
        set_order, row_order = np.argsort(expected, kind="stable"), np.argsort(given, kind="stable")
        if not np.array_equal(expected[set_order], given[row_order]):
            unknown = np.flatnonzero(~np.isin(given, expected))
            missing = np.flatnonzero(~np.isin(expected, given))
            raise QuantGuardError(
                f"{self.description}: {HASHES_FILE} does not hold the input hashes of {data}: "
                f"{len(unknown)} rows hash inputs not in the set (first rows "
                f"{unknown[:3].tolist()}), {len(missing)} samples have no row (first ids "
                f"{missing[:3].tolist()})" + ("" if len(unknown) or len(missing) else
                                              ", and identical inputs are counted differently")
                + "; hash the inputs as exported (quantguard export-inputs writes them, and "
                "docs/results.md defines the hash)")
        rows = np.empty(dataset.n, dtype=np.int64)
        rows[set_order] = row_order
        _, counts = np.unique(expected, return_counts=True)
        return rows, {"by": "input hashes", "shared_inputs": int(counts[counts > 1].sum())}

    def _verify_hashes(self, dataset: Any, data: str) -> None:
        """Both ids and hashes: each row's hash must be its id's sample's."""
        expected = _hash_keys(input_hashes(dataset))[self.ids]
        wrong = np.flatnonzero(expected != _hash_keys(self.hashes))
        if len(wrong):
            raise QuantGuardError(
                f"{self.description}: {len(wrong)} rows of {HASHES_FILE} are not the input hash "
                f"of the sample {IDS_FILE} names in {data} (first rows {wrong[:3].tolist()}): the "
                "ids or the rows are in another order than the inputs the device ran")
        self.matching = {"by": "ids, hashes verified"}

    def top_k_in_set_order(self, output: str | int | None) -> dict[str, Any] | None:
        """The chosen output's top-k arrays in sample order (after ``check_data``); None when
        the results hold none for it."""
        from pytest_quantguard.runners.selection import choose_output

        entry = self.top_k.get(choose_output(self.arrays, output, self.description))
        if entry is None or self._rows is None:
            return None
        return {key: value if key == "k" else np.asarray(value[self._rows])
                for key, value in entry.items()}

    def in_set_order(self, output: str | int | None) -> np.ndarray | None:
        """The chosen output's rows in sample order (after ``check_data``); None before."""
        from pytest_quantguard.runners.selection import choose_output

        if self._rows is None:
            return None
        name = choose_output(self.arrays, output, self.description)
        return np.asarray(self.arrays[name][self._rows])

    def outputs_for(self, batch: Any) -> dict[str, np.ndarray]:
        """The rows of ``batch``'s samples, found by their ids."""
        if self._rows is None:
            raise QuantGuardError(f"{self.description}: check_data(dataset) must run before rows "
                                  "are replayed")
        rows = self._rows[np.asarray(batch.ids)]
        return {name: np.asarray(array[rows]) for name, array in self.arrays.items()}

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise QuantGuardError(f"{self.description}: results are read by sample id, not run on "
                              "inputs; pass them to compare(), quant_compare or quantguard compare")


def _hash_keys(hashes: np.ndarray) -> np.ndarray:
    """Each row's 32-byte digest as one comparable bytes value."""
    return np.ascontiguousarray(hashes, dtype=np.uint8).view("S32").ravel()
