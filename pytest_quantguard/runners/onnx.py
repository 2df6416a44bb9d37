"""ONNX models through onnxruntime: named inputs and outputs, fixed or dynamic batch dimension,
FP16 models, external-data files confined to the model's folder, CPU or CUDA."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from pytest_quantguard._files import hash_file
from pytest_quantguard.errors import MissingBackendError, QuantGuardError
from pytest_quantguard.runners import first_line, pad_rows

# ONNX tensor element types -> numpy dtypes that the data is cast to before a run.
ONNX_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
QUIET = 3  # onnxruntime severity: errors only
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# What a comparison with an FP16 model on the CPU provider must say (research gotcha 6:
# onnxruntime's CPU provider casts FP16 graphs back to FP32, so only the weight rounding shows).
FP16_ON_CPU_NOTE = ("the CPU runs FP16 models in FP32, so the verdict does not cover GPU FP16 "
                    "arithmetic")


def default_threads() -> int | None:
    """Intra-op threads for a session: 1 under pytest-xdist (workers would fight over the cores),
    else None (onnxruntime's default, one per core)."""
    return 1 if os.environ.get("PYTEST_XDIST_WORKER") else None


class OnnxRunner:
    """An onnxruntime session on one ``.onnx`` file (plus its external data files).

    Inputs are matched to the data's arrays by name, or by position when both have one. Outputs
    come back by name; FP16 outputs as float32. ``sha256``/``nbytes`` cover the ``.onnx`` file and
    its external data files, in that order (data files sorted by name)."""

    def __init__(self, path: Path, description: str | None = None, *, device: str = "cpu",
                 intra_op_threads: int | None = None):
        path = Path(path)
        if device not in PROVIDERS:
            raise QuantGuardError(f"device={device!r}: choose one of {sorted(PROVIDERS)}")
        if intra_op_threads is not None and (isinstance(intra_op_threads, bool)
                                             or not isinstance(intra_op_threads, int)
                                             or intra_op_threads < 1):
            raise QuantGuardError(f"intra_op_threads={intra_op_threads!r}: give a positive integer, "
                                  "or None for onnxruntime's default")
        try:
            import onnxruntime
        except ImportError:
            raise MissingBackendError("onnxruntime", "onnx", f"the ONNX model {path}") from None
        self.path = str(path)
        self.description = description or str(path)
        self.device = device
        self.intra_op_threads = intra_op_threads
        # Everything about the file is checked before onnxruntime opens it (or any file it names).
        scan = _scan(path)
        self.files = [path, *_external_data_files(path, scan)]
        self.nbytes = sum(file.stat().st_size for file in self.files)
        self.sha256 = _files_sha256(self.files)
        self.session = _session(onnxruntime, path, device, intra_op_threads)
        self.inputs = self.session.get_inputs()
        self.output_names = [output.name for output in self.session.get_outputs()]
        first_dim = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        self.fixed_batch = first_dim if isinstance(first_dim, int) and first_dim > 0 else None
        self.providers = list(self.session.get_providers())
        has_fp16 = scan.float16 or any(
            value.type == "tensor(float16)" for value in [*self.inputs, *self.session.get_outputs()])
        self.fp16_on_cpu = has_fp16 and self.providers[0] == PROVIDERS["cpu"]

    @property
    def settings(self) -> dict[str, Any]:
        """What, besides the model's bytes, decides its outputs (part of a cache key); builtins only."""
        return {"backend": "onnxruntime", "device": self.device, "providers": list(self.providers)}

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = self._feed(inputs)
        n = len(next(iter(feed.values())))
        if self.fixed_batch is None:
            return self._run(feed)
        parts = []
        for start in range(0, n, self.fixed_batch):
            chunk = {name: pad_rows(array[start:start + self.fixed_batch], self.fixed_batch)
                     for name, array in feed.items()}
            stop = min(self.fixed_batch, n - start)
            parts.append({name: value[:stop] for name, value in self._run(chunk).items()})
        return {name: np.concatenate([part[name] for part in parts]) for name in self.output_names}

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Model input -> data array: by name (extra data arrays are left unused), or by position
        when the model and the data both have exactly one."""
        missing = [spec.name for spec in self.inputs if spec.name not in inputs]
        if not missing:
            pairs = [(spec, spec.name, inputs[spec.name]) for spec in self.inputs]
        elif len(self.inputs) == 1 and len(inputs) == 1:
            pairs = [(self.inputs[0], *next(iter(inputs.items())))]
        else:
            model = ", ".join(f"{spec.name!r} {_shown_shape(spec.shape)} {spec.type}"
                              for spec in self.inputs)
            data = ", ".join(f"{name!r} {list(array.shape[1:])} {array.dtype}"
                             for name, array in inputs.items())
            raise QuantGuardError(
                f"{self.path}: the model's inputs do not match the data's arrays (missing "
                f"{missing}). Model inputs: {model}. Data arrays (per sample): {data}. Name the "
                "data arrays after the model inputs (np.savez(path, "
                + ", ".join(f"{name}=..." for name in missing) + ", labels=...))")
        return {spec.name: self._fit(spec, data_name, array) for spec, data_name, array in pairs}

    def _fit(self, spec, data_name: str, array: np.ndarray) -> np.ndarray:
        expected = list(spec.shape)
        fits = len(expected) == array.ndim and all(
            not isinstance(dim, int) or dim <= 0 or dim == actual
            for dim, actual in zip(expected[1:], array.shape[1:], strict=False))
        if not fits:
            raise QuantGuardError(
                f"{self.path}: model input {spec.name!r} expects shape {_shown_shape(expected)} but "
                f"the data array {data_name!r} has samples of shape {list(array.shape[1:])} (batch "
                f"shape {list(array.shape)}); reshape the data to the model's input (or check that "
                "this is the right model for this data)")
        dtype = ONNX_DTYPES.get(spec.type)
        if dtype is None:
            raise QuantGuardError(f"{self.path}: model input {spec.name!r} has type {spec.type}, "
                                  "which quantguard cannot feed yet")
        if array.dtype != dtype:
            if np.issubdtype(array.dtype, np.floating) and not np.issubdtype(dtype, np.floating):
                raise QuantGuardError(f"{self.path}: model input {spec.name!r} is {spec.type} but "
                                      f"the data array {data_name!r} is {array.dtype}; store it as "
                                      "integers")
            array = array.astype(dtype)
        return np.ascontiguousarray(array)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self.session.run(self.output_names, feed)
        except Exception as error:  # onnxruntime's pybind exceptions (Fail, InvalidArgument, ...)
            raise QuantGuardError(f"{self.path}: onnxruntime failed on a batch "
                                  f"({first_line(error)}); check that the data fits this model's "
                                  "inputs") from None
        return {name: value.astype(np.float32) if value.dtype == np.float16 else value
                for name, value in zip(self.output_names, values, strict=True)}


def _session(onnxruntime: Any, path: Path, device: str, intra_op_threads: int | None) -> Any:
    provider = PROVIDERS[device]
    if provider not in onnxruntime.get_available_providers():
        raise QuantGuardError(
            f"{path}: device 'cuda' needs onnxruntime's {provider}, which this onnxruntime "
            f"({onnxruntime.__version__}, providers {onnxruntime.get_available_providers()}) lacks; "
            "install the GPU build: pip uninstall onnxruntime && pip install onnxruntime-gpu "
            "(or run with --quant-device cpu)")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = QUIET
    # The pipe alternates the reference's and the candidate's sessions batch by batch; spinning
    # idle threads of one would steal the cores from the other (measured: a first run 6.2 s ->
    # 3.75 s on 2 cores, 100k digits, fp32 vs int8).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    providers = [provider] if device == "cpu" else [provider, PROVIDERS["cpu"]]
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own pybind exception types
        raise QuantGuardError(f"{path}: onnxruntime cannot load this model "
                              f"({first_line(error)}); check that it is a complete .onnx file "
                              "(not truncated, not a Git LFS pointer) and re-export it if "
                              "needed") from None
    if provider not in session.get_providers():  # onnxruntime falls back to the CPU silently
        raise QuantGuardError(
            f"{path}: device 'cuda' was asked for, but onnxruntime could not start its {provider} "
            f"(it ran on {session.get_providers()}); check the CUDA and cuDNN libraries that "
            "onnxruntime-gpu needs (onnxruntime.preload_dlls() or the CUDA install) and the GPU "
            "driver, or run with --quant-device cpu")
    return session


def _shown_shape(shape: list[Any]) -> list[Any]:
    return [dim if isinstance(dim, int) and dim > 0 else "batch" if i == 0 else dim or "?"
            for i, dim in enumerate(shape)]


def _files_sha256(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        hash_file(digest, file)
    return digest.hexdigest()


# External data -------------------------------------------------------------------------------
#
# A model's weights may live in files named by its tensors' ``external_data`` entries. The names
# are data inside a possibly untrusted file, so every one is checked before onnxruntime reads a
# byte: relative, inside the model's folder, present, long enough. The .onnx file is read straight
# from the protobuf wire format, so the check needs neither the onnx package (not a dependency of
# the ``onnx`` extra) nor onnxruntime's own checks (older versions have none).

FLOAT16 = 10  # TensorProto.FLOAT16
EXTERNAL = 1  # TensorProto.EXTERNAL
# Bytes per element of TensorProto data types, to size external data that gives no "length".
ELEMENT_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8,
                 15: 16, 16: 2, 17: 1, 18: 1, 19: 1, 20: 1}
LFS_POINTER = b"version https://git-lfs"


@dataclass
class _Tensor:
    name: str = ""
    data_type: int = 0
    dims: list[int] = field(default_factory=list)
    data_location: int = 0
    external: dict[str, str] = field(default_factory=dict)


@dataclass
class _Scan:
    tensors: list[_Tensor] = field(default_factory=list)  # those with external-data entries
    float16: bool = False  # float16 initializers or constants, or a Cast to float16


class _Malformed(Exception):
    pass


def _scan(path: Path) -> _Scan:
    """The parts of an .onnx file that must be checked before onnxruntime opens it."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise QuantGuardError(f"{path}: cannot read the model file ({error.strerror})") from None
    scan = _Scan()
    try:
        _walk_model(memoryview(data), scan)
    except (_Malformed, UnicodeDecodeError):
        raise QuantGuardError(f"{path}: onnxruntime cannot load this model (it is not a "
                              "valid ONNX protobuf); check that it is a complete .onnx file (not truncated, "
                              "not a Git LFS pointer) and re-export it if needed") from None
    return scan


def _external_data_files(path: Path, scan: _Scan) -> list[Path]:
    """The model's external data files, sorted by name, after checking that each is confined to
    the model's folder, exists and holds every byte a tensor reads from it."""
    needed: dict[str, tuple[int, str]] = {}  # location -> (bytes needed, the tensor that needs most)
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
    files = []
    for location in sorted(needed):
        file = path.parent / location
        end, tensor = needed[location]
        if not file.is_file():
            raise QuantGuardError(
                f"{file}: this external data file of {path.name} is missing (tensor {tensor!r} "
                f"reads its weights from {location!r}); an external-data model is two files: copy "
                f"{location} into the model's folder beside {path.name} (move and copy both files "
                "together, and check that Git LFS or your artifact store fetched it)")
        size = file.stat().st_size
        if size < end:
            with file.open("rb") as handle:
                pointer = handle.read(len(LFS_POINTER)) == LFS_POINTER
            what = "a Git LFS pointer, not the data (run git lfs pull)" if pointer else "truncated"
            raise QuantGuardError(
                f"{file}: this external data file of {path.name} is {what}: it has {size} bytes but "
                f"tensor {tensor!r} reads up to byte {end}; copy the complete file again (an "
                "interrupted download or copy leaves it short) or re-export the model")
        files.append(file)
    return files


def _check_location(path: Path, tensor: str, location: str) -> None:
    """Refuse a location that could reach outside the model's folder (checked on the name alone:
    links inside the folder were put there by whoever owns it, and are followed)."""
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


def _tensor_end(path: Path, tensor: _Tensor) -> int:
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
            raise _Malformed
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview):
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
                raise _Malformed
            value, pos = buf[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise _Malformed
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        else:  # groups (3, 4) are not in onnx.proto; anything else is not protobuf
            raise _Malformed
        yield number, wire, value


def _walk_model(model: memoryview, scan: _Scan) -> None:
    for number, wire, value in _fields(model):
        if wire != 2:
            continue
        if number == 7:  # ModelProto.graph
            _walk_graph(value, scan)
        elif number == 20:  # training_info: initialization (1) and algorithm (2) graphs
            for inner, inner_wire, graph in _fields(value):
                if inner in (1, 2) and inner_wire == 2:
                    _walk_graph(graph, scan)
        elif number == 25:  # functions: FunctionProto.node (7)
            for inner, inner_wire, node in _fields(value):
                if inner == 7 and inner_wire == 2:
                    _walk_node(node, scan)


def _walk_graph(graph: memoryview, scan: _Scan) -> None:
    for number, wire, value in _fields(graph):
        if wire != 2:
            continue
        if number == 1:  # node
            _walk_node(value, scan)
        elif number == 5:  # initializer
            _walk_tensor(value, scan)
        elif number == 15:  # sparse_initializer
            _walk_sparse(value, scan)


def _walk_node(node: memoryview, scan: _Scan) -> None:
    op_type, cast_to = "", None
    for number, wire, value in _fields(node):
        if number == 4 and wire == 2:
            op_type = bytes(value).decode()
        elif number == 5 and wire == 2:  # attribute
            name, integer = _walk_attribute(value, scan)
            if name == "to":
                cast_to = integer
    if op_type == "Cast" and cast_to == FLOAT16:
        scan.float16 = True


def _walk_attribute(attribute: memoryview, scan: _Scan) -> tuple[str, int | None]:
    name, integer = "", None
    for number, wire, value in _fields(attribute):
        if number == 1 and wire == 2:
            name = bytes(value).decode()
        elif number == 3 and wire == 0:
            integer = value
        elif wire != 2:
            continue
        elif number in (5, 10):  # t, tensors
            _walk_tensor(value, scan)
        elif number in (6, 11):  # g, graphs
            _walk_graph(value, scan)
        elif number in (22, 23):  # sparse_tensor, sparse_tensors
            _walk_sparse(value, scan)
    return name, integer


def _walk_sparse(sparse: memoryview, scan: _Scan) -> None:
    for number, wire, value in _fields(sparse):
        if number in (1, 2) and wire == 2:  # values, indices
            _walk_tensor(value, scan)


def _walk_tensor(data: memoryview, scan: _Scan) -> None:
    tensor = _Tensor()
    for number, wire, value in _fields(data):
        if number == 1:  # dims: packed or not
            if wire == 2:
                pos = 0
                while pos < len(value):
                    dim, pos = _varint(value, pos)
                    tensor.dims.append(dim)
            else:
                tensor.dims.append(value)
        elif number == 2 and wire == 0:
            tensor.data_type = value
        elif number == 8 and wire == 2:
            tensor.name = bytes(value).decode()
        elif number == 14 and wire == 0:
            tensor.data_location = value
        elif number == 13 and wire == 2:  # external_data: StringStringEntryProto key (1), value (2)
            entry = {inner: bytes(text).decode() for inner, inner_wire, text in _fields(value)
                     if inner_wire == 2}
            tensor.external[entry.get(1, "")] = entry.get(2, "")
    if tensor.data_type == FLOAT16:
        scan.float16 = True
    if tensor.external or tensor.data_location == EXTERNAL:
        scan.tensors.append(tensor)
