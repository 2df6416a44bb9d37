"""``quantguard quantize``: candidate models from onnxruntime's quantizers (docs/ladder.md,
"quantguard quantize"). Exit status: 0 written, 2 a usage error, 3 a data or model error (one
line naming the file and the fix)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DATA_ERROR = 3


def add_quantize(commands: Any) -> None:
    """Register ``quantize`` on the ``quantguard`` sub-parsers."""
    from pytest_quantguard.quantize import SCHEMES

    what = "write quantized candidates of an ONNX model"
    quantize = commands.add_parser("quantize", help=what, description=(
        "Write OUT/<scheme>.onnx for each scheme with onnxruntime's quantizers "
        "(pre-processed first; static INT8 calibrated on --calibration) and OUT/quantize.json (sizes, "
        "compression, the calibration digest). With --data, the calibration set is refused when it "
        "is the validation set or shares more than 1%% of its rows. Exit 0 written, 2 usage, 3 data "
        "or model errors."))
    quantize.add_argument("model", metavar="MODEL", help="the FP32 .onnx model")
    quantize.add_argument("--calibration", required=True, metavar="DIR",
                          help="the calibration set folder (never the gate's validation set)")
    quantize.add_argument("--data", metavar="DIR",
                          help="the validation set folder, checked for overlap with the "
                               "calibration set")
    quantize.add_argument("--schemes", metavar="LIST", type=_schemes, default=None,
                          help=f"comma-separated, from {', '.join(SCHEMES)} (default: every INT8 "
                               "and FP16 scheme, and int4-weight-only for language-model data)")
    quantize.add_argument("-o", "--out", required=True, metavar="DIR", help="the folder to write")
    quantize.set_defaults(handler=_run_quantize, subparser=quantize)


def _schemes(text: str) -> tuple[str, ...]:
    from pytest_quantguard.quantize import parse_schemes

    try:
        return parse_schemes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _run_quantize(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pytest_quantguard.errors import QuantGuardError

    try:
        return _quantize(args)
    except QuantGuardError as error:
        print(f"quantguard quantize: error: {error}", file=sys.stderr)
    except OSError as error:  # the output folder cannot be written
        print(f"quantguard quantize: error: {error.filename or ''}: {error.strerror or error}; "
              "choose another path", file=sys.stderr)
    return DATA_ERROR


def default_schemes(task: str) -> tuple[str, ...]:
    """Every scheme but INT4, which is for language models only (docs/ladder.md, "The rungs")."""
    from pytest_quantguard.data.checks import LANGUAGE_MODEL
    from pytest_quantguard.quantize import SCHEMES

    return SCHEMES if task == LANGUAGE_MODEL else tuple(s for s in SCHEMES if s != "int4-weight-only")


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
              f"{row['compression']:.2f}x smaller than the reference")
    print(f"calibrated on {calibration.description} ({calibration.n} samples) -> "
          f"{args.out.rstrip('/')}/quantize.json")
    return 0
