"""Plain Python callables ``f(batch) -> ndarray | dict[str, ndarray]``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.runners import callable_name

DEFAULT_OUTPUT_NAME = "output"


class CallableRunner:
    """Calls ``function`` with the batch: the array itself for one input, else the dict of arrays."""

    path = None
    sha256 = None
    nbytes = None
    notes: tuple[str, ...] = ()

    def __init__(self, function: Callable[[Any], Any]):
        self.function = function
        self.description = callable_name(function)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch: Any = next(iter(inputs.values())) if len(inputs) == 1 else inputs
        try:
            result = self.function(batch)
        except QuantGuardError:
            raise
        except Exception as error:  # the user's model: name it and the calling convention
            raise QuantGuardError(
                f"{self.description} raised {type(error).__name__}: {error} (a model callable is "
                "called as f(batch) with one argument: an array, or a dict of named arrays when "
                f"the data has several inputs; this batch: {_shapes(inputs)})") from error
        if isinstance(result, Mapping):
            outputs = {str(name): np.asarray(value) for name, value in result.items()}
        else:
            outputs = {DEFAULT_OUTPUT_NAME: np.asarray(result)}
        if not outputs:
            raise QuantGuardError(f"{self.description} returned an empty dict; return an array or "
                                  "a dict of named arrays")
        for name, value in outputs.items():
            if value.dtype.hasobject or value.ndim == 0:
                raise QuantGuardError(f"{self.description} returned {name!r} as a "
                                      f"{'scalar' if value.ndim == 0 else 'object array'}; return "
                                      "a numeric array with one row per sample")
        return outputs


def _shapes(inputs: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{name} {list(np.shape(value))}" for name, value in inputs.items())
