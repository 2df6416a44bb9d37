"""The interval of the drop for metrics that score each sample 0/1 (accuracy, top-k).

Only the discordant counts matter: b = samples the reference gets right and the candidate wrong,
c = the reverse, drop = (b - c) / n. The paired bootstrap resamples those counts (a multinomial
draw: exact, and independent of n). Where few samples disagree the bootstrap under-covers
(a 13% false-ship rate at n=200, 1% discordance: docs/intervals.md, "0/1 metrics"), so its interval
is widened to contain the Tango (1998) score interval, whose coverage holds there.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from pytest_quantguard.stats.bootstrap import percentile_limits
from pytest_quantguard.stats.result import IntervalResult


def paired_binary_interval(b: int, c: int, n: int, *, confidence: float, resamples: int,
                           rng: np.random.Generator) -> IntervalResult:
    """Percentile bootstrap of (b - c)/n from resampled counts, widened to contain Tango's interval
    (method ``percentile+tango``, or ``tango-score`` when the bootstrap lay inside it).

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
    boot_low, boot_high = percentile_limits(drops, confidence)
    details.update(bootstrap_low=boot_low, bootstrap_high=boot_high)
    return _widened(boot_low, boot_high, tango_low, tango_high, details)


def _widened(boot_low: float, boot_high: float, score_low: float, score_high: float,
             details: dict) -> IntervalResult:
    """The union of the two intervals. The method names where the limits came from:
    ``tango-score`` when the bootstrap lay inside the score interval (the limits are the score
    interval's), ``percentile+tango`` when the bootstrap widened at least one side."""
    method = "tango-score" if boot_low >= score_low and boot_high <= score_high else "percentile+tango"
    return IntervalResult(min(boot_low, score_low), max(boot_high, score_high), method, details)


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


# --- Margins other than an absolute drop: a ratio of paired proportions -------------------------
#
# The four cells of the paired 2x2 table, in this order: both right (a), only the reference
# right (b), only the candidate right (c), both wrong (d). Each mode is a ratio of linear
# contrasts: theta = E[D] / E[G] with D = (0, 1, -1, 0) per cell (the accuracy drop) and
#   absolute        G = (1, 1, 1, 1)   theta = (b - c) / n
#   relative        G = (1, 1, 0, 0)   theta = (b - c) / (a + b) = 1 - acc_cand / acc_ref
#   error-increase  G = (0, 0, 1, 1)   theta = (b - c) / (c + d) = err_cand / err_ref - 1
# The score interval inverts the test of H0: E[D - theta G] = 0 with the restricted maximum-
# likelihood cell probabilities (for the absolute mode this is exactly Tango's interval; for the
# ratios, the score method of Tang, Tang & Chan 2003 / Nam & Blackwelder 2002).

_DROP = np.array([0.0, 1.0, -1.0, 0.0])
MODES = {
    "absolute": np.array([1.0, 1.0, 1.0, 1.0]),
    "relative": np.array([1.0, 1.0, 0.0, 0.0]),
    "error-increase": np.array([0.0, 0.0, 1.0, 1.0]),
}


def paired_ratio_interval(cells: tuple[int, int, int, int], mode: str, *, confidence: float,
                          resamples: int, rng: np.random.Generator) -> IntervalResult:
    """Interval of theta (see MODES) from the four cell counts (a, b, c, d).

    Percentile bootstrap of the resampled cells, widened to contain the score interval
    (``percentile+tango``), or the score interval alone when b = c = 0 (``degenerate-fallback``).
    """
    counts = np.asarray(cells, dtype=np.int64)
    if counts.shape != (4,) or (counts < 0).any() or counts.sum() == 0:
        raise ValueError(f"need four non-negative cell counts, got {cells!r}")
    weights = MODES[mode]
    denominator = float(counts @ weights)
    if denominator == 0:
        raise ValueError(f"the {mode} drop is undefined: its denominator is zero on this data")
    estimate = float(counts @ _DROP) / denominator
    score_low, score_high = score_interval(counts, weights, confidence)
    a, b, c, d = (int(v) for v in counts)
    # per-sample variance of the linearized drop (D - theta G) / mean(G): sizes the remedy
    spread = float((counts / counts.sum()) @ (_DROP - estimate * weights) ** 2)
    details: dict[str, int | float | str] = {
        "reference_only": b, "candidate_only": c, "both_right": a, "both_wrong": d,
        "score_low": score_low, "score_high": score_high, "estimate": estimate,
        "unit_variance": spread / (denominator / counts.sum()) ** 2,
    }
    if b + c == 0:
        return IntervalResult(score_low, score_high, "degenerate-fallback", details)
    n = int(counts.sum())
    draws = rng.multinomial(n, counts / n, size=int(resamples)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        replicates = (draws @ _DROP) / (draws @ weights)
    replicates = replicates[np.isfinite(replicates)]
    boot_low, boot_high = percentile_limits(replicates, confidence)
    details.update(bootstrap_low=boot_low, bootstrap_high=boot_high)
    return _widened(boot_low, boot_high, score_low, score_high, details)


def score_interval(counts: np.ndarray, weights: np.ndarray, confidence: float) -> tuple[float, float]:
    """{theta : |T(theta)| <= z} for T the score statistic of H0: E[D - theta G] = 0."""
    x = [float(v) for v in counts]
    g = [float(v) for v in weights]
    drop = [float(v) for v in _DROP]
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    estimate = sum(xk * dk for xk, dk in zip(x, drop, strict=True)) / sum(
        xk * gk for xk, gk in zip(x, g, strict=True))

    def statistic(theta: float) -> float:
        return _contrast_score(x, [dk - theta * gk for dk, gk in zip(drop, g, strict=True)])

    low_end, high_end = _theta_range(statistic, g, estimate)
    low = _decreasing_root(lambda t: statistic(t) - z, low_end, estimate)
    high = _decreasing_root(lambda t: statistic(t) + z, estimate, high_end)
    return low, high


def _theta_range(statistic, weights, estimate) -> tuple[float, float]:
    """Where theta can lie: the absolute drop in [-1, 1]; ratios searched outward until T passes
    any bound (the statistic is monotone in theta)."""
    if all(w == 1.0 for w in weights):
        return -1.0, 1.0
    z_far = 40.0
    span = max(1.0, abs(estimate))
    low = estimate - span
    for _ in range(60):
        if statistic(low) > z_far:
            break
        span *= 2
        low = estimate - span
    span = max(1.0, abs(estimate))
    high = estimate + span
    for _ in range(60):
        if statistic(high) < -z_far:
            break
        span *= 2
        high = estimate + span
    return low, high


def _decreasing_root(f, low: float, high: float) -> float:
    """The root of a decreasing f on [low, high] (Brent's method), clamped to the ends."""
    if f(low) <= 0.0:
        return low
    if f(high) >= 0.0:
        return high
    from scipy.optimize import brentq  # lazily: importing the package never imports scipy

    return float(brentq(f, low, high, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200))


def _contrast_score(counts, mu) -> float:
    """Score statistic of H0: sum_k p_k mu_k = 0 for multinomial cell counts.

    Restricted MLE (KKT): p_k = x_k / (n + t mu_k) for observed cells; an empty cell k takes
    the remaining mass only where t sits at its boundary n + t mu_k = 0 (this is how Tango's
    p01 becomes positive when c = 0).
    """
    counts = [float(v) for v in counts]
    mu = [float(v) for v in mu]
    n = sum(counts)
    numerator = sum(xk * mk for xk, mk in zip(counts, mu, strict=True))
    if numerator == 0.0:
        return 0.0
    observed = [(xk, mk) for xk, mk in zip(counts, mu, strict=True) if xk > 0]
    # admissible t: n + t mu_k >= 0 for every cell (strict for observed ones)
    lower, upper = -math.inf, math.inf
    lower_empty = upper_empty = False
    for xk, mk in zip(counts, mu, strict=True):
        if mk > 0 and -n / mk > lower:
            lower, lower_empty = -n / mk, xk == 0
        elif mk < 0 and -n / mk < upper:
            upper, upper_empty = -n / mk, xk == 0

    def f(t: float) -> float:
        total = 0.0
        for xk, mk in observed:
            denominator = n + t * mk
            if denominator <= 0.0:
                return math.inf if mk > 0 else -math.inf
            total += xk * mk / denominator
        return total

    empty_at = None
    if lower_empty and f(lower) < 0.0:
        t = empty_at = lower
    elif upper_empty and f(upper) > 0.0:
        t = empty_at = upper
    else:
        lo = lower if math.isfinite(lower) else -1e6 * n
        hi = upper if math.isfinite(upper) else 1e6 * n
        lo += 0.0 if not math.isfinite(lower) else 1e-12 * max(1.0, abs(lo))
        hi -= 0.0 if not math.isfinite(upper) else 1e-12 * max(1.0, abs(hi))
        t = _decreasing_root(f, lo, hi)
    p = [xk / (n + t * mk) if xk > 0 else 0.0 for xk, mk in zip(counts, mu, strict=True)]
    if empty_at is not None:
        fill = [xk == 0 and abs(n + empty_at * mk) <= 1e-9 * n for xk, mk in zip(counts, mu,
                                                                                 strict=True)]
        remaining = max(1.0 - sum(p), 0.0)
        share = remaining / max(sum(fill), 1)
        p = [share if filled else pk for pk, filled in zip(p, fill, strict=True)]
    variance = n * sum(pk * mk * mk for pk, mk in zip(p, mu, strict=True))
    if variance <= 0.0:
        return math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b ~ Binomial(b + c, 1/2) under "no difference at all".

    Reported beside the verdict, never used by the gate (it tests equality, not a margin).
    """
    m = int(b) + int(c)
    k = min(int(b), int(c))
    if m == 0 or 2 * k >= m:
        return 1.0
    # P(X <= k) summed downwards from k: the terms shrink geometrically below the mean, so a few
    # thousand at most, even at m = 1e6 (pure Python: no scipy.stats import, ~1 s per process)
    term = math.exp(math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1) - m * math.log(2))
    total, i = 0.0, k
    while i >= 0 and term > 0.0:
        total += term
        if term < total * 1e-17:
            break
        term *= i / (m - i + 1)
        i -= 1
    return min(1.0, 2.0 * total)


def wilson_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a single proportion k/n (e.g. the disagreement rate)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n > 0; got k={k}, n={n}")
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
