"""pytest-quantguard: may this quantized model ship? A paired, evidence-backed answer.

Public names only (SPEC §2). Importing this package never imports torch, onnxruntime, onnx, scipy
or matplotlib.
"""

from __future__ import annotations

from typing import Any

from pytest_quantguard._version import __version__
from pytest_quantguard.compare import Comparison, Interval, compare
from pytest_quantguard.data import ValidationSet
from pytest_quantguard.errors import QuantGuardWarning
from pytest_quantguard.stats import plan
from pytest_quantguard.verdict import Verdict

__all__ = ["Comparison", "Interval", "QuantGuardWarning", "ValidationSet", "Verdict", "__version__",
           "compare", "plan", "quant_tolerance", "register_metric"]


def register_metric(name: str, **declaration: Any):
    """Register a custom metric by name (SPEC §2). Not implemented in this version yet."""
    from pytest_quantguard.errors import QuantGuardError

    raise QuantGuardError(f"register_metric({name!r}): custom metrics are part of the contract but "
                          "not implemented in this version yet")


def __getattr__(name: str) -> Any:
    # ``quant_tolerance`` is pytest.mark.quant_tolerance itself, so both spellings behave alike.
    if name == "quant_tolerance":
        import pytest

        return pytest.mark.quant_tolerance
    raise AttributeError(f"module 'pytest_quantguard' has no attribute {name!r}")
