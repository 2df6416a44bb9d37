"""The ladder's family-wise false-ship rate in every least-favourable cell: run by hand, never in CI.

    python benchmarks/ladder_coverage.py                    # shapes 1-3-1 and 3-1, 10,000 sets
    python benchmarks/ladder_coverage.py --sets 20000 --shape 2-3-1
    python benchmarks/ladder_coverage.py --statistic gate --sets 2000 --scores independent

Each cell sets every candidate either clearly fine or at the margin (at least one at the margin),
with the schemes' scores correlated (one set, shared per-sample flips) and independent; the
reference's correctness is drawn once per set for all candidates. Prints one Markdown row per
cell: each rule's false-ship rate (shipping ANY candidate at the margin) and PASS/FAIL of the valid
rule (gatekeeping) against 0.025 + 3 Monte-Carlo standard errors (docs/ladder.md, "The
simulation"). The generators are ``pytest_quantguard.simulation.ladder``, the suite's smoke test
(``tests/test_ladder.py``) runs a few of the same cells.
"""

from __future__ import annotations

import argparse
import sys
import time

from _machine import machine_line  # benchmarks/_machine.py (run as scripts)

from pytest_quantguard.simulation.ladder import RULES, least_favourable_cells, simulate_ladder
from pytest_quantguard.stats.ladder import DEFAULT_ALPHA


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=10_000)
    parser.add_argument("--shape", action="append", help="schemes per level, e.g. 1-3-1")
    parser.add_argument("--statistic", choices=("tango", "gate"), default="tango")
    parser.add_argument("--scores", choices=("both", "correlated", "independent"), default="both")
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("-")) for s in (args.shape or ["1-3-1", "3-1"])]
    print(f"`python benchmarks/ladder_coverage.py --sets {args.sets} --statistic {args.statistic} "
          f"--scores {args.scores} "
          + " ".join(f"--shape {'-'.join(map(str, s))}" for s in shapes) + "`\n")
    print(machine_line())
    print()
    print("| cell | " + " | ".join(RULES) + " | gatekeeping ≤ 0.025 + 3 SE |")
    print("|---|" + "---:|" * len(RULES) + "---|")
    started, failed, worst = time.time(), 0, {rule: 0.0 for rule in RULES}
    for shape in shapes:
        for correlated in {"both": (True, False), "correlated": (True,),
                           "independent": (False,)}[args.scores]:
            for cell in least_favourable_cells(shape, correlated):
                result = simulate_ladder(cell, args.sets, statistic=args.statistic)
                rate = result.false_ship["gatekeeping"]
                ok = rate <= DEFAULT_ALPHA + 3 * result.standard_error(DEFAULT_ALPHA)
                failed += not ok
                worst = {rule: max(worst[rule], result.false_ship[rule]) for rule in RULES}
                print(f"| {cell.name} | "
                      + " | ".join(f"{result.false_ship[rule]:.4f}" for rule in RULES)
                      + f" | {'PASS' if ok else 'FAIL'} |", flush=True)
    print("| **worst** | " + " | ".join(f"**{worst[rule]:.4f}**" for rule in RULES) + " | |")
    print(f"\n{failed} cell(s) over the bound; {time.time() - started:.0f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
