"""Corpus metrics of class predictions hold their level where the drop sits on a rare class
(docs/intervals.md, "Corpus metrics of class predictions"), and heavy-tailed regression errors
are said.

The full grid (balanced accuracy, MCC, κ × rare/balanced × n ∈ {500, 2000}) is
``benchmarks/coverage.py --family class-corpus``; here, for CI time (about 5 s), the cell that
broke the plain bootstrap: the whole drop on a class of 3% (15 samples at n = 500), where a
class showing no discordance at all (15% of the sets) left every resample blind to it (plain BCa:
false ship 0.15).
"""

from __future__ import annotations

import numpy as np

from pytest_quantguard import simulation
from pytest_quantguard.metrics.base import Context
from pytest_quantguard.metrics.regression import HEAVY_TAILS_ABOVE, MeanScores
from pytest_quantguard.simulation import MAX_FALSE_SHIP, MIN_COVERAGE, simulate
from pytest_quantguard.simulation.class_corpus import class_corpus_cell

SETS = 80


def test_rare_class_corpus_metric_coverage():
    cell = class_corpus_cell(500, "balanced_accuracy", "rare", resamples=1000)
    result = simulate(cell, SETS)["interval"]
    summary = (f"{cell.name} ({SETS} sets): coverage {result.coverage:.3f}, false ship "
               f"{result.false_ship:.3f}, methods {result.methods}")
    assert result.non_finite == 0, summary
    assert result.coverage >= MIN_COVERAGE and result.false_ship <= MAX_FALSE_SHIP, summary
    assert result.methods == {"bca+adjusted": SETS}, summary


def _rmse(tails: str, seed: int):
    reference, candidate = simulation.regression_errors(np.random.default_rng(seed), 1000,
                                                        tails=tails)
    scores = MeanScores(reference ** 2, candidate ** 2, "rmse", False, power=0.5)
    return scores.evaluate(Context(margin="relative", confidence=0.95, resamples=200,
                                   rng=np.random.default_rng(seed)))


def test_heavy_tailed_squared_errors_are_said():
    heavy = [_rmse("t3", seed) for seed in range(10)]
    light = [_rmse("gaussian", seed) for seed in range(10)]
    assert all(e.interval.details["influence_kurtosis"] <= HEAVY_TAILS_ABOVE for e in light)
    assert not any(e.notes for e in light)
    flagged = [e for e in heavy if e.interval.details["influence_kurtosis"] > HEAVY_TAILS_ABOVE]
    assert len(flagged) >= 6  # 87% of t3 sets of 1,000 in the simulation
    assert all("heavy-tailed" in e.notes[0] and "may be too narrow" in e.notes[0]
               for e in flagged)
    # MAE carries no such note
    reference, candidate = simulation.regression_errors(np.random.default_rng(0), 1000, tails="t3")
    mae = MeanScores(np.abs(reference), np.abs(candidate), "mae", False).evaluate(
        Context(margin="relative", confidence=0.95, resamples=200, rng=np.random.default_rng(0)))
    assert mae.notes == ()
