"""Detection mAP's image bootstrap: coverage on simulated sets, and speed (run by hand, never in
CI; docs/intervals.md, "Detection mAP").

    python benchmarks/bench_detection.py coverage --sizes 200 500 --sets 200 --resamples 2000
    python benchmarks/bench_detection.py speed --images 1000 --resamples 10000

``coverage``: the true drop is the mean drop over ``--truth-sets`` independent sets of
``--truth-images`` images (its Monte-Carlo SE printed), then each size's cell
(``pytest_quantguard.simulation.detection``) runs ``--sets`` sets through the paired percentile
bootstrap at 95%: coverage, false ship P(true drop > U), mean width, against coverage >= 0.93 and
false ship <= 0.04. ``speed``: wall, CPU and peak RSS of one evaluation with its breakdowns.
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from _machine import machine_line  # benchmarks/_machine.py (run as scripts)

from pytest_quantguard.metrics.base import Context
from pytest_quantguard.metrics.detection import MAP50, MAP50_95, DetectionScores
from pytest_quantguard.simulation.detection import (
    detection_cell,
    detection_set,
    detection_true_drop,
)
from pytest_quantguard.simulation.harness import simulate


def _cell(args: tuple) -> tuple:
    n, true_drop, metric, resamples, sets = args
    cell = detection_cell(n, true_drop, metric, resamples=resamples)
    started = time.time()
    result = simulate(cell, sets)["interval"]
    return n, result, time.time() - started


def coverage(options) -> None:
    started = time.time()
    print(machine_line())
    if options.true_drop is None:
        true_drop, error = detection_true_drop(options.metric, images=options.truth_images,
                                               sets=options.truth_sets)
        print(f"- true {options.metric} drop {true_drop:.5f} (Monte-Carlo SE {error:.5f}; "
              f"{options.truth_sets} sets of {options.truth_images} images, "
              f"{time.time() - started:.0f} s)\n")
    else:
        true_drop = options.true_drop
        print(f"- true {options.metric} drop given: {true_drop:.5f}\n")
    print("| images | sets | resamples | coverage | false ship | mean width | pass | time |")
    print("|---|---|---|---|---|---|---|---|")
    jobs = [(n, true_drop, options.metric, options.resamples, options.sets) for n in options.sizes]
    with ProcessPoolExecutor(options.jobs) as pool:
        for n, result, seconds in pool.map(_cell, jobs):
            print(f"| {n} | {result.sets} | {options.resamples} | {result.coverage:.3f} | "
                  f"{result.false_ship:.3f} | {result.mean_width:.4f} | "
                  f"{'PASS' if result.passes else 'FAIL'} | {seconds:.0f} s |", flush=True)


def speed(options) -> None:
    print(machine_line())
    drawn = detection_set(np.random.default_rng(0), options.images)
    thresholds = (MAP50 if options.metric == "map50" else MAP50_95).thresholds
    for resamples in options.resamples_list:
        scores = DetectionScores(drawn.reference, drawn.candidate, drawn.labels, thresholds,
                                 options.metric)
        context = Context(margin="absolute", confidence=0.95, resamples=resamples,
                          rng=np.random.default_rng(1))
        wall, cpu = time.time(), time.process_time()
        scores.evaluate(context)
        print(f"- {options.images} images, 20 classes, {options.metric}, {resamples} resamples "
              f"with per-class and per-size rows: wall {time.time() - wall:.1f} s, CPU "
              f"{time.process_time() - cpu:.1f} s, peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    cov = sub.add_parser("coverage")
    cov.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 2000])
    cov.add_argument("--sets", type=int, default=200)
    cov.add_argument("--resamples", type=int, default=2000)
    cov.add_argument("--metric", default="map50", choices=["map50", "map50_95"])
    cov.add_argument("--truth-images", type=int, default=10_000)
    cov.add_argument("--truth-sets", type=int, default=4)
    cov.add_argument("--true-drop", type=float, default=None, help="skip its computation")
    cov.add_argument("--jobs", type=int, default=2)
    fast = sub.add_parser("speed")
    fast.add_argument("--images", type=int, default=1000)
    fast.add_argument("--resamples-list", type=int, nargs="+", default=[2000, 10_000])
    fast.add_argument("--metric", default="map50_95", choices=["map50", "map50_95"])
    options = parser.parse_args()
    (coverage if options.what == "coverage" else speed)(options)


if __name__ == "__main__":
    main()
