"""The checks every way of giving a validation set shares: labels, token shapes, groups, slices, task.

In-memory arrays (``ValidationSet(...)``) and each folder format run the same checks, so a bad
array fails with the same message wherever it comes from (docs/data.md: groups, slices, language-
model data). Some checks read only an array's shape and dtype (a ``.npy`` header is enough).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.vocabulary import TASKS

LANGUAGE_MODEL = "language-model"
# The label of a token position the loss ignores (PyTorch's and Hugging Face's ignore_index).
IGNORE_INDEX = -100

__all__ = ["IGNORE_INDEX", "LANGUAGE_MODEL", "check_dtype", "check_groups", "check_label_header",
           "check_labels", "check_slices", "check_token_shapes", "resolve_task", "warn_unused_arrays"]

# dtypes no model input or label can be, and the fix for each (docs/data.md, "What is refused"):
# arrays are booleans, integers or floats (text where a model takes strings, or text labels).
REFUSED_DTYPES = {
    "c": ("complex", "give the real and imaginary parts as numbers, e.g. "
                     "np.stack([x.real, x.imag], axis=-1).astype(np.float32)"),
    "M": ("a datetime", "give numbers, e.g. seconds: x.astype('datetime64[s]').astype(np.int64)"),
    "m": ("a timedelta", "give numbers, e.g. seconds: x / np.timedelta64(1, 's')"),
    "V": ("void or structured", "give each field as its own array (x['field']) and list them in "
                                "quantguard.toml: inputs = [...]"),
}


def resolve_task(task: str | None, has_labels: bool, where: str) -> str:
    """The task given, or the default: classification with labels, fidelity without."""
    if task is None:
        return "classification" if has_labels else "fidelity"
    if task not in TASKS:
        raise QuantGuardError(f"{where}: unknown task {task!r}; use one of {', '.join(TASKS)}")
    return task


def check_dtype(dtype: np.dtype, where: str, role: str) -> None:
    """Refuse an array of a dtype no model can be fed and no label can be: complex, datetime,
    timedelta, void or structured (object arrays are refused as pickles where they are read)."""
    if dtype.kind in REFUSED_DTYPES:
        kind, fix = REFUSED_DTYPES[dtype.kind]
        raise QuantGuardError(f"{where}: the {role} array is {kind} ({dtype}); quantguard reads "
                              "boolean, integer and floating-point arrays (and text), so "
                              f"{fix}")


def check_labels(labels: np.ndarray, n: int, where: str, task: str | None = None) -> np.ndarray:
    """Labels for ``n`` samples: 1-D (an (n, 1) column is squeezed), or for a language model
    integer token ids of shape (n, seq_len) with ``IGNORE_INDEX`` where ignored."""
    if labels.dtype.hasobject:
        raise QuantGuardError(f"{where}: an object array; give numeric labels (integers for classes)")
    check_label_header(labels.shape, labels.dtype, n, where, task, fix="give")
    if labels.dtype.kind in "fc" and not np.isfinite(labels).all():
        # NaN or Inf is no class and no target (docs/data.md, "Tasks and labels")
        bad = int(np.flatnonzero(~np.isfinite(labels.reshape(len(labels), -1)).all(axis=1))[0])
        raise QuantGuardError(f"{where}: label of sample {bad} is {labels.reshape(len(labels), -1)[bad]}"
                              "; labels must be finite (class indices, or the regression targets)")
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
    check_dtype(dtype, where, "labels")
    if dtype.kind in "SUT":
        if task in ("regression", LANGUAGE_MODEL):
            raise QuantGuardError(f"{where}: the labels are text ({dtype}); {fix} numbers (the "
                                  f"{task} targets)")
        raise QuantGuardError(f"{where}: the labels are text ({dtype}); {fix} class indices "
                              "0..K-1 instead (e.g. names, y = np.unique(text, return_inverse=True)) "
                              "and list the names in order as class_names = [...] in quantguard.toml")
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


def warn_unused_arrays(arrays: Mapping[str, tuple[tuple[int, ...], np.dtype]], used: Sequence[str],
                       inputs: Sequence[str], n: int, has_labels: bool, where: str,
                       manifest_file: str) -> None:
    """Arrays of the data that nothing reads (not an input, the labels, groups or slices) are
    probably data the user meant to use: say which, and the manifest line that would use each; a
    label-free set holding one integer per sample hears that it looks like labels (docs/data.md,
    "Arrays nothing uses")."""
    unused = [name for name in arrays if name not in used]
    if not unused:
        return
    lines = []
    for name in unused:
        shape, dtype = arrays[name]
        per_sample = tuple(shape) == (n,)
        if per_sample and not has_labels and (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
            lines.append(f"{name!r} looks like labels (one integer per sample) but the set has none, "
                         f"so only label-free metrics (agreement) can run: add labels = \"{name}\" "
                         f"to {manifest_file}")
        elif per_sample and (dtype.kind in "SUTb" or np.issubdtype(dtype, np.integer)):
            lines.append(f"{name!r} (one {dtype} per sample) is not used: to break results down by "
                         f'it add slices = "{name}" to {manifest_file} (or groups = "{name}" when '
                         "it names each sample's group)")
        else:
            listed = ", ".join(f'"{each}"' for each in [*inputs, name])
            lines.append(f"{name!r} (shape {list(shape)}, {dtype}) is not used: to feed it to the "
                         f"model add it to {manifest_file}: inputs = [{listed}]")
    warnings.warn(QuantGuardWarning(f"{where}: {len(unused)} array(s) nothing uses (not an input, "
                                    "the labels, groups or slices): " + "; ".join(lines)),
                  stacklevel=2)
