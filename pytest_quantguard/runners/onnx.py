"""ONNX models through onnxruntime: named inputs and outputs, fixed or dynamic batch dimension,
FP16 models, external-data files confined to the model's folder, CPU or CUDA."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard._files import hash_file
from pytest_quantguard.batching import Footprint, SampleShapes
from pytest_quantguard.errors import MissingBackendError, QuantGuardError
from pytest_quantguard.runners import first_line, run_in_fixed_batches
from pytest_quantguard.runners.onnx_graph import footprint, read_outline
from pytest_quantguard.runners.onnx_scan import external_data_files, scan_model

# ONNX tensor element types -> numpy dtypes that the data is cast to before a run.
ONNX_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
QUIET = 3  # onnxruntime severity: errors only
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# What a comparison with an FP16 model on the CPU provider must say (a risk note): onnxruntime's
# CPU provider casts FP16 graphs back to FP32, so only the weight rounding shows (docs/models.md,
# "FP16 models on the CPU").
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
        scan = scan_model(path)
        self.files = [path, *external_data_files(path, scan)]
        stamps = _stamps(self.files)
        self.nbytes = sum(file.stat().st_size for file in self.files)
        self.sha256 = _files_sha256(self.files)
        self.session = _session(onnxruntime, path, device, intra_op_threads)
        _refuse_changed(self.files, stamps)  # the sha256 must describe the bytes the session read
        self.inputs = self.session.get_inputs()
        # Only tensors are outputs here: a sequence or map (scikit-learn's ZipMap of class
        # probabilities) has no rows to score, so it is left out (docs/models.md, "Output selection").
        self.output_names = [output.name for output in self.session.get_outputs()
                             if output.type.startswith("tensor(")]
        if not self.output_names:
            raise QuantGuardError(
                f"{self.path}: the model has no tensor output (its outputs are "
                f"{[f'{o.name}: {o.type}' for o in self.session.get_outputs()]}); quantguard scores "
                "tensors. A scikit-learn model exported with skl2onnx: export with "
                "options={'zipmap': False}")
        first_dim = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        self.fixed_batch = first_dim if isinstance(first_dim, int) and first_dim > 0 else None
        self.providers = list(self.session.get_providers())
        has_fp16 = scan.float16 or any(
            value.type == "tensor(float16)" for value in [*self.inputs, *self.session.get_outputs()])
        self.fp16_on_cpu = has_fp16 and self.providers[0] == PROVIDERS["cpu"]
        self.dynamic_ops = tuple(sorted(scan.dynamic_ops))
        self.dynamic_quantization = bool(scan.dynamic_ops)
        # FP16 on the CPU and dynamic quantization are said by the risk notes, not as runner
        # notes (docs/risks.md, "The notes")
        self.notes: tuple[str, ...] = ()

    def memory_per_sample(self, shapes: SampleShapes) -> Footprint | None:
        """Outputs and activations per sample, estimated from the graph (docs/models.md, "Batch
        size"); None when the graph has no usable shapes (the callables' rule applies)."""
        outline = read_outline(Path(self.path))
        return None if outline is None else footprint(outline, shapes)

    @property
    def settings(self) -> dict[str, Any]:
        """What, besides the model's bytes, decides its outputs (part of a cache key); builtins only."""
        return {"backend": "onnxruntime", "device": self.device, "providers": list(self.providers)}

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_in_fixed_batches(self._run, self._feed(inputs), self.fixed_batch)

    def run_chunks(self, inputs: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
        """The model on consecutive chunks of ``size`` rows (the last one shorter), the inputs
        matched and cast once (a pinned batch: docs/models.md, "Batch size")."""
        feed = self._feed(inputs)
        n = len(next(iter(feed.values())))
        parts = [run_in_fixed_batches(self._run, {name: array[start:start + size]
                                                  for name, array in feed.items()}, self.fixed_batch)
                 for start in range(0, n, size)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

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


def _stamps(files: list[Path]) -> list[tuple[int, int]]:
    return [(file.stat().st_size, file.stat().st_mtime_ns) for file in files]


def _refuse_changed(files: list[Path], stamps: list[tuple[int, int]]) -> None:
    """A model file rewritten while it was hashed and loaded: its sha256 (the cache key, the
    report) may describe other bytes than the session holds."""
    for file, before, after in zip(files, stamps, _stamps(files), strict=True):
        if before != after:
            raise QuantGuardError(f"{file}: the file changed while it was being hashed and "
                                  "loaded (another process is writing it?); wait until it is "
                                  "written completely and run again")


def _files_sha256(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        hash_file(digest, file)
    return digest.hexdigest()
