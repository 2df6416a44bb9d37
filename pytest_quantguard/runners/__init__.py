"""Runners: one per backend, each mapping a batch of named inputs to named outputs.

The protocol is small on purpose: ``runner(inputs: dict[str, ndarray]) -> dict[str, ndarray]``,
plus what reports need to identify the model (``description``, ``path``, ``sha256``, ``nbytes``).
Backends are imported inside the runner that needs them, never at package import.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pytest_quantguard._files import hash_file, shown
from pytest_quantguard.errors import QuantGuardError

TORCH_SUFFIXES = (".pt", ".pth", ".pt2")
TORCH_CLASSES = {("torch.nn.modules.module", "Module"),
                 ("torch.export.exported_program", "ExportedProgram")}


@runtime_checkable
class Runner(Protocol):
    """What the pipe runs: a callable on a batch, plus the model's identity for caching and reports.

    Runners may also have ``notes: tuple[str, ...]``, what a verdict on this model does not cover
    (e.g. FP16 arithmetic run in FP32 on the CPU). It is optional, not a member of the protocol, so
    that a user's object without it is still a runner: read it with ``getattr(runner, "notes", ())``.
    """

    description: str
    path: str | None
    sha256: str | None
    nbytes: int | None

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def make_runner(model: Any, *, base_dir: Path | None = None, role: str = "model",
                device: str = "cpu") -> Runner:
    """A runner for what docs/models.md says a model can be: a model file path, a torch model, a
    callable on a batch, or results (a folder holding results.json, a .npy array, an ``Outputs``);
    ``device`` ("cpu" or "cuda") picks the ONNX provider or the torch device."""
    if isinstance(model, Runner):  # a runner, or results read back (results.Outputs)
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        from pytest_quantguard.results import Outputs, is_results

        if is_results(path):  # a results folder or a bare .npy array (docs/results.md)
            return Outputs(path, base_dir=base_dir)
        if not path.is_file():
            where = f" (resolved against {base_dir})" if base_dir is not None else ""
            raise QuantGuardError(f"{role} model file not found: {path}{where}; check the path, "
                                  "relative paths resolve against pytest's rootdir")
        if path.suffix.lower() == ".onnx":
            from pytest_quantguard.runners.onnx import OnnxRunner, default_threads

            return OnnxRunner(path, description=shown(path, base_dir), device=device,
                              intra_op_threads=default_threads())
        if path.suffix.lower() in TORCH_SUFFIXES:
            from pytest_quantguard.runners.torch import TorchRunner

            return TorchRunner.from_file(path, description=shown(path, base_dir), device=device)
        raise QuantGuardError(f"{path}: unsupported {role} model format {path.suffix!r}; this version "
                              "runs .onnx files, PyTorch .pt/.pth/.pt2 files, torch modules and "
                              "Python callables")
    if is_torch_model(model):  # before callable(): an nn.Module is callable too
        from pytest_quantguard.runners.torch import TorchRunner

        return TorchRunner(model, device=device)
    if callable(model):
        from pytest_quantguard.runners.callables import CallableRunner

        return CallableRunner(model)
    raise QuantGuardError(f"{role}: expected a path to a .onnx/.pt/.pth/.pt2 file, a torch module or "
                          f"a callable f(batch) -> array, got {type(model).__name__}")


def is_torch_model(model: Any) -> bool:
    """A ``torch.nn.Module`` or ``torch.export.ExportedProgram``, found without importing torch."""
    return any((cls.__module__, cls.__name__) in TORCH_CLASSES for cls in type(model).__mro__)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    hash_file(digest, path)
    return digest.hexdigest()


def callable_name(function: Callable[..., Any]) -> str:
    module = getattr(function, "__module__", None) or ""
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}.{name}" if module else name


def pad_rows(array: np.ndarray, size: int) -> np.ndarray:
    """Pad a short last chunk to a fixed batch size by repeating its last row (sliced off after)."""
    if len(array) == size:
        return array
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), axis=0)])


def run_in_fixed_batches(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
                         inputs: dict[str, np.ndarray], size: int | None) -> dict[str, np.ndarray]:
    """``run(inputs)`` for a model whose batch dimension is fixed at ``size`` (None: any size):
    the rows go through in chunks of ``size``, the last one padded, and the padding's rows of
    every output are sliced off before the chunks' outputs are concatenated."""
    n = len(next(iter(inputs.values())))
    if size is None or n == size:
        return run(inputs)
    parts = []
    for start in range(0, n, size):
        chunk = {name: pad_rows(array[start:start + size], size) for name, array in inputs.items()}
        stop = min(size, n - start)
        parts.append({name: value[:stop] for name, value in run(chunk).items()})
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def first_line(error: BaseException) -> str:
    """A backend exception's first line: enough to say what failed, without its traceback."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
