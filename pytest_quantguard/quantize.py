"""Candidate models from onnxruntime's quantizers (docs/ladder.md, "quantguard quantize").

``quantize_model(model, calibration, schemes, out)`` writes ``OUT/<scheme>.onnx`` for each scheme
and ``OUT/quantize.json``. Every scheme starts from ``quant_pre_process``'s output; static INT8
calibrates on the calibration set's inputs, never on the gate's data: ``check_calibration``
refuses a calibration set that is the validation set (equal digests) or shares more than 1 % of
its rows (per-sample input hashes) and reports any overlap with its count.

onnxruntime, onnx and the quantizers are imported inside the functions that use them; importing
``onnxruntime.quantization``'s weight-only quantizer configures the root logger, which
``root_logger_kept`` undoes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard._files import shown
from pytest_quantguard.errors import MissingBackendError, QuantGuardError

SCHEMES = ("fp16", "int8-dynamic", "int8-static", "int8-static-per-channel", "int8-static-excluded",
           "int4-weight-only")
# The ladder's levels, least compressed first, and each level's nominal compression of the weights
# (docs/ladder.md, "The rungs")
LEVEL = {"fp16": 1, "int8-dynamic": 2, "int8-static": 2, "int8-static-per-channel": 2,
         "int8-static-excluded": 2,
         "int4-weight-only": 3}
NOMINAL_COMPRESSION = {1: 2, 2: 4, 3: 8}
MAX_OVERLAP = 0.01
MANIFEST = "quantize.json"
_BATCH = 64


def parse_schemes(text: str) -> tuple[str, ...]:
    """``fp16,int8-static`` -> the schemes, in the given order; ValueError names an unknown one."""
    schemes = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [scheme for scheme in schemes if scheme not in SCHEMES]
    if unknown or not schemes:
        raise ValueError(f"unknown scheme(s) {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(SCHEMES)} (comma-separated)")
    if len(set(schemes)) != len(schemes):
        raise ValueError(f"a scheme is named twice in {text!r}")
    return schemes


class SchemeSkipped(Exception):
    """A scheme that has nothing to do on this model (no layer to leave in float): no candidate is
    written and the reason is recorded (docs/ladder.md, "The rungs")."""


@dataclass(frozen=True)
class Overlap:
    """Validation rows whose inputs also appear in the calibration set."""

    count: int
    validation_n: int

    @property
    def share(self) -> float:
        return self.count / self.validation_n

    def line(self) -> str:
        return (f"{self.count} of {self.validation_n} validation rows ({100 * self.share:.2f}%) "
                "appear in the calibration set")


def check_calibration(calibration: Any, validation: Any, *, max_share: float = MAX_OVERLAP,
                      given_by: tuple[str, str] = ("--calibration", "--data")) -> Overlap:
    """Refuse calibration data that is the gate's data: equal digests, or more than ``max_share``
    of the validation rows among the calibration rows (docs/ladder.md, "Calibration data").
    ``given_by`` names the two arguments in the error."""
    from pytest_quantguard.results import input_hashes

    where = (f"{given_by[0]} {calibration.description} and {given_by[1]} "
             f"{validation.description}")
    if calibration.digest == validation.digest:
        raise QuantGuardError(f"{where} are the same data (equal digests): calibrating on the "
                              "gate's data biases its verdict; calibrate on a separate split")
    known = {row.tobytes() for row in input_hashes(calibration)}
    count = sum(row.tobytes() in known for row in input_hashes(validation))
    overlap = Overlap(count, validation.n)
    if overlap.share > max_share:
        raise QuantGuardError(f"{where}: {overlap.line()}, over the {100 * max_share:g}% allowed; "
                              "calibrating on the gate's data biases its verdict: take those rows "
                              "out of the calibration set")
    return overlap


@contextlib.contextmanager
def root_logger_kept() -> Iterator[None]:
    """Restore the root logger's level and handlers after onnxruntime's quantizers are imported
    (the weight-only quantizer's module calls ``logging.basicConfig(level=INFO)``)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


class CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over a ValidationSet's inputs, matched to the
    model's inputs by name, or by position when both have one."""

    def __init__(self, dataset: Any, model_inputs: Sequence[str]):
        names = list(dataset.input_names)
        if all(name in names for name in model_inputs):
            self._map = {name: name for name in model_inputs}
        elif len(model_inputs) == 1 and len(names) == 1:
            self._map = {model_inputs[0]: names[0]}
        else:
            raise QuantGuardError(
                f"--calibration {dataset.description}: its arrays {names} do not match the model's "
                f"inputs {list(model_inputs)}; name the arrays after the model's inputs")
        self._dataset = dataset
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        return {model: np.ascontiguousarray(batch.inputs[data], dtype=np.float32)
                if np.issubdtype(batch.inputs[data].dtype, np.floating) else batch.inputs[data]
                for model, data in self._map.items()}

    def rewind(self) -> None:
        self._batches = iter(self._dataset.batches(_BATCH))


def _onnx_modules() -> tuple[Any, Any]:
    try:
        import onnx
        with root_logger_kept():
            import onnxruntime.quantization as quantization
    except ImportError:
        raise MissingBackendError("onnxruntime and onnx", "onnx", "quantguard quantize") from None
    return onnx, quantization


def _fp16(onnx: Any, source: Path, out: Path, calibration: Any) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(out))


def _gemm_as_matmul(onnx: Any, source: Path, out: Path) -> Path:
    """Gemm -> MatMul (+ Add): MatMulNBits and DynamicQuantizeLinear + MatMulInteger apply to
    MatMul only."""
    with root_logger_kept():
        from onnxruntime.quantization.onnx_model import ONNXModel
    model = ONNXModel(onnx.load(str(source)))
    model.replace_gemm_with_matmul()
    onnx.save(model.model, str(out))
    return out


def _int8_dynamic(onnx: Any, source: Path, out: Path, calibration: Any) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    matmul = _gemm_as_matmul(onnx, source, out.with_suffix(".matmul.onnx"))
    quantize_dynamic(str(matmul), str(out), weight_type=QuantType.QInt8, reduce_range=True)


def _int8_static(onnx: Any, source: Path, out: Path, calibration: Any, *,
                 per_channel: bool = False, exclude: Sequence[str] = ()) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    inputs = [value.name for value in onnx.load(str(source)).graph.input]
    reader = CalibrationReader(calibration, inputs)
    # 7-bit weights (reduce_range): exact sums on x86 CPUs with or without VNNI
    quantize_static(str(source), str(out), reader, quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, reduce_range=True,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(exclude))


def _int8_per_channel(onnx: Any, source: Path, out: Path, calibration: Any) -> None:
    _int8_static(onnx, source, out, calibration, per_channel=True)


def _int8_excluded(onnx: Any, source: Path, out: Path, calibration: Any) -> list[str]:
    """Static INT8 with the worst layers left in float, chosen by diagnosing the static INT8 model
    on the calibration set -- never on the gate's data (docs/ladder.md, "The rungs")."""
    from pytest_quantguard.diagnosis.layers import diagnose
    from pytest_quantguard.diagnosis.remedies import worst_nodes
    from pytest_quantguard.runners.onnx import OnnxRunner

    probe = out.with_suffix(".probe.onnx")
    _int8_static(onnx, source, probe, calibration)
    diagnosis = diagnose(OnnxRunner(source), OnnxRunner(probe), calibration, seed=0)
    worst = [name for name in worst_nodes(list(diagnosis.get("layers") or ())) if name]
    if not worst:
        raise SchemeSkipped("the diagnosis on the calibration set found no layer to leave in float"
                            f" ({diagnosis.get('skipped') or 'no layer adds error'})")
    _int8_static(onnx, source, out, calibration, exclude=worst)
    return worst


def _named(onnx: Any, path: Path) -> None:
    """Give every unnamed node a name (``<op>_<index>``): nodes_to_exclude names nodes."""
    model = onnx.load(str(path))
    unnamed = [node for node in model.graph.node if not node.name]
    if unnamed:
        taken = {node.name for node in model.graph.node}
        for index, node in enumerate(model.graph.node):
            if not node.name and f"{node.op_type}_{index}" not in taken:
                node.name = f"{node.op_type}_{index}"
        onnx.save(model, str(path))


def _int4(onnx: Any, source: Path, out: Path, calibration: Any) -> None:
    with root_logger_kept():
        from onnxruntime.quantization import QuantFormat
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )
    matmul = _gemm_as_matmul(onnx, source, out.with_suffix(".matmul.onnx"))
    quantizer = MatMulNBitsQuantizer(onnx.load(str(matmul)), algo_config=DefaultWeightOnlyQuantConfig(
        block_size=32, is_symmetric=True, bits=4, quant_format=QuantFormat.QOperator))
    with root_logger_kept():
        quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)


_WRITERS = {"fp16": _fp16, "int8-dynamic": _int8_dynamic, "int8-static": _int8_static,
            "int8-static-per-channel": _int8_per_channel, "int8-static-excluded": _int8_excluded,
            "int4-weight-only": _int4}
# the operator each scheme must leave in the graph, or it quantized nothing
_SIGN = {"fp16": None, "int8-dynamic": "DynamicQuantizeLinear", "int8-static": "QuantizeLinear",
         "int8-static-per-channel": "QuantizeLinear", "int8-static-excluded": "QuantizeLinear",
         "int4-weight-only": "MatMulNBits"}


def _write_scheme(onnx: Any, model: Path, pre: Path, scheme: str, calibration: Any,
                  work: Path) -> tuple[Path, Any]:
    """One scheme's model in ``work`` and what its writer reports (the excluded nodes); a
    quantizer's failure or a graph left unquantized is a QuantGuardError naming the scheme."""
    from pytest_quantguard.runners import first_line

    written = work / f"{scheme}.onnx"
    try:
        with root_logger_kept():
            extra = _WRITERS[scheme](onnx, pre, written, calibration)
    except SchemeSkipped as skipped:
        return None, str(skipped)
    except QuantGuardError:
        raise
    except Exception as error:  # the quantizers' own errors
        raise QuantGuardError(f"{shown(model)}: the {scheme} quantizer failed ({first_line(error)});"
                              " leave this scheme out with --schemes") from None
    ops = {node.op_type for node in onnx.load(str(written)).graph.node}
    if _SIGN[scheme] is not None and _SIGN[scheme] not in ops:
        raise QuantGuardError(f"{shown(model)}: the {scheme} quantizer left nothing quantized "
                              f"(operators: {', '.join(sorted(ops))}); leave this scheme out with "
                              "--schemes")
    return written, extra


def quantize_model(model: str | Path, calibration: Any, schemes: Sequence[str], out: str | Path,
                   *, overlap: Overlap | None = None) -> dict[str, Any]:
    """Write ``OUT/<scheme>.onnx`` per scheme and ``OUT/quantize.json``; return the manifest.
    Nothing is written to OUT until every scheme has quantized."""
    model, out = Path(model), Path(out)
    if not model.is_file():
        raise QuantGuardError(f"{shown(model)}: no such model file; give the FP32 .onnx to quantize")
    onnx, quantization = _onnx_modules()
    reference_bytes = model.stat().st_size
    rows = []
    with tempfile.TemporaryDirectory(prefix="quantguard-quantize-") as work:
        pre = Path(work) / "pre.onnx"
        with root_logger_kept():
            quantization.quant_pre_process(str(model), str(pre))
        _named(onnx, pre)
        written = [_write_scheme(onnx, model, pre, scheme, calibration, Path(work))
                   for scheme in schemes]
        out.mkdir(parents=True, exist_ok=True)
        skipped = [{"scheme": scheme, "reason": extra}
                   for scheme, (path, extra) in zip(schemes, written, strict=True) if path is None]
        for scheme, (path, extra) in zip(schemes, written, strict=True):
            if path is None:
                continue
            target = out / path.name
            target.write_bytes(path.read_bytes())
            size = target.stat().st_size
            rows.append({"scheme": scheme, "file": target.name, "level": LEVEL[scheme],
                         "size_bytes": size, "compression": reference_bytes / size,
                         **({"excluded": extra} if extra else {})})
    manifest = {"model": str(model), "reference_size_bytes": reference_bytes,
                "calibration": {"digest": calibration.digest, "n": calibration.n,
                                "path": calibration.description},
                "overlap": None if overlap is None else {"count": overlap.count,
                                                         "validation_n": overlap.validation_n},
                "candidates": rows, "skipped": skipped}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
