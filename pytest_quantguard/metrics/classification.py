"""Classification metrics on class scores (logits or probabilities) and integer labels, and their
families' ``Scores``.

| family | scores | interval |
|---|---|---|
| ``BinaryScores`` (accuracy, top-k, 0/1) | mean of 0/1 | ``percentile+tango``, ``tango-score`` |
| ``MacroF1Scores`` | scikit-learn's macro F1 | ``bca`` over pattern counts |
| ``PerClassScores`` | each class's accuracy, the worst class reported | per class, as ``BinaryScores`` |

With groups every family resamples groups (``cluster-bca``; docs/intervals.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import (
    Context,
    Evaluation,
    Metric,
    Scores,
    Sizing,
    discordance_sizing,
    integer_labels,
    relative_change,
    require_margin,
    squeeze_trailing,
    variance_sizing,
)
from pytest_quantguard.metrics.breakdown import breakdown
from pytest_quantguard.stats.families import difference_interval, macro_f1_interval, ratio_interval
from pytest_quantguard.stats.paired_binary import (
    mcnemar_exact_p,
    paired_binary_interval,
    paired_ratio_interval,
)
from pytest_quantguard.stats.result import IntervalResult
from pytest_quantguard.verdict import decide, severity


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

    def check_options(self) -> None:
        """``k=`` is required (``top_k``): say so before any model runs."""
        _ = self.k

    def scores(self, reference, candidate, labels, paired) -> Scores:
        return BinaryScores(reference.astype(np.int8), candidate.astype(np.int8), self.name)


@dataclass(frozen=True)
class MacroF1(Metric):
    """scikit-learn's ``f1_score(average="macro")``: the unweighted mean of per-class F1 over the
    classes in the labels or the model's predictions."""

    @property
    def points(self) -> bool:
        """A macro F1 lies in [0, 1]: its absolute drop is shown in points."""
        return True

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


# --- Scores -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BinaryScores(Scores):
    """0/1 per-sample scores of both models (1 = right)."""

    reference: np.ndarray
    candidate: np.ndarray
    name: str = "accuracy"

    @property
    def n(self) -> int:
        return len(self.reference)

    def subset(self, mask: np.ndarray) -> BinaryScores:
        return replace(self, reference=self.reference[mask], candidate=self.candidate[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return self.reference, self.candidate

    def correctness(self):
        return self.reference, self.candidate

    def evaluate(self, context: Context) -> Evaluation:
        require_margin(self.name, context.margin, ("absolute", "relative", "error-increase"))
        reference = float(np.mean(self.reference))
        candidate = float(np.mean(self.candidate))
        if context.margin == "absolute":
            drop = reference - candidate
        elif context.margin == "error-increase":
            if reference >= 1.0:
                raise QuantGuardError(f"{context.where}: the reference makes no error on these "
                                      f"{self.n} samples, so an error-rate increase relative to it "
                                      "is undefined; use max_drop (an absolute limit) or more data")
            drop = ((1.0 - candidate) - (1.0 - reference)) / (1.0 - reference)
        else:
            drop = relative_change(reference, candidate, True, self.name, context.where)
        interval = self._interval(context)
        return Evaluation(reference, candidate, drop, interval,
                          sizing=self._sizing(interval, context))

    def _sizing(self, interval: IntervalResult, context: Context) -> Sizing:
        """Sample by sample on the absolute scale: by the discordance; ratio margins and groups:
        by the per-unit variance of the linearized drop."""
        if context.groups is None and context.margin == "absolute":
            return discordance_sizing(interval.details["reference_only"],
                                      interval.details["candidate_only"], self.n)
        return variance_sizing(interval.details, self.n)

    def _interval(self, context: Context) -> IntervalResult:
        reference_right = self.reference == 1
        candidate_right = self.candidate == 1
        cells = tuple(int(np.count_nonzero(mask)) for mask in (
            reference_right & candidate_right, reference_right & ~candidate_right,
            ~reference_right & candidate_right, ~reference_right & ~candidate_right))
        b, c = cells[1], cells[2]
        options = context.resampling
        if context.groups is None:
            if context.margin == "absolute":
                result = paired_binary_interval(b, c, self.n, **options)
            else:
                result = paired_ratio_interval(cells, context.margin, **options)
            result.details["mcnemar_p"] = mcnemar_exact_p(b, c)
            return result
        reference = self.reference.astype(np.float64)
        candidate = self.candidate.astype(np.float64)
        grouped = dict(groups=context.groups, **options)
        if context.margin == "absolute":
            result = difference_interval(reference, candidate, higher_is_better=True, **grouped)
        elif context.margin == "relative":
            result = ratio_interval(reference, candidate, higher_is_better=True, **grouped)
        else:  # error-increase: the ratio of the error rates' sums
            result = ratio_interval(1.0 - reference, 1.0 - candidate, higher_is_better=False,
                                    **grouped)
        return IntervalResult(result.low, result.high, result.method,
                              {**result.details, "reference_only": b, "candidate_only": c})


def macro_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    """scikit-learn's ``f1_score(average="macro")``: the mean over the classes present in the
    labels or the predictions of 2 TP / (predicted + true)."""
    classes = np.union1d(labels, predicted)
    size = int(classes.max()) + 1 if len(classes) else 0
    true = np.bincount(labels, minlength=size)[classes]
    guessed = np.bincount(predicted, minlength=size)[classes]
    hits = np.bincount(labels[labels == predicted], minlength=size)[classes]
    return float(np.mean(2.0 * hits / (true + guessed)))


@dataclass(frozen=True)
class MacroF1Scores(Scores):
    labels: np.ndarray
    reference: np.ndarray  # predicted classes
    candidate: np.ndarray

    @property
    def n(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> MacroF1Scores:
        return MacroF1Scores(self.labels[mask], self.reference[mask], self.candidate[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return self.labels, self.reference, self.candidate

    def correctness(self):
        return ((self.reference == self.labels).astype(np.int8),
                (self.candidate == self.labels).astype(np.int8))

    def evaluate(self, context: Context) -> Evaluation:
        require_margin("macro_f1", context.margin, ("absolute",))
        if self.labels.min() < 0 or min(self.reference.min(), self.candidate.min()) < 0:
            raise QuantGuardError(f"{context.where}: macro_f1 needs class indices >= 0")
        reference = macro_f1(self.labels, self.reference)
        candidate = macro_f1(self.labels, self.candidate)
        result = macro_f1_interval(self.labels, self.reference, self.candidate,
                                   groups=context.groups, **context.resampling)
        return Evaluation(reference, candidate, reference - candidate, result,
                          sizing=variance_sizing(result.details, self.n))


@dataclass(frozen=True)
class PerClassScores(Scores):
    """Every class's accuracy (recall) is gated; the evaluation reports the worst class (the most
    severe verdict, then the highest upper bound) and lists every class in ``details``."""

    labels: np.ndarray
    reference: np.ndarray  # 0/1
    candidate: np.ndarray
    class_names: tuple[str, ...] | None = None

    @property
    def n(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> PerClassScores:
        return replace(self, labels=self.labels[mask], reference=self.reference[mask],
                       candidate=self.candidate[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return self.labels, self.reference, self.candidate

    def correctness(self):
        return self.reference, self.candidate

    def evaluate(self, context: Context) -> Evaluation:
        rows = breakdown(BinaryScores(self.reference, self.candidate, "per_class_accuracy"),
                         self.labels, context, self.class_names)
        judged = [row for row in rows if "error" not in row]
        if not judged:
            raise QuantGuardError(rows[0]["error"] if rows else f"{context.where}: no samples")
        for row in judged:
            row["verdict"] = str(decide(row["drop"], row["low"], row["high"],
                                        max_drop=context.max_drop, qat_limit=context.qat_limit,
                                        gate=context.gate).verdict)
        worst = max(judged, key=lambda row: (severity(row["verdict"]), row["high"], row["drop"]))
        inside = self.labels == worst["label"]
        # the worst class's discordant counts: they size "about N samples of this class"
        reference_only = int(np.count_nonzero(inside & (self.reference == 1) & (self.candidate == 0)))
        candidate_only = int(np.count_nonzero(inside & (self.reference == 0) & (self.candidate == 1)))
        interval = IntervalResult(worst["low"], worst["high"], worst["method"], {
            "worst_class": worst["slice"], "worst_class_n": worst["n"],
            "reference_only": reference_only, "candidate_only": candidate_only})
        sizing = discordance_sizing(reference_only, candidate_only, worst["n"],
                                    unit=f"samples of class {worst['slice']!r}")
        return Evaluation(worst["reference"], worst["candidate"], worst["drop"], interval,
                          {"per_class": rows}, sizing=sizing)
