"""Risk notes: what about the two models makes post-training quantization fragile, said next to
every comparison (docs/risks.md). Each note is builtins:
``{"kind", "model": "reference"|"candidate", "text", ...}``. A model is inspected once per run,
cached by its sha256: ONNX files are read from the wire format (``onnx_weights``), torch modules
through their parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard.batching import DYNAMIC_NOTE
from pytest_quantguard.diagnosis.onnx_weights import Node, Tensor, read_graph, values

KINDS = ("small_model", "regression", "outlier_weights", "int4_non_lm", "dynamic_quant",
         "fp16_on_cpu")
# Below this many parameters a network has little redundancy to absorb the rounding
# (docs/risks.md, "Small models").
SMALL_MODEL = 1_000_000
# The outlier statistic: max|w| / the OUTLIER_PERCENTILE-th percentile of |w|, on weight tensors
# of at least OUTLIER_MIN_SIZE values; a tensor is noted above OUTLIER_RATIO (chosen on public
# trained weights: docs/risks.md, "Outlier weights").
OUTLIER_PERCENTILE = 99.9
OUTLIER_MIN_SIZE = 4096
OUTLIER_RATIO = 8.0
SHOWN_OUTLIERS = 5  # notes for the worst tensors; the rest are counted in the last one
# Said on every regression comparison (docs/risks.md, "Regression").
REGRESSION_CAUTION = ("post-training quantization is fragile on regression, where subtle numerical "
                      "precision matters: check the errors on the extremes of the target range, "
                      "not only the mean, before shipping")
LOW_BIT_TEXT = "INT4 is for LLMs; for vision use INT8 + pruning"
# The candidate-side names of a quantized weight: QDQ and QOperator keep the float name plus
# "_quantized", the dynamic quantizer and MatMulNBits transpose first ("_Transposed") and
# MatMulNBits ends in "_Q4" (docs/risks.md, "Outlier weights").
QUANTIZED_NAME = re.compile(r"(_Transposed)?(_quantized|_Q\d+)$")
FLOAT_TYPES = (1, 10, 11, 16)  # onnx TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
WEIGHT_TYPES = (*FLOAT_TYPES, 2, 3, 4, 5, 6, 21, 22)  # + (U)INT8, (U)INT16, INT32, (U)INT4
LOW_BIT_TYPES = {21: "UINT4", 22: "INT4", 25: "UINT2", 26: "INT2"}
QLINEAR_WEIGHT = {"QLinearConv": 3, "QLinearMatMul": 3, "QGemm": 3}  # weight; its scale follows


@dataclass
class Facts:
    """What one model's file says: its parameter count, its weight outliers (float models), how
    each quantized weight was quantized (candidates) and its lowest weight bit width."""

    parameters: int | None = None
    outliers: list[dict[str, Any]] = field(default_factory=list)
    quantized: dict[str, dict[str, Any]] = field(default_factory=dict)  # float name -> how
    low_bit: str | None = None  # e.g. "MatMulNBits bits=2"
    onnx: bool = False  # an ONNX file: a weight missing from ``quantized`` stayed in float


INSPECTED: dict[str, Facts] = {}  # sha256 -> Facts: each model is read once per process


def risk_notes(reference: Any, candidate: Any, *, task: str, metric_task: str,
               batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Every risk note of one comparison, in ``KINDS`` order."""
    ours, theirs = inspect(reference), inspect(candidate)
    notes: list[dict[str, Any]] = []
    counted = [(role, facts) for role, facts in (("reference", ours), ("candidate", theirs))
               if facts is not None and facts.parameters is not None]
    if counted and counted[0][1].parameters < SMALL_MODEL:
        role, facts = counted[0]
        notes.append({"kind": "small_model", "model": role, "parameters": facts.parameters,
                      "text": f"a small model ({facts.parameters:,} parameters, under "
                              f"{SMALL_MODEL:,}): little redundancy absorbs the rounding, so "
                              "post-training quantization often costs accuracy; prefer QAT"})
    if "regression" in (task, metric_task):
        notes.append({"kind": "regression", "model": "candidate", "text": REGRESSION_CAUTION})
    if ours is not None:
        notes += outlier_notes(ours, theirs)
    if theirs is not None and theirs.low_bit and "language-model" not in (task, metric_task):
        notes.append({"kind": "int4_non_lm", "model": "candidate", "format": theirs.low_bit,
                      "text": f"{theirs.low_bit} weights on a {metric_task or task} task: "
                              f"{LOW_BIT_TEXT}"})
    dependent = batch.get("batch_dependent", ())
    for role, runner in (("reference", reference), ("candidate", candidate)):
        if role in dependent or getattr(runner, "dynamic_quantization", False):
            ops = getattr(runner, "dynamic_ops", ()) or ("torch.ao.nn.quantized.dynamic",)
            notes.append({"kind": "dynamic_quant", "model": role,
                          "text": DYNAMIC_NOTE.format(ops=", ".join(ops))})
    for role, runner in (("reference", reference), ("candidate", candidate)):
        if getattr(runner, "fp16_on_cpu", False):
            from pytest_quantguard.runners.onnx import FP16_ON_CPU_NOTE

            notes.append({"kind": "fp16_on_cpu", "model": role, "text": FP16_ON_CPU_NOTE})
    return notes


def outlier_notes(reference: Facts, candidate: Facts | None) -> list[dict[str, Any]]:
    """One note per reference weight tensor over OUTLIER_RATIO (the worst SHOWN_OUTLIERS), with
    how the candidate quantized it."""
    found = sorted(reference.outliers, key=lambda each: -each["ratio"])
    notes = []
    for each in found[:SHOWN_OUTLIERS]:
        how = None if candidate is None else candidate.quantized.get(each["tensor"])
        granularity = how["granularity"] if how else \
            "not quantized" if candidate is not None and candidate.onnx else None
        said = {None: "the candidate's quantization of it is unknown",
                "not quantized": "the candidate keeps it in float",
                "per-tensor": "the candidate quantized it per-tensor, so this one value sets the "
                              "whole tensor's scale: quantize per-channel",
                }.get(granularity, f"the candidate quantized it {granularity}, so it sets only "
                                   "its own channel's (block's) scale")
        notes.append({"kind": "outlier_weights", "model": "reference", **each,
                      "quantization": granularity,
                      "quantized_tensor": how["tensor"] if how else None,
                      "text": f"outlier weight in {each['tensor']!r} (node {each['node']!r}): "
                              f"|w| at flat index {each['index']} is {each['ratio']:.1f}x the "
                              f"{OUTLIER_PERCENTILE:g}th percentile of |w| (noted above "
                              f"{OUTLIER_RATIO:g}x); {said}"
                              + (f" ({len(found) - SHOWN_OUTLIERS} more tensors over the "
                                 "threshold)" if len(found) > SHOWN_OUTLIERS
                                 and each is found[SHOWN_OUTLIERS - 1] else "")})
    return notes


def outlier_ratio(values: np.ndarray) -> tuple[float, int]:
    """max|w| / the OUTLIER_PERCENTILE-th percentile of |w|, and the flat index of the largest
    |w| (docs/risks.md, "Outlier weights"); inf where the percentile is 0 and max|w| is not."""
    flat = np.abs(np.asarray(values, dtype=np.float64).ravel())
    index = int(np.argmax(flat))
    spread = float(np.percentile(flat, OUTLIER_PERCENTILE))
    if spread == 0.0:
        return (0.0 if flat[index] == 0.0 else float("inf")), index
    return float(flat[index] / spread), index


def inspect(runner: Any) -> Facts | None:
    """The model's facts, once per sha256; None for a model whose weights are not readable
    (callables, stored results)."""
    sha256 = getattr(runner, "sha256", None)
    path = getattr(runner, "path", None)
    module = getattr(runner, "module", None)
    onnx_file = isinstance(path, str) and path.endswith(".onnx") and Path(path).is_file()
    if sha256 is None or not (onnx_file or hasattr(module, "named_parameters")):
        return None
    if sha256 not in INSPECTED:
        INSPECTED[sha256] = onnx_facts(Path(path)) if onnx_file else torch_facts(module)
    return INSPECTED[sha256]


def torch_facts(module: Any) -> Facts:
    """A torch module's parameter count and its weight outliers (parameters of 2 or more dims)."""
    facts = Facts(parameters=0)
    for name, parameter in module.named_parameters():
        facts.parameters += int(parameter.numel())
        if parameter.dim() >= 2 and parameter.is_floating_point():
            _add_outlier(facts, name, name.rpartition(".")[0] or name,
                         parameter.detach().float().cpu().numpy())
    return facts


def onnx_facts(path: Path) -> Facts:
    """An ONNX model's weight count, float weight outliers, quantized weights and bit widths."""
    graph = read_graph(path)
    if graph is None:
        return Facts()
    consumers: dict[str, Node] = {}
    for node in graph.nodes:
        for name in node.inputs:
            consumers.setdefault(name, node)
    facts = Facts(parameters=0, onnx=True)
    side = _scale_inputs(graph.nodes)  # scales and zero points are not parameters
    for name, tensor in graph.tensors.items():
        if tensor.data_type in WEIGHT_TYPES and name not in side:
            facts.parameters += tensor.size
        user = consumers.get(name)
        if tensor.data_type in FLOAT_TYPES and len(tensor.dims) >= 2 and user is not None \
                and tensor.size >= OUTLIER_MIN_SIZE:
            found = values(tensor, graph.folder)
            if found is not None:
                _add_outlier(facts, name, user.name or user.op_type, found)
        if tensor.data_type in LOW_BIT_TYPES:
            facts.low_bit = facts.low_bit or f"{LOW_BIT_TYPES[tensor.data_type]} weights"
    for node in graph.nodes:
        _read_quantized(node, graph.tensors, facts)
    return facts


def _scale_inputs(nodes: list[Node]) -> set[str]:
    """The names of the scale and zero-point inputs of the graph's quantization nodes."""
    side = set()
    for node in nodes:
        if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
            side.update(node.inputs[1:])
        elif node.op_type in QLINEAR_WEIGHT:
            side.update(node.inputs[index] for index in (1, 2, 4, 5, 6, 7)
                        if index < len(node.inputs))
        elif node.op_type == "MatMulNBits":  # its packed weight is counted as K x N values
            side.update(node.inputs[1:])
    return side


def _read_quantized(node: Node, tensors: dict[str, Tensor], facts: Facts) -> None:
    """How ``node`` quantizes a weight tensor it reads: per-tensor, per-channel or per-block,
    recorded under the weight's float name."""
    inputs, ints = node.inputs, node.ints
    if node.op_type == "MatMulNBits" and len(inputs) > 1:
        bits, block = ints.get("bits", 4), ints.get("block_size")
        if bits <= 4:
            facts.low_bit = facts.low_bit or f"MatMulNBits bits={bits}"
        facts.parameters += ints.get("K", 0) * ints.get("N", 0)  # packed bytes under-count
        _record(facts, inputs[1], node, f"per-block (block_size {block}, {bits} bits)")
        return
    if node.op_type == "DequantizeLinear" and inputs and inputs[0] in tensors:
        weight, scale = inputs[0], inputs[1] if len(inputs) > 1 else ""
        if ints.get("block_size", 0) > 0:
            _record(facts, weight, node, f"per-block (block_size {ints['block_size']})")
            return
    elif node.op_type in QLINEAR_WEIGHT and len(inputs) > 4 and inputs[3] in tensors:
        weight, scale = inputs[3], inputs[4]
    elif node.op_type in ("MatMulInteger", "ConvInteger") and len(inputs) > 1 \
            and inputs[1] in tensors:
        weight = inputs[1]
        scale = QUANTIZED_NAME.sub("", weight) + ("_Transposed" if "_Transposed" in weight
                                                  else "") + "_scale"
    else:
        return
    size = tensors[scale].size if scale in tensors else 1
    _record(facts, weight, node, "per-channel" if size > 1 else "per-tensor")


def _record(facts: Facts, weight: str, node: Node, granularity: str) -> None:
    facts.quantized[QUANTIZED_NAME.sub("", weight)] = {
        "tensor": weight, "node": node.name or node.op_type, "granularity": granularity}


def _add_outlier(facts: Facts, name: str, node: str, values: np.ndarray) -> None:
    if values.size < OUTLIER_MIN_SIZE:
        return
    ratio, index = outlier_ratio(values)
    if ratio > OUTLIER_RATIO:
        facts.outliers.append({"tensor": name, "node": node, "index": index,
                               "ratio": round(ratio, 2)})
