"""The per-class breakdown at 1,000 classes x 10^6 samples, each class's interval at 10,000
resamples: the grouped breakdown against the per-class loop it replaced (one mask, one subset,
one evaluation per class; written out below). Run by hand, never in CI.

    python benchmarks/bench_breakdown.py            # 5 alternating pairs
    python benchmarks/bench_breakdown.py --quick    # 3 pairs at 2 x 10^5 samples, 200 classes

Prints the machine, a Markdown table (median and spread of each, the largest difference of any
figure between the two, whether the row order agrees) and the target (grouped < 1 s) as PASS/FAIL.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import replace

import numpy as np
from _machine import machine_line  # benchmarks/_machine.py (run as scripts)
from _pairs import spread, verdict

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Context
from pytest_quantguard.metrics.breakdown import breakdown
from pytest_quantguard.metrics.classification import BinaryScores

TARGET_SECONDS = 1.0
FIELDS = ("reference", "candidate", "drop", "low", "high")


def loop_breakdown(scores, keys, context):
    """The breakdown before grouping: a mask per class."""
    rows = []
    values = np.unique(keys)
    seeds = context.rng.integers(0, 2**63 - 1, size=len(values))
    for value, seed in zip(values, seeds, strict=True):
        mask = keys == value
        local = replace(context, rng=np.random.default_rng(int(seed)))
        try:
            evaluation = scores.subset(mask).evaluate(local)
        except QuantGuardError as error:
            rows.append({"slice": value.item(), "n": int(mask.sum()), "error": str(error)})
            continue
        rows.append({"slice": value.item(), "n": int(mask.sum()),
                     "reference": evaluation.reference_score,
                     "candidate": evaluation.candidate_score, "drop": evaluation.drop,
                     "low": evaluation.interval.low, "high": evaluation.interval.high})
    rows.sort(key=lambda row: (-row.get("high", -math.inf), str(row["slice"])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int, default=None)
    args = parser.parse_args()
    n, k = (200_000, 200) if args.quick else (1_000_000, 1_000)
    pairs = args.pairs or (3 if args.quick else 5)
    print(machine_line())
    rng = np.random.default_rng(20240601)
    keys = rng.integers(0, k, n)
    reference = (rng.random(n) < 0.9).astype(np.int8)  # 90% right, 2% of outcomes flipped
    candidate = np.where(rng.random(n) < 0.02, 1 - reference, reference).astype(np.int8)
    scores = BinaryScores(reference, candidate)

    def timed(function):
        context = Context(margin="absolute", confidence=0.95, resamples=10_000,
                          rng=np.random.default_rng(1))
        start, cpu = time.perf_counter(), time.process_time()
        rows = function(scores, keys, context)
        return (time.perf_counter() - start, time.process_time() - cpu), rows

    new_times, old_times = [], []
    for _ in range(pairs):
        seconds, new = timed(breakdown)
        new_times.append(seconds)
        seconds, old = timed(loop_breakdown)
        old_times.append(seconds)
    worst = max(abs(a[f] - b[f]) for a, b in zip(new, old, strict=True) for f in FIELDS if f in b)
    same_order = [r["slice"] for r in new] == [r["slice"] for r in old]
    print(f"\n{k:,} classes x {n:,} samples, 10,000 resamples, {pairs} alternating pairs\n")
    print("| run | wall, median (min–max) | CPU time, median (min–max) |\n|---|---|---|")
    for name, times in (("grouped breakdown", new_times), ("per-class loop", old_times)):
        print(f"| {name} | {spread([t[0] for t in times])} | {spread([t[1] for t in times])} |")
    print(f"\nlargest difference of any figure: {worst:.1e}; row order the same: {same_order}")
    print(f"target grouped < {TARGET_SECONDS:.0f} s: "
          f"{verdict(statistics.median(t[0] for t in new_times) < TARGET_SECONDS)} (wall; CPU time "
          "is the figure on a loaded machine)")


if __name__ == "__main__":
    main()
