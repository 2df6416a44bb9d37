"""The interval of each metric family (docs/intervals.md), built on the sums engine.

Each builder takes per-sample (or per-token) values of both models, already aligned sample by
sample, and returns an ``IntervalResult`` on the drop scale (docs/verdict.md): absolute, or relative
(``cand/ref - 1`` in the worse direction, computed on the log scale).

| family | statistic | unit | method |
|---|---|---|---|
| continuous difference (MAE, per-sample losses) | mean of ``worse - better`` | sample | ``bca`` |
| power-mean difference (RMSE, absolute) | ``mean(cand)^p - mean(ref)^p`` | sample | ``bca`` |
| ratio of sums (MAE/MSE/RMSE, relative) | log ratio of sums | sample | ``bca`` |
| R² | ``(SSE_cand - SSE_ref) / SST`` | sample | ``bca`` |
| corpus (macro-F1) | from resampled pattern counts | pattern | ``bca`` |
| perplexity | ``sum(nll_cand - nll_ref) / tokens`` per document | document | ``linearized-cluster`` |
| any of the above with groups | the same, group sums | group | ``cluster-bca`` |

Above ``sums.ANALYTIC_ABOVE`` samples the continuous families use the delta method
(``linearized``); patterns and groups keep the bootstrap (its cost does not grow with n).
"""

from __future__ import annotations

import numpy as np

from pytest_quantguard.stats.patterns import class_patterns, pattern_interval
from pytest_quantguard.stats.result import IntervalResult
from pytest_quantguard.stats.sums import (
    ANALYTIC_ABOVE,
    SumsData,
    SumStatistic,
    linearized_interval,
    sums_interval,
)

MIN_GROUPS = 30  # below this many groups a clustered interval is unreliable (docs/intervals.md)
# Corpus metrics: below this many samples in the rarest class, BCa's false-ship tail runs above
# nominal (0.040-0.042 at n = 500, rarest class ~15; docs/intervals.md, "Macro-F1"), so the interval is
# widened to contain the studentized bootstrap's (``bca+studentized``).
STUDENTIZE_BELOW = 100


def _ratio(sums):
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[:, 0] / sums[:, 1]


def _log_ratio(power):
    def phi(sums):
        with np.errstate(divide="ignore", invalid="ignore"):
            return power * (np.log(sums[:, 0]) - np.log(sums[:, 1]))
    return phi


def _exp_minus_one(values):
    return np.expm1(values)


def _one_minus_exp(values):
    return -np.expm1(-values)


MEAN_DIFFERENCE = SumStatistic("mean difference", _ratio, columns=("difference", "count"))


def group_sums(x: np.ndarray, groups: np.ndarray, details: dict | None = None) -> SumsData:
    """Per-group sums of the unit vectors: the groups become the resampled units."""
    x = np.asarray(x, dtype=np.float64)
    groups = np.asarray(groups)
    if groups.shape != (len(x),):
        raise ValueError(f"groups must have one entry per sample ({len(x)}), got shape "
                         f"{list(groups.shape)}")
    _, inverse = np.unique(groups, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    sums = np.stack([np.bincount(inverse, weights=x[:, j], minlength=n_groups)
                     for j in range(x.shape[1])], axis=1)
    return SumsData(sums, unit="group", details={**(details or {}), "groups": n_groups})


def _units(x: np.ndarray, groups: np.ndarray | None, details: dict) -> SumsData:
    return SumsData(x, details=details) if groups is None else group_sums(x, groups, details)


def difference_interval(reference: np.ndarray, candidate: np.ndarray, *, higher_is_better: bool,
                        groups: np.ndarray | None = None, confidence: float, resamples: int,
                        rng: np.random.Generator, analytic_above: int | None = ANALYTIC_ABOVE,
                        ) -> IntervalResult:
    """Absolute drop of a mean of per-sample values (e.g. absolute errors, 0/1 scores in groups)."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    worse = reference - candidate if higher_is_better else candidate - reference
    x = np.stack([worse, np.ones_like(worse)], axis=1)
    # the values' own size (never their mean, which can sit at 0 for centred values)
    scale = float(np.mean(np.abs(reference))) or 1.0
    return sums_interval(_units(x, groups, {}), MEAN_DIFFERENCE, confidence=confidence,
                         resamples=resamples, rng=rng, fallback_scale=scale,
                         analytic_above=analytic_above)


def ratio_interval(reference: np.ndarray, candidate: np.ndarray, *, higher_is_better: bool,
                   power: float = 1.0, groups: np.ndarray | None = None, confidence: float,
                   resamples: int, rng: np.random.Generator,
                   analytic_above: int | None = ANALYTIC_ABOVE) -> IntervalResult:
    """Relative drop of a ratio of sums, ``(sum cand / sum ref) ** power - 1`` in the worse
    direction: MAE (power 1 on absolute errors), MSE (1 on squared errors), RMSE (1/2 on squared
    errors). BCa on the log ratio, whose jackknife is closed-form."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if higher_is_better:  # drop = 1 - (cand/ref)^power: work on log(ref/cand)
        x = np.stack([reference, candidate], axis=1)
        statistic = SumStatistic("log ratio", _log_ratio(power), _one_minus_exp)
    else:  # drop = (cand/ref)^power - 1: work on log(cand/ref)
        x = np.stack([candidate, reference], axis=1)
        statistic = SumStatistic("log ratio", _log_ratio(power), _exp_minus_one)
    return sums_interval(_units(x, groups, {}), statistic, confidence=confidence,
                         resamples=resamples, rng=rng, fallback_scale=1.0,
                         analytic_above=analytic_above)


def _power_difference(power: float, higher_is_better: bool) -> SumStatistic:
    """(mean cand)^p - (mean ref)^p in the worse direction, from sums (cand, ref, count)."""
    sign = -1.0 if higher_is_better else 1.0

    def phi(sums):
        with np.errstate(divide="ignore", invalid="ignore"):
            return sign * ((sums[:, 0] / sums[:, 2]) ** power - (sums[:, 1] / sums[:, 2]) ** power)
    return SumStatistic("power-mean difference", phi, columns=("candidate", "reference", "count"))


def power_difference_interval(reference: np.ndarray, candidate: np.ndarray, *, power: float,
                              higher_is_better: bool, groups: np.ndarray | None = None,
                              confidence: float, resamples: int,
                              rng: np.random.Generator) -> IntervalResult:
    """Absolute drop of a power mean, ``mean(cand)^p - mean(ref)^p`` in the worse direction (RMSE:
    squared errors, p = 1/2); the degenerate fallback scales with the reference's score."""
    reference_score = float(np.mean(reference)) ** power
    x = np.stack([candidate, reference, np.ones(len(reference))], axis=1).astype(np.float64)
    return sums_interval(_units(x, groups, {}), _power_difference(power, higher_is_better),
                         fallback_scale=abs(reference_score) or 1.0, confidence=confidence,
                         resamples=resamples, rng=rng)


def influence_kurtosis(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Kurtosis of each sample's influence on the log ratio of two means, ``c_i/mean(c) -
    r_i/mean(r)``: about 8 for squared Gaussian errors, above 20 when a few samples dominate the
    sums (docs/intervals.md, "Heavy-tailed errors"). NaN when every influence is equal."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        influence = candidate / candidate.mean() - reference / reference.mean()
        centred = influence - influence.mean()
        spread = float(np.sum(centred ** 2))
        return float(len(centred) * np.sum(centred ** 4) / spread ** 2) if spread > 0 else np.nan


def _r2_drop(sums):
    with np.errstate(divide="ignore", invalid="ignore"):
        total = sums[:, 1] - sums[:, 2] ** 2 / sums[:, 3]
        return sums[:, 0] / total


R2_DROP = SumStatistic("R² drop", _r2_drop, columns=("sse difference", "y²", "y", "count"))


def r2_interval(reference_errors: np.ndarray, candidate_errors: np.ndarray, targets: np.ndarray, *,
                groups: np.ndarray | None = None, confidence: float, resamples: int,
                rng: np.random.Generator, analytic_above: int | None = ANALYTIC_ABOVE,
                ) -> IntervalResult:
    """Absolute R² drop ``(SSE_cand - SSE_ref) / SST``, SST recomputed in every resample."""
    e_ref = np.asarray(reference_errors, dtype=np.float64)
    e_cand = np.asarray(candidate_errors, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    centred = y - y.mean()  # shift for numerical stability; SST is shift-invariant
    x = np.stack([e_cand ** 2 - e_ref ** 2, centred ** 2, centred, np.ones_like(y)], axis=1)
    return sums_interval(_units(x, groups, {}), R2_DROP, confidence=confidence,
                         resamples=resamples, rng=rng, fallback_scale=1.0,
                         analytic_above=analytic_above)


def perplexity_interval(reference_nll: np.ndarray, candidate_nll: np.ndarray, tokens: np.ndarray,
                        documents: np.ndarray | None = None, *, confidence: float) -> IntervalResult:
    """Relative perplexity increase ``PPL_cand / PPL_ref - 1``, clustered by document.

    Inputs are per-document NLL sums and token counts, or per-token values with ``documents``
    (the document of each token). The working statistic is the log perplexity ratio
    ``sum(nll_cand - nll_ref) / sum(tokens)``; its SE is the linearized ratio-estimator SE over
    documents (never tokens: docs/intervals.md, "Perplexity"), with a t quantile on D - 1 df.
    """
    delta = np.asarray(candidate_nll, dtype=np.float64) - np.asarray(reference_nll, dtype=np.float64)
    x = np.stack([delta, np.asarray(tokens, dtype=np.float64)], axis=1)
    data = SumsData(x, unit="group", details={"groups": len(x)}) if documents is None \
        else group_sums(x, documents)
    statistic = SumStatistic("log perplexity ratio", _ratio, _exp_minus_one)
    return linearized_interval(data, statistic, confidence=confidence, fallback_scale=1.0,
                               method="linearized-cluster")


def macro_f1_statistic(patterns: np.ndarray, classes: int, reference_classes: np.ndarray,
                       candidate_classes: np.ndarray) -> SumStatistic:
    """Macro-F1 drop from pattern counts: pattern ``p`` is (label, reference prediction, candidate
    prediction); each model's F1 averages over its own class set (labels present in the labels or
    its predictions on the whole set, as scikit-learn does), 0 where a class's F1 is 0/0."""
    labels, ref_pred, cand_pred = patterns[:, 0], patterns[:, 1], patterns[:, 2]
    one_hot = np.eye(classes)
    # one (patterns, 5K) map: true, reference TP and predicted, candidate TP and predicted
    linear = np.concatenate([one_hot[labels],
                             (labels == ref_pred)[:, None] * one_hot[labels], one_hot[ref_pred],
                             (labels == cand_pred)[:, None] * one_hot[labels], one_hot[cand_pred]],
                            axis=1)
    # each model's macro average: equal weights over its own class set
    averages = []
    for present in (reference_classes, candidate_classes):
        weights = np.zeros(classes)
        weights[present] = 1.0 / len(present)
        averages.append(weights)

    def macro(tp, predicted, true, average):
        # counts are whole numbers, so a zero denominator (F1 = 0/0, taken as 0) only meets tp = 0
        return (2.0 * tp / np.maximum(predicted + true, 1.0)) @ average

    def on_sums(c):
        """Macro-F1 drop from the linear sums (..., 5K): true, reference TP and predicted,
        candidate TP and predicted."""
        true, ref_tp, ref_pred_count, cand_tp, cand_pred_count = (
            c[..., i * classes:(i + 1) * classes] for i in range(5))
        return (macro(ref_tp, ref_pred_count, true, averages[0])
                - macro(cand_tp, cand_pred_count, true, averages[1]))

    def phi(counts):
        return on_sums(np.asarray(counts, dtype=np.float64) @ linear)

    def leave_one_out(counts):
        sums = np.asarray(counts, dtype=np.float64) @ linear
        return on_sums(sums[:, None, :] - linear[None, :, :])

    return SumStatistic("macro-F1 drop", phi, leave_one_out=leave_one_out)


def macro_f1_interval(labels: np.ndarray, reference_pred: np.ndarray, candidate_pred: np.ndarray,
                      *, groups: np.ndarray | None = None, confidence: float, resamples: int,
                      rng: np.random.Generator) -> IntervalResult:
    """Macro-F1 drop (absolute): BCa over resampled pattern counts with a per-pattern jackknife
    (docs/intervals.md, "Macro-F1"); with groups, the group's pattern counts are the resampled
    unit."""
    table = class_patterns(labels, reference_pred, candidate_pred)
    support = table.support
    statistic = macro_f1_statistic(table.patterns, table.classes,
                                   np.flatnonzero(support + table.predicted(1)),
                                   np.flatnonzero(support + table.predicted(2)))
    rarest = int(support[support > 0].min())
    details = {"rarest_class_count": rarest, "patterns": len(table.observed)}
    return pattern_interval(table, statistic, details, groups=groups,
                            studentize=rarest < STUDENTIZE_BELOW, confidence=confidence,
                            resamples=resamples, rng=rng)
