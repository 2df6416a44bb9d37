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


@runtime_checkable
class Runner(Protocol):
    description: str
    path: str | None
    sha256: str | None
    nbytes: int | None

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def make_runner(model: Any, *, base_dir: Path | None = None, role: str = "model") -> Runner:
    """A runner for what SPEC §2 "Models" accepts: a model file path, or a callable on a batch."""
    if isinstance(model, Runner):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            where = f" (resolved against {base_dir})" if base_dir is not None else ""
            raise QuantGuardError(f"{role} model file not found: {path}{where}; check the path, "
                                  "relative paths resolve against pytest's rootdir")
        if path.suffix.lower() == ".onnx":
            from pytest_quantguard.runners.onnx import OnnxRunner

            return OnnxRunner(path, description=shown(path, base_dir))
        raise QuantGuardError(f"{path}: unsupported {role} model format {path.suffix!r}; this version "
                              "runs .onnx files and Python callables")
    if callable(model):
        from pytest_quantguard.runners.callables import CallableRunner

        return CallableRunner(model)
    raise QuantGuardError(f"{role}: expected a path to a .onnx file or a callable f(batch) -> array, "
                          f"got {type(model).__name__}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    hash_file(digest, path)
    return digest.hexdigest()


def callable_name(function: Callable[..., Any]) -> str:
    module = getattr(function, "__module__", None) or ""
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}.{name}" if module else name
