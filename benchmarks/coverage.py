"""Coverage of every family's interval on simulated data: run by hand, never in CI.

    python benchmarks/coverage.py                       # every family, 2000 sets, 10,000 resamples
    python benchmarks/coverage.py --family 0/1 --family macro-F1 --sets 4000
    python benchmarks/coverage.py --jobs 2              # cells spread over 2 processes
    python benchmarks/coverage.py --resume cells.jsonl  # rerun after a stop: finished cells kept
    python benchmarks/coverage.py --family agreement --family rmse-absolute --family cosine \
        --family per-class --family corpus --family top-k   # through the metrics' Scores
    python benchmarks/coverage.py --family class-corpus --sets 1000 --jobs 2
    python benchmarks/coverage.py --family detection --sets 200 --resamples 2000 --jobs 2

The generators, cells and harness are ``pytest_quantguard.simulation`` (the same the CI
tests in ``tests/stats/test_coverage_families.py`` gate with 1000 sets and 2000 resamples); each
cell's seed derives from 12345 and its parameters, so the CI's sets are this run's first ones.
Prints one Markdown table per family: coverage, false-ship rate P(true drop > U), mean width and
PASS/FAIL against coverage >= 0.93 and false ship <= 0.04 (docs/intervals.md, "Coverage"). Rows marked
"reported" are not gated (heavy-tailed errors, the heaviest-skewed cosines, the i.i.d. interval on
grouped data, the plain percentile bootstrap inside the widened 0/1 interval). Per-class rows are
an intersection-union gate: the reported (worst-class) interval is gated on its false-ship rate
only (every class shipped although one lost the margin), the degraded class's own interval on
both. The metric families run through their ``Scores`` classes, as compare() evaluates them; the
custom corpus metric calls its Python function on every resample, so it runs at most 2000
resamples (its percentile interval needs no more). Monte Carlo SE with 2000 sets: about 0.005
on a coverage of 0.95 and 0.0035 on a 2.5% tail. Progress (one line per cell) goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from pytest_quantguard import simulation
from pytest_quantguard.simulation import MAX_FALSE_SHIP, MIN_COVERAGE, Cell, CellResult
from pytest_quantguard.simulation.class_corpus import class_corpus_cell
from pytest_quantguard.simulation.detection import TRUE_DROPS, detection_cell

VIEWS = {"bootstrap": simulation.bootstrap_view, "degraded class": simulation.degraded_class_view}


@dataclass(frozen=True)
class Row:
    """A table row: a cell, whether it is gated (and on coverage too, or on the false-ship rate
    only), and a second view of the same results to show (``VIEWS``: the plain bootstrap inside
    the widened 0/1 interval, the degraded class of a per-class cell), gated or reported."""

    cell: Cell
    gated: bool = True
    view: str | None = None
    coverage_gated: bool = True
    view_gated: bool = False


def binary_rows(resamples: int) -> list[Row]:
    grid = itertools.product([200, 1000, 5000], [0.01, 0.05], [0.0, 0.01], [0.5, 0.8, 0.95])
    return [Row(simulation.binary_cell(n, d, drop, acc, resamples=resamples), view="bootstrap")
            for n, d, drop, acc in grid]


def binary_ratio_rows(resamples: int) -> list[Row]:
    # The score interval of the ratio modes costs ~35-80 ms a call, so a sub-grid: the margin and
    # null cells at acc 0.8, and the boundary cell (d = 1%, drop = 1 pt: no candidate-only
    # samples) at every accuracy.
    cells = [(n, d, drop, 0.8) for n, d, drop in itertools.product([200, 1000], [0.01, 0.05], [0.0, 0.01])]
    cells += [(n, 0.01, 0.01, acc) for n in (200, 1000) for acc in (0.5, 0.95)]
    return [Row(simulation.binary_cell(*cell, resamples=resamples, mode=mode), view="bootstrap")
            for mode in ("relative", "error-increase") for cell in cells]


def macro_f1_rows(resamples: int) -> list[Row]:
    return [Row(simulation.macro_f1_cell(n, resamples=resamples)) for n in (500, 1000, 2000, 10000)]


def regression_rows(resamples: int) -> list[Row]:
    return [Row(simulation.regression_cell(n, metric, resamples=resamples, tails=tails),
                gated=tails == "gaussian")
            for tails in ("gaussian", "t3") for metric in ("mae", "rmse") for n in (200, 1000)]


def r2_rows(resamples: int) -> list[Row]:
    return [Row(simulation.r2_cell(n, resamples=resamples)) for n in (200, 1000)]


def perplexity_rows(resamples: int) -> list[Row]:
    return [Row(simulation.perplexity_cell(documents)) for documents in (50, 200, 1000)]


def grouped_rows(resamples: int) -> list[Row]:
    return [Row(simulation.grouped_cell(groups, size, 0.1, resamples=resamples, clustered=clustered),
                gated=clustered)
            for groups, size in ((30, 10), (100, 10)) for clustered in (True, False)]


def agreement_rows(resamples: int) -> list[Row]:
    # the true disagreement rate is the margin (max_drop) in every row
    return [Row(simulation.agreement_cell(n, rate))
            for rate in (0.005, 0.01, 0.02) for n in (200, 500, 2000, 10000)]


def rmse_absolute_rows(resamples: int) -> list[Row]:
    return [Row(simulation.rmse_absolute_cell(n, resamples=resamples)) for n in (200, 1000)]


def cosine_rows(resamples: int) -> list[Row]:
    return [Row(simulation.cosine_cell(n, shape, resamples=resamples), gated=shape == "moderate")
            for shape in simulation.COSINE_SHAPES for n in (200, 1000)]


def per_class_rows(resamples: int) -> list[Row]:
    cells = [
        simulation.per_class_cell(2000, 4, 0.02, resamples=resamples),
        # the boundary: the degraded class's discordance equals its drop (no candidate-only sample)
        simulation.per_class_cell(2000, 4, 0.02, resamples=resamples, degraded_discordance=0.02),
        simulation.per_class_cell(10000, 10, 0.01, resamples=resamples, degraded_discordance=0.05),
        simulation.per_class_cell(10000, 10, 0.01, resamples=resamples, degraded_discordance=0.01,
                                  other_discordance=0.005),
    ]
    return [Row(cell, view="degraded class", coverage_gated=False, view_gated=True) for cell in cells]


def corpus_rows(resamples: int) -> list[Row]:
    return [Row(simulation.corpus_cell(n, resamples=min(resamples, 2000)))
            for n in (500, 2000, 5000)]


def class_corpus_rows(resamples: int) -> list[Row]:
    return [Row(class_corpus_cell(n, metric, setup, resamples=min(resamples, 2000)))
            for setup in ("rare", "rare5", "balanced")
            for metric in ("balanced_accuracy", "mcc", "kappa") for n in (500, 2000)]


def top_k_rows(resamples: int) -> list[Row]:
    return [Row(simulation.top_k_cell(n, d, 0.01, 0.8, resamples=resamples))
            for n, d in ((200, 0.01), (200, 0.05), (1000, 0.01), (1000, 0.05), (5000, 0.05))]


def detection_rows(resamples: int) -> list[Row]:
    # the paired image bootstrap of COCO mAP re-accumulates every class at every IoU threshold per
    # resample, so at most 2000 resamples (the detection metrics' default), and 1000 for
    # map50_95 at 2,000 images (about 4 s a set on a lightly loaded core; docs/benchmarks.md,
    # "Detection mAP")
    def limit(metric: str, n: int) -> int:
        return min(resamples, 1000 if (metric, n) == ("map50_95", 2000) else 2000)

    return [Row(detection_cell(n, TRUE_DROPS[metric][0], metric, resamples=limit(metric, n)))
            for metric in ("map50", "map50_95") for n in (200, 500, 2000)]


FAMILIES = {
    "0/1": ("0/1 metrics, absolute drop: percentile bootstrap widened to contain Tango",
            binary_rows),
    "0/1-ratio": ("0/1 metrics, relative and error-increase drops (paired_ratio_interval)",
                  binary_ratio_rows),
    "macro-F1": ("macro-F1 drop, MACRO_F1_* set-up (true drop 2.395 pt), BCa over patterns "
                 "(+ studentized while the rarest class has < 100 samples)", macro_f1_rows),
    "regression": ("relative MAE / RMSE drop, e_cand = e_ref + N(0, 0.3²), BCa on the log ratio "
                   "(t3 rows: reported, not gated)", regression_rows),
    "R²": ("absolute R² drop, noise 0.3, Var(y) = 4 (true drop 0.0225), BCa", r2_rows),
    "perplexity": ("perplexity increase, perplexity_documents set-up, linearized document-clustered SE",
                   perplexity_rows),
    "grouped": ("grouped mean difference, ICC 0.3, drop 0.1: cluster BCa vs i.i.d. BCa (reported)",
                grouped_rows),
    "agreement": ("label-free top-1 agreement: Wilson interval of the disagreement rate "
                  "(AgreementScores), true rate = the margin", agreement_rows),
    "rmse-absolute": ("absolute RMSE drop (MeanScores power 1/2), Gaussian errors sigma_r = 2, "
                      "sigma_c = 2 sqrt(1.09): BCa on the power-mean difference", rmse_absolute_rows),
    "cosine": ("mean cosine (DistanceScores), cos = 1 - spread Beta(a, b), true drop 1 pt: BCa; "
               "1 - cos has skewness 2.9 (spread 0.2, a = 0.25), or 5.4 (spread 1, a = 0.1: "
               "reported)", cosine_rows),
    "per-class": ("per-class accuracy (PerClassScores), equal priors: class 0 loses exactly the "
                  "margin, the others nothing; false ship = every class shipped", per_class_rows),
    "corpus": ("custom corpus metric: balanced accuracy, priors 0.5/0.3/0.15/0.05, recall drops "
               "1/1/2/4 pt (true drop 2 pt), CorpusScores' paired percentile bootstrap "
               "(at most 2000 resamples)", corpus_rows),
    "class-corpus": ("custom corpus_of_classes metrics (ClassCorpusScores, vectorized twins of the "
                     "per-call functions): balanced accuracy, MCC, Cohen's kappa; the drop on a "
                     "class of 3% (rare) or 5% (rare5) of the samples, or on 4 equal classes; "
                     "BCa over patterns + the adjusted BCa+studentized interval (at most 2000 "
                     "resamples)", class_corpus_rows),
    "detection": ("COCO map50 / map50_95 (DetectionScores), the MILD candidate of "
                  "simulation/detection.py (box jitter, score noise, misses), true drops from "
                  "10^6 images: paired percentile bootstrap over images (at most 2000 "
                  "resamples)", detection_rows),
    "top-k": ("top5 through the TopK metric on class scores built from the 0/1 cell's tables "
              "(same sets and stream as the 0/1 family's acc 0.8 rows)", top_k_rows),
}


def run_row(family: str, index: int, sets: int, resamples: int,
            resume: str | None = None) -> tuple[dict[str, CellResult], float]:
    row = FAMILIES[family][1](resamples)[index]
    views = {row.view: VIEWS[row.view]} if row.view else None
    start = time.perf_counter()
    results = simulation.simulate(row.cell, sets, views=views)
    seconds = time.perf_counter() - start
    if resume:  # one short line per finished cell, appended (a killed run loses only running cells)
        record = {"key": _key(row, sets, resamples), "seconds": seconds,
                  "results": {name: dataclasses.asdict(result) for name, result in results.items()}}
        with open(resume, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
    return results, seconds


def _key(row: Row, sets: int, resamples: int) -> str:
    return f"{row.cell.name}|sets={sets}|resamples={resamples}"


def load_finished(resume: str | None) -> dict[str, tuple[dict[str, CellResult], float]]:
    """Cells a previous run with the same ``--resume`` file finished."""
    if not resume or not os.path.exists(resume):
        return {}
    finished = {}
    with open(resume, encoding="utf-8") as file:
        for line in file:
            if line.strip():
                record = json.loads(line)
                finished[record["key"]] = ({name: CellResult(**value)
                                            for name, value in record["results"].items()},
                                           record["seconds"])
    return finished


def passes(result: CellResult, coverage_gated: bool = True) -> bool:
    if coverage_gated:
        return result.passes
    return result.false_ship <= MAX_FALSE_SHIP and result.non_finite == 0


def verdict(result: CellResult, gated: bool, coverage_gated: bool = True) -> str:
    mark = "PASS" if passes(result, coverage_gated) else "FAIL"
    if gated and not coverage_gated:
        mark += " (false ship)"
    return mark if gated else f"reported ({mark.lower()})"


def row_failures(row: Row, result: dict[str, CellResult]) -> int:
    failed = row.gated and not passes(result["interval"], row.coverage_gated)
    failed |= row.gated and row.view_gated and not passes(result[row.view])
    return int(failed)


def describe(cell: Cell) -> str:
    params = " ".join(f"{key}={value}" for key, value in cell.params)
    return f"{params} {cell.method}"


def table(family: str, rows: list[Row], results: list[tuple[dict[str, CellResult], float]]) -> str:
    view = next((row.view for row in rows if row.view), None)
    header = ["cell", "true drop", "coverage", "false ship", "mean width", "gate"]
    if view:
        alone = "bootstrap alone" if view == "bootstrap" else f"{view} gate"
        header += [f"{view} coverage", f"{view} false ship", f"{view} width", alone]
    header += ["seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, (result, seconds) in zip(rows, results, strict=True):
        main = result["interval"]
        cells = [describe(row.cell), f"{row.cell.true_drop:.5f}", f"{main.coverage:.3f}",
                 f"{main.false_ship:.3f}", f"{main.mean_width:.5f}",
                 verdict(main, row.gated, row.coverage_gated)]
        if main.non_finite:
            cells[-1] += f" ({main.non_finite} non-finite)"
        if view:
            other = result[view]
            cells += [f"{other.coverage:.3f}", f"{other.false_ship:.3f}", f"{other.mean_width:.5f}",
                      verdict(other, gated=row.gated and row.view_gated)]
        cells.append(f"{seconds:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=2000, help="simulated sets per cell (2000)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (10000)")
    parser.add_argument("--family", action="append", choices=list(FAMILIES),
                        help="run only this family (repeatable); default: all")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (1)")
    parser.add_argument("--resume", metavar="FILE",
                        help="JSON-lines file of finished cells: appended to, and cells already in "
                             "it are not rerun (a long run survives being stopped)")
    args = parser.parse_args(argv)
    families = args.family or list(FAMILIES)
    print(f"# Coverage of pytest-quantguard's intervals\n\n{args.sets} sets per cell, "
          f"{args.resamples} resamples, confidence {simulation.CONFIDENCE}, base seed "
          f"{simulation.BASE_SEED}; gate: coverage >= {MIN_COVERAGE}, false ship <= {MAX_FALSE_SHIP}, "
          f"no NaN/inf limit. Python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, {args.jobs} job(s).\n", flush=True)
    started = time.perf_counter()
    failures = 0
    finished = load_finished(args.resume)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        pending = {family: [finished.get(_key(row, args.sets, args.resamples))
                            or pool.submit(run_row, family, i, args.sets, args.resamples, args.resume)
                            for i, row in enumerate(FAMILIES[family][1](args.resamples))]
                   for family in families}
        for family in families:
            title, make_rows = FAMILIES[family]
            rows = make_rows(args.resamples)
            results = []
            for row, future in zip(rows, pending[family], strict=True):
                results.append(future if isinstance(future, tuple) else future.result())
                main_result = results[-1][0]["interval"]
                print(f"[{time.perf_counter() - started:.0f} s] {row.cell.name}: coverage "
                      f"{main_result.coverage:.3f}, false ship {main_result.false_ship:.3f}",
                      file=sys.stderr, flush=True)
            failures += sum(row_failures(row, result)
                            for row, (result, _) in zip(rows, results, strict=True))
            print(f"## {family}: {title}\n\n{table(family, rows, results)}\n", flush=True)
    print(f"{failures} gated cell(s) FAIL. Total wall time {time.perf_counter() - started:.0f} s "
          f"(cells taken from --resume: {sum(isinstance(f, tuple) for v in pending.values() for f in v)}).")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
