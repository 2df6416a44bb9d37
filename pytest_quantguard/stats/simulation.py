"""The simulation harness behind the README's coverage table: data with a known true drop.

One generator per metric family draws a simulated validation set whose TRUE drop (on the scale of
the family's interval, SPEC §1) is known exactly; ``simulate`` runs an interval on many such sets
and measures its coverage and its false-ship rate P(true drop > U). The CI tests
(``tests/stats/test_coverage_families.py``) and the hand-run benchmark (``benchmarks/coverage.py``)
import the same generators and cells, so the numbers they report are about the same experiment.
Set-ups follow research/statistics.md §6.

A ``Cell`` is one grid point: a family, its data-generating parameters, the interval under test
and the true drop. Its seed derives from the base seed 12345 and the family and parameters only
(never tuned, never from the interval or the number of sets): two intervals run on the same cell
see the same data sets, and the CI's first sets are the benchmark's first sets.

Issue 5's families (agreement, absolute RMSE, cosine, per-class accuracy, a custom corpus metric,
top-k) are simulated through their ``Scores`` classes (``pytest_quantguard.metrics.scores``), called
with a ``Context`` as ``compare()`` calls them, so the cells test the intervals the gate really uses.

Imports numpy only at import time (the metrics lazily, in those families' cells; scipy lazily, for
one numerical integral of the benchmark's heavy-tailed rows).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from pytest_quantguard.stats.families import (
    difference_interval,
    macro_f1_interval,
    perplexity_interval,
    r2_interval,
    ratio_interval,
)
from pytest_quantguard.stats.paired_binary import (
    IntervalResult,
    paired_binary_interval,
    paired_ratio_interval,
)

BASE_SEED = 12345
CONFIDENCE = 0.95
# The acceptance thresholds of statistics.md §8: coverage of the two-sided 95% interval, and the
# false-ship tail P(true drop > U), nominally 0.025.
MIN_COVERAGE = 0.93
MAX_FALSE_SHIP = 0.04

Draw = Callable[[np.random.Generator], Any]
Interval = Callable[[Any, np.random.Generator], IntervalResult]
Limits = Callable[[IntervalResult], tuple[float, float]]


# --- Generators ---------------------------------------------------------------------------------

def binary_probabilities(discordance: float, drop: float, reference_accuracy: float) -> np.ndarray:
    """Cell probabilities (both right, only reference right, only candidate right, both wrong).

    p10 = (d + drop)/2, p01 = (d - drop)/2 (statistics.md §6.1); P(reference right) is
    ``reference_accuracy``.
    """
    p10, p01 = (discordance + drop) / 2.0, (discordance - drop) / 2.0
    p11 = reference_accuracy - p10
    p00 = 1.0 - p11 - p10 - p01
    probabilities = np.array([p11, p10, p01, p00])
    if (probabilities < -1e-12).any():
        raise ValueError(f"impossible 0/1 cell: d={discordance}, drop={drop}, "
                         f"accuracy={reference_accuracy} gives {probabilities.tolist()}")
    return np.clip(probabilities, 0.0, 1.0)


def binary_table(rng: np.random.Generator, n: int, drop: float, discordance: float,
                 reference_accuracy: float) -> np.ndarray:
    """The paired 2x2 table (a, b, c, d) of a 0/1 metric on n samples: Multinomial(n, cells)."""
    return rng.multinomial(n, binary_probabilities(discordance, drop, reference_accuracy))


def binary_true_drop(discordance: float, drop: float, reference_accuracy: float,
                     mode: str = "absolute") -> float:
    """The drop in ``paired_ratio_interval``'s modes: absolute (p10 - p01 = drop), relative
    (1 - acc_cand/acc_ref = drop/acc_ref) or error-increase (err_cand/err_ref - 1 =
    drop/(1 - acc_ref)).

    Computed exactly from the parameters' decimal values, then rounded once: a 0/1 interval's
    limits lie on a lattice (e.g. (b - c)/n), and a true drop of 0.010000000000000002 (float
    noise of p10 - p01) would turn every limit U = 0.01 into a false ship.
    """
    binary_probabilities(discordance, drop, reference_accuracy)  # validates the cell
    exact_drop, accuracy = Fraction(repr(drop)), Fraction(repr(reference_accuracy))
    denominator = {"absolute": Fraction(1), "relative": accuracy,
                   "error-increase": 1 - accuracy}[mode]
    return float(exact_drop / denominator)


# statistics.md §6.3: the macro-F1 experiment.
MACRO_F1_PRIORS = (0.50, 0.25, 0.15, 0.07, 0.03)
MACRO_F1_REFERENCE_ACCURACY = 0.85
MACRO_F1_COPY = 0.97


def macro_f1_transitions(priors=MACRO_F1_PRIORS, reference_accuracy=MACRO_F1_REFERENCE_ACCURACY,
                         copy=MACRO_F1_COPY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(y), P(reference prediction | y), P(candidate prediction | reference prediction).

    The reference is right w.p. ``reference_accuracy``, else a uniformly random WRONG class (so
    its accuracy is exactly 85%); the candidate copies the reference w.p. ``copy``, else predicts
    a uniformly random class (any of the K). This is the set-up whose population drop is the
    2.40 pt of statistics.md §6.3 (2.395; with the reference's errors uniform over all K classes
    it would be 2.65).
    """
    prior = np.asarray(priors, dtype=np.float64)
    k = len(prior)
    eye = np.eye(k)
    reference = reference_accuracy * eye + (1.0 - reference_accuracy) / (k - 1) * (1.0 - eye)
    candidate = copy * eye + (1.0 - copy) / k
    return prior, reference, candidate


def macro_f1_true_drop(priors=MACRO_F1_PRIORS, reference_accuracy=MACRO_F1_REFERENCE_ACCURACY,
                       copy=MACRO_F1_COPY) -> float:
    """Population macro-F1 drop, exact from the joint law of (y, reference, candidate)."""
    prior, reference, candidate = macro_f1_transitions(priors, reference_accuracy, copy)
    joint_reference = prior[:, None] * reference  # P(y, reference prediction)
    joint_candidate = joint_reference @ candidate  # P(y, candidate prediction)

    def macro_f1(joint):
        return float(np.mean(2.0 * np.diag(joint) / (joint.sum(axis=0) + joint.sum(axis=1))))

    return macro_f1(joint_reference) - macro_f1(joint_candidate)


def macro_f1_sample(rng: np.random.Generator, n: int, priors=MACRO_F1_PRIORS,
                    reference_accuracy=MACRO_F1_REFERENCE_ACCURACY,
                    copy=MACRO_F1_COPY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both models' predictions for n samples, drawn from ``macro_f1_transitions``
    (the law whose population drop ``macro_f1_true_drop`` computes)."""
    prior, reference, candidate = macro_f1_transitions(priors, reference_accuracy, copy)
    labels = _categorical(rng, np.broadcast_to(prior, (n, len(prior))))
    reference_pred = _categorical(rng, reference[labels])
    return labels, reference_pred, _categorical(rng, candidate[reference_pred])


def _categorical(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One draw per row of ``probabilities`` (rows sum to 1), by inverting the row's CDF."""
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative[:, -1] = 1.0
    return np.count_nonzero(rng.random((len(probabilities), 1)) >= cumulative, axis=1)


def regression_errors(rng: np.random.Generator, n: int, noise: float = 0.3,
                      tails: str = "gaussian") -> tuple[np.ndarray, np.ndarray]:
    """Reference errors with unit variance (Gaussian, or Student t3 scaled by 1/sqrt(3)), and the
    candidate's: the reference's plus N(0, noise²) (statistics.md §6.5)."""
    if tails == "gaussian":
        reference = rng.standard_normal(n)
    elif tails == "t3":
        reference = rng.standard_t(3, size=n) / math.sqrt(3.0)
    else:
        raise ValueError(f"tails must be 'gaussian' or 't3', got {tails!r}")
    return reference, reference + noise * rng.standard_normal(n)


def rmse_true_drop(noise: float = 0.3) -> float:
    """RMSE_cand/RMSE_ref - 1 = sqrt(1 + noise²) - 1 for unit-variance reference errors."""
    return math.sqrt(1.0 + noise * noise) - 1.0


@functools.cache
def mae_true_drop(noise: float = 0.3, tails: str = "gaussian") -> float:
    """MAE_cand/MAE_ref - 1. Gaussian: E|N(0, 1 + s²)| / E|N(0, 1)| - 1 = sqrt(1 + s²) - 1.

    t3 (unit variance): E|X + Z| by quadrature of the folded-normal mean E|x + Z| = s·sqrt(2/pi)
    exp(-x²/2s²) + x·erf(x/(s sqrt 2)) against the density of X, with the tail beyond |x| = L
    (where E|x + Z| = |x| to double precision) in closed form; E|X| = 2/pi.
    """
    if tails == "gaussian":
        return rmse_true_drop(noise)
    if tails != "t3":
        raise ValueError(f"tails must be 'gaussian' or 't3', got {tails!r}")
    from scipy.special import erf  # lazily: only the benchmark's heavy-tailed rows need it

    edge = 60.0 * max(noise, 1.0)
    x = np.linspace(-edge, edge, 4_000_001)
    density = 2.0 / math.pi / (1.0 + x * x) ** 2  # X = T3 / sqrt(3)
    folded = (noise * math.sqrt(2.0 / math.pi) * np.exp(-x * x / (2.0 * noise * noise))
              + x * erf(x / (noise * math.sqrt(2.0))))
    values = folded * density
    step = x[1] - x[0]
    inside = step * (values.sum() - 0.5 * (values[0] + values[-1]))
    tail = 2.0 / (math.pi * (1.0 + edge * edge))  # E[|X|; |X| > edge]
    return float((inside + tail) / (2.0 / math.pi) - 1.0)


def r2_sample(rng: np.random.Generator, n: int, noise: float = 0.3, target_variance: float = 4.0,
              tails: str = "gaussian") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Errors as ``regression_errors`` and independent targets N(0, target_variance)."""
    reference, candidate = regression_errors(rng, n, noise, tails)
    return reference, candidate, math.sqrt(target_variance) * rng.standard_normal(n)


def r2_true_drop(noise: float = 0.3, target_variance: float = 4.0) -> float:
    """(SSE_cand - SSE_ref)/SST in the population: noise² / target_variance."""
    return noise * noise / target_variance


def perplexity_documents(rng: np.random.Generator, documents: int, log_ratio: float = 0.004,
                         shift_sd: float = 0.01, token_sd: float = 0.15, min_tokens: int = 50,
                         max_tokens: int = 1500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-document NLL sums of both models and token counts (statistics.md §6.4).

    Document d has T_d ~ U{min_tokens..max_tokens} tokens; its per-token NLL increase is a
    document shift N(log_ratio, shift_sd²) plus token noise N(0, token_sd²), drawn directly as the
    sum over the document: T_d·shift + N(0, T_d·token_sd²). log(PPL_cand/PPL_ref) =
    sum(increase)/sum(T) has population value ``log_ratio``.
    """
    tokens = rng.integers(min_tokens, max_tokens + 1, size=documents)
    reference = tokens * rng.uniform(2.0, 4.0, size=documents)  # any level: only the increase matters
    shift = rng.normal(log_ratio, shift_sd, size=documents)
    increase = tokens * shift + token_sd * np.sqrt(tokens) * rng.standard_normal(documents)
    return reference, reference + increase, tokens


def perplexity_true_drop(log_ratio: float = 0.004) -> float:
    """PPL_cand/PPL_ref - 1 = exp(log_ratio) - 1."""
    return math.expm1(log_ratio)


def grouped_scores(rng: np.random.Generator, groups: int, size: int, drop: float,
                   icc: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample scores of both models in ``groups`` groups of ``size`` samples.

    reference - candidate = drop + a_g + e_gi with Var(a) = icc and Var(e) = 1 - icc (intra-class
    correlation ``icc``): the i.i.d. variance understates the truth by the design effect
    1 + (size - 1)·icc.
    """
    group = np.repeat(np.arange(groups), size)
    difference = (drop + math.sqrt(icc) * rng.standard_normal(groups)[group]
                  + math.sqrt(1.0 - icc) * rng.standard_normal(groups * size))
    reference = rng.normal(0.0, 1.0, size=groups * size)
    return reference, reference - difference, group


# --- Issue 5's families: generators -------------------------------------------------------------

def _exact(value: float | int) -> Fraction:
    """A parameter's decimal value as written (0.01, not 0.01000000000000000020816...)."""
    return Fraction(repr(value))


def agreement_sample(rng: np.random.Generator, n: int, disagreement: float) -> np.ndarray:
    """Per-sample top-1 agreement of the candidate with the reference (1 = same class), each
    sample disagreeing independently w.p. ``disagreement``: the true drop (the disagreement rate,
    SPEC §1 fidelity) is ``disagreement`` exactly."""
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


# A custom corpus metric (statistics.md §0: non-decomposable; compare() runs a paired percentile
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


# --- Cells --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One grid point: a family's data-generating ``params``, the interval under test
    (``method``), and the true drop on that interval's scale."""

    family: str
    params: tuple[tuple[str, float | int | str], ...]
    method: str
    true_drop: float
    draw: Draw = field(compare=False, repr=False)
    interval: Interval = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return " ".join([self.family, *(f"{key}={value}" for key, value in self.params), self.method])

    @property
    def seed(self) -> np.random.SeedSequence:
        """From the base seed, the family and the params: not the method, not the number of sets."""
        key = repr((self.family, self.params)).encode()
        return np.random.SeedSequence([BASE_SEED, int.from_bytes(hashlib.sha256(key).digest()[:8])])


def binary_cell(n: int, discordance: float, drop: float, reference_accuracy: float, *,
                resamples: int, mode: str = "absolute") -> Cell:
    """0/1 metric: ``paired_binary_interval(b, c, n)``, or ``paired_ratio_interval`` in ``mode``."""
    def draw(rng):
        return binary_table(rng, n, drop, discordance, reference_accuracy)

    if mode == "absolute":
        def interval(table, rng):
            return paired_binary_interval(int(table[1]), int(table[2]), n, confidence=CONFIDENCE,
                                          resamples=resamples, rng=rng)
    else:
        def interval(table, rng):
            return paired_ratio_interval(tuple(int(v) for v in table), mode, confidence=CONFIDENCE,
                                         resamples=resamples, rng=rng)
    params = (("n", n), ("d", discordance), ("drop", drop), ("acc", reference_accuracy))
    return Cell("0/1", params, mode, binary_true_drop(discordance, drop, reference_accuracy, mode),
                draw, interval)


def macro_f1_cell(n: int, *, resamples: int) -> Cell:
    """Macro-F1 drop (statistics.md §6.3 set-up): ``macro_f1_interval`` (BCa over patterns,
    widened by the studentized bootstrap while the rarest class has < 100 samples)."""
    def interval(sample, rng):
        return macro_f1_interval(*sample, confidence=CONFIDENCE, resamples=resamples, rng=rng)

    return Cell("macro-F1", (("n", n),), "bca(+studentized)", macro_f1_true_drop(),
                lambda rng: macro_f1_sample(rng, n), interval)


def regression_cell(n: int, metric: str, *, resamples: int, noise: float = 0.3,
                    tails: str = "gaussian") -> Cell:
    """Relative MAE (power 1 on |errors|) or RMSE (power 1/2 on squared errors): ``ratio_interval``."""
    power, transform, truth = {
        "mae": (1.0, np.abs, mae_true_drop(noise, tails)),
        "rmse": (0.5, np.square, rmse_true_drop(noise)),
    }[metric]

    def interval(errors, rng):
        reference, candidate = errors
        return ratio_interval(transform(reference), transform(candidate), higher_is_better=False,
                              power=power, confidence=CONFIDENCE, resamples=resamples, rng=rng)

    params = (("n", n), ("noise", noise), ("tails", tails))
    return Cell("regression", params, metric, truth,
                lambda rng: regression_errors(rng, n, noise, tails), interval)


def r2_cell(n: int, *, resamples: int, noise: float = 0.3, target_variance: float = 4.0) -> Cell:
    """Absolute R² drop: ``r2_interval``."""
    def interval(sample, rng):
        return r2_interval(*sample, confidence=CONFIDENCE, resamples=resamples, rng=rng)

    params = (("n", n), ("noise", noise), ("var_y", target_variance))
    return Cell("R²", params, "bca", r2_true_drop(noise, target_variance),
                lambda rng: r2_sample(rng, n, noise, target_variance), interval)


def perplexity_cell(documents: int, log_ratio: float = 0.004) -> Cell:
    """Relative perplexity increase over ``documents`` documents: ``perplexity_interval``."""
    def interval(sample, rng):
        return perplexity_interval(*sample, confidence=CONFIDENCE)

    return Cell("perplexity", (("documents", documents), ("log_ratio", log_ratio)),
                "linearized-cluster", perplexity_true_drop(log_ratio),
                lambda rng: perplexity_documents(rng, documents, log_ratio), interval)


def grouped_cell(groups: int, size: int, drop: float, *, resamples: int, clustered: bool,
                 icc: float = 0.3) -> Cell:
    """Mean difference of grouped samples: ``difference_interval`` with the groups (cluster BCa),
    or without them (i.i.d. BCa, which ignores the intra-class correlation)."""
    def interval(sample, rng):
        reference, candidate, group = sample
        return difference_interval(reference, candidate, higher_is_better=True,
                                   groups=group if clustered else None, confidence=CONFIDENCE,
                                   resamples=resamples, rng=rng)

    params = (("groups", groups), ("size", size), ("drop", drop), ("icc", icc))
    return Cell("grouped", params, "clustered" if clustered else "iid", drop,
                lambda rng: grouped_scores(rng, groups, size, drop, icc), interval)


# --- Issue 5's families: cells, through the metrics' Scores classes -----------------------------

def _evaluate(scores, rng: np.random.Generator, resamples: int, *, margin: str = "absolute",
              max_drop: float = 0.01):
    """``scores.evaluate`` with the Context compare() builds (95%, the given stream and limits)."""
    from pytest_quantguard.metrics.base import Context

    return scores.evaluate(Context(margin=margin, confidence=CONFIDENCE, resamples=resamples,
                                   rng=rng, max_drop=max_drop, qat_limit=3.0 * max_drop))


def agreement_cell(n: int, disagreement: float) -> Cell:
    """Label-free top-1 agreement: ``AgreementScores``' Wilson interval of the disagreement rate
    (the drop), at a true disagreement rate ``disagreement`` (set it to the margin)."""
    from pytest_quantguard.metrics.scores import AgreementScores

    def interval(agree, rng):
        return _evaluate(AgreementScores(agree), rng, 1).interval

    return Cell("agreement", (("n", n), ("disagreement", disagreement)), "wilson", disagreement,
                lambda rng: agreement_sample(rng, n, disagreement), interval)


def rmse_absolute_cell(n: int, *, resamples: int, noise: float = 0.3, scale: float = 2.0) -> Cell:
    """Absolute RMSE drop (RMSE_cand - RMSE_ref): ``MeanScores(power=0.5)``'s BCa on the
    power-mean difference of squared errors (``sums_interval``)."""
    from pytest_quantguard.metrics.scores import MeanScores

    def interval(errors, rng):
        return _evaluate(MeanScores(*errors, "rmse", False, power=0.5), rng, resamples).interval

    return Cell("rmse-absolute", (("n", n), ("noise", noise), ("scale", scale)), "bca",
                rmse_absolute_true_drop(noise, scale),
                lambda rng: squared_errors(rng, n, noise, scale), interval)


def cosine_cell(n: int, shape: str = "moderate", *, resamples: int) -> Cell:
    """Mean cosine similarity (drop = 1 - mean cos): ``DistanceScores``' BCa
    (``difference_interval``) on 1 - spread·Beta(a, b) cosines (``COSINE_SHAPES[shape]``)."""
    from pytest_quantguard.metrics.scores import DistanceScores

    spread, a, b = COSINE_SHAPES[shape]

    def interval(values, rng):
        return _evaluate(DistanceScores(values, "cosine", 1.0, True), rng, resamples).interval

    return Cell("cosine", (("n", n), ("spread", spread), ("a", a), ("b", b)), "bca",
                cosine_true_drop(spread, a, b),
                lambda rng: cosine_values(rng, n, spread, a, b), interval)


def per_class_cell(n: int, classes: int, margin: float, *, resamples: int,
                   degraded_discordance: float = 0.06, other_discordance: float = 0.01,
                   accuracy: float = 0.8) -> Cell:
    """Per-class accuracy, an intersection-union gate (statistics.md §5): class 0 loses exactly
    ``margin`` (= max_drop), the other classes nothing; equal priors.

    The interval is the one ``PerClassScores`` reports (the worst class's), whose upper bound is
    below the margin exactly when every class ships, so its false-ship rate P(margin > U) is the
    gate's: at most the degraded class's own, about 2.5%. Its coverage of the margin is not
    meaningful (the worst class may be any); ``details`` carry the degraded class's own limits
    for ``degraded_class_view``.
    """
    from pytest_quantguard.metrics.scores import PerClassScores

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
    from pytest_quantguard.metrics.scores import CorpusScores

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
    import dataclasses

    from pytest_quantguard.metrics.classification import top_k

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


# --- The harness --------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellResult:
    """Coverage and false-ship rate over ``sets`` simulated sets. A non-finite limit counts as
    both a miss and a false ship (and is counted in ``non_finite``)."""

    sets: int
    coverage: float
    false_ship: float
    mean_width: float
    non_finite: int
    methods: dict[str, int]

    @property
    def passes(self) -> bool:
        return (self.coverage >= MIN_COVERAGE and self.false_ship <= MAX_FALSE_SHIP
                and self.non_finite == 0)


def _limits(result: IntervalResult) -> tuple[float, float]:
    return result.low, result.high


def simulate(cell: Cell, sets: int, *, views: Mapping[str, Limits] | None = None,
             seed: np.random.SeedSequence | None = None) -> dict[str, CellResult]:
    """Run ``cell.interval`` on ``sets`` data sets drawn by ``cell.draw``.

    Returns one ``CellResult`` per view: ``"interval"`` (the result's own limits) and any
    ``views`` (other limits read off the same results, e.g. the plain bootstrap's from
    ``details``). Data and resampling streams are separate children of the seed, so the data
    sets depend on the cell and the seed only.
    """
    data_seed, resample_seed = (seed or cell.seed).spawn(2)
    data_rng, resample_rng = np.random.default_rng(data_seed), np.random.default_rng(resample_seed)
    views = {"interval": _limits, **(views or {})}
    limits = {name: np.empty((sets, 2)) for name in views}
    methods: dict[str, int] = {}
    for i in range(sets):
        result = cell.interval(cell.draw(data_rng), resample_rng)
        methods[result.method] = methods.get(result.method, 0) + 1
        for name, view in views.items():
            limits[name][i] = view(result)
    return {name: summarize(values[:, 0], values[:, 1], cell.true_drop, methods)
            for name, values in limits.items()}


def summarize(low: np.ndarray, high: np.ndarray, true_drop: float,
              methods: dict[str, int] | None = None) -> CellResult:
    """Coverage P(L <= true <= U), false ship P(true > U), mean width, non-finite count."""
    finite = np.isfinite(low) & np.isfinite(high)
    covered = finite & (low <= true_drop) & (true_drop <= high)
    false_ship = ~finite | (true_drop > high)
    width = float(np.mean((high - low)[finite])) if finite.any() else math.nan
    return CellResult(len(low), float(covered.mean()), float(false_ship.mean()), width,
                      int(np.count_nonzero(~finite)), dict(methods or {}))


def coverage(draw: Draw, interval: Interval, true_drop: float, sets: int,
             seed: int | np.random.SeedSequence) -> tuple[float, float]:
    """(coverage, false-ship rate) of ``interval`` over ``sets`` sets from ``draw``; a NaN or
    infinite limit counts as a failure of both."""
    if not isinstance(seed, np.random.SeedSequence):
        seed = np.random.SeedSequence(seed)
    cell = Cell("custom", (), "custom", true_drop, draw, interval)
    result = simulate(cell, sets, seed=seed)["interval"]
    return result.coverage, result.false_ship


def bootstrap_view(result: IntervalResult) -> tuple[float, float]:
    """The plain percentile bootstrap inside a widened 0/1 interval; when b = c = 0 every
    resample equals the estimate, so the plain bootstrap would say [estimate, estimate]."""
    if "bootstrap_low" in result.details:
        return float(result.details["bootstrap_low"]), float(result.details["bootstrap_high"])
    estimate = float(result.details.get("estimate", 0.0))
    return estimate, estimate
