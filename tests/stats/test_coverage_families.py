"""Every family's interval holds its level on simulated data whose true drop is known exactly.

The generators and cells are ``pytest_quantguard.simulation``'s, the same ones
``benchmarks/coverage.py`` runs with 2000 sets and 10,000 resamples. Here, for CI time:
resamples=2000 for the bootstrap families and 1000 sets per cell, except the i.i.d. interval on
grouped data (the first 300 of the clustered cell's sets, enough to show that
it under-covers). Each cell's seed derives from the base seed 12345 and the cell's parameters,
never tuned. A cell passes when coverage >= 0.93, the false-ship rate P(true drop > U) <= 0.04
and no limit is NaN or infinite (docs/intervals.md, "Coverage"). Where a cell sits at the drop
margin the true drop equals it (0/1: drop = 1 pt).

The metric families (``simulation.metric_families``) run through their ``Scores`` classes (what
compare() evaluates), on small cells for CI time (the benchmark's --family agreement,
rmse-absolute, cosine, per-class, corpus and top-k hold the full grids): agreement's Wilson
interval at a true disagreement rate equal to the margin, the absolute RMSE drop and mean cosine
(BCa) at n = 200, per-class accuracy as an intersection-union gate (one class loses exactly the
margin), and top-5 through the TopK metric (the 0/1 interval on the 0/1 cell's own data sets). The
custom corpus metric (paired percentile bootstrap, one Python call of the user's function per
resample and model) costs ~70 ms a set even at 1000 resamples, so its coverage is measured by the
benchmark only; here its generator is checked.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pytest_quantguard import simulation
from pytest_quantguard.simulation import MAX_FALSE_SHIP, MIN_COVERAGE, Cell, simulate
from pytest_quantguard.stats.families import (
    difference_interval,
    macro_f1_interval,
    perplexity_interval,
    r2_interval,
    ratio_interval,
)
from pytest_quantguard.stats.paired_binary import paired_binary_interval, paired_ratio_interval
from pytest_quantguard.stats.result import IntervalResult

RESAMPLES = 2000
SETS = 1000
IID_SETS = 300


def assert_holds(cell: Cell, sets: int = SETS) -> simulation.CellResult:
    result = simulate(cell, sets)["interval"]
    summary = (f"{cell.name} (true drop {cell.true_drop:.5f}, {sets} sets): coverage "
               f"{result.coverage:.3f}, P(true drop > U) {result.false_ship:.3f}, mean width "
               f"{result.mean_width:.5f}, methods {result.methods}")
    assert result.non_finite == 0, f"{result.non_finite} non-finite limits: {summary}"
    assert result.coverage >= MIN_COVERAGE and result.false_ship <= MAX_FALSE_SHIP, summary
    return result


def _pct(value: float) -> str:
    return f"{100 * value:g}%"


BINARY_GRID = list(itertools.product([200, 1000, 5000], [0.01, 0.05], [0.0, 0.01], [0.5, 0.8, 0.95]))


@pytest.mark.parametrize(("n", "discordance", "drop", "accuracy"), BINARY_GRID,
                         ids=[f"n{n}-d{_pct(d)}-drop{_pct(drop)}-acc{acc}"
                              for n, d, drop, acc in BINARY_GRID])
def test_binary_interval_coverage(n, discordance, drop, accuracy):
    assert_holds(simulation.binary_cell(n, discordance, drop, accuracy, resamples=RESAMPLES))


RATIO_GRID = [(mode, *cell) for mode in ("relative", "error-increase")
              for cell in [(200, 0.01, 0.01, 0.8), (1000, 0.05, 0.01, 0.8)]]


@pytest.mark.parametrize(("mode", "n", "discordance", "drop", "accuracy"), RATIO_GRID,
                         ids=[f"{mode}-n{n}-d{_pct(d)}-drop{_pct(drop)}-acc{acc}"
                              for mode, n, d, drop, acc in RATIO_GRID])
def test_binary_ratio_modes_coverage(mode, n, discordance, drop, accuracy):
    assert_holds(simulation.binary_cell(n, discordance, drop, accuracy, resamples=RESAMPLES,
                                        mode=mode), sets=SETS)


# n = 500: the rarest class has ~15 samples; plain BCa's false-ship tail sat at 0.040-0.042 here
# (docs/intervals.md, "Macro-F1"), so below 100 samples in the rarest class the interval is widened to
# contain the studentized bootstrap's (method bca+studentized).
@pytest.mark.parametrize("n", [500, 2000])
def test_macro_f1_coverage(n):
    assert_holds(simulation.macro_f1_cell(n, resamples=RESAMPLES))


@pytest.mark.parametrize(("metric", "n"), list(itertools.product(["mae", "rmse"], [200, 1000])))
def test_relative_regression_coverage(metric, n):
    assert_holds(simulation.regression_cell(n, metric, resamples=RESAMPLES))


@pytest.mark.parametrize("documents", [50, 200])
def test_perplexity_coverage(documents):
    assert_holds(simulation.perplexity_cell(documents))


def test_grouped_cluster_interval_holds_where_iid_under_covers():
    """100 groups of 10, intra-class correlation 0.3 (design effect 3.7); the i.i.d. interval runs
    on the first IID_SETS of the same data sets (same cell seed)."""
    clustered = assert_holds(simulation.grouped_cell(100, 10, 0.1, resamples=RESAMPLES, clustered=True))
    assert clustered.methods == {"cluster-bca": SETS}
    iid = simulate(simulation.grouped_cell(100, 10, 0.1, resamples=RESAMPLES, clustered=False), IID_SETS)
    assert iid["interval"].coverage < 0.85, iid


# --- Families through their Scores classes ----------------------------------------------------

AGREEMENT_GRID = list(itertools.product([500, 2000], [0.01, 0.005]))


@pytest.mark.parametrize(("n", "disagreement"), AGREEMENT_GRID,
                         ids=[f"n{n}-disagree{_pct(p)}" for n, p in AGREEMENT_GRID])
def test_agreement_wilson_coverage_at_the_margin(n, disagreement):
    """Label-free agreement: true disagreement rate = the margin (1% or 0.5%)."""
    result = assert_holds(simulation.agreement_cell(n, disagreement))
    assert result.methods == {"wilson": SETS}


def test_absolute_rmse_coverage():
    """RMSE_cand - RMSE_ref (sigma 2 vs 2·sqrt(1.09), true drop 0.0881) at n = 200."""
    result = assert_holds(simulation.rmse_absolute_cell(200, resamples=RESAMPLES))
    assert result.methods == {"bca": SETS}


def test_cosine_coverage_on_skewed_similarities():
    """1 - mean cos with cos = 1 - 0.2·Beta(0.25, 4.75) (skewness 2.9, true drop 1 pt), n = 200."""
    result = assert_holds(simulation.cosine_cell(200, "moderate", resamples=RESAMPLES))
    assert result.methods == {"bca": SETS}


def test_per_class_gate_false_ship_when_one_class_loses_the_margin():
    """4 classes of ~500; class 0 loses exactly max_drop = 2 pt (d = 6%), the others nothing
    (d = 1%). Every class must ship (intersection-union): P(ship) <= 0.04. The reported (worst)
    interval's coverage of the margin is not meaningful; the degraded class's own interval must
    hold its level."""
    cell = simulation.per_class_cell(2000, 4, 0.02, resamples=RESAMPLES)
    results = simulate(cell, SETS, views={"degraded": simulation.degraded_class_view})
    reported, degraded = results["interval"], results["degraded"]
    summary = (f"{cell.name} ({SETS} sets): P(ship) {reported.false_ship:.3f}; degraded class's "
               f"own interval: coverage {degraded.coverage:.3f}, P(drop > U) "
               f"{degraded.false_ship:.3f}")
    assert reported.non_finite == degraded.non_finite == 0, summary
    assert reported.false_ship <= MAX_FALSE_SHIP, summary
    assert degraded.coverage >= MIN_COVERAGE and degraded.false_ship <= MAX_FALSE_SHIP, summary
    # every class shipping is rarer than the degraded class shipping alone
    assert reported.false_ship <= degraded.false_ship, summary


def test_top_k_through_the_metric_is_the_binary_interval_on_the_same_sets():
    """top5 on class scores built from each 0/1 table: same data sets and stream as the 0/1 cell
    (n = 1000, d = 5%, drop = 1 pt, acc 0.8), hence identical limits, set for set."""
    top5 = simulation.top_k_cell(1000, 0.05, 0.01, 0.8, resamples=RESAMPLES)
    binary = simulation.binary_cell(1000, 0.05, 0.01, 0.8, resamples=RESAMPLES)
    assert top5.seed.entropy == binary.seed.entropy and top5.true_drop == binary.true_drop == 0.01
    assert assert_holds(top5) == simulate(binary, SETS)["interval"]


# --- Cheap checks of the generators, the harness and the degenerate case ----------------------

def test_true_drops_are_exact():
    # the macro-F1 set-up's population drop: 2.395 pt
    assert simulation.macro_f1_true_drop() == pytest.approx(0.023950368, abs=1e-9)
    assert simulation.rmse_true_drop(0.3) == pytest.approx(math.sqrt(1.09) - 1)
    assert simulation.mae_true_drop(0.3, "gaussian") == simulation.rmse_true_drop(0.3)
    assert simulation.perplexity_true_drop(0.004) == pytest.approx(math.exp(0.004) - 1, rel=1e-12)
    # exactly the margin (0.03 - 0.02 is 0.010000000000000002 in floats: a limit U = 0.01 = 2/200
    # would count as a false ship)
    assert simulation.binary_true_drop(0.05, 0.01, 0.8) == 0.01 == 2 / 200
    assert simulation.binary_true_drop(0.05, 0.01, 0.8, "relative") == 0.0125
    assert simulation.binary_true_drop(0.01, 0.01, 0.95, "error-increase") == 0.2
    assert simulation.rmse_absolute_true_drop(0.3, 2.0) == pytest.approx(2 * (math.sqrt(1.09) - 1))
    assert simulation.cosine_true_drop(0.2, 0.25, 4.75) == 0.01
    assert simulation.balanced_true_drop() == 0.02  # mean of (1, 1, 2, 4) pt
    assert simulation.per_class_cell(2000, 4, 0.02, resamples=1).true_drop == 0.02


def test_generators_reproduce_their_true_drop_on_large_samples():
    rng = np.random.default_rng(simulation.BASE_SEED)
    labels, reference, candidate = simulation.macro_f1_sample(rng, 400_000)
    assert np.mean(reference == labels) == pytest.approx(0.85, abs=0.003)

    def macro_f1(predicted):
        return np.mean([2 * np.sum((labels == k) & (predicted == k))
                        / (np.sum(labels == k) + np.sum(predicted == k)) for k in range(5)])

    assert macro_f1(reference) - macro_f1(candidate) == pytest.approx(0.02395, abs=0.002)
    table = simulation.binary_table(rng, 1_000_000, 0.01, 0.05, 0.8)
    assert (table[1] - table[2]) / table.sum() == pytest.approx(0.01, abs=0.0007)
    assert (table[0] + table[1]) / table.sum() == pytest.approx(0.8, abs=0.002)


def test_new_family_generators_reproduce_their_true_drop_on_large_samples():
    rng = np.random.default_rng(simulation.BASE_SEED)
    n = 1_000_000
    assert 1 - np.mean(simulation.agreement_sample(rng, n, 0.01)) == pytest.approx(0.01, abs=0.0004)
    reference, candidate = simulation.squared_errors(rng, n)
    assert (math.sqrt(candidate.mean()) - math.sqrt(reference.mean())
            == pytest.approx(simulation.rmse_absolute_true_drop(), abs=0.004))
    cosines = simulation.cosine_values(rng, n)
    assert cosines.min() >= 0.8 and cosines.max() <= 1.0
    assert 1 - cosines.mean() == pytest.approx(0.01, abs=0.0002)
    assert np.mean((1 - cosines) < 0.001) > 0.4  # most samples barely differ: the skewed case

    labels, reference, candidate = simulation.per_class_sample(
        rng, n, (0.25,) * 4, (0.06, 0.01, 0.01, 0.01), (0.02, 0.0, 0.0, 0.0), 0.8)
    drops = [np.mean(reference[labels == k]) - np.mean(candidate[labels == k]) for k in range(4)]
    assert drops == pytest.approx([0.02, 0.0, 0.0, 0.0], abs=0.0015)
    assert np.mean(reference) == pytest.approx(0.8, abs=0.002)


def test_balanced_accuracy_generator_and_function():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(simulation.BASE_SEED)
    labels, reference, candidate = simulation.balanced_sample(rng, 1_000_000)
    assert np.bincount(labels) / len(labels) == pytest.approx(simulation.BALANCED_PRIORS, abs=0.002)
    for predicted in (reference, candidate):
        assert simulation.balanced_accuracy(predicted, labels) == pytest.approx(
            balanced_accuracy_score(labels, predicted), abs=1e-12)
    drop = (simulation.balanced_accuracy(reference, labels)
            - simulation.balanced_accuracy(candidate, labels))
    assert drop == pytest.approx(simulation.balanced_true_drop(), abs=0.003)
    # a class absent from a resample's labels is left out of the mean, as scikit-learn does
    few = np.array([0, 0, 1, 1])
    assert simulation.balanced_accuracy(np.array([0, 1, 1, 1]), few) == 0.75
    with pytest.warns(UserWarning, match="not in y_true"):
        expected = balanced_accuracy_score(few, np.array([0, 2, 1, 1]))
    assert simulation.balanced_accuracy(np.array([0, 2, 1, 1]), few) == pytest.approx(expected)


def test_top_k_outputs_put_each_label_where_the_table_says():
    from sklearn.metrics import top_k_accuracy_score

    from pytest_quantguard.metrics.classification import top_k

    table = np.array([700, 30, 20, 250])
    reference, candidate, labels = simulation.top_k_outputs(table, classes=10, k=5)
    metric = top_k(5)
    reference_right = metric.reduce(reference, labels, None)
    candidate_right = metric.reduce(candidate, labels, None)
    assert [int(np.sum((reference_right == r) & (candidate_right == c)))
            for r, c in ((1, 1), (1, 0), (0, 1), (0, 0))] == table.tolist()
    # no tied scores, so scikit-learn agrees; half the right samples sit exactly at rank 5 and
    # half the wrong ones at rank 6, so top-4 and top-6 differ
    assert top_k_accuracy_score(labels, reference, k=5) == np.mean(reference_right) == 0.73
    assert top_k_accuracy_score(labels, reference, k=4) < 0.73 < top_k_accuracy_score(labels,
                                                                                      reference, k=6)


def test_coverage_counts_non_finite_limits_as_failures():
    def draw(rng):
        return rng.standard_normal(20)

    def half_nan(sample, rng):
        high = math.nan if sample[0] > 0 else 10.0
        return IntervalResult(-10.0, high, "test")

    covered, false_ship = simulation.coverage(draw, half_nan, 0.0, 400, seed=1)
    assert covered + false_ship == pytest.approx(1.0)
    assert 0.4 < false_ship < 0.6


def _identical_intervals(rng: np.random.Generator) -> dict[str, IntervalResult]:
    options = {"confidence": 0.95, "resamples": RESAMPLES, "rng": rng}
    errors, _ = simulation.regression_errors(rng, 500)
    _, _, targets = simulation.r2_sample(rng, 500)
    labels, reference_pred, _ = simulation.macro_f1_sample(rng, 500)
    reference_nll, _, tokens = simulation.perplexity_documents(rng, 50)
    scores, _, groups = simulation.grouped_scores(rng, 40, 10, 0.0)
    return {
        "0/1": paired_binary_interval(0, 0, 500, **options),
        "0/1 relative": paired_ratio_interval((400, 0, 0, 100), "relative", **options),
        "0/1 error-increase": paired_ratio_interval((400, 0, 0, 100), "error-increase", **options),
        "difference": difference_interval(np.abs(errors), np.abs(errors), higher_is_better=False,
                                          **options),
        "mae": ratio_interval(np.abs(errors), np.abs(errors), higher_is_better=False, **options),
        "rmse": ratio_interval(errors**2, errors**2, higher_is_better=False, power=0.5, **options),
        "r2": r2_interval(errors, errors, targets, **options),
        "macro-F1": macro_f1_interval(labels, reference_pred, reference_pred, **options),
        "perplexity": perplexity_interval(reference_nll, reference_nll, tokens, confidence=0.95),
        "grouped": difference_interval(scores, scores, higher_is_better=True, groups=groups, **options),
    }


def test_identical_models_give_a_finite_nonzero_width_interval_in_every_family():
    results = _identical_intervals(np.random.default_rng(simulation.BASE_SEED))
    bad = {family: result for family, result in results.items()
           if not (math.isfinite(result.low) and math.isfinite(result.high)
                   and result.low < 0.0 < result.high)}
    assert not bad, bad
