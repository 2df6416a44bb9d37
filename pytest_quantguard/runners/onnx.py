"""ONNX models through onnxruntime (CPU): batched, dynamic or fixed batch dimension."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pytest_quantguard.errors import MissingBackendError, QuantGuardError
from pytest_quantguard.runners import file_sha256

# ONNX tensor element types -> numpy dtypes that the data is cast to before a run.
ONNX_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
QUIET = 3  # onnxruntime severity: errors only


class OnnxRunner:
    """An onnxruntime session on one ``.onnx`` file; inputs are matched by name (or position if one)."""

    def __init__(self, path: Path, description: str | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise MissingBackendError("onnxruntime", "onnx", f"the ONNX model {path}") from None
        self.path = str(path)
        self.description = description or str(path)
        self.nbytes = path.stat().st_size
        self.sha256 = file_sha256(path)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = QUIET
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own pybind exception types
            raise QuantGuardError(f"{path}: onnxruntime cannot load this model "
                                  f"({_first_line(error)}); check that it is a complete .onnx file "
                                  "(not truncated, not a Git LFS pointer) and re-export it if "
                                  "needed") from None
        self.inputs = self.session.get_inputs()
        self.output_names = [output.name for output in self.session.get_outputs()]
        first_dim = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        self.fixed_batch = first_dim if isinstance(first_dim, int) and first_dim > 0 else None

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = self._feed(inputs)
        n = len(next(iter(feed.values())))
        if self.fixed_batch is None:
            return self._run(feed)
        parts = []
        for start in range(0, n, self.fixed_batch):
            chunk = {name: _pad(array[start:start + self.fixed_batch], self.fixed_batch)
                     for name, array in feed.items()}
            stop = min(self.fixed_batch, n - start)
            parts.append({name: value[:stop] for name, value in self._run(chunk).items()})
        return {name: np.concatenate([part[name] for part in parts]) for name in self.output_names}

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1 and len(inputs) == 1:
            pairs = [(self.inputs[0], next(iter(inputs.items())))]
        else:
            missing = [spec.name for spec in self.inputs if spec.name not in inputs]
            if missing:
                raise QuantGuardError(
                    f"{self.path}: the model's inputs {[spec.name for spec in self.inputs]} do not "
                    f"match the data's arrays {list(inputs)} (missing {missing}); name the data "
                    "arrays after the model inputs")
            pairs = [(spec, (spec.name, inputs[spec.name])) for spec in self.inputs]
        return {spec.name: self._fit(spec, data_name, array) for spec, (data_name, array) in pairs}

    def _fit(self, spec, data_name: str, array: np.ndarray) -> np.ndarray:
        expected = list(spec.shape)
        fits = len(expected) == array.ndim and all(
            not isinstance(dim, int) or dim <= 0 or dim == actual
            for dim, actual in zip(expected[1:], array.shape[1:], strict=False))
        if not fits:
            shown = ["batch" if not isinstance(d, int) else d for d in expected]
            raise QuantGuardError(
                f"{self.path}: model input {spec.name!r} expects shape {shown} but the data array "
                f"{data_name!r} has samples of shape {list(array.shape[1:])} (batch shape "
                f"{list(array.shape)}); reshape the data to the model's input (or check that this is "
                "the right model for this data)")
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
                                  f"({_first_line(error)}); check that the data fits this model's "
                                  "inputs") from None
        return {name: value.astype(np.float32) if value.dtype == np.float16 else value
                for name, value in zip(self.output_names, values, strict=True)}


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """Pad a short last chunk to a fixed batch size by repeating its last row (sliced off after)."""
    if len(array) == size:
        return array
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), axis=0)])


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__

