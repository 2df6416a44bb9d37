"""What pinning a dynamically quantized candidate's deployment batch costs: the example's
``int8_dynamic.onnx`` against ``fp32.onnx`` on its 899 held-out digits, through ``compare()``,
at ``batch_size=1`` and at the automatic batch (docs/example.md, "A dynamically quantized
candidate"). Target: batch 1 at most 3x the automatic batch's wall time, as the median of
alternating pairs, with the spread shown.

Run from the repository: ``python benchmarks/bench_dynamic_batch.py [--pairs 7]``. Prints the
machine, then one Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from _machine import machine_line  # benchmarks/_machine.py (run as a script)

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "example_project" / "models"
DATA = REPO / "example_project" / "prod_val"
TARGET = 3.0


def timed(batch_size) -> tuple[float, object]:
    from pytest_quantguard import compare

    start = time.perf_counter()
    result = compare(MODELS / "fp32.onnx", MODELS / "int8_dynamic.onnx", data=DATA,
                     batch_size=batch_size)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7, help="alternating pairs (>= 5)")
    pairs = max(5, parser.parse_args().pairs)
    timed("auto"), timed(1)  # warm-up: imports, sessions' first runs
    seconds: dict[str, list[float]] = {"auto": [], "1": []}
    results = {}
    for index in range(pairs):
        order = ("auto", 1) if index % 2 == 0 else (1, "auto")  # alternate who goes first
        for batch in order:
            elapsed, results[str(batch)] = timed(batch)
            seconds[str(batch)].append(elapsed)
    ratios = [one / auto for one, auto in zip(seconds["1"], seconds["auto"], strict=True)]
    ratio = statistics.median(ratios)
    print(machine_line())
    print()
    print("| batch | models' batch | median wall (s) | spread (min-max, s) | candidate accuracy | verdict |")
    print("|---|---:|---:|---|---:|---|")
    for batch in ("auto", "1"):
        times, result = seconds[batch], results[batch]
        print(f"| {batch} | {result.runtime['batch_size']} | {statistics.median(times):.3f} | "
              f"{min(times):.3f}-{max(times):.3f} | {result.candidate_score:.4f} | {result.verdict} |")
    print()
    print(f"batch 1 / auto: median of {pairs} pairs {ratio:.2f}x (spread {min(ratios):.2f}-"
          f"{max(ratios):.2f}x); target <= {TARGET:g}x: {'PASS' if ratio <= TARGET else 'MISS'}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
