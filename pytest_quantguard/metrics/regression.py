"""Regression metrics on real-valued predictions and targets (one value, or k values, per sample),
and their families' ``Scores``.

Records are the predictions themselves (float64, (n, k)); errors are formed with the targets at
the end. With k > 1 outputs MAE and RMSE pool every output of a sample (scikit-learn averages the
per-output scores instead: the two agree for one output); R² needs one output.

| family | scores | interval |
|---|---|---|
| ``MeanScores`` (MAE, RMSE, per-sample) | mean (RMSE: root of the mean) | ``bca``, ``linearized`` |
| ``R2Scores`` | 1 - SSE/SST | ``bca`` |

With groups every family resamples groups (``cluster-bca``); above 1e5 samples the delta method
(``linearized``; docs/intervals.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import (
    Context,
    Discordance,
    Evaluation,
    Metric,
    Scores,
    absolute_change,
    largest_change,
    relative_change,
    require_margin,
    squeeze_trailing,
    variance_sizing,
)
from pytest_quantguard.stats.families import (
    difference_interval,
    influence_kurtosis,
    power_difference_interval,
    r2_interval,
    ratio_interval,
)

# Above this kurtosis of the samples' influence on the RMSE ratio the squared errors are heavy-tailed
# and the RMSE interval may be too narrow: Gaussian errors exceed it in 1% of sets of 200 samples,
# Student t3 errors in 42% (n = 200) and 88% (n = 1,000) (docs/intervals.md, "Heavy-tailed errors").
HEAVY_TAILS_ABOVE = 20.0


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
    """A regression metric; the regression caution is a risk note (docs/risks.md, "Regression")."""

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


# --- Scores -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeanScores(Scores):
    """Per-sample values of both models; a model's score is mean(values) ** power (RMSE: squared
    errors, power 1/2)."""

    reference: np.ndarray
    candidate: np.ndarray
    name: str
    higher_is_better: bool
    power: float = 1.0

    @property
    def n(self) -> int:
        return len(self.reference)

    def subset(self, mask: np.ndarray) -> MeanScores:
        return replace(self, reference=self.reference[mask], candidate=self.candidate[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return self.reference, self.candidate

    def discordance(self) -> Discordance:
        """The samples whose value changed, the largest change (either way) first."""
        change = self.candidate - self.reference
        return largest_change(change != 0, np.abs(change))

    def evaluate(self, context: Context) -> Evaluation:
        require_margin(self.name, context.margin, ("absolute", "relative"))
        reference = float(np.mean(self.reference)) ** self.power
        candidate = float(np.mean(self.candidate)) ** self.power
        options = dict(groups=context.groups, higher_is_better=self.higher_is_better,
                       **context.resampling)
        if context.margin == "relative":
            drop = relative_change(reference, candidate, self.higher_is_better, self.name,
                                   context.where)
            result = ratio_interval(self.reference, self.candidate, power=self.power, **options)
        else:
            drop = absolute_change(reference, candidate, self.higher_is_better)
            if self.power == 1.0:
                result = difference_interval(self.reference, self.candidate, **options)
            else:
                result = power_difference_interval(self.reference, self.candidate,
                                                   power=self.power, **options)
        return Evaluation(reference, candidate, drop, result,
                          sizing=variance_sizing(result.details, self.n),
                          notes=self._heavy_tail_notes(result))

    def _heavy_tail_notes(self, result) -> tuple[str, ...]:
        """RMSE (a power mean of squared errors): say when a few samples dominate the sums."""
        if self.power == 1.0:
            return ()
        kurtosis = influence_kurtosis(self.reference, self.candidate)
        result.details["influence_kurtosis"] = kurtosis
        if not kurtosis > HEAVY_TAILS_ABOVE:
            return ()
        return (f"the squared errors are heavy-tailed (influence kurtosis {kurtosis:.0f} > "
                f"{HEAVY_TAILS_ABOVE:.0f}: a few samples dominate the sums), so the {self.name} "
                "interval may be too narrow: on simulated Student t3 errors it covered 0.92-0.93 "
                "instead of 0.95 (docs/intervals.md, \"Heavy-tailed errors\"); mae's interval "
                "held there",)


@dataclass(frozen=True)
class R2Scores(Scores):
    """Per-sample errors of both models and the targets: R² = 1 - SSE / SST."""

    reference_errors: np.ndarray
    candidate_errors: np.ndarray
    targets: np.ndarray

    @property
    def n(self) -> int:
        return len(self.targets)

    def subset(self, mask: np.ndarray) -> R2Scores:
        return R2Scores(self.reference_errors[mask], self.candidate_errors[mask], self.targets[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return self.reference_errors, self.candidate_errors

    def discordance(self) -> Discordance:
        """The samples whose absolute error changed, the largest change (either way) first."""
        change = np.abs(self.candidate_errors) - np.abs(self.reference_errors)
        return largest_change(change != 0, np.abs(change))

    def evaluate(self, context: Context) -> Evaluation:
        require_margin("r2", context.margin, ("absolute",))
        total = float(np.sum((self.targets - self.targets.mean()) ** 2))
        if not total > 0.0:
            raise QuantGuardError(f"{context.where}: the targets are constant, so R² is undefined; "
                                  "use mae or rmse")
        reference = 1.0 - float(np.sum(self.reference_errors ** 2)) / total
        candidate = 1.0 - float(np.sum(self.candidate_errors ** 2)) / total
        result = r2_interval(self.reference_errors, self.candidate_errors, self.targets,
                             groups=context.groups, **context.resampling)
        return Evaluation(reference, candidate, reference - candidate, result,
                          sizing=variance_sizing(result.details, self.n))
