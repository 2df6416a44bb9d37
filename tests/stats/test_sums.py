"""The sums engine and the family statistics: exact identities, not coverage (see the
simulation tests for that)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_quantguard.stats.bootstrap import bca_limits, percentile_limits
from pytest_quantguard.stats.families import (
    MEAN_DIFFERENCE,
    group_sums,
    macro_f1_interval,
    perplexity_interval,
    r2_interval,
    ratio_interval,
)
from pytest_quantguard.stats.sums import SumsData, linearized_interval, sums_interval


def test_bca_equals_scipy_on_the_same_bootstrap_distribution():
    from scipy.stats import bootstrap

    x = np.random.default_rng(3).exponential(size=60)  # skewed: z0 and a both matter
    result = bootstrap((x,), np.mean, n_resamples=4000, method="BCa", rng=np.random.default_rng(4))
    jackknife = (x.sum() - x) / (len(x) - 1)
    ours = bca_limits(result.bootstrap_distribution, x.mean(), jackknife, None, 0.95)
    assert ours == pytest.approx(tuple(result.confidence_interval), rel=1e-9)


def test_weighted_jackknife_equals_the_expanded_one():
    values, weights = np.array([0.1, 0.4, -0.2]), np.array([3, 1, 5])
    replicates = np.random.default_rng(0).normal(0.1, 0.2, size=2000)
    assert bca_limits(replicates, 0.12, values, weights, 0.95) == pytest.approx(
        bca_limits(replicates, 0.12, np.repeat(values, weights), None, 0.95))


def test_degenerate_bootstrap_gives_none_not_nan():
    assert bca_limits(np.zeros(100), 0.0, np.zeros(5), None, 0.95) is None
    assert bca_limits(np.linspace(1, 2, 100), 5.0, np.zeros(5), None, 0.95) is None  # z0 infinite
    assert percentile_limits(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))


def test_linearized_ratio_se_is_the_cluster_robust_formula():
    """The cluster-robust ratio SE: sqrt(G/(G-1) sum (S_g - theta T_g)^2) / sum T_g."""
    rng = np.random.default_rng(5)
    s, t = rng.normal(0.5, 1.0, 40), rng.integers(5, 50, 40).astype(float)
    result = linearized_interval(SumsData(np.stack([s, t], 1), unit="group"), MEAN_DIFFERENCE,
                                 confidence=0.95, method="linearized-cluster")
    theta = s.sum() / t.sum()
    se = math.sqrt(40 / 39 * np.sum((s - theta * t) ** 2)) / t.sum()
    assert result.details["standard_error"] == pytest.approx(se, rel=1e-6)
    from scipy.stats import t as student

    half = student.ppf(0.975, 39) * se
    assert (result.low, result.high) == pytest.approx((theta - half, theta + half), rel=1e-6)


def test_index_bootstrap_result_does_not_depend_on_the_chunk_size():
    rng = np.random.default_rng(6)
    x = np.stack([rng.normal(0.02, 1, 3000), np.ones(3000)], 1)
    small, large = (sums_interval(SumsData(x), MEAN_DIFFERENCE, confidence=0.95, resamples=500,
                                  rng=np.random.default_rng(7), chunk_bytes=chunk)
                    for chunk in (3000 * 4 * 7, 2**30))  # 7 resamples per chunk vs all at once
    assert (small.low, small.high) == (large.low, large.high)
    assert small.method == "bca"


def test_unit_variance_matches_the_bootstrap_variance():
    rng = np.random.default_rng(8)
    reference = np.abs(rng.normal(size=4000))
    candidate = np.abs(reference + rng.normal(0, 0.3, 4000))
    result = ratio_interval(reference, candidate, higher_is_better=False, confidence=0.95,
                            resamples=4000, rng=rng)
    se = math.sqrt(result.details["unit_variance"] / 4000)
    assert (result.high - result.low) / (2 * 1.96) == pytest.approx(se, rel=0.1)


def test_continuous_path_goes_analytic_above_the_threshold():
    rng = np.random.default_rng(9)
    reference = np.abs(rng.normal(size=5000))
    candidate = reference * 1.02 + np.abs(rng.normal(0, 0.05, 5000))
    boot = ratio_interval(reference, candidate, higher_is_better=False, confidence=0.95,
                          resamples=4000, rng=rng)
    analytic = ratio_interval(reference, candidate, higher_is_better=False, confidence=0.95,
                              resamples=4000, rng=rng, analytic_above=1000)
    assert (boot.method, analytic.method) == ("bca", "linearized")
    assert analytic.low == pytest.approx(boot.low, abs=0.002)
    assert analytic.high == pytest.approx(boot.high, abs=0.002)


def test_relative_rmse_drop_is_reported_as_a_ratio_minus_one():
    rng = np.random.default_rng(10)
    e_ref = rng.normal(size=2000)
    e_cand = e_ref + rng.normal(0, 0.3, 2000)
    result = ratio_interval(e_ref**2, e_cand**2, higher_is_better=False, power=0.5,
                            confidence=0.95, resamples=2000, rng=rng)
    rmse_ratio = math.sqrt(np.mean(e_cand**2) / np.mean(e_ref**2)) - 1
    assert result.details["estimate_working"] == pytest.approx(math.log1p(rmse_ratio))
    assert result.low < rmse_ratio < result.high


def test_r2_statistic_equals_scikit_learn():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.metrics import r2_score

    x, y = load_diabetes(return_X_y=True)
    reference = LinearRegression().fit(x, y).predict(x)
    candidate = Ridge(alpha=0.5).fit(x, y).predict(x)
    result = r2_interval(y - reference, y - candidate, y, confidence=0.95, resamples=2000,
                         rng=np.random.default_rng(11))
    assert result.details["estimate_working"] == pytest.approx(
        r2_score(y, reference) - r2_score(y, candidate), abs=1e-12)
    assert result.low < result.details["estimate_working"] < result.high


def test_macro_f1_statistic_equals_scikit_learn_including_an_extra_predicted_class():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    x, y = load_digits(return_X_y=True)
    reference = LogisticRegression(max_iter=200).fit(x[:900], y[:900]).predict(x[900:])
    candidate = reference.copy()
    flip = np.random.default_rng(12).random(len(candidate)) < 0.05
    candidate[flip] = (candidate[flip] + 3) % 10
    labels = y[900:]
    for cand, true in ((candidate, labels), (np.where(flip, 11, candidate), labels)):
        result = macro_f1_interval(true, reference, cand, confidence=0.95, resamples=2000,
                                   rng=np.random.default_rng(13))
        expected = f1_score(true, reference, average="macro") - f1_score(true, cand, average="macro")
        assert result.details["estimate_working"] == pytest.approx(expected, abs=1e-12)
        # digits: ~90 samples per class, under STUDENTIZE_BELOW: BCa widened by the studentized
        assert result.method == "bca+studentized" and result.low < expected < result.high
        assert result.low <= result.details["bca_low"] and result.high >= result.details["bca_high"]


def test_grouped_macro_f1_resamples_groups():
    rng = np.random.default_rng(14)
    labels = rng.integers(0, 4, 1200)
    reference = np.where(rng.random(1200) < 0.8, labels, rng.integers(0, 4, 1200))
    candidate = np.where(rng.random(1200) < 0.95, reference, rng.integers(0, 4, 1200))
    groups = np.repeat(np.arange(120), 10)
    result = macro_f1_interval(labels, reference, candidate, groups=groups, confidence=0.95,
                               resamples=1000, rng=rng)
    assert result.method == "cluster-bca" and result.details["groups"] == 120


def test_group_sums_add_each_groups_rows():
    x = np.array([[1.0, 1], [2, 1], [3, 1], [4, 1]])
    data = group_sums(x, np.array(["b", "a", "b", "c"]))
    assert data.unit == "group" and data.details["groups"] == 3
    assert data.x.tolist() == [[2.0, 1.0], [4.0, 2.0], [4.0, 1.0]]


def test_perplexity_from_tokens_equals_from_document_sums():
    rng = np.random.default_rng(15)
    documents = np.repeat(np.arange(60), rng.integers(20, 80, 60))
    nll_ref = rng.gamma(2.0, 1.0, len(documents))
    nll_cand = nll_ref + rng.normal(0.01, 0.1, len(documents))
    per_token = perplexity_interval(nll_ref, nll_cand, np.ones(len(documents)), documents,
                                    confidence=0.95)
    sums = [np.bincount(documents, weights=v) for v in (nll_ref, nll_cand)]
    per_document = perplexity_interval(*sums, np.bincount(documents), confidence=0.95)
    assert (per_token.low, per_token.high) == pytest.approx((per_document.low, per_document.high))
    assert per_token.method == "linearized-cluster"
    ppl_ratio = math.exp(nll_cand.mean() - nll_ref.mean()) - 1
    assert per_token.low < ppl_ratio < per_token.high


def test_poisson_pattern_counts_agree_with_the_multinomial_at_large_n(monkeypatch):
    """Above POISSON_FROM units pattern counts are resampled as independent Poisson counts
    (the Poisson bootstrap); at that size the interval must match the multinomial one."""
    from pytest_quantguard.stats import sums

    rng = np.random.default_rng(16)
    n = 200_000
    labels = rng.choice(5, size=n, p=[0.5, 0.25, 0.15, 0.07, 0.03])
    reference = np.where(rng.random(n) < 0.85, labels, rng.integers(0, 5, n))
    candidate = np.where(rng.random(n) < 0.97, reference, rng.integers(0, 5, n))
    assert n >= sums.POISSON_FROM
    poisson = macro_f1_interval(labels, reference, candidate, confidence=0.95, resamples=4000,
                                rng=np.random.default_rng(17))
    monkeypatch.setattr(sums, "POISSON_FROM", 10 * n)
    multinomial = macro_f1_interval(labels, reference, candidate, confidence=0.95, resamples=4000,
                                    rng=np.random.default_rng(17))
    width = multinomial.high - multinomial.low
    assert poisson.low == pytest.approx(multinomial.low, abs=0.05 * width)
    assert poisson.high == pytest.approx(multinomial.high, abs=0.05 * width)
    assert (poisson.low, poisson.high) != (multinomial.low, multinomial.high)  # two different paths


def test_normal_approximated_pattern_counts_agree_with_exact_poisson_counts(monkeypatch):
    """From NORMAL_FROM on, a pattern's Poisson count is drawn from its rounded normal
    approximation; the interval must match the one from numpy's exact Poisson sampler, on a set
    whose rare patterns sit on both sides of the threshold."""
    from pytest_quantguard.stats import sums

    rng = np.random.default_rng(19)
    n = 300_000
    labels = rng.choice(5, size=n, p=[0.5, 0.25, 0.15, 0.07, 0.03])
    reference = np.where(rng.random(n) < 0.85, labels, rng.integers(0, 5, n))
    candidate = np.where(rng.random(n) < 0.995, reference, rng.integers(0, 5, n))
    counts = np.unique((labels * 5 + reference) * 5 + candidate, return_counts=True)[1]
    assert (counts < sums.NORMAL_FROM).sum() >= 10 and (counts >= sums.NORMAL_FROM).sum() >= 10
    options = dict(confidence=0.95, resamples=6000)
    mixed = macro_f1_interval(labels, reference, candidate, rng=np.random.default_rng(20), **options)
    monkeypatch.setattr(sums, "NORMAL_FROM", np.inf)
    exact = macro_f1_interval(labels, reference, candidate, rng=np.random.default_rng(20), **options)
    width = exact.high - exact.low
    assert mixed.method == exact.method == "bca"
    assert mixed.low == pytest.approx(exact.low, abs=0.04 * width)
    assert mixed.high == pytest.approx(exact.high, abs=0.04 * width)
    assert (mixed.low, mixed.high) != (exact.low, exact.high)  # two different samplers


def test_macro_f1_with_a_well_populated_rarest_class_is_plain_bca():
    rng = np.random.default_rng(18)
    labels = rng.integers(0, 3, 3000)  # ~1000 per class
    reference = np.where(rng.random(3000) < 0.9, labels, rng.integers(0, 3, 3000))
    candidate = np.where(rng.random(3000) < 0.97, reference, rng.integers(0, 3, 3000))
    result = macro_f1_interval(labels, reference, candidate, confidence=0.95, resamples=2000,
                               rng=rng)
    assert result.method == "bca" and result.details["rarest_class_count"] > 900


def test_studentized_leave_one_out_equals_the_generic_jackknife():
    from pytest_quantguard.stats.families import macro_f1_statistic

    patterns = np.array([[0, 0, 0], [0, 0, 1], [1, 1, 1], [1, 0, 1], [2, 2, 2], [2, 2, 0]])
    statistic = macro_f1_statistic(patterns, 3, np.arange(3), np.arange(3))
    rows = np.array([[50.0, 3, 40, 2, 30, 1], [45, 5, 41, 1, 33, 2]])
    generic = np.array([[statistic.phi((row - e)[None])[0] for e in np.eye(6)] for row in rows])
    assert statistic.leave_one_out(rows) == pytest.approx(generic, abs=1e-12)


def test_identical_models_fallback_width_does_not_depend_on_where_values_sit():
    from pytest_quantguard.stats.families import difference_interval

    values = np.random.default_rng(19).normal(size=500)
    centred = values - values.mean()
    widths = []
    for shift in (0.0, 1e-3):
        r = centred + shift
        result = difference_interval(r, r, higher_is_better=True, confidence=0.95, resamples=200,
                                     rng=np.random.default_rng(0))
        assert result.method == "degenerate-fallback"
        widths.append(result.high - result.low)
    assert widths[0] > 0.005 and widths[0] == pytest.approx(widths[1], rel=0.01)
