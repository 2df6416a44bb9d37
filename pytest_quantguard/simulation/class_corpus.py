"""Corpus metrics of class predictions (``register_metric(name, corpus_of_classes=f)``): balanced
accuracy, Matthews correlation and Cohen's κ through ``ClassCorpusScores``, as ``compare()``
evaluates them, on sets whose drop is carried by a rare class or spread over balanced classes
(docs/intervals.md, "Corpus metrics of class predictions").

Each metric exists twice: as a user would write it (``f(labels, predicted) -> float``, called once
per resample) and vectorized over rows of confusion counts (``CellScore``), which the cells use for
time; a test checks that both give the same limits on the same stream.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from pytest_quantguard.metrics.base import Context
from pytest_quantguard.metrics.custom import ClassCorpusScores
from pytest_quantguard.simulation.harness import CONFIDENCE, Cell
from pytest_quantguard.simulation.interval_families import binary_probabilities
from pytest_quantguard.simulation.metric_families import balanced_accuracy, balanced_sample

# (priors, discordances, recall drops) per class; reference recall 0.85 in every class
CLASS_CORPUS_SETUPS = {
    # the whole drop on a class of 3% of the samples (15 samples at n = 500)
    "rare": ((0.55, 0.30, 0.12, 0.03), (0.02, 0.02, 0.02, 0.12), (0.0, 0.0, 0.0, 0.08)),
    # on a class of 5%
    "rare5": ((0.50, 0.30, 0.15, 0.05), (0.02, 0.02, 0.02, 0.10), (0.0, 0.0, 0.0, 0.06)),
    # four equal classes, 2 points each
    "balanced": ((0.25, 0.25, 0.25, 0.25), (0.06,) * 4, (0.02,) * 4),
}
CLASS_CORPUS_ACCURACY = 0.85


def _confusion(cell_labels, cell_predicted, counts, classes: int) -> np.ndarray:
    """(R, C) cell counts -> (R, K, K) confusion counts (labels in rows)."""
    dense = np.zeros((len(counts), classes * classes))
    dense[:, np.asarray(cell_labels) * classes + np.asarray(cell_predicted)] = counts
    return dense.reshape(len(counts), classes, classes)


def _from_confusion(confusion: np.ndarray, metric: str) -> np.ndarray:
    """Balanced accuracy, MCC or κ of (R, K, K) confusion counts (or probabilities): as
    scikit-learn's ``balanced_accuracy_score``, ``matthews_corrcoef``, ``cohen_kappa_score``."""
    true = confusion.sum(axis=2)
    guessed = confusion.sum(axis=1)
    hits = np.diagonal(confusion, axis1=1, axis2=2)
    total = true.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "balanced_accuracy":
            present = true > 0
            return np.where(present, hits / np.where(present, true, 1.0), 0.0).sum(1) / present.sum(1)
        correct = hits.sum(axis=1)
        chance = (true * guessed).sum(axis=1)
        if metric == "mcc":
            denominator = np.sqrt((total ** 2 - (guessed ** 2).sum(1)) * (total ** 2 - (true ** 2).sum(1)))
            return np.where(denominator > 0, (correct * total - chance) / denominator, 0.0)
        if metric == "kappa":
            return (correct * total - chance) / (total ** 2 - chance)
    raise ValueError(f"unknown metric {metric!r}")


def cell_score(metric: str, classes: int):
    """The metric as a ``CellScore`` (vectorized over rows of cell counts)."""
    def score(cell_labels, cell_predicted, counts):
        return _from_confusion(_confusion(cell_labels, cell_predicted, counts, classes), metric)
    return score


def per_call(metric: str):
    """The metric as a user writes it: ``f(labels, predicted) -> float``."""
    if metric == "balanced_accuracy":
        return lambda labels, predicted: balanced_accuracy(predicted, labels)

    def function(labels, predicted):
        classes = int(max(labels.max(), predicted.max())) + 1
        confusion = np.bincount(labels * classes + predicted, minlength=classes * classes)
        return float(_from_confusion(confusion.reshape(1, classes, classes).astype(float),
                                     metric)[0])
    return function


def class_corpus_true_drop(metric: str, setup: str,
                           accuracy: float = CLASS_CORPUS_ACCURACY) -> float:
    """The population drop: the metric on both models' population confusion matrices (row k:
    prior·recall on the diagonal, the misses spread evenly over the other classes)."""
    priors, discordances, drops = CLASS_CORPUS_SETUPS[setup]
    classes = len(priors)
    matrices = []
    for model in (0, 1):
        rows = []
        for k, (prior, d, drop) in enumerate(zip(priors, discordances, drops, strict=True)):
            p11, p10, p01, _ = binary_probabilities(d, drop, accuracy)
            recall = p11 + (p10 if model == 0 else p01)
            row = np.full(classes, prior * (1.0 - recall) / (classes - 1))
            row[k] = prior * recall
            rows.append(row)
        matrices.append(np.array(rows))
    if metric == "balanced_accuracy":  # exact: the mean of the recall drops
        return float(sum(Fraction(repr(drop)) for drop in drops) / classes)
    reference, candidate = _from_confusion(np.stack(matrices), metric)
    return float(reference - candidate)


def class_corpus_sample(rng: np.random.Generator, n: int, setup: str):
    """Labels and both models' predicted classes (``balanced_sample`` of the set-up)."""
    priors, discordances, drops = CLASS_CORPUS_SETUPS[setup]
    return balanced_sample(rng, n, priors, discordances, drops, CLASS_CORPUS_ACCURACY)


def class_corpus_cell(n: int, metric: str, setup: str, *, resamples: int) -> Cell:
    """``ClassCorpusScores`` (absolute drop) on the set-up: BCa over patterns, widened by the
    adjusted BCa+studentized interval while the rarest class has fewer than 100 samples."""
    classes = len(CLASS_CORPUS_SETUPS[setup][0])
    score = cell_score(metric, classes)
    function = per_call(metric)

    def interval(sample, rng):
        labels, reference, candidate = sample
        scores = ClassCorpusScores(labels, reference, candidate, function, metric, True,
                                   cell_score=score)
        return scores.evaluate(Context(margin="absolute", confidence=CONFIDENCE,
                                       resamples=resamples, rng=rng)).interval

    return Cell("class-corpus", (("n", n), ("metric", metric), ("setup", setup)),
                "bca(+adjusted)", class_corpus_true_drop(metric, setup),
                lambda rng: class_corpus_sample(rng, n, setup), interval)
