"""Intervals of the paired drop and sample-size planning: numpy only (scipy where a family needs it).

- ``result``: ``IntervalResult``, what every interval builder returns.
- ``paired_binary``: 0/1 metrics — bootstrap widened to Tango's score interval; ratio margins
  (relative, error-rate increase); McNemar's exact p; Wilson.
- ``bootstrap``: percentile and BCa limits from replicates.
- ``sums``: the engine for statistics of column sums over units (samples, patterns, groups).
- ``families``: each metric family's interval on that engine (continuous, power mean, ratio, R²,
  corpus, perplexity, grouped).
- ``plan``: how many samples resolve a margin; ``seeding``: random streams.

The coverage harness that checks these intervals by simulation is ``pytest_quantguard.simulation``
(it also drives the metrics' ``Scores``, so it lives outside this package, which imports nothing
from ``metrics``).
"""

from pytest_quantguard.stats.paired_binary import (
    mcnemar_exact_p,
    paired_binary_interval,
    paired_ratio_interval,
    tango_interval,
    wilson_interval,
)
from pytest_quantguard.stats.plan import plan, samples_for_variance
from pytest_quantguard.stats.result import IntervalResult
from pytest_quantguard.stats.seeding import derive_rng

__all__ = ["IntervalResult", "derive_rng", "mcnemar_exact_p", "paired_binary_interval",
           "paired_ratio_interval", "plan", "samples_for_variance", "tango_interval",
           "wilson_interval"]
