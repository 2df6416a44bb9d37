"""Families whose interval builders are simulated directly: 0/1 (absolute and ratio margins),
macro-F1, relative MAE/RMSE, R², perplexity and grouped scores.

Each family has a generator whose TRUE drop (on the scale of the family's interval) is known
exactly, and a cell that runs the family's interval builder from ``pytest_quantguard.stats`` on
the generator's sets (set-ups: docs/intervals.md, "The harness").
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

from pytest_quantguard.simulation.harness import CONFIDENCE, Cell
from pytest_quantguard.stats.families import (
    difference_interval,
    macro_f1_interval,
    perplexity_interval,
    r2_interval,
    ratio_interval,
)
from pytest_quantguard.stats.paired_binary import paired_binary_interval, paired_ratio_interval

# --- Generators ---------------------------------------------------------------------------------

def binary_probabilities(discordance: float, drop: float, reference_accuracy: float) -> np.ndarray:
    """Cell probabilities (both right, only reference right, only candidate right, both wrong).

    p10 = (d + drop)/2, p01 = (d - drop)/2 (docs/intervals.md, "0/1 metrics"); P(reference right) is
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


# The macro-F1 experiment (docs/intervals.md, "Macro-F1").
MACRO_F1_PRIORS = (0.50, 0.25, 0.15, 0.07, 0.03)
MACRO_F1_REFERENCE_ACCURACY = 0.85
MACRO_F1_COPY = 0.97


def macro_f1_transitions(priors=MACRO_F1_PRIORS, reference_accuracy=MACRO_F1_REFERENCE_ACCURACY,
                         copy=MACRO_F1_COPY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(y), P(reference prediction | y), P(candidate prediction | reference prediction).

    The reference is right w.p. ``reference_accuracy``, else a uniformly random WRONG class (so
    its accuracy is exactly 85%); the candidate copies the reference w.p. ``copy``, else predicts
    a uniformly random class (any of the K). This set-up's population drop is 2.395 pt (with the
    reference's errors uniform over all K classes it would be 2.65).
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
    candidate's: the reference's plus N(0, noise²)."""
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
    """Per-document NLL sums of both models and token counts (docs/intervals.md,
    "Perplexity").

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



# --- Cells --------------------------------------------------------------------------------------

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
    """Macro-F1 drop (the ``MACRO_F1_*`` set-up): ``macro_f1_interval`` (BCa over patterns,
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
