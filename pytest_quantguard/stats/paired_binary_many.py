"""``paired_binary_interval`` for many classes at once (the per-class breakdown): the same
limits, method and details per class, each class from its own random stream, computed together.

Tango's score interval is one vectorized bisection over the classes (the same steps and stopping
rule as the scalar one); the bootstrap's resampled counts are replayed for all classes at once
(``multinomial_replay``); the percentile limits come from each class's counts of ``b - c`` draws.
(docs/intervals.md, "0/1 metrics")
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from pytest_quantguard.stats.multinomial_replay import (
    replay_differences,
    replay_eligible,
    replay_matches_numpy,
)
from pytest_quantguard.stats.result import IntervalResult

_CHUNK_DRAWS = 2**18  # resampled rows replayed at once (a few tens of MiB of temporaries)


def tango_intervals(b: np.ndarray, c: np.ndarray, n: np.ndarray,
                    confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """``tango_interval`` of every (b, c, n), vectorized: the same bisection, step for step."""
    b, c, n = (np.asarray(v, dtype=np.float64) for v in (b, c, n))
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    estimate = (b - c) / n
    low = _solve(b, c, n, -z, np.full_like(b, -1.0), estimate.copy())
    high = _solve(b, c, n, z, estimate.copy(), np.ones_like(b))
    return low, high


def _statistic(b, c, n, d):
    a_coef = 2.0 * n
    b_coef = -b - c + (2.0 * n - b + c) * d
    c_coef = -c * d * (1.0 - d)
    p01 = (np.sqrt(np.maximum(b_coef * b_coef - 4.0 * a_coef * c_coef, 0.0)) - b_coef) / (2.0 * a_coef)
    variance = n * (2.0 * p01 + d * (1.0 - d))
    numerator = b - c - n * d
    with np.errstate(divide="ignore", invalid="ignore"):
        value = numerator / np.sqrt(variance)
    flat = np.where(numerator != 0, np.copysign(np.inf, numerator), 0.0)
    return np.where(variance <= 0.0, flat, value)


def _solve(b, c, n, shift, low, high, iterations: int = 200):
    """The root of T(d) + shift (decreasing in d) on [low, high] per class, by the scalar
    bisection's steps (clamped to the ends; stops when high - low < 1e-12)."""
    result = np.full_like(low, np.nan)
    at_low = _statistic(b, c, n, low) + shift <= 0.0
    result[at_low] = low[at_low]
    at_high = ~at_low & (_statistic(b, c, n, high) + shift >= 0.0)
    result[at_high] = high[at_high]
    active = np.flatnonzero(~at_low & ~at_high)
    low, high = low[active], high[active]
    for _ in range(iterations):
        if not len(active):
            break
        middle = 0.5 * (low + high)
        above = _statistic(b[active], c[active], n[active], middle) + shift > 0.0
        low = np.where(above, middle, low)
        high = np.where(above, high, middle)
        done = high - low < 1e-12
        result[active[done]] = 0.5 * (low[done] + high[done])
        active, low, high = active[~done], low[~done], high[~done]
    result[active] = 0.5 * (low + high)
    return result


def _limits(differences: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    """Each row's ``percentile_limits`` of ``differences / n`` (numpy's linear quantiles), from
    the counts of each difference."""
    k, r = differences.shape
    alpha = 1.0 - confidence
    positions = np.array([alpha / 2.0, 1.0 - alpha / 2.0]) * (r - 1)
    below = np.floor(positions).astype(np.int64)
    fraction = positions - below
    low_value = int(differences.min())
    span = int(differences.max()) - low_value + 1
    counts = np.bincount((differences - low_value + span * np.arange(k)[:, None]).ravel(),
                         minlength=k * span).reshape(k, span)
    cumulative = np.cumsum(counts, axis=1)
    limits = np.empty((k, 2))
    for j in range(2):
        ranks = np.stack([below[j], np.minimum(below[j] + 1, r - 1)])
        values = [((cumulative <= rank).sum(axis=1) + low_value) / n for rank in ranks]
        a, step = values[0], values[1] - values[0]
        t = fraction[j]
        limits[:, j] = b_minus(values[1], step, t) if t >= 0.5 else a + step * t
    return limits


def b_minus(b: np.ndarray, step: np.ndarray, t: float) -> np.ndarray:
    """numpy's lerp above t = 0.5: ``b - (b - a)(1 - t)``."""
    return b - step * (1 - t)


def _bootstrap_limits(b, c, n, seeds, confidence: float, resamples: int) -> np.ndarray:
    """Each class's percentile limits of the resampled drops (NaN where b = c = 0)."""
    limits = np.full((len(b), 2), np.nan)
    live = np.flatnonzero(b + c > 0)
    fast = live[replay_eligible(b[live], c[live], n[live])]
    if len(fast) and not replay_matches_numpy(int(b[fast[0]]), int(c[fast[0]]), int(n[fast[0]]),
                                              int(seeds[fast[0]]), resamples):
        fast = fast[:0]  # this numpy draws differently: every class takes numpy's own path
    slow = list(np.setdiff1d(live, fast))
    step = max(1, _CHUNK_DRAWS // max(int(resamples), 1))
    for start in range(0, len(fast), step):
        part = fast[start:start + step]
        differences, failed = replay_differences(b[part], c[part], n[part], seeds[part], resamples)
        good = ~failed
        if good.any():
            limits[part[good]] = _limits(differences[good], n[part[good]], confidence)
        slow.extend(part[failed])
    for i in slow:
        bi, ci, ni = int(b[i]), int(c[i]), int(n[i])
        draws = np.random.default_rng(int(seeds[i])).multinomial(
            ni, [bi / ni, ci / ni, 1.0 - (bi + ci) / ni], size=int(resamples))
        limits[i] = _limits((draws[:, 0] - draws[:, 1])[None, :], n[i:i + 1], confidence)[0]
    return limits


def paired_binary_intervals(b, c, n, seeds, *, confidence: float,
                            resamples: int) -> list[IntervalResult]:
    """``paired_binary_interval(b[i], c[i], n[i], rng=np.random.default_rng(seeds[i]))`` for
    every class i (its limits to within 1e-12, its method and details)."""
    b, c, n = (np.asarray(v, dtype=np.int64) for v in (b, c, n))
    seeds = np.asarray(seeds)
    if ((n <= 0) | (b < 0) | (c < 0) | (b + c > n)).any():
        raise ValueError("need 0 <= b, c and b + c <= n > 0 for every class")
    tango_low, tango_high = tango_intervals(b, c, n, confidence)
    boot = _bootstrap_limits(b, c, n, seeds, confidence, resamples)
    results = []
    for i in range(len(b)):
        details = {"reference_only": int(b[i]), "candidate_only": int(c[i]),
                   "tango_low": float(tango_low[i]), "tango_high": float(tango_high[i])}
        if b[i] + c[i] == 0:
            results.append(IntervalResult(details["tango_low"], details["tango_high"],
                                          "degenerate-fallback", details))
            continue
        low, high = float(boot[i, 0]), float(boot[i, 1])
        details.update(bootstrap_low=low, bootstrap_high=high)
        inside = low >= details["tango_low"] and high <= details["tango_high"]
        results.append(IntervalResult(min(low, details["tango_low"]), max(high, details["tango_high"]),
                                      "tango-score" if inside else "percentile+tango", details))
    return results
