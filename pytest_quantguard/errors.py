"""The two ways quantguard talks back: an error that stops a comparison, a warning that does not."""

from __future__ import annotations

import pytest


class QuantGuardError(Exception):
    """Bad input or configuration. The message names the file (or argument) and the fix."""


class MissingBackendError(QuantGuardError):
    """A model needs a backend that is not installed; the message names the extra to install."""

    def __init__(self, backend: str, extra: str, what: str):
        super().__init__(
            f"{what} needs {backend}, which is not installed. "
            f"Install it with: pip install 'pytest-quantguard[{extra}]'"
        )


class QuantGuardWarning(pytest.PytestWarning):
    """A result that passes but deserves a look (e.g. inconclusive under --quant-inconclusive warn)."""
