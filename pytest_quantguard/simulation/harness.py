"""The coverage harness: run an interval on many simulated sets with a known true drop.

A ``Cell`` is one grid point: a family, its data-generating parameters, the interval under test
and the true drop. Its seed derives from the base seed 12345 and the family and parameters only
(never tuned, never from the interval or the number of sets): two intervals run on the same cell
see the same data sets, and the CI's first sets are the benchmark's first sets. ``simulate``
measures a cell's coverage and its false-ship rate P(true drop > U).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_quantguard.stats.result import IntervalResult

BASE_SEED = 12345
CONFIDENCE = 0.95
# The acceptance thresholds (docs/intervals.md, "What CI asserts"): coverage of the two-sided 95%
# interval, and the false-ship tail P(true drop > U), nominally 0.025.
MIN_COVERAGE = 0.93
MAX_FALSE_SHIP = 0.04

Draw = Callable[[np.random.Generator], Any]
Interval = Callable[[Any, np.random.Generator], IntervalResult]
Limits = Callable[[IntervalResult], tuple[float, float]]


@dataclass(frozen=True)
class Cell:
    """One grid point: a family's data-generating ``params``, the interval under test
    (``method``), and the true drop on that interval's scale."""

    family: str
    params: tuple[tuple[str, float | int | str], ...]
    method: str
    true_drop: float
    draw: Draw = field(compare=False, repr=False)
    interval: Interval = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return " ".join([self.family, *(f"{key}={value}" for key, value in self.params), self.method])

    @property
    def seed(self) -> np.random.SeedSequence:
        """From the base seed, the family and the params: not the method, not the number of sets."""
        key = repr((self.family, self.params)).encode()
        return np.random.SeedSequence([BASE_SEED, int.from_bytes(hashlib.sha256(key).digest()[:8])])



@dataclass(frozen=True)
class CellResult:
    """Coverage and false-ship rate over ``sets`` simulated sets. A non-finite limit counts as
    both a miss and a false ship (and is counted in ``non_finite``)."""

    sets: int
    coverage: float
    false_ship: float
    mean_width: float
    non_finite: int
    methods: dict[str, int]

    @property
    def passes(self) -> bool:
        return (self.coverage >= MIN_COVERAGE and self.false_ship <= MAX_FALSE_SHIP
                and self.non_finite == 0)


def _limits(result: IntervalResult) -> tuple[float, float]:
    return result.low, result.high


def simulate(cell: Cell, sets: int, *, views: Mapping[str, Limits] | None = None,
             seed: np.random.SeedSequence | None = None) -> dict[str, CellResult]:
    """Run ``cell.interval`` on ``sets`` data sets drawn by ``cell.draw``.

    Returns one ``CellResult`` per view: ``"interval"`` (the result's own limits) and any
    ``views`` (other limits read off the same results, e.g. the plain bootstrap's from
    ``details``). Data and resampling streams are separate children of the seed, so the data
    sets depend on the cell and the seed only.
    """
    data_seed, resample_seed = (seed or cell.seed).spawn(2)
    data_rng, resample_rng = np.random.default_rng(data_seed), np.random.default_rng(resample_seed)
    views = {"interval": _limits, **(views or {})}
    limits = {name: np.empty((sets, 2)) for name in views}
    methods: dict[str, int] = {}
    for i in range(sets):
        result = cell.interval(cell.draw(data_rng), resample_rng)
        methods[result.method] = methods.get(result.method, 0) + 1
        for name, view in views.items():
            limits[name][i] = view(result)
    return {name: summarize(values[:, 0], values[:, 1], cell.true_drop, methods)
            for name, values in limits.items()}


def summarize(low: np.ndarray, high: np.ndarray, true_drop: float,
              methods: dict[str, int] | None = None) -> CellResult:
    """Coverage P(L <= true <= U), false ship P(true > U), mean width, non-finite count."""
    finite = np.isfinite(low) & np.isfinite(high)
    covered = finite & (low <= true_drop) & (true_drop <= high)
    false_ship = ~finite | (true_drop > high)
    width = float(np.mean((high - low)[finite])) if finite.any() else math.nan
    return CellResult(len(low), float(covered.mean()), float(false_ship.mean()), width,
                      int(np.count_nonzero(~finite)), dict(methods or {}))


def coverage(draw: Draw, interval: Interval, true_drop: float, sets: int,
             seed: int | np.random.SeedSequence) -> tuple[float, float]:
    """(coverage, false-ship rate) of ``interval`` over ``sets`` sets from ``draw``; a NaN or
    infinite limit counts as a failure of both."""
    if not isinstance(seed, np.random.SeedSequence):
        seed = np.random.SeedSequence(seed)
    cell = Cell("custom", (), "custom", true_drop, draw, interval)
    result = simulate(cell, sets, seed=seed)["interval"]
    return result.coverage, result.false_ship


def bootstrap_view(result: IntervalResult) -> tuple[float, float]:
    """The plain percentile bootstrap inside a widened 0/1 interval; when b = c = 0 every
    resample equals the estimate, so the plain bootstrap would say [estimate, estimate]."""
    if "bootstrap_low" in result.details:
        return float(result.details["bootstrap_low"]), float(result.details["bootstrap_high"])
    estimate = float(result.details.get("estimate", 0.0))
    return estimate, estimate
