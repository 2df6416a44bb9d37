import math

import numpy as np
import pytest

from pytest_quantguard.stats import paired_binary_interval, tango_interval
from pytest_quantguard.stats.paired_binary import (
    _DROP,
    MODES,
    _contrast_score,
    _tango_statistic,
    mcnemar_exact_p,
    paired_ratio_interval,
    score_interval,
    wilson_interval,
)

Z95 = 1.959963984540054


def test_tango_with_no_disagreement_is_a_wilson_like_bound():
    # b = c = 0: the limits solve n d / (1 - d) = z^2, i.e. d = z^2 / (n + z^2) (1.88 pt at n=200).
    for n in (200, 899, 10_000):
        low, high = tango_interval(0, 0, n, 0.95)
        assert high == pytest.approx(Z95**2 / (n + Z95**2), rel=1e-9)
        assert low == pytest.approx(-high, rel=1e-9)


@pytest.mark.parametrize(("b", "c", "n"), [(5, 1, 200), (10, 10, 1000), (85, 7, 899), (1, 0, 50),
                                           (0, 3, 100)])
def test_tango_limits_are_where_the_score_statistic_equals_z(b, c, n):
    low, high = tango_interval(b, c, n, 0.95)
    assert low < (b - c) / n < high
    if low > -1:
        assert _tango_statistic(b, c, n, low) == pytest.approx(Z95, abs=1e-6)
    if high < 1:
        assert _tango_statistic(b, c, n, high) == pytest.approx(-Z95, abs=1e-6)


@pytest.mark.parametrize(("b", "c", "n", "d"), [(5, 1, 200, 0.05), (30, 10, 500, -0.01),
                                                (0, 4, 100, 0.02)])
def test_restricted_mle_maximises_the_likelihood(b, c, n, d):
    """The closed-form p01(d) equals a brute-force maximum of the multinomial likelihood."""
    a_coef, b_coef, c_coef = 2.0 * n, -b - c + (2.0 * n - b + c) * d, -c * d * (1.0 - d)
    closed = (math.sqrt(b_coef**2 - 4 * a_coef * c_coef) - b_coef) / (2 * a_coef)
    grid = np.linspace(max(0.0, -d) + 1e-9, (1 - d) / 2 - 1e-9, 200_001)
    loglik = b * np.log(grid + d) + c * np.log(grid) + (n - b - c) * np.log(1 - 2 * grid - d)
    assert closed == pytest.approx(grid[np.argmax(loglik)], abs=2e-5)


def test_bootstrap_interval_contains_tango_and_records_both():
    result = paired_binary_interval(12, 4, 1000, confidence=0.95, resamples=10_000,
                                    rng=np.random.default_rng(0))
    assert result.method == "percentile+tango"  # the bootstrap widened at least one side
    assert (result.low, result.high) != (result.details["tango_low"], result.details["tango_high"])
    assert result.low <= result.details["tango_low"] and result.high >= result.details["tango_high"]
    assert result.low <= result.details["bootstrap_low"]
    assert result.high >= result.details["bootstrap_high"]
    assert (result.details["reference_only"], result.details["candidate_only"]) == (12, 4)


def test_one_sided_disagreement_is_widened_to_tango():
    # c = 0: the bootstrap never draws a candidate-only sample and its upper bound is too low.
    result = paired_binary_interval(2, 0, 200, confidence=0.95, resamples=10_000,
                                    rng=np.random.default_rng(0))
    assert result.details["bootstrap_high"] < result.details["tango_high"] == result.high
    # both limits are Tango's: the method says so
    assert result.details["bootstrap_low"] >= result.details["tango_low"] == result.low
    assert result.method == "tango-score"


def test_identical_models_fall_back_to_the_score_bound():
    result = paired_binary_interval(0, 0, 500, confidence=0.95, resamples=10_000,
                                    rng=np.random.default_rng(0))
    assert result.method == "degenerate-fallback"
    assert result.low < 0 < result.high
    assert (result.low, result.high) == tango_interval(0, 0, 500, 0.95)


@pytest.mark.parametrize(("b", "c", "n"), [(0, 0, 1), (1, 0, 1), (0, 1, 1), (3, 0, 3), (0, 0, 10**6),
                                           (500, 500, 1000), (10**6, 0, 10**6)])
def test_never_nan_never_zero_width_never_outside_minus_one_one(b, c, n):
    result = paired_binary_interval(b, c, n, confidence=0.95, resamples=2000,
                                    rng=np.random.default_rng(0))
    assert math.isfinite(result.low) and math.isfinite(result.high)
    assert -1.0 <= result.low < result.high <= 1.0


def test_same_generator_state_gives_the_same_interval():
    first = paired_binary_interval(9, 3, 800, confidence=0.9, resamples=5000,
                                   rng=np.random.default_rng(7))
    second = paired_binary_interval(9, 3, 800, confidence=0.9, resamples=5000,
                                    rng=np.random.default_rng(7))
    assert first == second


def test_higher_confidence_gives_a_wider_interval():
    low90, high90 = tango_interval(20, 8, 1000, 0.90)
    low99, high99 = tango_interval(20, 8, 1000, 0.99)
    assert low99 < low90 and high99 > high90


@pytest.mark.parametrize(("b", "c", "n"), [(-1, 0, 10), (6, 5, 10), (0, 0, 0)])
def test_impossible_counts_are_refused(b, c, n):
    with pytest.raises(ValueError, match="b \\+ c <= n"):
        tango_interval(b, c, n, 0.95)


def _log_term(count: int, probability: float) -> float:
    if count == 0:
        return 0.0
    return -math.inf if probability == 0 else count * math.log(probability)


def exact_tango_coverage(n: int, discordance: float, drop: float) -> tuple[float, float]:
    """Coverage and P(true drop > U) of Tango's 95% interval, by enumerating every (b, c)."""
    p10, p01 = (discordance + drop) / 2, (discordance - drop) / 2
    covered = missed_high = 0.0
    for b in range(n + 1):
        for c in range(n + 1 - b):
            log_p = (math.lgamma(n + 1) - math.lgamma(b + 1) - math.lgamma(c + 1)
                     - math.lgamma(n - b - c + 1) + _log_term(b, p10) + _log_term(c, p01)
                     + (n - b - c) * math.log(1 - p10 - p01))
            if log_p < math.log(1e-13):
                continue
            low, high = tango_interval(b, c, n, 0.95)
            covered += math.exp(log_p) * (low <= drop <= high)
            missed_high += math.exp(log_p) * (drop > high)
    return covered, missed_high


# Exact coverage (no Monte Carlo error), by enumerating (b, c) (docs/intervals.md, "0/1 metrics"),
# computed with an implementation checked against R's contingencytables source.
PUBLISHED_EXACT = [((200, 0.01, 0.00), 0.986, 0.007), ((200, 0.01, 0.01), 0.984, 0.000),
                   ((200, 0.05, 0.00), 0.957, 0.022), ((200, 0.05, 0.01), 0.944, 0.026),
                   ((1000, 0.01, 0.00), 0.957, 0.022), ((1000, 0.01, 0.01), 0.964, 0.010),
                   ((1000, 0.05, 0.00), 0.951, 0.025), ((1000, 0.05, 0.01), 0.950, 0.025)]


@pytest.mark.parametrize(("cell", "coverage", "tail"), PUBLISHED_EXACT)
def test_exact_tango_coverage_matches_the_published_enumeration(cell, coverage, tail):
    exact_coverage, exact_tail = exact_tango_coverage(*cell)
    assert exact_coverage == pytest.approx(coverage, abs=0.0006)
    assert exact_tail == pytest.approx(tail, abs=0.0006)


# --- the general score interval, the ratio margins, McNemar, Wilson ----------------------------


def test_the_general_score_interval_is_tango_in_the_absolute_mode():
    """One restricted-MLE score machinery serves every margin; on the absolute drop it must be
    Tango's interval exactly, including the empty-cell cases (c = 0, b = 0, b = c = 0)."""
    for n in (20, 200, 899):
        for b in range(0, 12, 3):
            for c in range(0, 12, 4):
                a = (n - b - c) // 2
                cells = np.array([a, b, c, n - a - b - c])
                assert score_interval(cells, MODES["absolute"], 0.95) == pytest.approx(
                    tango_interval(b, c, n, 0.95), abs=1e-9)


@pytest.mark.parametrize("mode", ["relative", "error-increase"])
@pytest.mark.parametrize("cells", [(800, 10, 2, 188), (150, 3, 0, 47), (700, 20, 20, 260),
                                   (9000, 0, 6, 994)])
def test_ratio_limits_are_where_the_score_statistic_equals_z(mode, cells):
    counts = np.array(cells, dtype=float)
    weights = MODES[mode]
    low, high = score_interval(counts, weights, 0.95)
    estimate = (counts @ _DROP) / (counts @ weights)
    assert low < estimate < high
    assert _contrast_score(counts, _DROP - low * weights) == pytest.approx(Z95, abs=1e-6)
    assert _contrast_score(counts, _DROP - high * weights) == pytest.approx(-Z95, abs=1e-6)


def test_relative_drop_is_the_absolute_one_over_the_reference_accuracy():
    # a large table: the reference accuracy is known to +-0.3%, so relative ~ absolute / acc_ref
    cells = (80_000, 400, 150, 19_450)
    rng = np.random.default_rng(0)
    absolute = paired_ratio_interval(cells, "absolute", confidence=0.95, resamples=4000, rng=rng)
    relative = paired_ratio_interval(cells, "relative", confidence=0.95, resamples=4000, rng=rng)
    accuracy = (cells[0] + cells[1]) / sum(cells)
    assert relative.low == pytest.approx(absolute.low / accuracy, rel=0.02)
    assert relative.high == pytest.approx(absolute.high / accuracy, rel=0.02)
    assert relative.method == absolute.method == "percentile+tango"


def test_error_increase_mlperf_case():
    """99.5% -> 98.5% is 1 point of accuracy but three times the errors: with a 20% limit on the
    error rate's growth it fails; 99.5% -> 99.45% (+10% errors) passes, at n = 200,000."""
    rng = np.random.default_rng(1)
    n, reference_errors = 200_000, 1000
    tripled = paired_ratio_interval((n - 3000, 2000, 0, 1000), "error-increase", confidence=0.95,
                                    resamples=10_000, rng=rng)
    assert tripled.low > 0.2 and tripled.details["estimate"] == pytest.approx(2.0)
    slight = paired_ratio_interval((n - reference_errors - 100, 100, 0, reference_errors),
                                   "error-increase", confidence=0.95, resamples=10_000, rng=rng)
    assert slight.details["estimate"] == pytest.approx(0.1)
    assert slight.high < 0.2


def test_ratio_modes_without_disagreement_fall_back_to_the_score_bound():
    result = paired_ratio_interval((800, 0, 0, 200), "error-increase", confidence=0.95,
                                   resamples=1000, rng=np.random.default_rng(0))
    assert result.method == "degenerate-fallback"
    assert result.low < 0 < result.high and math.isfinite(result.low) and math.isfinite(result.high)


def test_ratio_mode_with_a_zero_denominator_is_an_error():
    with pytest.raises(ValueError, match="denominator is zero"):
        paired_ratio_interval((100, 5, 0, 0), "error-increase", confidence=0.95, resamples=10,
                              rng=np.random.default_rng(0))


@pytest.mark.parametrize(("b", "c"), [(0, 0), (1, 0), (0, 7), (5, 5), (12, 3), (85, 7),
                                      (400, 350), (3, 30)])
def test_mcnemar_exact_p_equals_scipy_binomtest(b, c):
    from scipy.stats import binomtest

    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (5, 100), (50, 100), (100, 100), (3, 2000)])
def test_wilson_equals_scipy(k, n):
    from scipy.stats import binomtest

    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n, 0.95) == pytest.approx((expected.low, expected.high), abs=1e-12)
