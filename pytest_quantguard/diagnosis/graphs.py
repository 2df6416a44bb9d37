"""Matching a quantized ONNX graph to its float reference, tensor by tensor (docs/diagnosis.md,
"Formats matched").

A quantized layer is a node of the candidate that computes on quantized values: in a QDQ model a
node fed by a DequantizeLinear, in a QOperator model a QLinear* / *Integer / QGemm node, in a
weight-only model a MatMulNBits node. Each layer's activation inputs and its output are traced
through the quantize / dequantize / cast nodes around it to the reference's tensor of the same
name; integer tensors are dequantized with the scale and zero point that produced them. Only
numpy and onnx protos here: the models are run in ``layers.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# the output's (scale, zero point) input positions of QOperator nodes (onnx / com.microsoft specs)
OUTPUT_SCALE = {"QuantizeLinear": (1, 2), "QLinearConv": (6, 7), "QLinearMatMul": (6, 7),
                "QGemm": (7, 8), "QLinearAdd": (6, 7), "QLinearMul": (6, 7),
                "QLinearAveragePool": (3, 4), "QLinearGlobalAveragePool": (3, 4),
                "QLinearLeakyRelu": (3, 4), "QLinearSigmoid": (3, 4), "QLinearSoftmax": (3, 4)}
# the weight's (input, scale, zero point) positions: -1 where the op has none
WEIGHT_INPUTS = {"QLinearConv": (3, 4, 5), "QLinearMatMul": (3, 4, 5), "QGemm": (3, 4, 5),
                 "MatMulInteger": (1, -1, 3), "ConvInteger": (1, -1, 3),
                 "MatMulNBits": (1, 2, 3)}
# nodes an output passes through unchanged in meaning on its way to the reference's name
PASS_THROUGH = (*QDQ_OPS, "Cast")
SCALE_AND_BIAS = ("Mul", "Add")
SUFFIXES = ("_DequantizeLinear_Output", "_QuantizeLinear_Output", "_QuantizeLinear_Input",
            "_quantized", "_output_quantized", "_MatMul")


def quant_format(nodes: list[Any]) -> str | None:
    """"MatMulNBits", "QOperator", "QDQ" or None (nothing quantized), by the ops the graph holds."""
    ops = {node.op_type for node in nodes}
    if "MatMulNBits" in ops:
        return "MatMulNBits"
    if ops & set(WEIGHT_INPUTS) or any(op.startswith("QLinear") for op in ops):
        return "QOperator"
    if "DequantizeLinear" in ops:
        return "QDQ"
    return None


# ops that move or select values without arithmetic: in a QDQ graph they add no error of their own
MOVING = ("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "MaxPool", "Concat", "Slice",
          "Split", "Gather", "Pad", "Identity", "Expand", "Tile")


def is_layer(node: Any, producers: Mapping[str, Any], fmt: str) -> bool:
    """Whether ``node`` is one of the candidate's quantized layers (nodes that only move values
    are not layers)."""
    if fmt == "QDQ":
        return node.op_type not in (*QDQ_OPS, *MOVING) and any(
            getattr(producers.get(name), "op_type", "") == "DequantizeLinear" for name in node.input)
    return node.op_type in WEIGHT_INPUTS or (node.op_type.startswith("QLinear")
                                             and node.op_type != "QLinearConcat")


def stripped(name: str, known: set[str], suffixes: tuple[str, ...] = SUFFIXES) -> str | None:
    """``name`` itself or without one quantizer suffix, if the reference has that name."""
    if name in known:
        return name
    for suffix in suffixes:
        if name.endswith(suffix) and name[:-len(suffix)] in known:
            return name[:-len(suffix)]
    return None


@dataclass
class Graph:
    """A graph's nodes indexed by the tensors they produce and consume, and its initializers."""

    nodes: list[Any]
    producers: dict[str, Any]
    consumers: dict[str, list[Any]]
    initializers: dict[str, np.ndarray]

    @classmethod
    def of(cls, model: Any) -> Graph:
        from onnx import numpy_helper

        producers, consumers = {}, {}
        nodes = list(model.graph.node)  # the same node objects in every index (layers.py keys by id)
        for node in nodes:
            for name in node.output:
                producers[name] = node
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        initializers = {each.name: numpy_helper.to_array(each) for each in model.graph.initializer}
        return cls(nodes, producers, consumers, initializers)

    def trace_input(self, name: str, known: set[str]) -> str | None:
        """The reference's name of an activation input: back through Q / DQ / cast producers."""
        for _ in range(8):
            found = stripped(name, known)
            if found is not None:
                return found
            node = self.producers.get(name)
            if node is None or node.op_type not in (*PASS_THROUGH, "DynamicQuantizeLinear"):
                return None
            name = node.input[0]
        return None

    def trace_output(self, name: str, known: set[str]) -> tuple[str | None, str, str]:
        """(the reference's name of a layer's output, the candidate tensor holding it, the
        QuantizeLinear the next layers read it through, or ""): forward through Q / DQ / cast
        nodes and the scale Mul or bias Add that weight-only and dynamic formats put after a
        MatMul, to the reference's own name; else (QOperator's integer outputs) the name without
        its quantizer suffix. The output's own quantization is applied to the value where the
        layer's output enters it (docs/diagnosis.md, "The measure")."""
        path = [name]
        for _ in range(8):
            following = self.consumers.get(path[-1], [])
            if path[-1] in known or len(following) != 1 or \
                    following[0].op_type not in (*PASS_THROUGH, *SCALE_AND_BIAS):
                break
            path.append(following[0].output[0])
        if path[-1] not in known:
            return stripped(name, known), name, ""
        for tensor in path:
            following = self.consumers.get(tensor, [])
            if len(following) == 1 and following[0].op_type == "QuantizeLinear":
                return path[-1], tensor, following[0].name
        following = self.consumers.get(path[-1], [])
        quantizer = following[0].name if len(following) == 1 and \
            following[0].op_type == "QuantizeLinear" else ""
        return path[-1], path[-1], quantizer

    def fake_quantized(self, value: np.ndarray, quantizer: str) -> np.ndarray:
        """``value`` through the QuantizeLinear named ``quantizer`` and back (its ReLU included:
        the clip at the zero point)."""
        node = next(each for each in self.nodes if each.name == quantizer)
        scale, zero = self.tensor(node, 1, {}), self.tensor(node, 2, {})
        if scale is None:
            return value
        zero = np.zeros((), np.uint8) if zero is None else zero
        info = np.iinfo(zero.dtype)
        levels = np.clip(np.round(value / scale) + zero.astype(np.float32), info.min, info.max)
        return ((levels - zero.astype(np.float32)) * scale).astype(np.float32)

    def entry(self, node: Any, index: int) -> tuple[str, Any, int]:
        """Where a layer's activation input enters its quantized path: (the tensor, the node that
        reads it, at which input), back through Q / DQ / cast nodes."""
        name, reader = node.input[index], (node, index)
        for _ in range(8):
            producer = self.producers.get(name)
            if producer is None or producer.op_type not in (*PASS_THROUGH, "DynamicQuantizeLinear"):
                break
            name, reader = producer.input[0], (producer, 0)
        return name, reader[0], reader[1]

    def scale_of(self, name: str, values: Mapping[str, np.ndarray]) -> tuple[Any, Any]:
        """(scale, zero point) of an integer tensor, from the node that produced it."""
        node = self.producers.get(name)
        if node is None:
            return None, None
        if node.op_type == "DynamicQuantizeLinear":
            return values.get(node.output[1]), values.get(node.output[2])
        if node.op_type in OUTPUT_SCALE:
            at = OUTPUT_SCALE[node.op_type]
            return self.tensor(node, at[0], values), self.tensor(node, at[1], values)
        if node.op_type in MOVING and node.input:
            return self.scale_of(node.input[0], values)
        return None, None

    def float_value(self, name: str, values: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """A tensor as the float numbers it stands for: integers dequantized with the scale and
        zero point of the node that produced them (None: no known scale)."""
        value = values.get(name, self.initializers.get(name))
        if value is None or np.issubdtype(value.dtype, np.floating):
            return None if value is None else value.astype(np.float32)
        scale, zero = self.scale_of(name, values)
        if scale is None:
            return None
        zero = np.zeros_like(scale) if zero is None else zero
        return ((value.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)

    def tensor(self, node: Any, index: int, values: Mapping[str, np.ndarray]):
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        return values.get(name, self.initializers.get(name))


def dequantized_weight(node: Any, graph: Graph) -> tuple[str, np.ndarray] | None:
    """(the quantized weight's name, its float values) of a QOperator or MatMulNBits node."""
    if node.op_type not in WEIGHT_INPUTS:
        return None
    where, scale_at, zero_at = WEIGHT_INPUTS[node.op_type]
    name = node.input[where] if where < len(node.input) else ""
    weight = graph.initializers.get(name)
    if weight is None:
        return None
    zero = graph.tensor(node, zero_at, {}) if zero_at >= 0 else None
    if node.op_type == "MatMulNBits":
        scale = graph.initializers.get(node.input[scale_at])
        return (name, _nbits(node, weight, scale, zero)) if scale is not None else None
    scale = graph.tensor(node, scale_at, {}) if scale_at >= 0 else \
        graph.initializers.get(_base(name) + "_scale")
    if scale is None:
        return None
    zero = np.zeros_like(scale) if zero is None else zero
    shape = [1] * weight.ndim
    if scale.size > 1:  # per channel: the output channels, axis 0 (Conv) or the last (MatMul)
        axis = 0 if node.op_type in ("QLinearConv", "ConvInteger") else weight.ndim - 1
        shape[axis] = scale.size
    return name, ((weight.astype(np.float32) - zero.astype(np.float32).reshape(shape))
                  * scale.astype(np.float32).reshape(shape))


def _nbits(node: Any, packed: np.ndarray, scale: np.ndarray, zero: np.ndarray | None) -> np.ndarray:
    """MatMulNBits' B ([N, blocks, bytes] of little-endian packed values) as a float [N, K]."""
    attributes = {each.name: each.i for each in node.attribute}
    bits, block, k, n = (attributes["bits"], attributes["block_size"], attributes["K"],
                         attributes["N"])
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    values = (packed[..., None] >> shifts) & ((1 << bits) - 1)  # [N, blocks, bytes, per_byte]
    values = values.reshape(n, -1, block).astype(np.float32)
    blocks = values.shape[1]
    if zero is None or zero.dtype != np.uint8:
        zeros = np.full((n, blocks), float(2 ** (bits - 1)), np.float32) if zero is None else \
            zero.reshape(n, blocks).astype(np.float32)
    else:  # packed like B
        zeros = ((zero.reshape(n, -1)[..., None] >> shifts) & ((1 << bits) - 1)).reshape(n, -1)
        zeros = zeros[:, :blocks].astype(np.float32)
    dequantized = (values - zeros[..., None]) * scale.reshape(n, blocks)[..., None]
    return dequantized.reshape(n, -1)[:, :k]


def _base(name: str) -> str:
    return name[:-len("_quantized")] if name.endswith("_quantized") else name


def float_weight_name(name: str, known: Mapping[str, np.ndarray]) -> str | None:
    """The reference's initializer a quantized weight came from (``6.weight_Transposed_Q4`` ->
    ``6.weight``)."""
    base = _base(name)
    for suffix in ("_Q2", "_Q4", "_Q8", "_DequantizeLinear_Output"):
        base = base[:-len(suffix)] if base.endswith(suffix) else base
    for candidate in (base, base.removesuffix("_Transposed")):
        if candidate in known:
            return candidate
    return None


def relative_error(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """||candidate - reference|| / ||reference|| (None: shapes differ); a transposed candidate
    (a Gemm's weight turned into a MatMul's) is compared transposed back."""
    if reference.shape != candidate.shape:
        if reference.ndim == 2 and reference.shape == candidate.T.shape:
            candidate = candidate.T
        else:
            return None
    reference = reference.astype(np.float32, copy=False)
    difference = candidate.astype(np.float32, copy=False) - reference
    norm = float(np.sqrt(np.square(reference).sum(dtype=np.float64)))
    error = float(np.sqrt(np.square(difference).sum(dtype=np.float64)))
    return error / max(norm, np.finfo(np.float32).tiny)


def quiet_weight_matching(reference_path: str, candidate_path: str) -> dict[str, dict[str, np.ndarray]]:
    """onnxruntime's ``qdq_loss_debug.create_weight_matching`` (reference weight name -> float and
    dequantized values of a QDQ candidate), its log lines about unmatched tensors silenced."""
    import logging

    from onnxruntime.quantization.qdq_loss_debug import create_weight_matching

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        return create_weight_matching(reference_path, candidate_path)
    finally:
        root.setLevel(level)
