"""A family's evaluation on each class or slice of the samples: "which lost most"."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Context, Scores


def breakdown(scores: Scores, keys: np.ndarray, context: Context,
              names: tuple[str, ...] | None = None) -> list[dict]:
    """The evaluation of ``scores`` on each value of ``keys`` (classes or slices): one row each,
    sorted by the upper bound, largest first ("which lost most"). Each slice has its own random
    stream, derived from the comparison's and the slice's value."""
    rows = []
    values = np.unique(keys)
    seeds = context.rng.integers(0, 2**63 - 1, size=len(values))
    for value, seed in zip(values, seeds, strict=True):
        mask = keys == value
        label = value.item() if isinstance(value, np.generic) else value
        shown = names[label] if names is not None and isinstance(label, int) and \
            0 <= label < len(names) else label
        sub = scores.subset(mask)
        local = replace(context, rng=np.random.default_rng(int(seed)),
                        groups=None if context.groups is None else context.groups[mask])
        try:
            evaluation = sub.evaluate(local)
        except QuantGuardError as error:
            rows.append({"slice": shown, "label": label, "n": int(mask.sum()), "error": str(error)})
            continue
        rows.append({"slice": shown, "label": label, "n": int(mask.sum()),
                     "reference": evaluation.reference_score,
                     "candidate": evaluation.candidate_score, "drop": evaluation.drop,
                     "low": evaluation.interval.low, "high": evaluation.interval.high,
                     "method": evaluation.interval.method})
    rows.sort(key=lambda row: (-row.get("high", -math.inf), str(row["slice"])))
    return rows
