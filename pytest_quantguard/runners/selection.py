"""A runner that keeps one of another runner's outputs (``quant_model(model, output=...)``)."""

from __future__ import annotations

import numpy as np

from pytest_quantguard.errors import QuantGuardError


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

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.runner(inputs)
        names = list(outputs)
        if isinstance(self.output, int):
            if self.output >= len(names):
                raise QuantGuardError(f"{self.runner.description}: output={self.output} is out of "
                                      f"range; the model has {len(names)} output(s): {names}")
            name = names[self.output]
        elif self.output in outputs:
            name = self.output
        else:
            raise QuantGuardError(f"{self.runner.description}: no output named {self.output!r}; "
                                  f"its outputs are {names}")
        return {name: outputs[name]}

    def __getattr__(self, name: str):  # e.g. fp16_on_cpu, inputs: the wrapped runner's
        return getattr(self.runner, name)


def select_output(runner, output: str | int) -> SelectedOutput:
    return SelectedOutput(runner, output)
