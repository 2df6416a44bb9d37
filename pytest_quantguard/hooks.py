"""Hooks other plugins (and conftest.py files) implement to extend quantguard."""

from __future__ import annotations

import pytest


@pytest.hookspec(historic=True)
def pytest_quantguard_register_metrics(register) -> None:
    """Register custom metrics, usable by name in the marker and in ``quant_compare``.

    ``register`` is ``pytest_quantguard.register_metric``: call it once per metric, e.g.
    ``register("within_5", per_sample=lambda output, labels: ..., kind="binary")``. Called once
    per process at configure time (on every pytest-xdist worker too); historic, so a conftest.py
    loaded later (in a sub-folder, during collection) is called as soon as it is registered.
    """


@pytest.hookspec
def pytest_quantguard_update_json(config, report) -> None:
    """Add fields to the JSON report (``--quant-report``) before it is written: ``report`` is the
    dict about to be serialised (builtins only; keep it JSON-serialisable). Called on the
    controller only, once per session."""
