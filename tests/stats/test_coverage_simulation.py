"""The interval holds its level through the public ``compare()`` (the gate's acceptance).

The full 0/1 grid is gated at the stats level (``test_coverage_families.py``); here the four
margin cells (true drop = 1 pt = max_drop) at n = 200 and 1000 run through the whole pipe, on the
same simulated tables (``pytest_quantguard.simulation``: p10 = (d + drop)/2,
p01 = (d - drop)/2, seeded from 12345 and the cell, never tuned) with compare()'s own stream and
10,000 resamples. Coverage must stay >= 0.93 and the false-ship tail P(true drop > U) <= 0.04.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.simulation import MAX_FALSE_SHIP, MIN_COVERAGE, binary_cell, simulate
from pytest_quantguard.stats import IntervalResult

SETS_PER_CELL = 1000
GRID = [(200, 0.01), (200, 0.05), (1000, 0.01), (1000, 0.05)]


def compare_interval(table: np.ndarray, rng: np.random.Generator) -> IntervalResult:
    """compare() on one simulated table: the models look their 0/1 correctness up by sample."""
    cells = np.repeat(np.arange(4), table)  # 0 both right, 1 reference only, 2 candidate only
    n = len(cells)
    reference_right = np.isin(cells, (0, 1)).astype(np.float32)
    candidate_right = np.isin(cells, (0, 2)).astype(np.float32)
    # Each sample's input is its index; the "models" return a one-column probability (label 1
    # throughout, so 1.0 is right and 0.0 wrong).
    data = ValidationSet(np.arange(n, dtype=np.float32)[:, None], np.ones(n, dtype=np.int64))
    result = compare(lambda batch: reference_right[batch[:, 0].astype(np.int64)],
                     lambda batch: candidate_right[batch[:, 0].astype(np.int64)],
                     data=data, metric="accuracy")
    return IntervalResult(result.interval.low, result.interval.high, result.method)


# a simulated candidate sometimes wins beyond the limit by chance: the suspicious-gain warning
@pytest.mark.filterwarnings("ignore::pytest_quantguard.errors.QuantGuardWarning")
@pytest.mark.parametrize(("n", "discordance"), GRID, ids=[f"n{n}-d{d:.0%}" for n, d in GRID])
def test_paired_accuracy_interval_coverage_through_compare(n, discordance):
    cell = dataclasses.replace(binary_cell(n, discordance, 0.01, 0.8, resamples=10_000),
                               method="compare", interval=compare_interval)
    result = simulate(cell, SETS_PER_CELL)["interval"]
    summary = (f"{cell.name}: coverage {result.coverage:.3f}, P(drop > U) {result.false_ship:.3f}, "
               f"{result.non_finite} non-finite, methods {result.methods}")
    assert result.non_finite == 0, summary
    assert result.coverage >= MIN_COVERAGE and result.false_ship <= MAX_FALSE_SHIP, summary


def test_same_inputs_in_two_processes_give_identical_intervals(tmp_path):
    import json
    import subprocess
    import sys

    script = """
import json, numpy as np
from pytest_quantguard import compare
rng = np.random.default_rng(5)
labels = rng.integers(0, 3, 700)
reference = np.eye(3)[labels] + rng.normal(0, 0.6, (700, 3))
candidate = reference + rng.normal(0, 0.3, (700, 3))
result = compare(lambda x: reference[x[:, 0].astype(int)], lambda x: candidate[x[:, 0].astype(int)],
                 data=(np.arange(700.0)[:, None], labels))
print(json.dumps([result.interval.low, result.interval.high, result.method]))
"""
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
            for _ in range(2)]
    first, second = (json.loads(run.stdout) for run in runs)
    assert first == second
    assert first[2] == "percentile+tango" and first[0] < first[1]


def test_stream_depends_on_seed_data_metric_and_scores_only():
    from pytest_quantguard.stats import derive_rng

    def draw(*key):
        return derive_rng(*key).integers(0, 2**62, 4).tolist()

    base = (0, "data-sha", "accuracy", "scores-sha")
    assert draw(*base) == draw(*base)
    for changed in [(1, *base[1:]), (0, "other", *base[2:]), (*base[:2], "top5", base[3]),
                    (*base[:3], "other")]:
        assert draw(*changed) != draw(*base)
