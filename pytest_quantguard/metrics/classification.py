"""Classification metrics on class scores (logits or probabilities) and integer labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Metric, Scores, integer_labels, squeeze_trailing
from pytest_quantguard.metrics.scores import BinaryScores, MacroF1Scores, PerClassScores


def predicted_records(name: str, output: np.ndarray) -> np.ndarray:
    """The predicted class (integer) for a multi-column output; the raw score (float) for a
    one-column output, so the threshold (0.5 for probabilities in [0, 1], else 0 for logits) is
    chosen from the whole set, never from one batch. Ties go to the lowest class index (argmax)."""
    output = squeeze_trailing(output)
    if output.ndim == 1:
        return output if np.issubdtype(output.dtype, np.floating) else output.astype(np.int64)
    if output.ndim != 2:
        raise QuantGuardError(f"{name} needs one row of class scores per sample, got an output of "
                              f"shape {list(output.shape)}; choose the class-score output with "
                              "output=")
    return np.argmax(output, axis=1)


def predicted_classes(records: np.ndarray) -> np.ndarray:
    if np.issubdtype(records.dtype, np.floating):
        threshold = 0.5 if records.min() >= 0.0 and records.max() <= 1.0 else 0.0
        return (records > threshold).astype(np.int64)
    return records.astype(np.int64)


def _labels(name: str, labels: np.ndarray | None) -> np.ndarray:
    if labels is None:
        raise QuantGuardError(f"{name} needs labels")
    if labels.ndim != 1:
        raise QuantGuardError(f"{name} needs one class label per sample, got labels of shape "
                              f"{list(labels.shape)}")
    return integer_labels(labels)


def _truth(name: str, labels: np.ndarray | None, *records: np.ndarray) -> np.ndarray:
    """The integer labels; a one-column score is thresholded into classes 0 and 1, so its labels
    must be 0 or 1 (other values, e.g. a regressor's targets, would score every sample wrong for
    both models and so pass unnoticed)."""
    truth = _labels(name, labels)
    if any(np.issubdtype(record.dtype, np.floating) for record in records):
        outside = ~np.isin(truth, (0, 1))
        if outside.any():
            raise QuantGuardError(
                f"{name}: a model gives one score per sample, thresholded into classes 0 and 1, "
                f"but {int(outside.sum())} of {len(truth)} labels are other values (such as "
                f"{truth[outside][:3].tolist()}); for a regression model set task = "
                "\"regression\" (manifest, or ValidationSet(..., task=\"regression\")) or use "
                "metric='rmse', 'mae' or 'r2'; for classes, give one score per class")
    return truth


@dataclass(frozen=True)
class Accuracy(Metric):
    """Top-1 accuracy: per-sample 0/1."""

    def reduce(self, output, labels, batch):
        return predicted_records(self.name, output)

    def scores(self, reference, candidate, labels, paired) -> Scores:
        truth = _truth(self.name, labels, reference, candidate)
        return BinaryScores((predicted_classes(reference) == truth).astype(np.int8),
                            (predicted_classes(candidate) == truth).astype(np.int8), self.name)


@dataclass(frozen=True)
class TopK(Metric):
    """Top-k accuracy: right when fewer than k classes score above the label's class (ties go to
    the lower class index, as argmax does; scikit-learn's ``top_k_accuracy_score`` breaks ties
    toward the higher index, so the two can differ only on tied scores)."""

    def reduce(self, output, labels, batch):
        k = self.k
        output = squeeze_trailing(output)
        if output.ndim != 2:
            raise QuantGuardError(f"{self.name} needs one row of class scores per sample, got an "
                                  f"output of shape {list(output.shape)}; choose the class-score "
                                  "output with output=")
        if output.shape[1] <= k:
            raise QuantGuardError(f"{self.name}: the output has {output.shape[1]} classes, so "
                                  f"every sample is in the top {k}; use a smaller k")
        truth = _labels(self.name, labels)
        inside = (truth >= 0) & (truth < output.shape[1])
        rows = np.arange(len(output))
        label_score = output[rows, np.clip(truth, 0, output.shape[1] - 1)][:, None]
        columns = np.arange(output.shape[1])[None, :]
        above = (output > label_score) | ((output == label_score) & (columns < truth[:, None]))
        return ((above.sum(axis=1) < k) & inside).astype(np.int8)

    @property
    def key(self) -> str:
        """``top5`` names its k already: its key is its name (``top_k`` adds ``(k=5)``)."""
        return self.name if self.name != "top_k" else super().key

    @property
    def k(self) -> int:
        k = self.options.get("k")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise QuantGuardError(f"metric {self.name!r} needs k= a whole number >= 1 (e.g. "
                                  f"metric='top5', or metric='top_k' with k=5); got k={k!r}")
        return int(k)

    def scores(self, reference, candidate, labels, paired) -> Scores:
        return BinaryScores(reference.astype(np.int8), candidate.astype(np.int8), self.name)


@dataclass(frozen=True)
class MacroF1(Metric):
    """scikit-learn's ``f1_score(average="macro")``: the unweighted mean of per-class F1 over the
    classes in the labels or the model's predictions."""

    def reduce(self, output, labels, batch):
        return predicted_records(self.name, output)

    def scores(self, reference, candidate, labels, paired) -> Scores:
        return MacroF1Scores(_truth(self.name, labels, reference, candidate),
                             predicted_classes(reference),
                             predicted_classes(candidate))


@dataclass(frozen=True)
class PerClassAccuracy(Metric):
    """Every class's accuracy (its recall); the gate holds the worst class."""

    def reduce(self, output, labels, batch):
        return predicted_records(self.name, output)

    def scores(self, reference, candidate, labels, paired) -> Scores:
        truth = _truth(self.name, labels, reference, candidate)
        return PerClassScores(truth, (predicted_classes(reference) == truth).astype(np.int8),
                              (predicted_classes(candidate) == truth).astype(np.int8))


ACCURACY = Accuracy(name="accuracy", higher_is_better=True, kind="binary",
                    interval_method="percentile+tango", default_relative=False, needs_labels=True,
                    margins=("absolute", "relative", "error-increase"),
                    description="share of samples whose top-scored class is the label")


def top_k(k: int | None, name: str | None = None) -> TopK:
    return TopK(name=name or f"top{k}", higher_is_better=True, kind="binary",
                interval_method="percentile+tango", default_relative=False, needs_labels=True,
                margins=("absolute", "relative", "error-increase"),
                option_names=("k",) if name == "top_k" else (),
                options={} if k is None else {"k": k},
                description="share of samples whose label is among the k top-scored classes")


MACRO_F1 = MacroF1(name="macro_f1", higher_is_better=True, kind="corpus", interval_method="bca",
                   default_relative=False, needs_labels=True, margins=("absolute",),
                   description="unweighted mean of the per-class F1 scores")
PER_CLASS_ACCURACY = PerClassAccuracy(
    name="per_class_accuracy", higher_is_better=True, kind="binary",
    interval_method="percentile+tango", default_relative=False, needs_labels=True,
    margins=("absolute", "relative", "error-increase"),
    description="each class's accuracy (recall); the worst class is gated")
