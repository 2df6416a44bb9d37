"""What an ``.onnx`` file holds that must be checked before onnxruntime opens it: its external
data files, and whether it computes in FP16.

A model's weights may live in files named by its tensors' ``external_data`` entries. The names
are data inside a possibly untrusted file, so every one is checked before onnxruntime reads a
byte: relative, inside the model's folder, present, long enough. The .onnx file is read straight
from the protobuf wire format, so the check needs neither the onnx package (not a dependency of
the ``onnx`` extra) nor onnxruntime's own checks (older versions have none).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from pytest_quantguard.errors import QuantGuardError

FLOAT16 = 10  # TensorProto.FLOAT16
EXTERNAL = 1  # TensorProto.EXTERNAL
# Bytes per element of TensorProto data types, to size external data that gives no "length".
ELEMENT_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8,
                 15: 16, 16: 2, 17: 1, 18: 1, 19: 1, 20: 1}
LFS_POINTER = b"version https://git-lfs"
# Operators that quantize activations with ranges computed on each batch at run time: dynamic
# quantization (onnxruntime's quantize_dynamic; docs/models.md, "Dynamic quantization and the batch").
DYNAMIC_QUANTIZE_OPS = frozenset({"DynamicQuantizeLinear", "DynamicQuantizeMatMul",
                                  "DynamicQuantizeLSTM"})


@dataclass
class ExternalTensor:
    """A TensorProto with external-data entries, or one marked as stored externally."""

    name: str = ""
    data_type: int = 0
    dims: list[int] = field(default_factory=list)
    data_location: int = 0
    external: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelScan:
    tensors: list[ExternalTensor] = field(default_factory=list)  # those with external-data entries
    float16: bool = False  # float16 initializers or constants, or a Cast to float16
    dynamic_ops: set[str] = field(default_factory=set)  # DYNAMIC_QUANTIZE_OPS found


class Malformed(Exception):
    pass


def scan_model(path: Path) -> ModelScan:
    """The parts of an .onnx file that must be checked before onnxruntime opens it."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise QuantGuardError(f"{path}: cannot read the model file ({error.strerror})") from None
    scan = ModelScan()
    try:
        _walk_model(memoryview(data), scan)
    except (Malformed, UnicodeDecodeError):
        raise QuantGuardError(f"{path}: onnxruntime cannot load this model (it is not a "
                              "valid ONNX protobuf); check that it is a complete .onnx file (not truncated, "
                              "not a Git LFS pointer) and re-export it if needed") from None
    return scan


def external_data_files(path: Path, scan: ModelScan) -> list[Path]:
    """The model's external data files, sorted by name, after checking that each is confined to
    the model's folder, exists and holds every byte a tensor reads from it."""
    needed = _bytes_needed(path, scan)
    return [_checked_data_file(path, location, *needed[location]) for location in sorted(needed)]


def _bytes_needed(path: Path, scan: ModelScan) -> dict[str, tuple[int, str]]:
    """Data file location -> (bytes needed, the tensor that needs most), every location checked."""
    needed: dict[str, tuple[int, str]] = {}
    for tensor in scan.tensors:
        location = tensor.external.get("location")
        if location is None:
            if tensor.data_location == EXTERNAL:
                raise QuantGuardError(f"{path}: tensor {tensor.name!r} is stored externally but names "
                                      "no file (no 'location' entry); re-save the model with "
                                      "onnx.save_model(model, path, save_as_external_data=True)")
            continue
        _check_location(path, tensor.name, location)
        if tensor.data_location != EXTERNAL:
            continue  # onnxruntime ignores the entries of a tensor that is not marked external
        end = _tensor_end(path, tensor)
        key = os.path.normpath(location)  # "./w.data" and "w.data" are one file
        if key not in needed or end > needed[key][0]:
            needed[key] = (end, tensor.name)
    return needed


def _checked_data_file(path: Path, location: str, end: int, tensor: str) -> Path:
    """The data file at ``location`` beside the model, refused if missing or shorter than ``end``."""
    file = path.parent / location
    if not file.is_file():
        raise QuantGuardError(
            f"{file}: this external data file of {path.name} is missing (tensor {tensor!r} "
            f"reads its weights from {location!r}); an external-data model is two files: copy "
            f"{location} into the model's folder beside {path.name} (move and copy both files "
            "together, and check that Git LFS or your artifact store fetched it)")
    folder = path.parent.resolve()
    if not file.resolve().is_relative_to(folder):  # a link inside the folder to elsewhere
        raise QuantGuardError(
            f"{file}: this external data file of {path.name} links to {file.resolve()}, outside "
            f"the model's folder {folder}; onnxruntime refuses external data that resolves "
            "outside the model's folder: copy the data file into the folder beside "
            f"{path.name} (or load the model from where its data is)")
    size = file.stat().st_size
    if size < end:
        with file.open("rb") as handle:
            pointer = handle.read(len(LFS_POINTER)) == LFS_POINTER
        what = "a Git LFS pointer, not the data (run git lfs pull)" if pointer else "truncated"
        raise QuantGuardError(
            f"{file}: this external data file of {path.name} is {what}: it has {size} bytes but "
            f"tensor {tensor!r} reads up to byte {end}; copy the complete file again (an "
            "interrupted download or copy leaves it short) or re-export the model")
    return file


def _check_location(path: Path, tensor: str, location: str) -> None:
    """Refuse a location that could reach outside the model's folder (checked on the name here;
    a link inside the folder that resolves outside it is refused by ``_checked_data_file``, as
    onnxruntime would refuse it)."""
    parts = re.split(r"[\\/]", location)
    if not location or "\x00" in location:
        reason = "an empty or invalid file name"
    elif PurePosixPath(location).is_absolute() or PureWindowsPath(location).anchor:
        reason = "an absolute path"
    elif ".." in parts:
        reason = "a path that climbs out of the model's folder with '..'"
    else:
        return
    raise QuantGuardError(
        f"{path}: tensor {tensor!r} names its external data file {location!r}, {reason}; quantguard "
        "reads external data only from files inside the model's folder. If the model is yours, "
        "re-save it with onnx.save_model(model, path, save_as_external_data=True, "
        f"location='{path.name}.data') and keep the data file beside it; if not, do not run it")


def _tensor_end(path: Path, tensor: ExternalTensor) -> int:
    """The first byte past a tensor's external data (offset + length)."""
    try:
        offset = int(tensor.external.get("offset", "0"))
        length = tensor.external.get("length")
        if length is not None:
            length_bytes = int(length)
        else:
            count = int(np.prod(tensor.dims, dtype=np.int64))
            length_bytes = count * ELEMENT_BYTES.get(tensor.data_type, 0)
    except ValueError:
        raise QuantGuardError(f"{path}: tensor {tensor.name!r} has unreadable external data entries "
                              f"{tensor.external}; re-export the model") from None
    if offset < 0 or length_bytes < 0:
        raise QuantGuardError(f"{path}: tensor {tensor.name!r} has a negative external data offset "
                              f"or length {tensor.external}; re-export the model")
    return offset + length_bytes


# The protobuf wire format, just enough of it: field numbers from onnx.proto.

def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise Malformed
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _packed_varints(buf: memoryview) -> list[int]:
    values, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        values.append(value)
    return values


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of one message: ints for scalars, views for the rest."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise Malformed
            value, pos = buf[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise Malformed
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        else:  # groups (3, 4) are not in onnx.proto; anything else is not protobuf
            raise Malformed
        yield number, wire, value


Walker = Callable[[memoryview, ModelScan], None]


def _walk_messages(message: memoryview, scan: ModelScan, walkers: dict[int, Walker]) -> None:
    """Walk each embedded message of ``message`` whose field number has a walker, in file order."""
    for number, wire, value in fields(message):
        walker = walkers.get(number)
        if walker is not None and wire == 2:
            walker(value, scan)


def _walk_model(model: memoryview, scan: ModelScan) -> None:
    # ModelProto: graph (7), training_info (20), functions (25)
    _walk_messages(model, scan, {7: _walk_graph, 20: _walk_training_info, 25: _walk_function})


def _walk_training_info(info: memoryview, scan: ModelScan) -> None:
    # TrainingInfoProto: initialization (1) and algorithm (2) graphs
    _walk_messages(info, scan, {1: _walk_graph, 2: _walk_graph})


def _walk_function(function: memoryview, scan: ModelScan) -> None:
    _walk_messages(function, scan, {7: _walk_node})  # FunctionProto.node


def _walk_graph(graph: memoryview, scan: ModelScan) -> None:
    # GraphProto: node (1), initializer (5), sparse_initializer (15)
    _walk_messages(graph, scan, {1: _walk_node, 5: _walk_tensor, 15: _walk_sparse})


def _walk_sparse(sparse: memoryview, scan: ModelScan) -> None:
    _walk_messages(sparse, scan, {1: _walk_tensor, 2: _walk_tensor})  # values, indices


def _walk_node(node: memoryview, scan: ModelScan) -> None:
    op_type, cast_to = "", None
    for number, wire, value in fields(node):
        if number == 4 and wire == 2:
            op_type = bytes(value).decode()
        elif number == 5 and wire == 2:  # attribute
            name, integer = _walk_attribute(value, scan)
            if name == "to":
                cast_to = integer
    if op_type == "Cast" and cast_to == FLOAT16:
        scan.float16 = True
    if op_type in DYNAMIC_QUANTIZE_OPS:
        scan.dynamic_ops.add(op_type)


def _walk_attribute(attribute: memoryview, scan: ModelScan) -> tuple[str, int | None]:
    """Walk an attribute's tensors and graphs; returns its name and integer value (``i``)."""
    # t (5), tensors (10), g (6), graphs (11), sparse_tensor (22), sparse_tensors (23)
    walkers = {5: _walk_tensor, 10: _walk_tensor, 6: _walk_graph, 11: _walk_graph,
               22: _walk_sparse, 23: _walk_sparse}
    name, integer = "", None
    for number, wire, value in fields(attribute):
        if number == 1 and wire == 2:
            name = bytes(value).decode()
        elif number == 3 and wire == 0:
            integer = value
        elif wire == 2 and number in walkers:
            walkers[number](value, scan)
    return name, integer


def _walk_tensor(data: memoryview, scan: ModelScan) -> None:
    tensor = ExternalTensor()
    for number, wire, value in fields(data):
        _read_tensor_field(tensor, number, wire, value)
    if tensor.data_type == FLOAT16:
        scan.float16 = True
    if tensor.external or tensor.data_location == EXTERNAL:
        scan.tensors.append(tensor)


def _read_tensor_field(tensor: ExternalTensor, number: int, wire: int, value) -> None:
    """TensorProto: dims (1), data_type (2), name (8), external_data (13), data_location (14)."""
    if number == 1:  # dims: packed or not
        tensor.dims.extend(_packed_varints(value) if wire == 2 else [value])
    elif number == 2 and wire == 0:
        tensor.data_type = value
    elif number == 8 and wire == 2:
        tensor.name = bytes(value).decode()
    elif number == 14 and wire == 0:
        tensor.data_location = value
    elif number == 13 and wire == 2:  # a StringStringEntryProto: key (1), value (2)
        entry = {inner: bytes(text).decode() for inner, inner_wire, text in fields(value)
                 if inner_wire == 2}
        tensor.external[entry.get(1, "")] = entry.get(2, "")
