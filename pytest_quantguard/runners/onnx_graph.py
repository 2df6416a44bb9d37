"""An ONNX model's memory per sample, estimated from its graph (docs/models.md, "Batch size").

Read from the protobuf wire format like ``onnx_scan`` (no onnx package): the main graph's inputs,
outputs, ``value_info`` shapes and nodes in order. A value's bytes per sample are its shape without
the batch dimension times its element size; symbolic dimensions are bound from the data's
shapes where a model input names them. Values with no known shape (no ``value_info``, or a
dimension nothing binds) are sized like the largest known per-sample value, unless nothing they
are computed from depends on the batch (shape arithmetic). The activations are the peak of the
intermediate values alive at once as the nodes run in order (``batching.peak_live_bytes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pytest_quantguard.batching import Footprint, SampleShapes, peak_live_bytes
from pytest_quantguard.runners.onnx_scan import ELEMENT_BYTES, Malformed, fields

Dim = int | str | None  # a dim_value, a dim_param, or unknown
# Operators whose output does not grow with the batch even when their input does.
BATCH_FREE_OPS = frozenset({"Shape", "Size"})


@dataclass
class GraphOutline:
    """The main graph, as far as memory goes: value name -> (element type, dims), and the nodes."""

    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    types: dict[str, tuple[int, list[Dim]]] = field(default_factory=dict)
    nodes: list[tuple[str, list[str], list[str]]] = field(default_factory=list)  # op, ins, outs
    initializers: set[str] = field(default_factory=set)


def read_outline(path: Path) -> GraphOutline | None:
    """The main graph's outline, or None when the file cannot be read as ONNX (the runner's own
    checks report that)."""
    outline = GraphOutline()
    try:
        for number, wire, value in fields(memoryview(path.read_bytes())):
            if number == 7 and wire == 2:  # ModelProto.graph
                _read_graph(value, outline)
    except (OSError, Malformed, UnicodeDecodeError):
        return None
    return outline


def _read_graph(graph: memoryview, outline: GraphOutline) -> None:
    # GraphProto: node (1), initializer (5), input (11), output (12), value_info (13)
    for number, wire, value in fields(graph):
        if wire != 2:
            continue
        if number == 1:
            outline.nodes.append(_read_node(value))
        elif number == 5:
            outline.initializers.update(bytes(text).decode() for inner, kind, text in fields(value)
                                        if inner == 8 and kind == 2)
        elif number in (11, 12, 13):
            name, typed = _read_value_info(value)
            if typed is not None:
                outline.types[name] = typed
            if number == 11:
                outline.inputs.append(name)
            elif number == 12:
                outline.outputs.append(name)


def _read_node(node: memoryview) -> tuple[str, list[str], list[str]]:
    """NodeProto: input (1), output (2), op_type (4)."""
    op, inputs, outputs = "", [], []
    for number, wire, value in fields(node):
        if wire == 2 and number in (1, 2, 4):
            text = bytes(value).decode()
            if number == 1:
                inputs.append(text)
            elif number == 2:
                outputs.append(text)
            else:
                op = text
    return op, inputs, outputs


def _read_value_info(info: memoryview) -> tuple[str, tuple[int, list[Dim]] | None]:
    """ValueInfoProto: name (1), type (2) -> TypeProto.tensor_type (1) -> elem_type (1), shape (2)
    -> dim (1) -> dim_value (1) | dim_param (2)."""
    name, typed = "", None
    for number, wire, value in fields(info):
        if number == 1 and wire == 2:
            name = bytes(value).decode()
        elif number == 2 and wire == 2:
            for inner, kind, tensor in fields(value):
                if inner == 1 and kind == 2:
                    typed = _read_tensor_type(tensor)
    return name, typed


def _read_tensor_type(tensor: memoryview) -> tuple[int, list[Dim]] | None:
    elem, dims, shaped = 0, [], False
    for number, wire, value in fields(tensor):
        if number == 1 and wire == 0:
            elem = value
        elif number == 2 and wire == 2:
            shaped = True
            for inner, kind, dim in fields(value):
                if inner == 1 and kind == 2:
                    dims.append(_read_dim(dim))
    return (elem, dims) if shaped else None


def _read_dim(dim: memoryview) -> Dim:
    for number, wire, value in fields(dim):
        if number == 1 and wire == 0:
            return value
        if number == 2 and wire == 2:
            return bytes(value).decode()
    return None


def footprint(outline: GraphOutline, shapes: SampleShapes) -> Footprint | None:
    """The model's outputs and activations per sample for data of ``shapes`` (per-sample shape and
    dtype by input name, matched by name or, for one input each, by position); None when the
    graph says nothing usable."""
    feeds = [name for name in outline.inputs if name not in outline.initializers]
    if not feeds or feeds[0] not in outline.types:
        return None
    batch = outline.types[feeds[0]][1][0] if outline.types[feeds[0]][1] else None
    bound = _bind(outline, feeds, shapes)
    sizes = {name: _bytes(elem, dims, batch, bound) for name, (elem, dims) in outline.types.items()}
    known = [size for size in sizes.values() if size]
    fallback = max(known, default=0)
    scaled = set(feeds)
    for op, inputs, outputs in outline.nodes:
        if op not in BATCH_FREE_OPS and scaled.intersection(inputs):
            scaled.update(outputs)
    ends = {*feeds, *outline.outputs}
    live = {name: (size if size is not None else fallback) if name in scaled else 0
            for name, size in ((name, sizes.get(name)) for _, _, outs in outline.nodes
                               for name in outs) if name not in ends}
    outputs = sum(sizes.get(name) if sizes.get(name) is not None else fallback
                  for name in outline.outputs)
    activations = peak_live_bytes([(ins, outs) for _, ins, outs in outline.nodes], live, [], [])
    return Footprint(int(outputs), int(activations))


def _bind(outline: GraphOutline, feeds: list[str], shapes: SampleShapes) -> dict[str, int]:
    """Symbolic dimension name -> its size in the data (the batch dimension left out)."""
    pairs = ([(name, shapes[name]) for name in feeds if name in shapes] if
             any(name in shapes for name in feeds) else
             [(feeds[0], next(iter(shapes.values())))] if len(feeds) == len(shapes) == 1 else [])
    bound: dict[str, int] = {}
    for name, (shape, _) in pairs:
        dims = outline.types.get(name, (0, []))[1]
        for dim, size in zip(dims[1:], shape, strict=False):
            if isinstance(dim, str) and dim:
                bound.setdefault(dim, int(size))
    return bound


def _bytes(elem: int, dims: list[Dim], batch: Dim, bound: Mapping[str, int]) -> int | None:
    """Bytes per sample of a value whose first dimension is the batch's; 0 for one that does not
    grow with the batch; None when a dimension is unknown."""
    if not dims or batch is None or dims[0] != batch:
        return 0 if dims and isinstance(dims[0], int) and dims[0] != batch else None
    sizes = [dim if isinstance(dim, int) else bound.get(dim or "") for dim in dims[1:]]
    if any(size is None for size in sizes):
        return None
    return int(np.prod(sizes, dtype=np.int64)) * ELEMENT_BYTES.get(elem, 4)
