"""``quantguard quantize``: candidate models from onnxruntime's quantizers (docs/ladder.md,
"quantguard quantize"). Exit status: 0 written, 2 a usage error, 3 a data or model error (one
line naming the file and the fix)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_quantguard.ladder_plan import default_schemes

DATA_ERROR = 3
_QUANTIZE_DESCRIPTION = """Write OUT/<scheme>.onnx for each scheme with onnxruntime's quantizers
(pre-processed first; static INT8 calibrated on --calibration) and OUT/quantize.json (sizes,
compression, the calibration digest). With --data, the calibration set is refused when it is the
validation set or shares more than 1% of its rows. Exit 0 written, 2 usage, 3 data or model
errors."""
_LADDER_DESCRIPTION = """Quantize MODEL (as quantguard quantize), validate the reference and every
candidate on --data, and gate the candidates level by level (FP16 -> INT8 -> INT4) by gatekeeping
with propagated alpha: the chance of shipping any candidate over the limit stays at the gate's
one-sided 2.5%. Each rung is compared at its adjusted confidence; its reports are
OUT/reports/<scheme>.{json,md,xml}; the combined reports of every rung are OUT/report.json,
OUT/report.md and OUT/junit.xml (beside OUT/ladder.json). Exit 0 a recommendation, 1 nothing
ships, 2 usage, 3 data or model errors."""


def add_quantize(commands: Any) -> None:
    """Register ``quantize`` on the ``quantguard`` sub-parsers."""
    quantize = commands.add_parser("quantize", help="write quantized candidates of an ONNX model",
                                   description=_QUANTIZE_DESCRIPTION)
    _arguments(quantize, data_required=False)
    quantize.set_defaults(handler=_guarded(_quantize), subparser=quantize)


def _arguments(parser: argparse.ArgumentParser, *, data_required: bool) -> None:
    """MODEL, --calibration, --data, --schemes and -o: the options quantize and ladder share."""
    from pytest_quantguard.quantize import SCHEMES

    parser.add_argument("model", metavar="MODEL", help="the FP32 .onnx model")
    parser.add_argument("--calibration", required=True, metavar="DIR",
                        help="the calibration set folder (never the gate's validation set)")
    parser.add_argument("--data", required=data_required, metavar="DIR",
                        help="the validation set folder" + ("" if data_required else
                                                            ", checked for overlap with the "
                                                            "calibration set"))
    parser.add_argument("--schemes", metavar="LIST", type=_schemes, default=None,
                        help=f"comma-separated, from {', '.join(SCHEMES)} (default: every INT8 "
                             "and FP16 scheme, and int4-weight-only for language-model data)")
    parser.add_argument("-o", "--out", required=True, metavar="DIR", help="the folder to write")


def _schemes(text: str) -> tuple[str, ...]:
    from pytest_quantguard.quantize import parse_schemes

    try:
        return parse_schemes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _guarded(command: Callable[[argparse.Namespace], int]
             ) -> Callable[[argparse.Namespace, argparse.ArgumentParser], int]:
    """A QuantGuardError (bad data, a model a quantizer refuses) is exit 3 with one line."""

    def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        from pytest_quantguard.errors import QuantGuardError

        try:
            return command(args)
        except QuantGuardError as error:
            print(f"quantguard {args.command}: error: {error}", file=sys.stderr)
        except OSError as error:  # the output folder cannot be written
            print(f"quantguard {args.command}: error: {error.filename or ''}: "
                  f"{error.strerror or error}; choose another path", file=sys.stderr)
        return DATA_ERROR

    return run


def _quantize(args: argparse.Namespace) -> int:
    from pytest_quantguard.data import ValidationSet
    from pytest_quantguard.quantize import check_calibration, quantize_model

    calibration = ValidationSet.from_folder(args.calibration, given_by="--calibration")
    overlap = None
    if args.data is not None:
        overlap = check_calibration(calibration, ValidationSet.from_folder(args.data,
                                                                           given_by="--data"))
        print(f"calibration overlap: {overlap.line()}")
    schemes = args.schemes or default_schemes(calibration.task)
    manifest = quantize_model(args.model, calibration, schemes, args.out, overlap=overlap)
    for row in manifest["candidates"]:
        print(f"{row['scheme']}: {args.out.rstrip('/')}/{row['file']}, {row['size_bytes']:,} bytes, "
              f"{row['compression']:.2f}x smaller than the reference"
              + (f"; left in float: {', '.join(row['excluded'])}" if row.get("excluded") else ""))
    for row in manifest["skipped"]:
        print(f"{row['scheme']}: not written: {row['reason']}")
    print(f"calibrated on {calibration.description} ({calibration.n} samples) -> "
          f"{args.out.rstrip('/')}/quantize.json")
    return 0


# --- quantguard ladder (docs/ladder.md, "quantguard ladder") ------------------------------------

LADDER_FILE = "ladder.json"
_PASSED_ON = ("metric", "max_drop", "qat_limit", "seed", "bootstrap", "batch_size")


def add_ladder(commands: Any) -> None:
    """Register ``ladder`` on the ``quantguard`` sub-parsers."""
    ladder = commands.add_parser(
        "ladder", help="quantize, gate the candidates level by level, recommend the most compressed",
        description=_LADDER_DESCRIPTION)
    _arguments(ladder, data_required=True)
    ladder.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the models run (default: cpu; FP16 is not judged on a CPU)")
    for key in _PASSED_ON:
        ladder.add_argument("--" + key.replace("_", "-"), dest=key, metavar=key.upper(),
                            help="passed to quantguard compare/validate (see quantguard compare "
                                 "--help)")
    ladder.set_defaults(handler=_guarded(_ladder), subparser=ladder)


def _cli(argv: list[str]) -> int:
    from pytest_quantguard.cli import main  # the workflow's own commands: one code path

    return main(argv)


def _passed_on(args: argparse.Namespace, keys: tuple[str, ...]) -> list[str]:
    return [part for key in keys if getattr(args, key) is not None
            for part in ("--" + key.replace("_", "-"), str(getattr(args, key)))]


def _validate(args: argparse.Namespace, model: str, results: Path) -> dict[str, Any]:
    status = _cli(["validate", model, "--data", args.data, "-o", str(results), "--device",
                   args.device, *_passed_on(args, ("batch_size",))])
    if status != 0:
        from pytest_quantguard.errors import QuantGuardError
        raise QuantGuardError(f"{model}: quantguard validate failed (exit {status}, above)")
    return json.loads((results / "results.json").read_text())


def _ships(args: argparse.Namespace, out: Path, verdicts: dict[str, dict[str, Any]]):
    """``ships(scheme, alpha)``: quantguard compare of the scheme at confidence 1 - 2 alpha, its
    reports under OUT/reports/; ships when that comparison's verdict is ship and every check of the
    reference passed (a failed check fails the gate whatever the verdict: docs/verdict.md)."""
    from pytest_quantguard.reports.json_report import failed_checks
    from pytest_quantguard.stats.ladder import confidence_for

    def ships(scheme: str, alpha: float) -> bool:
        reports = out / "reports"
        reports.mkdir(exist_ok=True)
        report = reports / f"{scheme}.json"
        with _no_step_summary():  # the ladder's one report goes there (_combined_reports)
            status = _cli(["compare", str(out / "results" / "reference"),
                           str(out / "results" / scheme), "--data", args.data,
                           "--confidence", repr(confidence_for(alpha)), "--device", args.device,
                           "--report", str(report), "--markdown", str(reports / f"{scheme}.md"),
                           "--junitxml", str(reports / f"{scheme}.xml"),
                           *_passed_on(args, ("metric", "max_drop", "qat_limit", "seed",
                                              "bootstrap"))])
        if status not in (0, 1):
            from pytest_quantguard.errors import QuantGuardError
            raise QuantGuardError(f"{scheme}: quantguard compare failed (exit {status}, above)")
        record = json.loads(report.read_text())["comparisons"][0]
        verdicts[scheme] = {"verdict": record["verdict"], "drop": record["drop"],
                            "interval": record["interval"]}
        return record["verdict"] == "ship" and not failed_checks(record)

    return ships


@contextlib.contextmanager
def _no_step_summary():
    """$GITHUB_STEP_SUMMARY unset for a while: each rung's compare would append its own report."""
    kept = os.environ.pop("GITHUB_STEP_SUMMARY", None)
    try:
        yield
    finally:
        if kept is not None:
            os.environ["GITHUB_STEP_SUMMARY"] = kept


def _ladder(args: argparse.Namespace) -> int:
    from pytest_quantguard.data import ValidationSet
    from pytest_quantguard.ladder_plan import (
        NoRungError,
        ladder_lines,
        ladder_summary,
        machine_text,
        plan_ladder,
        rung_rows,
    )
    from pytest_quantguard.stats.ladder import DEFAULT_ALPHA, gatekeep

    out = Path(args.out)
    calibration = ValidationSet.from_folder(args.calibration, given_by="--calibration")
    try:  # the rung set is fixed here, before any rung is judged (docs/ladder.md, "The rungs")
        plan = plan_ladder(args.model, calibration, ValidationSet.from_folder(
            args.data, given_by="--data"), args.schemes, args.device, out / "candidates")
    except NoRungError as error:
        print(f"quantguard ladder: error: {error}", file=sys.stderr)
        return 2
    print(f"calibration overlap: {plan.overlap.line()}")
    timing = {"reference": _validate(args, args.model, out / "results" / "reference")}
    for scheme in plan.schemes:
        timing[scheme] = _validate(args, str(plan.model_file(scheme)), out / "results" / scheme)
    for stale in (out / "reports" / f"{scheme}.{ext}" for scheme in plan.schemes
                  for ext in ("json", "md", "xml")):
        stale.unlink(missing_ok=True)  # an untested rung leaves no report of an earlier run
    verdicts: dict[str, dict[str, Any]] = {}
    result = gatekeep(plan.levels, DEFAULT_ALPHA, _ships(args, out, verdicts))
    ms = {name: each["provenance"].get("ms_per_sample") for name, each in timing.items()}
    summary = ladder_summary(args.model, plan, DEFAULT_ALPHA, rung_rows(result, verdicts, plan, ms),
                             machine_text(args.device), ms["reference"])
    (out / LADDER_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    _combined_reports(out, summary)
    for line in ladder_lines(summary):
        print(line)
    print(f"reports: {out / 'report.json'}, {out / 'report.md'}, {out / 'junit.xml'}")
    return 0 if summary["recommendation"] is not None else 1


def _combined_reports(out: Path, summary: dict[str, Any]) -> None:
    """OUT/report.json, report.md and junit.xml: every tested rung's comparison, with its ladder
    facts in ``details.ladder`` (docs/ladder.md, "The reports")."""
    from pytest_quantguard.cli_workflow import write_reports
    from pytest_quantguard.ladder_plan import ladder_details
    from pytest_quantguard.reports.ladder import junit_cases, markdown_section

    records, settings = [], {}
    for rung in summary["rungs"]:
        if rung["tested"]:
            report = json.loads((out / "reports" / f"{rung['scheme']}.json").read_text())
            settings = report["settings"]
            record = report["comparisons"][0]
            record["details"]["ladder"] = ladder_details(rung, summary["recommendation"])
            records.append(record)
    write_reports(records, settings, settings.get("inconclusive", "fail"),
                  report=out / "report.json", markdown=out / "report.md",
                  junitxml=out / "junit.xml", markdown_tail=markdown_section(summary),
                  junit_cases=junit_cases(summary, records))


def run_ladder(model: str | Path, *, calibration: str | Path, data: str | Path, out: str | Path,
               **options: Any) -> dict[str, Any]:
    """``quantguard ladder`` from Python (a test): the options as keywords (``schemes="..."``,
    ``max_drop=0.01``, ``device="cpu"``); returns ``OUT/ladder.json`` (its ``recommendation`` is
    None when nothing ships). A usage, data or model error raises QuantGuardError."""
    from pytest_quantguard.cli import main
    from pytest_quantguard.errors import QuantGuardError

    argv = ["ladder", str(model), "--calibration", str(calibration), "--data", str(data),
            "-o", str(out)]
    for key, value in options.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    status = main(argv)
    if status not in (0, 1):
        raise QuantGuardError(f"quantguard ladder {model}: exit {status} (its error is above)")
    return json.loads((Path(out) / LADDER_FILE).read_text())
