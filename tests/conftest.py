"""Shared fixtures. Heavy C extensions are imported here, at the top, so pytester's in-process
runs (which snapshot and restore sys.modules) never import them for the first time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy  # noqa: F401  (see the module docstring)
import onnxruntime  # noqa: F401
import pytest
import sklearn.datasets  # noqa: F401  (numpy.fft and scipy cannot be loaded twice per process)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "example_project"
MODELS = EXAMPLE / "models"
PROD_VAL = EXAMPLE / "prod_val"

# pytest-xdist starts its workers with COLUMNS set: the plugin's runs here show the summary table
# whole, as a pipe or a CI log does, unless a test sets COLUMNS (docs/reports.md, "Terminal summary")
os.environ.pop("COLUMNS", None)


@pytest.fixture
def example(pytester: pytest.Pytester) -> Path:
    """A pytester folder holding copies of the example's models/ and prod_val/."""
    shutil.copytree(MODELS, pytester.path / "models")
    shutil.copytree(PROD_VAL, pytester.path / "prod_val")
    return pytester.path


@pytest.fixture(params=[[], ["-n", "2"]], ids=["serial", "xdist"])
def plugin_args(request: pytest.FixtureRequest) -> list[str]:
    """Run a plugin scenario serially and under pytest-xdist with two workers."""
    return list(request.param)
