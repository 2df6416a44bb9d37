"""Intervals for statistics that depend on the data only through column sums over units.

Every drop the project measures is such a statistic (docs/intervals.md): accuracy-type
drops and their ratios, MAE/RMSE log ratios, the R² drop, the perplexity log ratio and macro-F1
(whose "columns" are pattern counts). A *unit* is what is resampled: a sample, or a group of
samples (a document, the crops of one product); a group's vector is the sum of its samples'. So
one engine serves i.i.d. and clustered data, and the jackknife that BCa needs is closed-form:
leaving unit u out gives ``phi(S - x_u)``.

Resampling, by what the units are:
- patterns (few distinct unit vectors, with counts): multinomial count vectors, cost O(B x P),
  independent of n;
- arbitrary unit vectors: chunked index resampling, O(B x U) time and bounded memory;
- groups: the group vectors resampled as units.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from pytest_quantguard.stats.bootstrap import bca_limits
from pytest_quantguard.stats.paired_binary import tango_interval
from pytest_quantguard.stats.result import IntervalResult

# Above this many units the index bootstrap (O(B x U)) gives way to the analytic interval.
ANALYTIC_ABOVE = 100_000
# Bytes of resampled indices held at once by the index bootstrap.
CHUNK_BYTES = 64 * 2**20
# From this many units on, pattern counts are resampled as independent Poisson counts (the Poisson
# bootstrap): indistinguishable from the multinomial at this size (the total
# weight varies by 1/sqrt(n) = 0.3%), and about twice as fast.
POISSON_FROM = 100_000
# In the Poisson bootstrap, a pattern whose count is at least this large is drawn from the normal
# approximation of its Poisson count (mean = variance = the count, rounded to a whole number,
# never below 0): the textbook threshold for that approximation; a normal draw costs a fifth of
# numpy's Poisson draw, which was 80% of the macro-F1 interval's time at n = 1e6. The drop sums
# many patterns, so its bootstrap distribution does not tell the two apart (a test compares them).
NORMAL_FROM = 30


def _identity(values):
    return values


@dataclass(frozen=True)
class SumStatistic:
    """``phi`` maps sums (R, k) -> R values on its working scale; ``to_drop`` (monotone
    increasing) maps the working scale to the reported drop (e.g. ``exp(x) - 1`` for a log ratio).
    ``phi`` must be homogeneous of degree 0 (a ratio of sums), so sums and means give the same value.
    """

    name: str
    phi: Callable[[np.ndarray], np.ndarray]
    to_drop: Callable[[np.ndarray], np.ndarray] = _identity
    columns: tuple[str, ...] = ()
    # optional fast leave-one-unit-out values for pattern data: count rows (R, P) -> (R, P)
    leave_one_out: Callable[[np.ndarray], np.ndarray] | None = None
    # phi is defined on whole counts only (a user's function of class predictions): no
    # derivative, so the unit variance is the jackknife's
    discrete: bool = False

    def value(self, sums: np.ndarray) -> float:
        return float(self.phi(np.asarray(sums, dtype=np.float64)[None, :])[0])

    def drop(self, working: float) -> float:
        return float(self.to_drop(np.asarray([working], dtype=np.float64))[0])


@dataclass(frozen=True)
class SumsData:
    """Unit vectors ``x`` (U, k) with multiplicities ``counts`` (patterns), or one row per unit.

    ``x=None`` with ``counts``: each pattern's vector is its indicator, so the sums are the
    pattern counts themselves (corpus metrics such as macro-F1).
    """

    x: np.ndarray | None
    counts: np.ndarray | None = None
    unit: str = "sample"  # "sample" or "group": names the method (bca / cluster-bca)
    details: dict = field(default_factory=dict)

    @property
    def units(self) -> int:
        return int(self.counts.sum()) if self.counts is not None else len(self.x)

    @functools.cached_property
    def sums(self) -> np.ndarray:
        if self.x is None:
            return self.counts.astype(np.float64)
        x = np.asarray(self.x, dtype=np.float64)
        return self.counts.astype(np.float64) @ x if self.counts is not None else x.sum(axis=0)

    def vectors(self) -> np.ndarray:
        if self.x is None:
            return np.eye(len(self.counts))
        return np.asarray(self.x, dtype=np.float64)


def zero_discordance_halfwidth(units: int, confidence: float) -> float:
    """How far a drop could hide when no unit differs: Tango's bound at b = c = 0 over ``units``."""
    return tango_interval(0, 0, max(int(units), 1), confidence)[1]


def sums_interval(data: SumsData, statistic: SumStatistic, *, confidence: float, resamples: int,
                  rng: np.random.Generator, fallback_scale: float = 1.0,
                  analytic_above: int | None = ANALYTIC_ABOVE,
                  chunk_bytes: int = CHUNK_BYTES) -> IntervalResult:
    """Paired BCa interval of the drop (``bca``, or ``cluster-bca`` when units are groups).

    Above ``analytic_above`` units without patterns, the delta-method interval (``linearized``).
    When the bootstrap is degenerate (the models never differ, or a constant metric), the limits
    are the drop ± the zero-discordance score bound times ``fallback_scale``
    (``degenerate-fallback``): never NaN, never zero width.
    """
    sums = data.sums
    estimate = statistic.value(sums)
    if not math.isfinite(estimate):
        raise ValueError(f"{statistic.name}: the statistic is not finite on the whole set")
    units = data.units
    details = {**data.details, "units": units, "unit": data.unit, "estimate_working": estimate,
               "unit_variance": unit_variance(data, statistic)}
    if units < 2:
        return _fallback(statistic, estimate, units, confidence, fallback_scale, details)
    if data.counts is None and analytic_above is not None and units > analytic_above:
        return linearized_interval(data, statistic, confidence=confidence,
                                   fallback_scale=fallback_scale, method="linearized")
    jackknife, weights = _jackknife(data, sums, statistic)
    replicates = _replicates(data, statistic, resamples, rng, chunk_bytes)
    finite = np.isfinite(replicates)
    details["non_finite_replicates"] = int(replicates.size - np.count_nonzero(finite))
    limits = None
    if np.count_nonzero(finite) >= 0.99 * replicates.size and np.isfinite(jackknife).all():
        limits = bca_limits(replicates[finite], estimate, jackknife, weights, confidence)
    if limits is None:
        return _fallback(statistic, estimate, units, confidence, fallback_scale, details)
    method = "cluster-bca" if data.unit == "group" else "bca"
    low, high = (statistic.drop(limit) for limit in limits)
    return IntervalResult(low, high, method, details)


def linearized_interval(data: SumsData, statistic: SumStatistic, *, confidence: float,
                        fallback_scale: float = 1.0, method: str = "linearized") -> IntervalResult:
    """Delta-method interval: SE from the influence of each unit, t quantile with U - 1 df.

    For a ratio of sums this is the cluster-robust ratio-estimator SE
    (``linearized-cluster`` when the units are groups).
    """
    x = data.vectors()
    weights = None if data.counts is None else data.counts.astype(np.float64)
    sums = data.sums
    estimate = statistic.value(sums)
    units = data.units
    details = {**data.details, "units": units, "unit": data.unit, "estimate_working": estimate,
               "unit_variance": unit_variance(data, statistic)}
    spread = _influence_spread(x, weights, units, _gradient(statistic, sums))
    if units < 2 or not spread > 0.0 or not math.isfinite(spread):
        return _fallback(statistic, estimate, units, confidence, fallback_scale, details)
    se = math.sqrt(units / (units - 1) * spread)
    quantile = _t_quantile(1.0 - (1.0 - confidence) / 2.0, units - 1)
    details.update(standard_error=se, df=units - 1)
    low, high = statistic.drop(estimate - quantile * se), statistic.drop(estimate + quantile * se)
    return IntervalResult(low, high, method, details)


def studentized_limits(data: SumsData, statistic: SumStatistic, *, confidence: float,
                       resamples: int, rng: np.random.Generator) -> tuple[float, float] | None:
    """Studentized (bootstrap-t) limits for pattern data, on the working scale, or None.

    Each replicate is studentized by its own jackknife standard error over patterns (O(B x P)
    statistic values). Meant for small sets, where BCa's false-ship tail runs above nominal
    (docs/intervals.md, "Macro-F1"). Replicates whose standard error is 0 are left out.
    """
    if data.counts is None or data.x is not None:
        raise ValueError("studentized limits need pattern counts")
    counts = data.counts.astype(np.float64)
    patterns, total = len(counts), float(counts.sum())
    identity = np.eye(patterns)

    def standard_errors(rows: np.ndarray) -> np.ndarray:
        if statistic.leave_one_out is not None:
            values = statistic.leave_one_out(rows)
        else:
            values = statistic.phi((rows[:, None, :] - identity[None]).reshape(-1, patterns))
            values = values.reshape(len(rows), patterns)
        weights = rows
        mean = (weights * values).sum(axis=1) / weights.sum(axis=1)
        spread = (weights * (values - mean[:, None]) ** 2).sum(axis=1)
        return np.sqrt((total - 1.0) / total * spread)

    estimate = statistic.value(counts)
    scale = float(standard_errors(counts[None, :])[0])
    if not scale > 0.0 or not math.isfinite(scale):
        return None
    pivots = []
    step = max(1, CHUNK_BYTES // (8 * patterns * patterns))
    for start in range(0, resamples, step):
        size = min(step, resamples - start)
        drawn = rng.multinomial(int(total), counts / total, size=size).astype(np.float64)
        errors = standard_errors(drawn)
        keep = errors > 0.0
        pivots.append((statistic.phi(drawn[keep]) - estimate) / errors[keep])
    pivot = np.concatenate(pivots)
    pivot = pivot[np.isfinite(pivot)]
    if len(pivot) < 0.9 * resamples:
        return None
    alpha = 1.0 - confidence
    low_q, high_q = np.quantile(pivot, [alpha / 2.0, 1.0 - alpha / 2.0])
    return estimate - float(high_q) * scale, estimate - float(low_q) * scale


def unit_variance(data: SumsData, statistic: SumStatistic) -> float:
    """Variance of one unit's linearized contribution to the drop (drop scale): the drop's
    standard error is about sqrt(this / units). Sizes "about N samples would resolve it"."""
    sums = data.sums
    units = data.units
    if units < 2:
        return 0.0
    weights = None if data.counts is None else data.counts.astype(np.float64)
    if statistic.discrete:
        spread = _jackknife_spread(data, sums, statistic, units)
    else:
        spread = _influence_spread(data.vectors(), weights, units, _gradient(statistic, sums))
    estimate = statistic.value(sums)
    step = 1e-6 * max(abs(estimate), 1e-3)
    slope = (statistic.drop(estimate + step) - statistic.drop(estimate - step)) / (2 * step)
    # Var(drop) = spread * U / (U - 1) * slope^2 = unit_variance / U
    return float(spread * units * units / (units - 1) * slope * slope)


def _influence_spread(x, weights, units, gradient) -> float:
    """sum over units of (x_u . gradient - mean)^2: the delta method's variance of phi."""
    influence = x @ gradient
    if weights is None:
        centred = influence - influence.mean()
        return float(np.sum(centred * centred))
    mean = float(np.sum(weights * influence) / units)
    return float(np.sum(weights * (influence - mean) ** 2))


def _jackknife_spread(data: SumsData, sums, statistic, units) -> float:
    """The jackknife's counterpart of ``_influence_spread``: (U - 1)² / U² · Σ (θ_(u) - θ̄)², so
    that ``unit_variance`` is the jackknife variance of the drop times U."""
    values, weights = _jackknife(data, sums, statistic)
    weights = np.ones(len(values)) if weights is None else weights
    if not np.isfinite(values).all():
        return 0.0
    mean = float(np.sum(weights * values) / units)
    return float(np.sum(weights * (values - mean) ** 2)) * (units - 1) ** 2 / units ** 2


def _fallback(statistic, estimate, units, confidence, scale, details) -> IntervalResult:
    drop = statistic.drop(estimate)
    half = zero_discordance_halfwidth(units, confidence) * max(abs(scale), 1e-12)
    details = {**details, "fallback_halfwidth": half}
    return IntervalResult(drop - half, drop + half, "degenerate-fallback", details)


def _jackknife(data: SumsData, sums, statistic):
    """Leave-one-unit-out values phi(S - x_u); with patterns, one value per pattern, weighted."""
    counts = data.counts
    x = data.vectors()
    if counts is not None:
        keep = counts > 0
        values = statistic.phi(sums[None, :] - x[keep])
        return values, counts[keep].astype(np.float64)
    values = np.empty(len(x))
    step = max(1, CHUNK_BYTES // (8 * max(x.shape[1], 1)))
    for start in range(0, len(x), step):
        values[start:start + step] = statistic.phi(sums[None, :] - x[start:start + step])
    return values, None


def _replicates(data: SumsData, statistic, resamples, rng, chunk_bytes) -> np.ndarray:
    out = np.empty(int(resamples))
    counts = data.counts
    if counts is not None:
        total = int(counts.sum())
        probabilities = counts / total
        expected = counts.astype(np.float64)
        step = max(1, chunk_bytes // (8 * max(len(counts), 1)))
        for start in range(0, resamples, step):
            size = min(step, resamples - start)
            if total >= POISSON_FROM:
                drawn = _poisson_counts(expected, size, rng)
            else:
                drawn = rng.multinomial(total, probabilities, size=size).astype(np.float64)
            out[start:start + size] = statistic.phi(drawn if data.x is None else drawn @ data.x)
        return out
    x = np.asarray(data.x, dtype=np.float64)
    units = len(x)
    index_type = np.int32 if units < 2**31 else np.int64
    step = max(1, chunk_bytes // (np.dtype(index_type).itemsize * units))
    columns = [np.ascontiguousarray(x[:, j]) for j in range(x.shape[1])]
    for start in range(0, resamples, step):
        size = min(step, resamples - start)
        index = rng.integers(0, units, size=(size, units), dtype=index_type)
        sums = np.empty((size, len(columns)))
        for j, column in enumerate(columns):
            sums[:, j] = column[index].sum(axis=1)
        out[start:start + size] = statistic.phi(sums)
    return out


def _poisson_counts(expected: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, P) independent Poisson counts with means ``expected``: numpy's exact sampler below
    ``NORMAL_FROM``, the rounded normal approximation from there on."""
    drawn = np.empty((size, len(expected)))
    large = expected >= NORMAL_FROM
    if not large.all():
        drawn[:, ~large] = rng.poisson(expected[~large], size=(size, int(np.count_nonzero(~large))))
    if large.any():
        mean = expected[large]
        normal = rng.standard_normal((size, len(mean)))
        normal *= np.sqrt(mean)
        normal += mean
        np.rint(normal, out=normal)
        drawn[:, large] = np.maximum(normal, 0.0, out=normal)
    return drawn


def _gradient(statistic: SumStatistic, sums: np.ndarray) -> np.ndarray:
    """d phi / d sums at the observed sums (central differences, relative steps)."""
    k = len(sums)
    steps = 1e-6 * np.maximum(np.abs(sums), 1e-3 * max(float(np.max(np.abs(sums))), 1e-300))
    points = np.repeat(sums[None, :], 2 * k, axis=0)
    for j in range(k):
        points[2 * j, j] += steps[j]
        points[2 * j + 1, j] -= steps[j]
    values = statistic.phi(points)
    return (values[0::2] - values[1::2]) / (2.0 * steps)


def _t_quantile(probability: float, df: int) -> float:
    if df >= 1000:
        return NormalDist().inv_cdf(probability)
    from scipy.stats import t  # lazily: importing the package never imports scipy

    return float(t.ppf(probability, df))
