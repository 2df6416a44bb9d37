"""A runner that keeps one of another runner's outputs (``quant_model(model, output=...)``), and
the rule for choosing an output by name or index."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pytest_quantguard.errors import QuantGuardError


def choose_output(outputs: Mapping[str, Any], output: str | int | None, what: str,
                  hint: str = "") -> str:
    """The name of the output that ``output`` picks: a name, an index in output order, or None for
    the first. ``what`` names the model in the error; ``hint`` ends the unknown-name error."""
    names = list(outputs)
    if output is None:
        return names[0]
    if isinstance(output, int):
        if output < 0 or output >= len(names):
            raise QuantGuardError(f"{what}: output={output} is out of range; the model has "
                                  f"{len(names)} output(s): {names} (index 0..{len(names) - 1})")
        return names[output]
    if output in outputs:
        return output
    raise QuantGuardError(f"{what}: no output named {output!r}; its outputs are {names}{hint}")


class SelectedOutput:
    """Delegates to ``runner`` and returns only ``output`` (a name, or an index in output order).

    Identity (``path``, ``sha256``, ``nbytes``) is the wrapped model's, so caching and reports see
    the same model; ``settings`` records the selection.
    """

    def __init__(self, runner, output: str | int):
        self.runner = runner
        self.output = output
        self.description = f"{runner.description}[{output!r}]"
        self.path = runner.path
        self.sha256 = runner.sha256
        self.nbytes = runner.nbytes
        self.settings = {"inner": getattr(runner, "settings", None), "output": output}

    @property
    def notes(self) -> tuple[str, ...]:
        """The wrapped runner's notes (none when it has no ``notes``: see ``Runner``)."""
        return tuple(getattr(self.runner, "notes", ()))

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.runner(inputs)
        name = choose_output(outputs, self.output, self.runner.description)
        return {name: outputs[name]}

    def __getattr__(self, name: str):  # e.g. fp16_on_cpu, inputs: the wrapped runner's
        return getattr(self.runner, name)


def select_output(runner, output: str | int) -> SelectedOutput:
    return SelectedOutput(runner, output)
