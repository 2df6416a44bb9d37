"""An ONNX model's main graph as far as the risk notes need it: its nodes (op, name, inputs,
integer and tensor attributes) and its weight tensors (initializers and Constant values), read
straight from the protobuf wire format like ``runners.onnx_scan`` (the onnx package is not a
dependency of the ``onnx`` extra). A tensor's values are read only when asked for
(docs/risks.md, "Outlier weights")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pytest_quantguard.runners.onnx_scan import Malformed, fields

# TensorProto data types whose values are read: FLOAT, FLOAT16, DOUBLE, BFLOAT16.
FLOAT_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64, 16: np.uint16}
BFLOAT16 = 16


@dataclass
class Tensor:
    """One TensorProto: name, type, dims and where its values are."""

    name: str = ""
    data_type: int = 0
    dims: list[int] = field(default_factory=list)
    raw: memoryview | None = None  # raw_data (9)
    floats: memoryview | None = None  # float_data (4) or double_data (10), packed
    halves: list[int] = field(default_factory=list)  # int32_data (5): FLOAT16/BFLOAT16 bits
    external: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64))


@dataclass
class Node:
    op_type: str = ""
    name: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    ints: dict[str, int] = field(default_factory=dict)  # integer attributes
    tensor: Tensor | None = None  # a Constant's ``value``


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    tensors: dict[str, Tensor] = field(default_factory=dict)  # initializers and Constants
    folder: Path = Path(".")


def read_graph(path: Path) -> Graph | None:
    """The main graph, or None when the file cannot be read as ONNX (the runner says why)."""
    graph = Graph(folder=path.parent)
    try:
        for number, wire, value in fields(memoryview(path.read_bytes())):
            if number == 7 and wire == 2:  # ModelProto.graph
                _read_graph(value, graph)
    except (OSError, Malformed, UnicodeDecodeError):
        return None
    for node in graph.nodes:
        if node.op_type == "Constant" and node.tensor is not None and node.outputs:
            graph.tensors[node.outputs[0]] = node.tensor  # paddle2onnx keeps weights here
    return graph


def values(tensor: Tensor, folder: Path) -> np.ndarray | None:
    """A float tensor's values as float64 (None for other types or unreadable data)."""
    dtype = FLOAT_DTYPES.get(tensor.data_type)
    if dtype is None:
        return None
    if tensor.external:  # the runner's scan has checked the file is inside the model's folder
        offset, length = int(tensor.external.get("offset", 0)), tensor.external.get("length")
        size = int(length) if length else tensor.size * np.dtype(dtype).itemsize
        with open(folder / tensor.external.get("location", ""), "rb") as data:
            data.seek(offset)
            flat = np.frombuffer(data.read(size), dtype=dtype)
    elif tensor.raw is not None:
        flat = np.frombuffer(tensor.raw, dtype=dtype)
    elif tensor.floats is not None:
        flat = np.frombuffer(tensor.floats, dtype=np.float64 if dtype == np.float64 else np.float32)
    elif tensor.halves:
        flat = np.array(tensor.halves, dtype=np.uint16).view(
            np.uint16 if tensor.data_type == BFLOAT16 else np.float16)
    else:
        return None
    if tensor.data_type == BFLOAT16:  # the top half of a float32
        flat = (flat.astype(np.uint32) << 16).view(np.float32)
    return flat.astype(np.float64) if flat.size == tensor.size else None


def _read_graph(buffer: memoryview, graph: Graph) -> None:
    # GraphProto: node (1), initializer (5)
    for number, wire, value in fields(buffer):
        if number == 1 and wire == 2:
            graph.nodes.append(_read_node(value))
        elif number == 5 and wire == 2:
            tensor = _read_tensor(value)
            graph.tensors[tensor.name] = tensor


def _read_node(buffer: memoryview) -> Node:
    # NodeProto: input (1), output (2), name (3), op_type (4), attribute (5)
    node = Node()
    for number, wire, value in fields(buffer):
        if wire != 2:
            continue
        if number in (1, 2):
            (node.inputs if number == 1 else node.outputs).append(bytes(value).decode())
        elif number == 3:
            node.name = bytes(value).decode()
        elif number == 4:
            node.op_type = bytes(value).decode()
        elif number == 5:
            _read_attribute(value, node)
    return node


def _read_attribute(buffer: memoryview, node: Node) -> None:
    # AttributeProto: name (1), i (3), t (5)
    name, integer, tensor = "", None, None
    for number, wire, value in fields(buffer):
        if number == 1 and wire == 2:
            name = bytes(value).decode()
        elif number == 3 and wire == 0:
            integer = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 5 and wire == 2:
            tensor = _read_tensor(value)
    if integer is not None:
        node.ints[name] = integer
    if tensor is not None and name == "value":
        node.tensor = tensor


def _read_tensor(buffer: memoryview) -> Tensor:
    """TensorProto: dims (1), data_type (2), float_data (4), int32_data (5), name (8), raw_data
    (9), double_data (10), external_data (13)."""
    tensor = Tensor()
    for number, wire, value in fields(buffer):
        if number == 1:
            tensor.dims.extend(_varints(value) if wire == 2 else [value])
        elif number == 2 and wire == 0:
            tensor.data_type = value
        elif number in (4, 10) and wire == 2:
            tensor.floats = value
        elif number == 5:
            tensor.halves.extend(_varints(value) if wire == 2 else [value])
        elif number == 8 and wire == 2:
            tensor.name = bytes(value).decode()
        elif number == 9 and wire == 2:
            tensor.raw = value
        elif number == 13 and wire == 2:  # a StringStringEntryProto: key (1), value (2)
            entry = {inner: bytes(text).decode() for inner, kind, text in fields(value) if kind == 2}
            tensor.external[entry.get(1, "")] = entry.get(2, "")
    return tensor


def _varints(buffer: memoryview) -> list[int]:
    """A packed repeated varint field's values."""
    found, value, shift = [], 0, 0
    for byte in bytes(buffer):
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            found.append(value)
            value, shift = 0, 0
    return found
