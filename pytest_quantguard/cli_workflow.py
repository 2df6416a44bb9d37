"""``quantguard export-inputs``, ``validate`` and ``compare``: the gate on results kept in files
(docs/results.md, "The command line"). Each command is a thin shell over the package: the data
batches, the runners and the one pipe (``comparison.run``), so verdicts, intervals and seeds equal
the plugin's on the same inputs. Exit status: 0 every candidate ships, 1 one does not, 2 a usage
error, 3 a data or results error (one line naming the file and the fix)."""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DATA_ERROR = 3
INPUTS_FORMAT = "quantguard-inputs"
INPUTS_FILE = "dataset.json"
# The tolerance options of `quantguard compare`: each is a row of settings.SETTINGS.
COMPARE_TOLERANCE = ("metric", "max_drop", "qat_limit", "max_error_increase", "confidence", "gate",
                     "output")
COMPARE_EXECUTION = ("seed", "bootstrap", "batch_size", "memory", "device")


def add_commands(commands: Any) -> None:
    """Register the three commands on the ``quantguard`` sub-parsers."""
    export = commands.add_parser(
        "export-inputs", help="write the model-ready inputs as .npy files plus dataset.json",
        description="Write the validation set's inputs as the models get them (after the "
                    "manifest's [preprocess]) as one .npy per input, in sample order, with ids.npy "
                    "and dataset.json (data digest, ids, shapes, dtypes): a device reads them with "
                    "numpy alone (docs/device-workflow.md).")
    export.add_argument("--data", required=True, metavar="DIR", help="the validation set folder")
    export.add_argument("-o", "--out", required=True, metavar="DIR", help="the folder to write")
    export.set_defaults(handler=_guarded(_run_export), subparser=export)

    validate = commands.add_parser(
        "validate", help="run one model over the set and write its results folder",
        description="Run MODEL (.onnx, torch) over the validation set as the gate does and write "
                    "the results layout of docs/results.md (every output, ids.npy, results.json "
                    "with provenance).")
    validate.add_argument("model", metavar="MODEL", help="a .onnx, .pt, .pth or .pt2 file")
    validate.add_argument("--data", required=True, metavar="DIR", help="the validation set folder")
    validate.add_argument("-o", "--out", required=True, metavar="RESULTS",
                          help="the results folder to write")
    _setting_options(validate, ("batch_size", "memory", "device"))
    validate.add_argument("--top-k", dest="top_k", type=_positive, default=None, metavar="K",
                          help="language models: keep each token's NLL and its K largest "
                               "log-probabilities in place of the logits (KL in compare)")
    validate.set_defaults(handler=_guarded(_run_validate), subparser=validate)

    compare = commands.add_parser(
        "compare", help="gate candidates against a reference (models or results folders)",
        description="Compare each CAND with REF (a model file or a results folder) on the "
                    "validation set, with the plugin's statistics: one row per candidate. Exit 0 "
                    "when every candidate ships, 1 when one does not, 2 usage, 3 data or results "
                    "errors.")
    compare.add_argument("reference", metavar="REF", help="reference model or results folder")
    compare.add_argument("candidates", metavar="CAND", nargs="+",
                         help="candidate models or results folders")
    compare.add_argument("--data", metavar="DIR", help="the validation set (labels, groups, "
                         "slices); default: the folder the results name")
    _setting_options(compare, COMPARE_TOLERANCE + COMPARE_EXECUTION + ("inconclusive",))
    for flag, what in (("--report", "the JSON report (docs/reports.md)"),
                       ("--markdown", "the Markdown summary"),
                       ("--junitxml", "a JUnit XML file, one testcase per candidate"),
                       ("--plot", "a forest plot (PNG) of every candidate's drop and interval")):
        compare.add_argument(flag, metavar="PATH", help=f"write {what} to PATH")
    compare.set_defaults(handler=_guarded(_run_compare), subparser=compare)


def _setting_options(parser: argparse.ArgumentParser, keys: tuple[str, ...]) -> None:
    """``--<key>`` options whose help, metavar and check are settings.SETTINGS' rows."""
    from pytest_quantguard.settings import BY_KEY

    for key in keys:
        setting = BY_KEY[key]
        shown_default = f" (default: {setting.default})" if setting.default is not None else ""
        parser.add_argument("--" + key.replace("_", "-"), dest=key, default=None,
                            metavar=setting.metavar or key.upper(),
                            type=_checked(setting.validate),
                            help=setting.help.replace("%", "%%") + shown_default)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number >= 1")
    return value


def _checked(validate: Callable[[Any], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return validate(text)
        except (ValueError, TypeError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _guarded(handler: Callable[[argparse.Namespace, argparse.ArgumentParser], int]
             ) -> Callable[[argparse.Namespace, argparse.ArgumentParser], int]:
    """A QuantGuardError (bad data, bad results, a missing backend) is exit 3 with one line."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        from pytest_quantguard.errors import QuantGuardError

        try:
            return handler(args, parser)
        except QuantGuardError as error:
            print(f"quantguard {args.command}: error: {error}", file=sys.stderr)
            return DATA_ERROR
        except OSError as error:  # a folder or report path that cannot be written
            print(f"quantguard {args.command}: error: {error.filename or ''}: "
                  f"{error.strerror or error}; choose another path", file=sys.stderr)
            return DATA_ERROR

    return run


def _run_export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import numpy as np

    from pytest_quantguard._files import write_atomically
    from pytest_quantguard.batching import auto_batch, first_sample_shapes, input_bytes
    from pytest_quantguard.data import ValidationSet
    from pytest_quantguard.results import EXPORTED_HASHES, output_file, sample_hashes
    from pytest_quantguard.settings import default

    dataset = ValidationSet.from_folder(args.data, given_by="--data")
    shapes = first_sample_shapes(dataset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / INPUTS_FILE).unlink(missing_ok=True)  # written last: without it, the export is unfinished
    files = {name: output_file(name) for name in shapes}
    arrays = {name: np.lib.format.open_memmap(out / files[name], mode="w+", dtype=dtype,
                                              shape=(dataset.n, *shape))
              for name, (shape, dtype) in shapes.items()}
    size = auto_batch(2 * input_bytes(shapes), default("memory"), dataset.n)
    hashes = np.lib.format.open_memmap(out / EXPORTED_HASHES, mode="w+", dtype=np.uint8,
                                       shape=(dataset.n, 32))
    dtypes = {name: dtype for name, (_, dtype) in shapes.items()}
    for batch in dataset.batches(size):
        for name, array in batch.inputs.items():
            arrays[name][batch.ids] = array
        hashes[batch.ids] = sample_hashes(batch.inputs, dtypes)
    hashes.flush()
    for array in arrays.values():
        array.flush()
    np.save(out / "ids.npy", np.arange(dataset.n, dtype=np.int64))
    document = {"format": INPUTS_FORMAT, "version": 1, "data_digest": dataset.digest,
                "n": dataset.n, "data": str(Path(args.data).resolve()), "ids": "ids.npy",
                "hashes": EXPORTED_HASHES,
                "inputs": [{"name": name, "file": files[name], "shape": list(shape),
                            "dtype": np.dtype(dtype).str} for name, (shape, dtype) in shapes.items()]}
    text = json.dumps(document, indent=2) + "\n"
    write_atomically(out / INPUTS_FILE, lambda stream: stream.write(text.encode()))
    print(f"{dataset.n} samples of {', '.join(shapes)} written to {out} (sha256 "
          f"{dataset.digest[:12]})")
    return 0


def _run_validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import numpy as np

    from pytest_quantguard.batching import choose_batch, first_sample_shapes
    from pytest_quantguard.cache import library_versions
    from pytest_quantguard.cli_workflow_lm import keep_top_k
    from pytest_quantguard.data import ValidationSet
    from pytest_quantguard.results import ResultsWriter
    from pytest_quantguard.runners import make_runner
    from pytest_quantguard.settings import make_execution

    execution = make_execution(batch_size=args.batch_size, memory=args.memory, device=args.device)
    dataset = ValidationSet.from_folder(args.data, given_by="--data")
    runner = make_runner(args.model, base_dir=Path.cwd(), device=execution.device)
    batch = choose_batch(execution.batch_size, execution.memory, dataset.n,
                         first_sample_shapes(dataset), [("model", runner)])
    run = batch.runner(runner)
    writer = ResultsWriter(args.out, np.arange(dataset.n))
    seconds = 0.0
    for each in dataset.batches(batch.pipe or batch.size):
        start = time.perf_counter()
        outputs = run(each.inputs)
        seconds += time.perf_counter() - start
        if args.top_k:  # (docs/results.md, "Language models: top-k log-probabilities")
            outputs = keep_top_k(outputs, each, args.top_k, dataset.task, writer.top_k)
        writer.add(each.ids, outputs)
        if sys.stderr.isatty():  # a progress line on a terminal, none in a log
            print(f"\r{runner.description}: {int(each.ids[-1]) + 1}/{dataset.n}", end="",
                  file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    provenance = {"runner": type(runner).__name__, "description": runner.description,
                  "data": str(Path(args.data).resolve()), "libraries": library_versions(),
                  **batch.record(), "ms_per_sample": 1000 * seconds / max(dataset.n, 1),
                  "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    writer.close(data_digest=dataset.digest, model={"path": str(Path(args.model)),
                                                    "sha256": runner.sha256},
                 provenance=provenance)
    kept = [name + (f" (per-token NLL, top-{writer.top_k[name]['k']} log-probabilities)"
                    if name in writer.top_k else "") for name in writer.outputs]
    print(f"{runner.description}: {dataset.n} samples, outputs {', '.join(kept)}, batch "
          f"{batch.size}, {provenance['ms_per_sample']:.3g} ms per sample -> {args.out}")
    return 0


def _run_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pytest_quantguard.cli_workflow_lm import kl_details, kl_text
    from pytest_quantguard.comparison import run
    from pytest_quantguard.data import ValidationSet
    from pytest_quantguard.results import Outputs, is_results
    from pytest_quantguard.settings import check_layer, default, make_execution, resolve_tolerance

    base = Path.cwd()
    models = [Outputs(each, base_dir=base) if is_results(base / each) else each
              for each in [args.reference, *args.candidates]]
    data = args.data or next((model.data_path for model in models
                              if isinstance(model, Outputs) and model.data_path), None)
    if data is None:
        parser.error("argument --data: required when no results folder names its data")
    given = {key: getattr(args, key) for key in COMPARE_TOLERANCE}
    tolerance = resolve_tolerance(None, ("call", check_layer(given)))
    execution = make_execution(resamples=args.bootstrap, seed=args.seed,
                               batch_size=args.batch_size, memory=args.memory, device=args.device,
                               base_dir=base)
    comparisons = run(models[0], models[1:], data, tolerance, execution)
    inconclusive = args.inconclusive or default("inconclusive")
    records = [comparison.to_dict() for comparison in comparisons]
    output = tolerance.output if tolerance.output is not None else \
        ValidationSet.from_folder(data, given_by="--data").manifest.get("output")
    for comparison, record, candidate in zip(comparisons, records, models[1:], strict=True):
        kl = kl_details(record, models[0], candidate, output)
        if kl is not None:
            record["details"]["kl"] = kl
        print(_row(comparison) + kl_text(kl))
    settings = {**{key: getattr(tolerance, key) for key in COMPARE_TOLERANCE},
                "bootstrap": execution.resamples, "seed": execution.seed,
                "batch_size": execution.batch_size, "inconclusive": inconclusive}
    write_reports(records, settings, inconclusive, report=args.report, markdown=args.markdown,
                  junitxml=args.junitxml, plot=args.plot)
    shipped = all(each.verdict.value == "ship" or (each.verdict.value == "inconclusive"
                                                   and inconclusive == "warn")
                  for each in comparisons)
    return 0 if shipped and not any(each.failed_checks for each in comparisons) else 1


def _row(comparison: Any) -> str:
    low, high = comparison.interval
    return (f"{comparison.name}: {comparison.verdict.value}  {comparison.metric} "
            f"{comparison.reference_score:.4g} -> {comparison.candidate_score:.4g}, drop "
            f"{comparison.drop:+.4g} [{low:+.4g}, {high:+.4g}] at {comparison.confidence:g}, "
            f"max_drop {comparison.max_drop:g}, n {comparison.n}, seed {comparison.seed}")


def write_reports(records: list[dict[str, Any]], settings: dict[str, Any], inconclusive: str, *,
                  report: str | Path | None = None, markdown: str | Path | None = None,
                  junitxml: str | Path | None = None, plot: str | Path | None = None,
                  markdown_tail: Sequence[str] = (), junit_cases: Sequence[Any] | None = None,
                  extra: dict[str, Any] | None = None) -> None:
    """The JSON report, the Markdown summary (also appended to $GITHUB_STEP_SUMMARY), the JUnit XML
    and the forest plot of ``records``, each where a path is given: the plugin's writers.
    ``markdown_tail``: lines after the Markdown report; ``junit_cases``: the testcases in place of
    one per record (``compare_case``); ``extra``: top-level keys of the JSON report."""
    import os

    from pytest_quantguard._files import write_atomically
    from pytest_quantguard.reports.markdown import markdown_report

    if report:
        from pytest_quantguard.reports.json_report import build_report, write_json

        write_json(Path(report), build_report(
            records, settings=settings, policy={},
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            host=socket.gethostname(), commit=None, extra=extra))
    text = markdown_report(records, inconclusive=inconclusive) + "".join(
        line + "\n" for line in markdown_tail)
    if markdown:
        write_atomically(markdown, lambda stream: stream.write((text + "\n").encode()))
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    if junitxml:
        from pytest_quantguard.reports.junit import compare_case, junit_xml

        cases = junit_cases if junit_cases is not None else \
            [compare_case(record, inconclusive) for record in records]
        write_atomically(junitxml, lambda stream: stream.write(junit_xml(cases)))
    if plot:
        from pytest_quantguard.reports.plot import save_plot

        save_plot(records, plot)
