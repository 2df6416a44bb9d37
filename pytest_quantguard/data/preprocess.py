"""The manifest's ``[preprocess]`` table: scale, per-channel mean/std and layout, applied per batch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard.errors import QuantGuardError

PREPROCESS_KEYS = ("scale", "mean", "std", "layout", "inputs")
# The layout the model wants. Stored and decoded images are NHWC (channels last).
LAYOUTS = ("NHWC", "NCHW")
EXAMPLE = '[preprocess]\nscale = "1/255"\nmean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\n' \
          'layout = "NCHW"'


@dataclass(frozen=True)
class Preprocess:
    """``x * scale``, then ``(x - mean) / std`` on the last (channel) axis, then the layout.

    ``inputs`` names the arrays it applies to; left out, it applies to the set's only input.
    """

    scale: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str = "NHWC"
    inputs: tuple[str, ...] | None = None

    @classmethod
    def from_table(cls, table: Any, file: Path) -> Preprocess:
        """Validate the ``[preprocess]`` table of ``file`` (keys and value types)."""
        if not isinstance(table, Mapping):
            raise QuantGuardError(f"{file}: preprocess must be a table, e.g.\n{EXAMPLE}")
        unknown = sorted(set(table) - set(PREPROCESS_KEYS))
        if unknown:
            raise QuantGuardError(f"{file}: unknown [preprocess] key(s) {', '.join(unknown)}; the "
                                  f"[preprocess] keys are {', '.join(PREPROCESS_KEYS)}")
        layout = table.get("layout", "NHWC")
        if layout not in LAYOUTS:
            raise QuantGuardError(f"{file}: [preprocess] layout = {layout!r} is unknown; use "
                                  '"NCHW" (channels first, what most PyTorch/ONNX vision models '
                                  'want) or "NHWC" (as stored, the default)')
        inputs = table.get("inputs")
        if inputs is not None and (not isinstance(inputs, list) or not inputs
                                   or not all(isinstance(name, str) for name in inputs)):
            raise QuantGuardError(f'{file}: [preprocess] inputs must be a list of input names, e.g. '
                                  'inputs = ["pixels"]')
        std = _numbers(table, "std", file)
        if std is not None and any(value == 0 for value in std):
            raise QuantGuardError(f"{file}: [preprocess] std has a 0; every std must be non-zero")
        return cls(scale=_scale(table, file), mean=_numbers(table, "mean", file), std=std,
                   layout=layout, inputs=None if inputs is None else tuple(inputs))

    def bind(self, input_names: list[str], sample_shapes: Mapping[str, tuple[int, ...]],
             file: Path) -> Preprocess:
        """Check the table against the data (names, channel counts, layout); name the targets."""
        if self.inputs is None:
            if len(input_names) != 1:
                raise QuantGuardError(f"{file}: the data has several inputs {input_names}; name the "
                                      "ones to preprocess: [preprocess] inputs = "
                                      f'["{input_names[0]}"]')
            targets: tuple[str, ...] = (input_names[0],)
        else:
            missing = [name for name in self.inputs if name not in input_names]
            if missing:
                raise QuantGuardError(f"{file}: [preprocess] inputs names {missing}, which the data "
                                      f"does not have; its inputs are {input_names}")
            targets = self.inputs
        for name in targets:
            shape = tuple(sample_shapes[name])
            channels = shape[-1] if shape else 1
            for key in ("mean", "std"):
                values = getattr(self, key)
                if values is not None and len(values) not in (1, channels):
                    raise QuantGuardError(
                        f"{file}: [preprocess] {key} has {len(values)} values but input {name!r} has "
                        f"{channels} channel(s) on its last axis (samples of shape {list(shape)}); "
                        "give one value per channel, or a single number")
            if self.layout == "NCHW" and len(shape) not in (2, 3):
                raise QuantGuardError(
                    f'{file}: [preprocess] layout = "NCHW" needs image samples (H×W×C, or H×W for '
                    f"grayscale) but input {name!r} has samples of shape {list(shape)}; remove "
                    "layout or store the images channels-last")
        return replace(self, inputs=targets)

    def apply(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The batch with its target inputs preprocessed (float32; float64 data stays float64)."""
        out = dict(inputs)
        for name in self.inputs or tuple(inputs)[:1]:
            out[name] = self._one(inputs[name])
        return out

    def _one(self, array: np.ndarray) -> np.ndarray:
        dtype = np.float64 if array.dtype == np.float64 else np.float32
        x = np.array(array, dtype=dtype)  # always a copy: the stored data is never changed
        if self.scale is not None:
            x *= dtype(self.scale)
        if self.mean is not None:
            x -= np.asarray(self.mean, dtype=dtype)
        if self.std is not None:
            x /= np.asarray(self.std, dtype=dtype)
        if self.layout == "NCHW":
            x = x[:, np.newaxis] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x


def _scale(table: Mapping[str, Any], file: Path) -> float | None:
    """A number, or a fraction written as a string (``"1/255"``: TOML has no arithmetic)."""
    value = table.get("scale")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise QuantGuardError(f'{file}: [preprocess] scale must be a number or a fraction such as '
                              f'"1/255"; got {table.get("scale")!r}')
    return float(value)


def _numbers(table: Mapping[str, Any], key: str, file: Path) -> tuple[float, ...] | None:
    value = table.get(key)
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                             and math.isfinite(v) for v in values):
        raise QuantGuardError(f"{file}: [preprocess] {key} must be a number or a list of numbers "
                              f"(one per channel); got {value!r}")
    return tuple(float(v) for v in values)
