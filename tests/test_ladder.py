"""Smoke form of the ladder simulation (benchmarks/ladder_coverage.py runs every cell):
the family-wise false-ship rate of gatekeeping with propagated alpha stays at 0.025 in the
least-favourable cells, where the naive rule does not (docs/ladder.md, "The simulation")."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_quantguard.simulation.ladder import (
    LIMIT,
    Decisions,
    LadderCell,
    draw_counts,
    least_favourable_cells,
    simulate_ladder,
)
from pytest_quantguard.stats.ladder import DEFAULT_ALPHA, confidence_for
from pytest_quantguard.stats.paired_binary import paired_binary_interval

SETS = 3000
F, M = "fine", "margin"


@pytest.mark.parametrize("cell", [
    LadderCell((1, 3, 1), (F, F, M, M, M), correlated=False),  # one middle scheme fine
    LadderCell((1, 3, 1), (F, F, M, M, M), correlated=True),
    LadderCell((1, 3, 1), (F, M, M, M, M), correlated=False),
    LadderCell((3, 1), (F, M, M, M), correlated=False),  # a CPU ladder: INT8 first
], ids=lambda cell: cell.name)
def test_gatekeeping_keeps_the_family_wise_false_ship_rate(cell):
    result = simulate_ladder(cell, SETS, rules=("gatekeeping",))
    bound = DEFAULT_ALPHA + 3 * result.standard_error(DEFAULT_ALPHA)
    assert result.false_ship["gatekeeping"] <= bound


def test_the_naive_rule_exceeds_the_level_in_the_same_cell():
    cell = LadderCell((1, 3, 1), (F, F, M, M, M), correlated=False)
    result = simulate_ladder(cell, SETS, rules=("gatekeeping", "holm-full-alpha", "constant-alpha"))
    # Holm inside a level at full alpha: the middle level's margin schemes and the last level each
    # get (close to) the whole 0.025 -- about 0.049 in all
    assert result.false_ship["holm-full-alpha"] > DEFAULT_ALPHA + 3 * result.standard_error(DEFAULT_ALPHA)
    assert result.false_ship["constant-alpha"] > result.false_ship["holm-full-alpha"]


def test_cells_are_every_assignment_with_a_candidate_at_the_margin():
    cells = least_favourable_cells((1, 3, 1), correlated=False)
    assert len(cells) == 2**5 - 1
    assert all(M in cell.states for cell in cells)


def test_candidates_have_their_true_drop_and_share_the_reference():
    cell = LadderCell((2,), (F, M), correlated=True)
    b, c = draw_counts(cell, 4000, np.random.default_rng(0))
    drops = (b - c).mean(axis=0) / cell.n
    assert drops[0] == pytest.approx(0.0, abs=0.0005)
    assert drops[1] == pytest.approx(LIMIT, abs=0.0005)
    assert (b[:, 0] <= b[:, 1]).all()  # correlated: the fine scheme's flips are inside the other's


def test_the_simulated_decision_is_the_gates_interval_at_the_rungs_confidence():
    cell = LadderCell((2,), (F, M), correlated=False)
    b, c = draw_counts(cell, 40, np.random.default_rng(1))
    alpha = DEFAULT_ALPHA / 3
    tango = Decisions(b, c, cell.n, "tango").ships(1, alpha)
    gate = Decisions(b, c, cell.n, "gate", resamples=500).ships(1, alpha)
    for s in range(len(b)):
        interval = paired_binary_interval(int(b[s, 1]), int(c[s, 1]), cell.n,
                                          confidence=confidence_for(alpha), resamples=500,
                                          rng=np.random.default_rng(s + 1000))
        assert gate[s] == (interval.high < LIMIT)
        assert tango[s] == (interval.details["tango_high"] < LIMIT)
    assert not (gate & ~tango).any()  # the gate's interval contains Tango's: it never ships more
