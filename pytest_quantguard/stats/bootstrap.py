"""Bootstrap limits from replicates: percentile and BCa (bias-corrected and accelerated).

Both take the replicates of the statistic on the scale it was computed on; BCa also takes the
jackknife (leave-one-unit-out) values, optionally weighted (a pattern that occurs ``w`` times has
``w`` identical leave-one-out values). BCa is transformation-respecting, so limits computed on a
log scale map back through any monotone transform.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()


def percentile_limits(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The (1 - confidence)/2 and (1 + confidence)/2 quantiles of the replicates."""
    alpha = 1.0 - confidence
    low, high = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def acceleration(jackknife: np.ndarray, weights: np.ndarray | None = None) -> float:
    """BCa's acceleration from (weighted) jackknife values; 0 when they are all equal."""
    values = np.asarray(jackknife, dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    mean = float(np.sum(w * values) / np.sum(w))
    u = mean - values
    second = float(np.sum(w * u * u))
    if second <= 0.0 or not math.isfinite(second):
        return 0.0
    return float(np.sum(w * u ** 3)) / (6.0 * second ** 1.5)


def bca_limits(replicates: np.ndarray, estimate: float, jackknife: np.ndarray,
               weights: np.ndarray | None, confidence: float) -> tuple[float, float] | None:
    """BCa limits, or None when the bootstrap distribution is degenerate.

    Degenerate: every replicate equal, or the estimate outside the replicates' range (the bias
    correction would be infinite). The caller then falls back to a score bound.
    """
    replicates = np.asarray(replicates, dtype=np.float64)
    if replicates.size == 0 or float(np.ptp(replicates)) == 0.0:
        return None
    below = np.count_nonzero(replicates < estimate)
    ties = np.count_nonzero(replicates == estimate)
    share = (below + 0.5 * ties) / replicates.size
    if not 0.0 < share < 1.0:
        return None
    z0 = _NORMAL.inv_cdf(share)
    a = acceleration(jackknife, weights)
    alpha = 1.0 - confidence
    levels = []
    for tail in (alpha / 2.0, 1.0 - alpha / 2.0):
        z = _NORMAL.inv_cdf(tail)
        denominator = 1.0 - a * (z0 + z)
        if denominator <= 0.0:  # extreme acceleration: the BCa level runs off the end
            levels.append(0.0 if tail < 0.5 else 1.0)
            continue
        levels.append(_NORMAL.cdf(z0 + (z0 + z) / denominator))
    low, high = np.quantile(replicates, levels)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return float(low), float(high)
