"""Every family's interval holds its level on simulated data whose true drop is known exactly.

The generators and cells are ``pytest_quantguard.stats.simulation``'s, the same ones
``benchmarks/coverage.py`` runs with 2000 sets and 10,000 resamples. Here, for CI time:
resamples=2000 for the bootstrap families and 1000 sets per cell, except the i.i.d. interval on
grouped data (the first 300 of the clustered cell's sets, enough to show that
it under-covers). Each cell's seed derives from the base seed 12345 and the cell's parameters,
never tuned. A cell passes when coverage >= 0.93, the false-ship rate P(true drop > U) <= 0.04
and no limit is NaN or infinite (statistics.md §8). Where a cell sits at the drop margin the true
drop equals it (0/1: drop = 1 pt).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pytest_quantguard.stats import simulation
from pytest_quantguard.stats.families import (
    difference_interval,
    macro_f1_interval,
    perplexity_interval,
    r2_interval,
    ratio_interval,
)
from pytest_quantguard.stats.paired_binary import (
    IntervalResult,
    paired_binary_interval,
    paired_ratio_interval,
)
from pytest_quantguard.stats.simulation import MAX_FALSE_SHIP, MIN_COVERAGE, Cell, simulate

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
# (statistics.md §6.3: 0.038), so below 100 samples in the rarest class the interval is widened to
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


# --- Cheap checks of the generators, the harness and the degenerate case ----------------------

def test_true_drops_are_exact():
    # statistics.md §6.3 reports the macro-F1 set-up's population drop as 2.40 pt
    assert simulation.macro_f1_true_drop() == pytest.approx(0.023950368, abs=1e-9)
    assert simulation.rmse_true_drop(0.3) == pytest.approx(math.sqrt(1.09) - 1)
    assert simulation.mae_true_drop(0.3, "gaussian") == simulation.rmse_true_drop(0.3)
    assert simulation.perplexity_true_drop(0.004) == pytest.approx(math.exp(0.004) - 1, rel=1e-12)
    # exactly the margin (0.03 - 0.02 is 0.010000000000000002 in floats: a limit U = 0.01 = 2/200
    # would count as a false ship)
    assert simulation.binary_true_drop(0.05, 0.01, 0.8) == 0.01 == 2 / 200
    assert simulation.binary_true_drop(0.05, 0.01, 0.8, "relative") == 0.0125
    assert simulation.binary_true_drop(0.01, 0.01, 0.95, "error-increase") == 0.2


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
