"""Shared fixtures. Heavy C extensions are imported here, at the top, so pytester's in-process
runs (which snapshot and restore sys.modules) never import them for the first time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np  # (see the module docstring)
import onnx  # noqa: F401  (its protobuf extension aborts when imported twice: the diagnosis uses it)
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


def model_wrong_on(wrong: np.ndarray):
    """A two-class 'model' on sample indices: right (class 0) except on the ``wrong`` mask."""
    def predict(batch: np.ndarray) -> np.ndarray:
        index = batch[:, 0].astype(np.int64)
        scores = np.zeros((len(index), 2), np.float32)
        scores[np.arange(len(index)), wrong[index].astype(np.int64)] = 1.0
        return scores

    return predict


def indexed(n: int):
    """Inputs that are the sample indices (for ``model_wrong_on``), and all-zero labels."""
    return np.arange(n, dtype=np.float64)[:, None], np.zeros(n, np.int64)


@pytest.fixture(scope="session")
def rounded_diabetes():
    """Held-out diabetes patients: a ridge regression, the same with its coefficients on a coarse
    grid, and the held-out set."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    from pytest_quantguard import ValidationSet

    inputs, targets = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.05).fit(inputs[:300], targets[:300])
    step = np.abs(model.coef_).max() / 3
    rounded = np.round(model.coef_ / step) * step
    return (model.predict, lambda x: x @ rounded + model.intercept_,
            ValidationSet(inputs[300:], targets[300:], task="regression"))
