"""Intervals of the paired drop and sample-size planning: numpy only (scipy where a family needs it).

- ``paired_binary``: 0/1 metrics — bootstrap widened to Tango's score interval; ratio margins
  (relative, error-rate increase); McNemar's exact p; Wilson.
- ``bootstrap``: percentile and BCa limits from replicates.
- ``sums``: the engine for statistics of column sums over units (samples, patterns, groups).
- ``families``: each metric family's interval on that engine (continuous, ratio, R², corpus,
  perplexity, grouped).
- ``plan``: how many samples resolve a margin; ``seeding``: random streams; ``simulation``: the
  coverage harness behind the README's tables.
"""

from pytest_quantguard.stats.paired_binary import (
    IntervalResult,
    mcnemar_exact_p,
    paired_binary_interval,
    paired_ratio_interval,
    tango_interval,
    wilson_interval,
)
from pytest_quantguard.stats.plan import plan, samples_for_variance
from pytest_quantguard.stats.seeding import derive_rng

__all__ = ["IntervalResult", "derive_rng", "mcnemar_exact_p", "paired_binary_interval",
           "paired_ratio_interval", "plan", "samples_for_variance", "tango_interval",
           "wilson_interval"]
