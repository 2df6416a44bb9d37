"""Two checks of the labels against the models, made before any drop is judged: labels the models
cannot produce (docs/data.md, "Labels the models cannot produce") and a reference no better than
chance on them (docs/intervals.md, "A reference at chance"). Either means the data or the
reference is wrong, not the quantization, and a drop measured on them reads near zero."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.metrics.base import squeeze_trailing
from pytest_quantguard.metrics.classification import predicted_classes

__all__ = ["ClassSpace", "ReferenceCheck", "check_label_space", "check_reference", "class_space",
           "misaligned_checks"]

# How many of the offending label values a message shows.
SHOWN_VALUES = 5


@dataclass(frozen=True)
class ClassSpace:
    """The classes one model's prediction output can name: ``scores`` (K class-score columns:
    0..K-1), ``one-column`` (one score thresholded into classes 0 and 1) or ``class-ids`` (integer
    predictions: the classes it was seen to predict)."""

    kind: str
    classes: int
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def merge(self, other: ClassSpace | None) -> ClassSpace:
        if other is None:
            return self
        if self.kind != other.kind:  # two kinds across models: the narrower score output decides
            return min(self, other, key=lambda space: (space.kind == "class-ids", space.classes))
        predicted = np.union1d(self.predicted, other.predicted)
        return ClassSpace(self.kind, min(self.classes, other.classes) if self.kind != "class-ids"
                          else int(predicted.max()) + 1, predicted)


def class_space(prediction: np.ndarray) -> ClassSpace | None:
    """What one batch of a model's chosen output says about its classes (None: not class scores,
    e.g. per-token logits)."""
    value = squeeze_trailing(prediction)
    if value.ndim == 2:
        return ClassSpace("scores", value.shape[1])
    if value.ndim != 1 or not len(value):
        return None
    if np.issubdtype(value.dtype, np.floating):
        return ClassSpace("one-column", 2)
    if np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_:
        predicted = np.unique(value.astype(np.int64))
        return ClassSpace("class-ids", int(predicted.max()) + 1, predicted)
    return None


def check_label_space(labels: np.ndarray | None, space: ClassSpace | None, where: str) -> None:
    """Labels outside the classes the models can produce are scored wrong for both models, which
    dilutes the drop toward zero: an error naming how many, which, and the likely cause.

    With class-score outputs (K columns; one column counts as the two classes 0 and 1) every label
    must lie in 0..K-1. Integer class-id outputs state no K: a negative label is outside; a label
    above every class either model predicts is outside when the labels look shifted (no label is
    0 while the models predict 0, and labels - 1 all fall among the predicted range) or when no
    label at all lies in that range; otherwise it warns (a rare class neither model predicts)."""
    if labels is None or space is None or labels.ndim != 1 or not len(labels):
        return
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_
            or (np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0))):
        return  # not class indices: the metric says so
    truth = labels.astype(np.int64)
    classes = space.classes
    outside = (truth < 0) | (truth >= classes)
    if not outside.any():
        return
    text = _outside_text(truth, outside, space, where)
    if space.kind == "class-ids" and not (truth < 0).any():
        shifted = (not (truth == 0).any() and 0 in space.predicted
                   and truth.min() >= 1 and truth.max() <= classes)
        if not shifted and not outside.all():
            warnings.warn(QuantGuardWarning(
                f"{text}. Both models score them wrong; if the models can predict these classes at "
                "all this is a rare class, otherwise fix the labels"), stacklevel=5)
            return
    raise QuantGuardError(f"{text}. {_cause(truth, outside, space)} Both models would score them "
                          "wrong, which dilutes any drop toward zero. For samples of no class "
                          "(open-set data) set ignore_label = <their label> in quantguard.toml "
                          "(ValidationSet(..., ignore_label=...)) to leave them out")


def _outside_text(truth: np.ndarray, outside: np.ndarray, space: ClassSpace, where: str) -> str:
    values = np.unique(truth[outside])
    shown = ", ".join(str(value) for value in values[:SHOWN_VALUES])
    more = f", … ({len(values) - SHOWN_VALUES} more values)" if len(values) > SHOWN_VALUES else ""
    what = {"scores": f"give {space.classes} class scores (classes 0..{space.classes - 1})",
            "one-column": "give one score per sample, thresholded into classes 0 and 1",
            "class-ids": f"predict class ids up to {space.classes - 1}"}[space.kind]
    return (f"{where}: {int(outside.sum())} of {len(truth)} labels are classes the models cannot "
            f"produce ({shown}{more}): the models {what}")


def _cause(truth: np.ndarray, outside: np.ndarray, space: ClassSpace) -> str:
    """The likely mistake, from the labels' range."""
    if truth.min() == 1 and truth.max() == space.classes:
        return (f"The labels run 1..{space.classes}: they look 1-based; store them 0-based "
                "(labels - 1).")
    if space.kind == "one-column" and len(np.unique(truth)) > 2:
        return ("Many label values against one output column: for a regression model set task = "
                "\"regression\" (manifest, or ValidationSet(..., task=\"regression\")); for classes, "
                "give one score per class.")
    values = np.unique(truth[outside])
    if len(values) == 1 and values[0] < 0:
        return (f"The one value {values[0]} often marks samples of no class: if so, set "
                f"ignore_label = {values[0]} in quantguard.toml to leave them out.")
    if outside.all():
        return ("No label is a class of these models: the wrong output may be chosen (output= "
                "names the class-score output), or the labels belong to another model or encoding.")
    return ("Check the label encoding (1-based? classes the model was not trained on?) and the "
            "chosen output (output=).")


@dataclass(frozen=True)
class ReferenceCheck:
    """Whether the reference is demonstrably better than chance on these labels: Cohen's κ (with
    its one-sided lower confidence bound) for classes, R² for regression targets."""

    passed: bool
    statistic: str  # "kappa", "r2", or "skipped"
    value: float | None
    lower: float | None  # κ's one-sided lower confidence bound (None for R²)
    confidence: float | None
    message: str  # the failure (or why the check was skipped); "" when it passed
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "statistic": self.statistic, "value": self.value,
                "lower": self.lower, "confidence": self.confidence, "message": self.message,
                "notes": list(self.notes)}


CAUSE = ("the labels or the preprocessing are wrong, not the quantization: check that the labels "
         "belong to these samples (order, shuffling, encoding) and that the inputs are prepared as "
         "in training ([preprocess] in quantguard.toml)")


def check_reference(summary: np.ndarray | None, labels: np.ndarray | None, task: str,
                    confidence: float) -> ReferenceCheck | None:
    """The chance check of the reference's per-sample summary (its predicted class, or its
    regression values) against the labels; None where it does not apply (no labels, other tasks)."""
    if summary is None or labels is None or len(summary) != len(labels):
        return None
    if task == "regression":
        return _r2_check(summary, labels)
    if task != "classification" or labels.ndim != 1:
        return None
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_
            or (np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0))):
        return None
    return kappa_check(predicted_classes(summary), labels.astype(np.int64), confidence)


def kappa_check(predicted: np.ndarray, truth: np.ndarray, confidence: float) -> ReferenceCheck:
    """Cohen's κ between predictions and labels, and κ − z·SE with the large-sample standard error
    of Fleiss, Cohen and Everitt (1969); the check passes when that bound is above 0."""
    table, rows, columns, observed, expected = _agreement_table(predicted, truth)
    majority = float(rows.max())
    notes = ()
    if observed < majority:
        notes = (f"the reference's accuracy {observed:.4f} is below the majority-class share "
                 f"{majority:.4f}: normal on an imbalanced set; its agreement beyond chance is what "
                 "is checked",)
    if len(np.unique(truth)) < 2 or expected >= 1.0:
        return ReferenceCheck(True, "skipped", None, None, confidence,
                              "one class among the labels: agreement beyond chance is undefined",
                              notes)
    kappa = (observed - expected) / (1.0 - expected)
    lower = kappa - NormalDist().inv_cdf(confidence) * _kappa_se(table, rows, columns, kappa,
                                                                 expected, len(truth))
    passed = lower > 0.0
    notes = notes if passed else ()  # a failure says more than the note
    message = "" if passed else (
        f"the reference is not demonstrably better than chance on these labels: Cohen's κ = "
        f"{kappa:.3f} (one-sided {confidence:.0%} lower bound {lower:.3f} ≤ 0; accuracy "
        f"{observed:.4f}, {expected:.4f} expected by chance): {CAUSE}")
    return ReferenceCheck(passed, "kappa", kappa, lower, confidence, message, notes)


def _agreement_table(predicted: np.ndarray, truth: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """The joint table of two class vectors (shares), its margins (truth, predicted), the observed
    agreement and the agreement expected by chance, Σ p_truth(c)·p_predicted(c)."""
    n = len(truth)
    classes, inverse = np.unique(np.concatenate([truth, predicted]), return_inverse=True)
    k = len(classes)
    table = np.bincount(inverse[:n] * k + inverse[n:], minlength=k * k).reshape(k, k) / n
    rows, columns = table.sum(axis=1), table.sum(axis=0)
    return table, rows, columns, float(np.trace(table)), float(rows @ columns)


def _kappa_se(table: np.ndarray, rows: np.ndarray, columns: np.ndarray, kappa: float,
              expected: float, n: int) -> float:
    """κ's large-sample standard error (Fleiss, Cohen and Everitt 1969), not assuming κ = 0."""
    diagonal = np.diag(table)
    agree = float(np.sum(diagonal * (1.0 - (rows + columns) * (1.0 - kappa)) ** 2))
    cross = (columns[:, None] + rows[None, :]) ** 2  # (p_.i + p_j.)² for cell (i, j)
    off = table * cross
    disagree = (1.0 - kappa) ** 2 * float(off.sum() - np.trace(off))
    variance = (agree + disagree - (kappa - expected * (1.0 - kappa)) ** 2) / (n * (1.0 - expected) ** 2)
    return float(np.sqrt(max(variance, 0.0)))


def _r2_check(summary: np.ndarray, labels: np.ndarray) -> ReferenceCheck | None:
    """R² = 1 − SSE/SST over every target column (pooled); the check passes when R² > 0."""
    predicted = np.asarray(summary, np.float64).reshape(len(summary), -1)
    targets = np.asarray(labels, np.float64).reshape(len(labels), -1)
    if predicted.shape != targets.shape or not np.isfinite(targets).all():
        return None  # the metric refuses these with its own message
    total = float(np.sum((targets - targets.mean(axis=0)) ** 2))
    if total == 0.0:
        return ReferenceCheck(True, "skipped", None, None, None,
                              "constant targets: R² is undefined")
    r2 = 1.0 - float(np.sum((targets - predicted) ** 2)) / total
    passed = r2 > 0.0
    message = "" if passed else (
        f"the reference is no better than predicting the targets' mean on these labels: R² = "
        f"{r2:.3f} ≤ 0: {CAUSE}")
    return ReferenceCheck(passed, "r2", r2, None, None, message)


MISALIGNED_CAUSE = (
    "likely misaligned: the rows were written in another order than {key} says, or are the "
    "results of another set or another output; write each row beside its sample's id as the "
    "inputs are read (copy ids.npy of quantguard export-inputs in the same order), or write "
    "input_hashes.npy (see docs/results.md on input hashes)")


def misaligned_checks(candidate: Any, reference_summary: np.ndarray | None, task: str | None,
                      output: str | int | None, confidence: float) -> list[dict[str, Any]]:
    """The check that a candidate read from results agrees with the reference beyond chance
    (docs/verdict.md, "Checks of the reference"), as a list of none or one: a candidate model run
    here sees the reference's inputs; results near chance agreement were likely written in another
    order than their ids say. For classes, Cohen's κ between the two predicted classes (the
    agreement beyond Σ p_ref(c)·p_cand(c)); for regression, the correlation of the two outputs."""
    rows = getattr(candidate, "in_set_order", None)
    prediction = rows(output) if rows is not None else None
    if prediction is None or reference_summary is None or len(prediction) != len(
            reference_summary) or task not in ("classification", "regression"):
        return []
    matching = getattr(candidate, "matching", {}) or {}
    if task == "classification":
        try:
            figures = _class_agreement(reference_summary, prediction, confidence)
        except QuantGuardError:
            return []
    else:
        figures = _correlation(reference_summary, prediction, confidence)
    if figures is None:
        return []
    statistic, value, lower = figures
    passed = lower > 0.0
    shown = (f"{statistic} {value:.3f}, one-sided {confidence:.0%} lower bound {lower:.3f}"
             f"{' > 0' if passed else ' ≤ 0'}; rows matched by {matching.get('by', 'ids')}"
             + (f", {matching['shared_inputs']} samples with identical inputs paired in order"
                if matching.get("shared_inputs") else ""))
    key = {"input hashes": "input_hashes.npy", "position": "the set's order"}.get(
        matching.get("by"), "ids.npy")
    rule = (f"misaligned: {candidate.description} agree with the reference beyond chance ({shown})"
            if passed else
            f"misaligned: {candidate.description} agree with the reference no better than chance "
            f"({shown}): " + MISALIGNED_CAUSE.format(key=key))
    return [{"check": "misaligned", "passed": passed, "rule": rule, "statistic": statistic,
             "value": value, "lower": lower, "source": getattr(candidate, "path", None),
             "matched_by": matching.get("by")}]


def _class_agreement(reference: np.ndarray, candidate: np.ndarray,
                     confidence: float) -> tuple[str, float, float] | None:
    """κ between the two predicted classes and its one-sided lower bound; None when both
    predict one class throughout (agreement beyond chance is undefined)."""
    from pytest_quantguard.metrics.classification import predicted_records

    ours = predicted_classes(predicted_records("candidate", candidate))
    theirs = predicted_classes(reference)
    table, rows, columns, observed, expected = _agreement_table(ours, theirs)
    if expected >= 1.0:
        return None
    kappa = (observed - expected) / (1.0 - expected)
    se = _kappa_se(table, rows, columns, kappa, expected, len(theirs))
    return "kappa", kappa, kappa - NormalDist().inv_cdf(confidence) * se


def _correlation(reference: np.ndarray, candidate: np.ndarray,
                 confidence: float) -> tuple[str, float, float] | None:
    """Pearson's r between the two outputs (every column centred, then pooled) and its one-sided
    lower bound by Fisher's z; None for constant outputs or too few samples."""
    theirs = np.asarray(reference, np.float64).reshape(len(reference), -1)
    ours = np.asarray(candidate, np.float64).reshape(len(candidate), -1)
    if ours.shape != theirs.shape or len(ours) < 4 or not np.isfinite(ours).all():
        return None
    theirs, ours = theirs - theirs.mean(axis=0), ours - ours.mean(axis=0)
    scale = float(np.sqrt(np.sum(theirs ** 2) * np.sum(ours ** 2)))
    if scale == 0.0:
        return None
    r = float(np.clip(np.sum(theirs * ours) / scale, -0.999999, 0.999999))
    lower = float(np.tanh(np.arctanh(r) - NormalDist().inv_cdf(confidence) / np.sqrt(len(ours) - 3)))
    return "correlation", r, lower
