"""Smoke form of the detection bootstrap's coverage cells (the full cells:
``benchmarks/bench_detection.py coverage``; docs/intervals.md, "Detection mAP")."""

from __future__ import annotations

from pytest_quantguard.simulation.detection import detection_cell
from pytest_quantguard.simulation.harness import simulate

# the MILD candidate's true map50 drop: 4 sets of 10,000 images, Monte-Carlo SE 0.00066
# (benchmarks/bench_detection.py coverage --truth-images 10000 --truth-sets 4)
TRUE_MAP50_DROP = 0.022083


def test_image_bootstrap_covers_the_true_map50_drop():
    """20 sets of 120 images (fixed seeds): the 95% interval covers the true drop in at least 17
    and misses it from below (a false ship) at most twice; at a nominal 0.95 / 0.025 either failing
    has a probability under 2%. About 8 s on an idle development core."""
    result = simulate(detection_cell(120, TRUE_MAP50_DROP, resamples=300), 20)["interval"]
    assert result.non_finite == 0
    assert result.coverage >= 17 / 20, result
    assert result.false_ship <= 2 / 20, result
    assert 0 < result.mean_width < 0.2
