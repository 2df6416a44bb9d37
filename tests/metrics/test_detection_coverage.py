"""Smoke form of the detection bootstrap's coverage cells (the full cells:
``benchmarks/coverage.py --family detection``; docs/intervals.md, "Detection mAP")."""

from __future__ import annotations

from pytest_quantguard.simulation.detection import TRUE_DROPS, detection_cell
from pytest_quantguard.simulation.harness import simulate


def test_image_bootstrap_covers_the_true_map50_drop():
    """20 sets of 120 images (fixed seeds) against the MILD candidate's true map50 drop (10^6
    images): the 95% interval covers it in at least 17 and misses it from below (a false ship) at
    most twice; at a nominal 0.95 / 0.025 either failing has a probability under 2%."""
    result = simulate(detection_cell(120, TRUE_DROPS["map50"][0], resamples=300), 20)["interval"]
    assert result.non_finite == 0
    assert result.coverage >= 17 / 20, result
    assert result.false_ship <= 2 / 20, result
    assert 0 < result.mean_width < 0.2
