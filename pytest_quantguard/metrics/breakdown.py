"""A family's evaluation on each class or slice of the samples: "which lost most".

The samples are grouped once. 0/1 scores (accuracy, top-k, each class's accuracy) take each
class's four cell counts from one ``bincount``; on the absolute margin every class's interval is
then computed for all classes together (``stats.paired_binary_many``: the same numbers as each
class's own ``paired_binary_interval``, from the same per-class streams), on the other margins by
each class's own evaluation of its counts. Other families evaluate each slice's subset
(docs/verdict.md, "Classes and slices").
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Context, Scores
from pytest_quantguard.stats.paired_binary_many import paired_binary_intervals


def breakdown(scores: Scores, keys: np.ndarray, context: Context,
              names: tuple[str, ...] | None = None) -> list[dict]:
    """The evaluation of ``scores`` on each value of ``keys`` (classes or slices): one row each,
    sorted by the upper bound, largest first ("which lost most"). Each slice has its own random
    stream, derived from the comparison's and the slice's value."""
    values, inverse = _grouped(np.asarray(keys))
    seeds = context.rng.integers(0, 2**63 - 1, size=len(values))
    labels = [value.item() if isinstance(value, np.generic) else value for value in values]
    shown = [names[label] if names is not None and isinstance(label, int) and
             0 <= label < len(names) else label for label in labels]
    cells = _binary_cells(scores, keys, inverse, len(values), context)
    if cells is None:
        rows = _subset_rows(scores, keys, values, seeds, context)
    elif context.margin == "absolute":
        rows = _absolute_rows(cells, seeds, context)
    else:
        rows = _counted_rows(scores, cells, seeds, context)
    rows = [{"slice": name, "label": label, **row}
            for row, label, name in zip(rows, labels, shown, strict=True)]
    rows.sort(key=lambda row: (-row.get("high", -math.inf), str(row["slice"])))
    return rows


def _grouped(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)``; small non-negative integers (class labels)
    without sorting."""
    if np.issubdtype(keys.dtype, np.integer) and keys.size and keys.min() >= 0 \
            and keys.max() < 4 * keys.size:
        present = np.bincount(keys.ravel()) > 0
        return np.flatnonzero(present).astype(keys.dtype), (np.cumsum(present) - 1)[keys.ravel()]
    values, inverse = np.unique(keys, return_inverse=True)
    return values, inverse.reshape(-1)


def _binary_cells(scores: Scores, keys: np.ndarray, inverse: np.ndarray, k: int,
                  context: Context) -> np.ndarray | None:
    """Each class's (both right, only the reference right, only the candidate right, both wrong)
    counts, for 0/1 scores without groups over integer keys; None for every other case."""
    from pytest_quantguard.metrics.classification import BinaryScores  # it imports this module

    if type(scores) is not BinaryScores or context.groups is not None or \
            not np.issubdtype(np.asarray(keys).dtype, np.integer):
        return None
    pair = (scores.reference, scores.candidate)
    # np.mean of float32 scores rounds in float32: those keep the subset path, bit for bit
    if any(not (a.dtype.kind in "biu" or a.dtype == np.float64) or a.shape != inverse.shape
           or not np.isin(a, (0, 1)).all() for a in pair):
        return None
    cell = 4 * inverse + 2 * (pair[0] != 1) + (pair[1] != 1)
    return np.bincount(cell, minlength=4 * k).reshape(k, 4)


def _absolute_rows(cells: np.ndarray, seeds: np.ndarray, context: Context) -> list[dict]:
    """0/1 scores on the absolute margin: every class's figures and interval at once."""
    n = cells.sum(axis=1)
    intervals = paired_binary_intervals(cells[:, 1], cells[:, 2], n, seeds,
                                        confidence=context.confidence, resamples=context.resamples)
    rows = []
    for (a, b, c, _), total, interval in zip(cells.tolist(), n.tolist(), intervals, strict=True):
        reference, candidate = (a + b) / total, (a + c) / total
        rows.append({"n": total, "reference": reference, "candidate": candidate,
                     "drop": reference - candidate, "low": interval.low, "high": interval.high,
                     "method": interval.method})
    return rows


def _counted_rows(scores: Scores, cells: np.ndarray, seeds: np.ndarray,
                  context: Context) -> list[dict]:
    """0/1 scores on a ratio margin: each class's own evaluation, of scores rebuilt from its
    counts (the same means and cells as its samples, so the same figures)."""
    rows = []
    for (a, b, c, d), seed in zip(cells.tolist(), seeds, strict=True):
        reference = np.repeat(np.array([1, 1, 0, 0], dtype=np.int8), [a, b, c, d])
        candidate = np.repeat(np.array([1, 0, 1, 0], dtype=np.int8), [a, b, c, d])
        sub = replace(scores, reference=reference, candidate=candidate)
        rows.append(_evaluated(sub, replace(context, rng=np.random.default_rng(int(seed))),
                               a + b + c + d))
    return rows


def _subset_rows(scores: Scores, keys: np.ndarray, values: np.ndarray, seeds: np.ndarray,
                 context: Context) -> list[dict]:
    """Any family: each slice's subset evaluated on its own."""
    rows = []
    for value, seed in zip(values, seeds, strict=True):
        mask = keys == value
        local = replace(context, rng=np.random.default_rng(int(seed)),
                        groups=None if context.groups is None else context.groups[mask])
        rows.append(_evaluated(scores.subset(mask), local, int(mask.sum())))
    return rows


def _evaluated(sub: Scores, context: Context, n: int) -> dict:
    """One slice's row: its figures and interval, or the error that stopped its evaluation."""
    try:
        evaluation = sub.evaluate(context)
    except QuantGuardError as error:
        return {"n": n, "error": str(error)}
    return {"n": n, "reference": evaluation.reference_score,
            "candidate": evaluation.candidate_score, "drop": evaluation.drop,
            "low": evaluation.interval.low, "high": evaluation.interval.high,
            "method": evaluation.interval.method}
