"""Intervals of the paired drop and sample-size planning: numpy only (scipy where a family needs it)."""

from pytest_quantguard.stats.paired_binary import (
    IntervalResult,
    paired_binary_interval,
    tango_interval,
)
from pytest_quantguard.stats.plan import plan
from pytest_quantguard.stats.seeding import derive_rng

__all__ = ["IntervalResult", "derive_rng", "paired_binary_interval", "plan", "tango_interval"]
