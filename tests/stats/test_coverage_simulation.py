"""The interval holds its level through the public ``compare()`` (issue: the gate, acceptance).

Simulated validation sets with a known true drop: each sample falls in one of the four cells of
(reference right?, candidate right?) with p10 = (d + drop)/2, p01 = (d - drop)/2, where d is the
discordance. Fixed seed 12345, never tuned. Coverage must stay >= 0.93 and the false-ship tail
P(true drop > U) <= 0.04 in every cell.
"""

from __future__ import annotations

import itertools

import numpy as np

from pytest_quantguard import ValidationSet, compare

SEED = 12345
SETS_PER_CELL = 1000
GRID = list(itertools.product([200, 1000], [0.01, 0.05], [0.0, 0.01], [0.5, 0.95]))


def simulate_cell(n: int, discordance: float, drop: float, reference_accuracy: float,
                  rng: np.random.Generator) -> tuple[float, float, int]:
    """Run compare() on SETS_PER_CELL simulated sets; return coverage, false-ship tail, NaNs."""
    p10, p01 = (discordance + drop) / 2, (discordance - drop) / 2
    p11 = reference_accuracy - p10
    probabilities = [p11, p10, p01, 1.0 - p11 - p10 - p01]
    # Each sample's input is its index; the "models" look their 0/1 correctness up by index and
    # return it as a one-column probability (label 1 throughout, so 1.0 is right, 0.0 wrong).
    data = ValidationSet(np.arange(n, dtype=np.float32)[:, None], np.ones(n, dtype=np.int64))
    covered = missed_high = not_finite = 0
    for _ in range(SETS_PER_CELL):
        cell = rng.choice(4, size=n, p=probabilities)
        reference_right = np.isin(cell, (0, 1)).astype(np.float32)
        candidate_right = np.isin(cell, (0, 2)).astype(np.float32)
        result = compare(lambda batch, r=reference_right: r[batch[:, 0].astype(np.int64)],
                         lambda batch, c=candidate_right: c[batch[:, 0].astype(np.int64)],
                         data=data, metric="accuracy")
        low, high = result.interval
        not_finite += not (np.isfinite(low) and np.isfinite(high))
        covered += low <= drop <= high
        missed_high += drop > high
    return covered / SETS_PER_CELL, missed_high / SETS_PER_CELL, not_finite


def test_paired_accuracy_interval_coverage_grid():
    rng = np.random.default_rng(SEED)
    failures = []
    table = []
    for n, discordance, drop, accuracy in GRID:
        coverage, false_ship, not_finite = simulate_cell(n, discordance, drop, accuracy, rng)
        table.append(f"n={n} d={discordance} drop={drop} acc={accuracy}: coverage {coverage:.3f}, "
                     f"P(drop > U) {false_ship:.3f}")
        if coverage < 0.93 or false_ship > 0.04 or not_finite:
            failures.append(table[-1] + (f", {not_finite} non-finite" if not_finite else ""))
    assert not failures, "cells out of bounds:\n" + "\n".join(failures) + "\nall:\n" + "\n".join(table)


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
