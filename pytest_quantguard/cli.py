"""The `quantguard` console script (docs/index.md): a thin shell over the package's own functions.

``quantguard plan`` sizes a validation set with :func:`pytest_quantguard.stats.plan.plan`;
``export-inputs``, ``validate`` and ``compare`` gate results kept in files (cli_workflow.py);
``quantize`` writes quantized candidates and ``ladder`` gates them (cli_quantize.py). Bad
input is a usage error (exit 2, one line naming the option), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence

from pytest_quantguard._version import __version__
from pytest_quantguard.cli_quantize import add_ladder, add_quantize
from pytest_quantguard.cli_workflow import add_commands

PROG = "quantguard"

_PLAN_DESCRIPTION = """\
Total validation samples (reference and candidate both run on each) needed so that a candidate
whose true drop is --drop passes a --margin limit: the upper bound of the paired interval of the
drop falls under the margin with probability --power. Also prints the 50%-power size, below which
even such a candidate is more often inconclusive than not.

  n = (z[1 - a] + z[power])^2 * (discordance - drop^2) / (margin - drop)^2,
  a = (1 - confidence) / 2, rounded up."""

_PLAN_EPILOG = """\
discordance: take it from a pilot run. The failure message ("samples only the reference gets
right: b; only the candidate: c") or the JSON report's details (reference_only, candidate_only)
give b and c on n samples; discordance = (b + c) / n.

example: quantguard plan --discordance 0.02 --margin 0.01"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; return its exit status (2 for usage errors, as argparse does)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        status = args.handler(args, args.subparser)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return status
    except SystemExit as exit_:  # argparse's --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    except BrokenPipeError:  # `quantguard plan ... | head -1`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="pytest-quantguard: may this quantized model ship?")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    plan = commands.add_parser(
        "plan", help="validation samples needed to resolve a margin", description=_PLAN_DESCRIPTION,
        epilog=_PLAN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    plan.add_argument("--discordance", required=True, metavar="P", type=_number(_share),
                      help="share of samples on which the two models disagree in correctness "
                           "(0/1 metrics), in [0, 1]")
    plan.add_argument("--margin", required=True, metavar="X", type=_number(_margin),
                      help="the limit on the drop, in metric units: 0.01 = 1 point")
    plan.add_argument("--power", default=0.8, metavar="B", type=_number(_fraction),
                      help="chance that such a candidate passes, in (0, 1) (default: 0.8)")
    plan.add_argument("--confidence", default=0.95, metavar="C", type=_number(_fraction),
                      help="interval level, in (0, 1) (default: 0.95)")
    plan.add_argument("--drop", default=0.0, metavar="D", type=_number(None),
                      help="assumed true drop of the candidate, in metric units, below the margin "
                           "(default: 0)")
    plan.add_argument("--json", action="store_true",
                      help="print one JSON object {n, n_50, inputs} instead of text")
    plan.set_defaults(handler=_run_plan, subparser=plan)
    add_commands(commands)  # export-inputs, validate, compare (docs/results.md)
    add_quantize(commands)  # quantize, ladder (docs/ladder.md)
    add_ladder(commands)
    return parser


def _run_plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.drop >= args.margin:
        parser.error(f"argument --drop: must be below --margin ({args.margin:g}), got {args.drop:g}")
    if abs(args.drop) > args.discordance:
        # drop = (c - b)/n and discordance = (b + c)/n, so |drop| <= discordance on 0/1 metrics.
        parser.error(f"argument --drop: a drop of {args.drop:g} needs --discordance of at least "
                     f"{abs(args.drop):g} (every changed sample is a disagreement), got "
                     f"{args.discordance:g}")

    from pytest_quantguard.stats.plan import plan  # the stats package loads numpy

    inputs = {"discordance": args.discordance, "margin": args.margin, "power": args.power,
              "confidence": args.confidence, "drop": args.drop}
    n = plan(args.discordance, args.margin, power=args.power, confidence=args.confidence,
             drop=args.drop)
    n_50 = plan(args.discordance, args.margin, power=0.5, confidence=args.confidence, drop=args.drop)
    if args.json:
        print(json.dumps({"n": n, "n_50": n_50, "inputs": inputs}))
        return 0
    print(f"{_samples(n)} for {_percent(args.power)} power (margin {args.margin:g} = "
          f"{_points(args.margin)}, true drop {args.drop:g}, {_percent(args.confidence)} confidence)")
    print(f"{_samples(n_50)} for 50% power (the bare minimum: half the runs would not resolve the margin)")
    print(f"inputs: discordance {args.discordance:g} (share of samples the two models disagree on in "
          f"correctness, 0/1 metrics), margin {args.margin:g} (metric units, 0.01 = 1 point), "
          f"drop {args.drop:g} (assumed true drop)")
    return 0


def _samples(n: int) -> str:
    return f"{n:,} sample{'' if n == 1 else 's'}"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def _points(margin: float) -> str:
    points = 100 * margin
    return f"{points:g} point{'' if points == 1 else 's'}"


def _number(check: Callable[[float], str | None] | None) -> Callable[[str], float]:
    """An argparse ``type``: a finite float that passes ``check`` (which returns the complaint)."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        complaint = check(value) if check is not None else None
        if complaint is not None:
            raise argparse.ArgumentTypeError(f"{complaint}, got {text}")
        return value

    return convert


def _share(value: float) -> str | None:
    if 0 < value <= 1:
        return None
    return "must be a share in (0, 1] (plan on at least 3/n when a pilot of n showed none)"


def _fraction(value: float) -> str | None:
    return None if 0 < value < 1 else "must be in (0, 1)"


def _margin(value: float) -> str | None:
    # A margin of 1 or more is a whole metric range on a 0/1 metric: almost surely "1 point" meant.
    return None if 0 < value < 1 else "must be in (0, 1), in metric units (0.01 = 1 point)"
