"""Detection mAP's breakdowns: each class's AP drop and each object size's mAP drop, with
intervals from the same image resamples as the overall interval (docs/intervals.md, "Detection
mAP"; docs/verdict.md, "Classes and slices").

Every resample's weights re-accumulate each class's AP in the area range ``all`` (the overall
mAP is their mean) and the mAP of the small, medium and large ranges; so a class's or a size's
interval costs no draws of its own, and its rows are those of the other families' breakdowns:
``slice``, ``label``, ``n`` (images holding it), both scores, the drop and its percentile interval.
"""

from __future__ import annotations

import math

import numpy as np

from pytest_quantguard.metrics.base import Context
from pytest_quantguard.stats.bootstrap import percentile_limits
from pytest_quantguard.stats.sums import zero_discordance_halfwidth

SIZES = ("small", "medium", "large")


def drops(reference: np.ndarray, candidate: np.ndarray, margin: str) -> np.ndarray:
    """Elementwise drop (higher is better): absolute, or relative (NaN where the reference is 0)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if margin == "relative":
            return np.where(reference != 0, 1.0 - candidate / np.where(reference != 0, reference,
                                                                       1.0), np.nan)
        return reference - candidate


def rows(labels: list, names: list, counts: np.ndarray, points: tuple[np.ndarray, np.ndarray],
         replicates: tuple[np.ndarray, np.ndarray], margin: str, context: Context) -> list[dict]:
    """One row per key whose reference score exists on the full set: the drop and its interval
    from the replicates' columns (resamples where the key is absent are left out), sorted by the
    upper bound, largest first ("which lost most")."""
    found = []
    reference, candidate = points
    replicated = drops(replicates[0], replicates[1], margin)
    for i, (label, name) in enumerate(zip(labels, names, strict=True)):
        if np.isnan(reference[i]):
            continue  # no (non-crowd) ground truth: no AP, as COCO
        row = {"slice": name, "label": label, "n": int(counts[i])}
        drop = float(drops(reference[i], candidate[i], margin))
        column = replicated[:, i]
        column = column[np.isfinite(column)]
        if not math.isfinite(drop) or len(column) < 2:
            found.append({**row, "error": f"{name!r}: no {margin} drop (reference score "
                                           f"{reference[i]:.4g}) or too few resamples with it"})
            continue
        low, high = percentile_limits(column, context.confidence)
        method = "percentile"
        if low == high:  # both models equal here in every resample: the zero-difference bound
            half = zero_discordance_halfwidth(int(counts[i]), context.confidence)
            low, high, method = drop - half, drop + half, "degenerate-fallback"
        found.append({**row, "reference": float(reference[i]), "candidate": float(candidate[i]),
                      "drop": drop, "low": low, "high": high, "method": method})
    found.sort(key=lambda r: (-r.get("high", -math.inf), str(r["slice"])))
    return found
