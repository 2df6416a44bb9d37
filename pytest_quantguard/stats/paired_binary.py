"""The interval of the drop for metrics that score each sample 0/1 (accuracy, top-k).

Only the discordant counts matter: b = samples the reference gets right and the candidate wrong,
c = the reverse, drop = (b - c) / n. The paired bootstrap resamples those counts (a multinomial
draw: exact, and independent of n). Where few samples disagree the bootstrap under-covers
(research/statistics.md §2, §6: a 13% false-ship rate at n=200, 1% discordance), so its interval
is widened to contain the Tango (1998) score interval, whose coverage holds there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class IntervalResult:
    """A two-sided interval of the drop, the method that made it, and what it was made from."""

    low: float
    high: float
    method: str
    details: dict[str, int | float | str] = field(default_factory=dict)


def paired_binary_interval(b: int, c: int, n: int, *, confidence: float, resamples: int,
                           rng: np.random.Generator) -> IntervalResult:
    """Percentile bootstrap of (b - c)/n from resampled counts, widened to contain Tango's interval.

    With b = c = 0 every resample is 0: the bootstrap is degenerate, and the Tango bound alone is
    reported (method ``degenerate-fallback``), never a zero-width interval.
    """
    _check_counts(b, c, n)
    tango_low, tango_high = tango_interval(b, c, n, confidence)
    details: dict[str, int | float | str] = {
        "reference_only": int(b), "candidate_only": int(c),
        "tango_low": tango_low, "tango_high": tango_high,
    }
    if b + c == 0:
        return IntervalResult(tango_low, tango_high, "degenerate-fallback", details)
    draws = rng.multinomial(n, [b / n, c / n, 1.0 - (b + c) / n], size=int(resamples))
    drops = (draws[:, 0] - draws[:, 1]) / n
    alpha = 1.0 - confidence
    boot_low, boot_high = (float(q) for q in np.quantile(drops, [alpha / 2, 1 - alpha / 2]))
    details.update(bootstrap_low=boot_low, bootstrap_high=boot_high)
    return IntervalResult(min(boot_low, tango_low), max(boot_high, tango_high), "percentile+tango",
                          details)


def tango_interval(b: int, c: int, n: int, confidence: float) -> tuple[float, float]:
    """Tango's score interval for the paired difference of proportions (b - c)/n.

    Inverts T(d) = (b - c - n d) / sqrt(n (2 p01(d) + d (1 - d))), where p01(d) is the restricted
    maximum-likelihood estimate of P(reference wrong, candidate right) under drop = d. T decreases
    in d, so each limit is one bisection.
    """
    _check_counts(b, c, n)
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    estimate = (b - c) / n
    low = _solve(lambda d: _tango_statistic(b, c, n, d) - z, -1.0, estimate)
    high = _solve(lambda d: _tango_statistic(b, c, n, d) + z, estimate, 1.0)
    return low, high


def _tango_statistic(b: int, c: int, n: int, d: float) -> float:
    a_coef = 2.0 * n
    b_coef = -b - c + (2.0 * n - b + c) * d
    c_coef = -c * d * (1.0 - d)
    p01 = (math.sqrt(max(b_coef * b_coef - 4.0 * a_coef * c_coef, 0.0)) - b_coef) / (2.0 * a_coef)
    variance = n * (2.0 * p01 + d * (1.0 - d))
    numerator = b - c - n * d
    if variance <= 0.0:
        return math.copysign(math.inf, numerator) if numerator else 0.0
    return numerator / math.sqrt(variance)


def _solve(f, low: float, high: float, iterations: int = 200) -> float:
    """The root of a decreasing f on [low, high] by bisection, clamped to the ends."""
    if f(low) <= 0.0:
        return low
    if f(high) >= 0.0:
        return high
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if f(middle) > 0.0:
            low = middle
        else:
            high = middle
        if high - low < 1e-12:
            break
    return 0.5 * (low + high)


def _check_counts(b: int, c: int, n: int) -> None:
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"need 0 <= b, c and b + c <= n > 0; got b={b}, c={c}, n={n}")
