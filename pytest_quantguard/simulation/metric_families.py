"""Families simulated through the metrics' ``Scores`` classes, called with a ``Context`` as
``compare()`` calls them, so the cells test the intervals the gate really uses: agreement,
absolute RMSE, cosine, per-class accuracy, a custom corpus metric and top-k.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

from pytest_quantguard.metrics.base import Context
from pytest_quantguard.metrics.classification import PerClassScores, top_k
from pytest_quantguard.metrics.custom import CorpusScores
from pytest_quantguard.metrics.fidelity import AgreementScores, DistanceScores
from pytest_quantguard.metrics.regression import MeanScores
from pytest_quantguard.simulation.harness import CONFIDENCE, Cell
from pytest_quantguard.simulation.interval_families import (
    binary_cell,
    binary_probabilities,
    binary_table,
    binary_true_drop,
    regression_errors,
)
from pytest_quantguard.stats.result import IntervalResult

# --- Generators ---------------------------------------------------------------------------------

def _exact(value: float | int) -> Fraction:
    """A parameter's decimal value as written (0.01, not 0.01000000000000000020816...)."""
    return Fraction(repr(value))


def agreement_sample(rng: np.random.Generator, n: int, disagreement: float) -> np.ndarray:
    """Per-sample top-1 agreement of the candidate with the reference (1 = same class), each
    sample disagreeing independently w.p. ``disagreement``: the true drop (the disagreement rate,
    docs/intervals.md, "Agreement") is ``disagreement`` exactly."""
    return (rng.random(n) >= disagreement).astype(np.int8)


def rmse_absolute_true_drop(noise: float = 0.3, scale: float = 2.0) -> float:
    """RMSE_cand - RMSE_ref = sigma_c - sigma_r for errors ``scale`` x ``regression_errors``
    (sigma_r = scale, sigma_c = scale·sqrt(1 + noise²))."""
    return scale * math.sqrt(1.0 + noise * noise) - scale


def squared_errors(rng: np.random.Generator, n: int, noise: float = 0.3,
                   scale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Squared errors of both models: ``regression_errors`` (Gaussian) times ``scale``, squared
    (RMSE = sqrt(mean of squared errors), so RMSE's population values are scale and
    scale·sqrt(1 + noise²))."""
    reference, candidate = regression_errors(rng, n, noise)
    return (scale * reference) ** 2, (scale * candidate) ** 2


# (spread, a, b): both with 1 - E[cos] = 1 pt; 1 - cos has skewness 2.9 and 5.4
COSINE_SHAPES = {"moderate": (0.2, 0.25, 4.75), "heavy": (1.0, 0.1, 9.9)}
COSINE_SPREAD = COSINE_SHAPES["moderate"][0]


def cosine_values(rng: np.random.Generator, n: int, spread: float = COSINE_SPREAD,
                  a: float = 0.25, b: float = 4.75) -> np.ndarray:
    """Per-sample cosine similarities of the candidate's embedding to the reference's:
    1 - spread·Beta(a, b), in [1 - spread, 1]. Most samples sit near 1 and a few far below (a
    right-skewed 1 - cos, as quantization damage is), the case where the mean's interval errs on
    the false-ship side."""
    return 1.0 - spread * rng.beta(a, b, size=n)


def cosine_true_drop(spread: float = COSINE_SPREAD, a: float = 0.25, b: float = 4.75) -> float:
    """1 - E[cos] = spread·a/(a + b), from the decimal values (0.2 x 0.25/5 = 0.01 exactly)."""
    return float(_exact(spread) * _exact(a) / (_exact(a) + _exact(b)))


def _expand_table(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample 0/1 correctness of both models from a paired table (a, b, c, d)."""
    cells = np.repeat(np.arange(4), table)
    return (cells <= 1).astype(np.int8), ((cells == 0) | (cells == 2)).astype(np.int8)


def per_class_sample(rng: np.random.Generator, n: int, priors: tuple[float, ...],
                     discordances: tuple[float, ...], drops: tuple[float, ...],
                     accuracy: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both models' per-sample 0/1 correctness: class sizes Multinomial(n, priors),
    then class k's paired table ``binary_table`` with its own discordance and drop (the true drop
    of class k's accuracy is ``binary_true_drop(discordances[k], drops[k], accuracy)``)."""
    sizes = rng.multinomial(n, priors)
    labels, reference, candidate = [], [], []
    for k, size in enumerate(sizes):
        right = _expand_table(binary_table(rng, int(size), drops[k], discordances[k], accuracy))
        labels.append(np.full(int(size), k, dtype=np.int64))
        reference.append(right[0])
        candidate.append(right[1])
    return np.concatenate(labels), np.concatenate(reference), np.concatenate(candidate)


# A custom corpus metric (non-decomposable; compare() runs a paired percentile
# bootstrap on any register_metric(corpus=...) function): balanced accuracy, the mean recall over
# classes, with a rare class whose recall carries most of the drop.
BALANCED_PRIORS = (0.5, 0.3, 0.15, 0.05)
BALANCED_DISCORDANCES = (0.08, 0.08, 0.08, 0.08)
BALANCED_DROPS = (0.01, 0.01, 0.02, 0.04)
BALANCED_ACCURACY = 0.85


def balanced_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """scikit-learn's ``balanced_accuracy_score``: the mean recall over the classes in the labels."""
    size = int(max(labels.max(), predicted.max())) + 1
    total = np.bincount(labels, minlength=size)
    hits = np.bincount(labels[predicted == labels], minlength=size)
    present = total > 0
    return float(np.mean(hits[present] / total[present]))


def balanced_sample(rng: np.random.Generator, n: int, priors=BALANCED_PRIORS,
                    discordances=BALANCED_DISCORDANCES, drops=BALANCED_DROPS,
                    accuracy=BALANCED_ACCURACY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both models' predicted classes: per class, the paired correctness of
    ``per_class_sample``; a wrong prediction is a uniformly random other class."""
    labels, reference_right, candidate_right = per_class_sample(rng, n, priors, discordances,
                                                                drops, accuracy)
    classes = len(priors)

    def predictions(right):
        wrong = (labels + rng.integers(1, classes, size=len(labels))) % classes
        return np.where(right == 1, labels, wrong)

    return labels, predictions(reference_right), predictions(candidate_right)


def balanced_true_drop(drops=BALANCED_DROPS, discordances=BALANCED_DISCORDANCES,
                       accuracy=BALANCED_ACCURACY) -> float:
    """Population balanced-accuracy drop: the mean of the classes' recall drops, whatever the
    priors (each class's drop exact, as in ``binary_true_drop``)."""
    for d, drop in zip(discordances, drops, strict=True):
        binary_probabilities(d, drop, accuracy)  # validates each class's cell
    return float(sum(_exact(drop) for drop in drops) / len(drops))


def top_k_outputs(table: np.ndarray, classes: int = 10,
                  k: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class scores of both models whose top-k correctness is the paired table (a, b, c, d).

    Deterministic given the table (so a cell on it sees the 0/1 cell's data sets): sample i has
    label i mod ``classes``; the other classes score a fixed descending ladder; a right sample's
    label is placed first or k-th (the edge of the top k) in turn, a wrong one's (k+1)-th (just
    outside) or last.
    """
    reference_right, candidate_right = _expand_table(table)
    n = len(reference_right)
    labels = np.arange(n) % classes
    ladder = np.linspace(1.0, 0.0, classes - 1)  # the other classes' scores, highest first
    edge = np.array([2.0, (ladder[k - 2] + ladder[k - 1]) / 2.0])  # rank 1, rank k
    outside = np.array([(ladder[k - 1] + ladder[k]) / 2.0 if k < classes - 1 else -1.0, -1.0])

    def scores(right):
        out = np.empty((n, classes))
        turn = np.arange(n) % 2
        label_score = np.where(right == 1, edge[turn], outside[turn])
        for i in range(classes):
            others = np.where(labels > i, i, i - 1)  # rank of class i among the others
            out[:, i] = np.where(labels == i, label_score, ladder[np.clip(others, 0, classes - 2)])
        return out

    return scores(reference_right), scores(candidate_right), labels


# --- Cells, through the metrics' Scores classes ------------------------------------------------

def _evaluate(scores, rng: np.random.Generator, resamples: int, *, margin: str = "absolute",
              max_drop: float = 0.01):
    """``scores.evaluate`` with the Context compare() builds (95%, the given stream and limits)."""
    return scores.evaluate(Context(margin=margin, confidence=CONFIDENCE, resamples=resamples,
                                   rng=rng, max_drop=max_drop, qat_limit=3.0 * max_drop))


def agreement_cell(n: int, disagreement: float) -> Cell:
    """Label-free top-1 agreement: ``AgreementScores``' Wilson interval of the disagreement rate
    (the drop), at a true disagreement rate ``disagreement`` (set it to the margin)."""
    def interval(agree, rng):
        return _evaluate(AgreementScores(agree), rng, 1).interval

    return Cell("agreement", (("n", n), ("disagreement", disagreement)), "wilson", disagreement,
                lambda rng: agreement_sample(rng, n, disagreement), interval)


def rmse_absolute_cell(n: int, *, resamples: int, noise: float = 0.3, scale: float = 2.0) -> Cell:
    """Absolute RMSE drop (RMSE_cand - RMSE_ref): ``MeanScores(power=0.5)``'s BCa on the
    power-mean difference of squared errors (``sums_interval``)."""
    def interval(errors, rng):
        return _evaluate(MeanScores(*errors, "rmse", False, power=0.5), rng, resamples).interval

    return Cell("rmse-absolute", (("n", n), ("noise", noise), ("scale", scale)), "bca",
                rmse_absolute_true_drop(noise, scale),
                lambda rng: squared_errors(rng, n, noise, scale), interval)


def cosine_cell(n: int, shape: str = "moderate", *, resamples: int) -> Cell:
    """Mean cosine similarity (drop = 1 - mean cos): ``DistanceScores``' BCa
    (``difference_interval``) on 1 - spread·Beta(a, b) cosines (``COSINE_SHAPES[shape]``)."""
    spread, a, b = COSINE_SHAPES[shape]

    def interval(values, rng):
        return _evaluate(DistanceScores(values, "cosine", 1.0, True), rng, resamples).interval

    return Cell("cosine", (("n", n), ("spread", spread), ("a", a), ("b", b)), "bca",
                cosine_true_drop(spread, a, b),
                lambda rng: cosine_values(rng, n, spread, a, b), interval)


def per_class_cell(n: int, classes: int, margin: float, *, resamples: int,
                   degraded_discordance: float = 0.06, other_discordance: float = 0.01,
                   accuracy: float = 0.8) -> Cell:
    """Per-class accuracy, an intersection-union gate (docs/intervals.md,
    "Per-class accuracy"): class 0 loses exactly
    ``margin`` (= max_drop), the other classes nothing; equal priors.

    The interval is the one ``PerClassScores`` reports (the worst class's), whose upper bound is
    below the margin exactly when every class ships, so its false-ship rate P(margin > U) is the
    gate's: at most the degraded class's own, about 2.5%. Its coverage of the margin is not
    meaningful (the worst class may be any); ``details`` carry the degraded class's own limits
    for ``degraded_class_view``.
    """
    priors = (1.0 / classes,) * classes
    discordances = (degraded_discordance,) + (other_discordance,) * (classes - 1)
    drops = (margin,) + (0.0,) * (classes - 1)

    def interval(sample, rng):
        evaluation = _evaluate(PerClassScores(*sample), rng, resamples, max_drop=margin)
        degraded = next(row for row in evaluation.details["per_class"] if row["slice"] == 0)
        worst = evaluation.interval
        return IntervalResult(worst.low, worst.high, worst.method,
                              {**worst.details, "degraded_low": degraded["low"],
                               "degraded_high": degraded["high"]})

    params = (("n", n), ("classes", classes), ("margin", margin),
              ("d_degraded", degraded_discordance), ("d_others", other_discordance),
              ("acc", accuracy))
    return Cell("per-class", params, "worst-class",
                binary_true_drop(degraded_discordance, margin, accuracy),
                lambda rng: per_class_sample(rng, n, priors, discordances, drops, accuracy),
                interval)


def degraded_class_view(result: IntervalResult) -> tuple[float, float]:
    """The degraded class's own interval inside a ``per_class_cell`` result."""
    return float(result.details["degraded_low"]), float(result.details["degraded_high"])


def corpus_cell(n: int, *, resamples: int) -> Cell:
    """A custom corpus metric (balanced accuracy, ``BALANCED_*`` set-up): ``CorpusScores``'
    paired percentile bootstrap (the function called on each resample)."""
    def interval(sample, rng):
        labels, reference, candidate = sample
        scores = CorpusScores(reference, candidate, labels, balanced_accuracy, "balanced_accuracy",
                              True)
        return _evaluate(scores, rng, resamples).interval

    return Cell("corpus", (("n", n), ("metric", "balanced_accuracy")), "percentile",
                balanced_true_drop(), lambda rng: balanced_sample(rng, n), interval)


def top_k_cell(n: int, discordance: float, drop: float, reference_accuracy: float, *,
               resamples: int, classes: int = 10, k: int = 5) -> Cell:
    """Top-k accuracy through the ``top{k}`` metric (``TopK.reduce`` on class scores, then
    ``BinaryScores``): the 0/1 cell of the same parameters (same seed, same tables, see
    ``top_k_outputs``), so its limits must equal ``binary_cell``'s set by set."""
    if not 2 <= k < classes - 1:
        raise ValueError(f"need 2 <= k < classes - 1, got k={k}, classes={classes}")
    metric = top_k(k)
    binary = binary_cell(n, discordance, drop, reference_accuracy, resamples=resamples)

    def draw(rng):
        return top_k_outputs(binary_table(rng, n, drop, discordance, reference_accuracy),
                             classes, k)

    def interval(outputs, rng):
        reference, candidate, labels = outputs
        scores = metric.scores(metric.reduce(reference, labels, None),
                               metric.reduce(candidate, labels, None), labels, None)
        return _evaluate(scores, rng, resamples).interval

    return dataclasses.replace(binary, method=f"top{k}", draw=draw, interval=interval)
