"""Regression metrics on real-valued predictions and targets (one value, or k values, per sample).

Records are the predictions themselves (float64, (n, k)); errors are formed with the targets at
the end. With k > 1 outputs MAE and RMSE pool every output of a sample (scikit-learn averages the
per-output scores instead: the two agree for one output); R² needs one output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Metric, Scores, squeeze_trailing
from pytest_quantguard.metrics.scores import MeanScores, R2Scores

# SPEC §1 / the seed's decision framework: said in every regression comparison's message.
REGRESSION_CAUTION = ("post-training quantization is fragile on regression, where subtle numerical "
                      "precision matters: check the errors on the extremes of the target range, "
                      "not only the mean, before shipping")


def _rows(name: str, values: np.ndarray, what: str) -> np.ndarray:
    values = squeeze_trailing(np.asarray(values))
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
        raise QuantGuardError(f"{name} needs numeric {what}, got {values.dtype}")
    if values.ndim == 1:
        return values.astype(np.float64)[:, None]
    if values.ndim == 2:
        return values.astype(np.float64)
    raise QuantGuardError(f"{name} needs one value (or one row of values) per sample as {what}, "
                          f"got shape {list(values.shape)}; choose the regression output with "
                          "output=")


@dataclass(frozen=True)
class RegressionMetric(Metric):
    def reduce(self, output, labels, batch):
        return _rows(self.name, output, "outputs")

    def _errors(self, records: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        if labels is None:
            raise QuantGuardError(f"{self.name} needs labels (the regression targets)")
        targets = _rows(self.name, labels, "labels (targets)")
        if targets.shape != records.shape:
            raise QuantGuardError(f"{self.name}: the model gives {records.shape[1]} value(s) per "
                                  f"sample and the labels {targets.shape[1]}; choose the matching "
                                  "output with output=, or store one target per output")
        if not np.isfinite(targets).all():
            raise QuantGuardError(f"{self.name}: the labels (targets) contain NaN or Inf; remove "
                                  "those samples from the validation set")
        return records - targets

    def scores(self, reference, candidate, labels, paired) -> Scores:
        reference_errors = self._errors(reference, labels)
        candidate_errors = self._errors(candidate, labels)
        if self.name == "mae":
            return MeanScores(np.abs(reference_errors).mean(axis=1),
                              np.abs(candidate_errors).mean(axis=1), "mae", False)
        if self.name == "rmse":
            return MeanScores((reference_errors ** 2).mean(axis=1),
                              (candidate_errors ** 2).mean(axis=1), "rmse", False, power=0.5)
        if reference_errors.shape[1] != 1:
            raise QuantGuardError(f"r2 needs one output per sample, got {reference_errors.shape[1]}"
                                  "; choose one with output=")
        return R2Scores(reference_errors[:, 0], candidate_errors[:, 0],
                        _rows(self.name, labels, "labels")[:, 0])


MAE = RegressionMetric(name="mae", higher_is_better=False, kind="continuous", interval_method="bca",
                       default_relative=True, needs_labels=True, task="regression",
                       description="mean absolute error")
RMSE = RegressionMetric(name="rmse", higher_is_better=False, kind="continuous",
                        interval_method="bca", default_relative=True, needs_labels=True,
                        task="regression", description="root mean squared error")
R2 = RegressionMetric(name="r2", higher_is_better=True, kind="continuous", interval_method="bca",
                      default_relative=False, needs_labels=True, task="regression",
                      margins=("absolute",), description="coefficient of determination, 1 - SSE/SST")
