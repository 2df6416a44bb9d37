"""pytest-quantguard: may this quantized model ship? A paired, evidence-backed answer.

Public names only (docs/architecture.md). They load on first use (PEP 562), so loading the pytest
plugin, which happens in every pytest run where the package is installed, imports neither numpy nor
any backend; importing this package never imports torch, onnxruntime, onnx, scipy or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_quantguard._version import __version__

if TYPE_CHECKING:
    from pytest_quantguard.comparison import Comparison, Interval, compare
    from pytest_quantguard.data import ValidationSet
    from pytest_quantguard.errors import QuantGuardWarning
    from pytest_quantguard.metrics import register_metric
    from pytest_quantguard.stats.plan import plan
    from pytest_quantguard.verdict import Verdict

__all__ = ["Comparison", "Interval", "QuantGuardWarning", "ValidationSet", "Verdict", "__version__",
           "compare", "plan", "quant_tolerance", "register_metric"]

_LAZY = {
    "compare": "pytest_quantguard.comparison",
    "Comparison": "pytest_quantguard.comparison",
    "Interval": "pytest_quantguard.comparison",
    "ValidationSet": "pytest_quantguard.data",
    "QuantGuardWarning": "pytest_quantguard.errors",
    "plan": "pytest_quantguard.stats.plan",
    "Verdict": "pytest_quantguard.verdict",
    "register_metric": "pytest_quantguard.metrics",
}


def __getattr__(name: str) -> Any:
    if name == "quant_tolerance":
        # pytest.mark.quant_tolerance itself, so both spellings behave alike.
        import pytest

        return pytest.mark.quant_tolerance
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pytest_quantguard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
