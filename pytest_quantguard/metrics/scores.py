"""Each metric family's ``Scores``: both models' scores, the drop and its interval (statistics.md §0).

| family | scores | interval |
|---|---|---|
| ``BinaryScores`` (accuracy, top-k, 0/1) | mean of 0/1 | ``percentile+tango``, ``tango-score`` |
| ``MeanScores`` (MAE, RMSE, per-sample) | mean (RMSE: root of the mean) | ``bca``, ``linearized`` |
| ``R2Scores`` | 1 - SSE/SST | ``bca`` |
| ``MacroF1Scores`` | scikit-learn's macro F1 | ``bca`` over pattern counts |
| ``PerClassScores`` | each class's accuracy, the worst class reported | per class, as ``BinaryScores`` |
| ``PerplexityScores`` | exp(token-mean NLL) | ``linearized-cluster`` over documents |
| ``AgreementScores`` | reference 1, candidate the top-1 agreement | ``wilson`` on the disagreement rate |
| ``DistanceScores`` (cosine, rel_error) | reference 1 (0), candidate the mean | ``bca`` |
| ``CorpusScores`` (custom corpus) | the user's function on the whole set | ``percentile`` |

With groups every family resamples groups (``cluster-bca``); above 1e5 samples continuous
families use the delta method (``linearized``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import (
    Context,
    Evaluation,
    Scores,
    absolute_change,
    relative_change,
    require_margin,
)
from pytest_quantguard.stats.families import (
    difference_interval,
    macro_f1_interval,
    perplexity_interval,
    r2_interval,
    ratio_interval,
)
from pytest_quantguard.stats.paired_binary import (
    IntervalResult,
    mcnemar_exact_p,
    paired_binary_interval,
    paired_ratio_interval,
    wilson_interval,
)
from pytest_quantguard.stats.sums import SumStatistic, sums_interval, zero_discordance_halfwidth

SEVERITY = {"ship": 0, "inconclusive": 1, "try-qat": 2, "stay-fp16": 3}


def _stats(context: Context) -> dict:
    return dict(confidence=context.confidence, resamples=context.resamples, rng=context.rng)


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
        return Evaluation(reference, candidate, drop, self._interval(context))

    def _interval(self, context: Context) -> IntervalResult:
        reference_right = self.reference == 1
        candidate_right = self.candidate == 1
        cells = tuple(int(np.count_nonzero(mask)) for mask in (
            reference_right & candidate_right, reference_right & ~candidate_right,
            ~reference_right & candidate_right, ~reference_right & ~candidate_right))
        b, c = cells[1], cells[2]
        options = _stats(context)
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


def _power_difference(power: float, higher_is_better: bool):
    """(mean cand)^p - (mean ref)^p in the worse direction, from sums (cand, ref, count)."""
    sign = -1.0 if higher_is_better else 1.0

    def phi(sums):
        with np.errstate(divide="ignore", invalid="ignore"):
            return sign * ((sums[:, 0] / sums[:, 2]) ** power - (sums[:, 1] / sums[:, 2]) ** power)
    return SumStatistic("power-mean difference", phi, columns=("candidate", "reference", "count"))


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

    def evaluate(self, context: Context) -> Evaluation:
        require_margin(self.name, context.margin, ("absolute", "relative"))
        reference = float(np.mean(self.reference)) ** self.power
        candidate = float(np.mean(self.candidate)) ** self.power
        options = dict(groups=context.groups, **_stats(context))
        if context.margin == "relative":
            drop = relative_change(reference, candidate, self.higher_is_better, self.name,
                                   context.where)
            result = ratio_interval(self.reference, self.candidate, power=self.power,
                                    higher_is_better=self.higher_is_better, **options)
        else:
            drop = absolute_change(reference, candidate, self.higher_is_better)
            if self.power == 1.0:
                result = difference_interval(self.reference, self.candidate,
                                             higher_is_better=self.higher_is_better, **options)
            else:
                result = _power_difference_interval(self, reference, options)
        return Evaluation(reference, candidate, drop, result)


def _power_difference_interval(scores: MeanScores, reference_score: float, options: dict):
    from pytest_quantguard.stats.families import _units

    x = np.stack([scores.candidate, scores.reference, np.ones(scores.n)], axis=1).astype(np.float64)
    groups = options.pop("groups")
    return sums_interval(_units(x, groups, {}), _power_difference(scores.power,
                                                                  scores.higher_is_better),
                         fallback_scale=abs(reference_score) or 1.0, **options)


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

    def evaluate(self, context: Context) -> Evaluation:
        require_margin("r2", context.margin, ("absolute",))
        total = float(np.sum((self.targets - self.targets.mean()) ** 2))
        if not total > 0.0:
            raise QuantGuardError(f"{context.where}: the targets are constant, so R² is undefined; "
                                  "use mae or rmse")
        reference = 1.0 - float(np.sum(self.reference_errors ** 2)) / total
        candidate = 1.0 - float(np.sum(self.candidate_errors ** 2)) / total
        result = r2_interval(self.reference_errors, self.candidate_errors, self.targets,
                             groups=context.groups, **_stats(context))
        return Evaluation(reference, candidate, reference - candidate, result)


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
                                   groups=context.groups, **_stats(context))
        return Evaluation(reference, candidate, reference - candidate, result)


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
        from pytest_quantguard.verdict import decide

        rows = breakdown(BinaryScores(self.reference, self.candidate, "per_class_accuracy"),
                         self.labels, context, self.class_names)
        judged = [row for row in rows if "error" not in row]
        if not judged:
            raise QuantGuardError(rows[0]["error"] if rows else f"{context.where}: no samples")
        for row in judged:
            row["verdict"] = str(decide(row["drop"], row["low"], row["high"],
                                        max_drop=context.max_drop, qat_limit=context.qat_limit,
                                        gate=context.gate).verdict)
        worst = max(judged, key=lambda row: (SEVERITY[row["verdict"]], row["high"], row["drop"]))
        inside = self.labels == worst["label"]
        interval = IntervalResult(worst["low"], worst["high"], worst["method"], {
            "worst_class": worst["slice"], "worst_class_n": worst["n"],
            # the worst class's discordant counts: they size "about N samples of this class"
            "reference_only": int(np.count_nonzero(inside & (self.reference == 1)
                                                   & (self.candidate == 0))),
            "candidate_only": int(np.count_nonzero(inside & (self.reference == 0)
                                                   & (self.candidate == 1)))})
        return Evaluation(worst["reference"], worst["candidate"], worst["drop"], interval,
                          {"per_class": rows})


@dataclass(frozen=True)
class PerplexityScores(Scores):
    """Per document (row): NLL sum and token count of each model; paired extras (top-token
    agreements, KL sum, tokens) when the outputs were logits."""

    reference: np.ndarray  # (n, 2): nll sum, tokens
    candidate: np.ndarray
    paired: np.ndarray | None = None  # (n, 3): agreements, KL sum, tokens

    @property
    def n(self) -> int:
        return len(self.reference)

    def subset(self, mask: np.ndarray) -> PerplexityScores:
        return PerplexityScores(self.reference[mask], self.candidate[mask],
                                None if self.paired is None else self.paired[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return self.reference, self.candidate

    def evaluate(self, context: Context) -> Evaluation:
        require_margin("perplexity", context.margin, ("relative",))
        tokens = self.reference[:, 1]
        total = float(tokens.sum())
        if total == 0:
            raise QuantGuardError(f"{context.where}: no token is scored (every position is masked "
                                  "by attention_mask or a negative target)")
        reference = math.exp(float(self.reference[:, 0].sum()) / total)
        candidate = math.exp(float(self.candidate[:, 0].sum()) / total)
        documents = context.groups
        keep = tokens > 0  # a document without scored tokens carries no evidence
        result = perplexity_interval(self.reference[keep, 0], self.candidate[keep, 0], tokens[keep],
                                     None if documents is None else documents[keep],
                                     confidence=context.confidence)
        details = {"tokens": int(total)}
        if self.paired is not None and np.isfinite(self.paired).all():
            scored = float(self.paired[:, 2].sum())
            details.update(top_token_agreement=float(self.paired[:, 0].sum()) / scored,
                           mean_kl=float(self.paired[:, 1].sum()) / scored)
        return Evaluation(reference, candidate, candidate / reference - 1.0, result, details)


@dataclass(frozen=True)
class AgreementScores(Scores):
    """Label-free top-1 agreement: reference 1.0, candidate the agreement rate; the drop is the
    disagreement rate, its interval Wilson's (``cluster-bca`` with groups)."""

    agree: np.ndarray  # 0/1

    @property
    def n(self) -> int:
        return len(self.agree)

    def subset(self, mask: np.ndarray) -> AgreementScores:
        return AgreementScores(self.agree[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return (self.agree,)

    def evaluate(self, context: Context) -> Evaluation:
        require_margin("agreement", context.margin, ("absolute", "relative"))
        agreement = float(np.mean(self.agree))
        disagreements = int(self.n - np.count_nonzero(self.agree))
        if context.groups is None:
            low, high = wilson_interval(disagreements, self.n, context.confidence)
            result = IntervalResult(low, high, "wilson", {"disagreements": disagreements})
        else:
            result = difference_interval(np.ones(self.n), self.agree.astype(np.float64),
                                         higher_is_better=True, groups=context.groups,
                                         **_stats(context))
            result.details["disagreements"] = disagreements
        return Evaluation(1.0, agreement, 1.0 - agreement, result)


@dataclass(frozen=True)
class DistanceScores(Scores):
    """Label-free per-sample similarity or error of the candidate to the reference (cosine:
    reference 1.0, higher is better; rel_error: reference 0.0, lower is better)."""

    values: np.ndarray
    name: str
    reference_value: float
    higher_is_better: bool

    @property
    def n(self) -> int:
        return len(self.values)

    def subset(self, mask: np.ndarray) -> DistanceScores:
        return replace(self, values=self.values[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return (self.values,)

    def evaluate(self, context: Context) -> Evaluation:
        offered = ("absolute", "relative") if self.reference_value else ("absolute",)
        require_margin(self.name, context.margin, offered)
        candidate = float(np.mean(self.values))
        drop = absolute_change(self.reference_value, candidate, self.higher_is_better)
        if context.margin == "relative":
            drop = relative_change(self.reference_value, candidate, self.higher_is_better,
                                   self.name, context.where)
        result = difference_interval(np.full(self.n, self.reference_value), self.values,
                                     higher_is_better=self.higher_is_better, groups=context.groups,
                                     **_stats(context))
        if context.margin == "relative":  # reference 1: relative and absolute coincide
            result = IntervalResult(result.low / self.reference_value,
                                    result.high / self.reference_value, result.method,
                                    result.details)
        return Evaluation(self.reference_value, candidate, drop, result)


@dataclass(frozen=True)
class CorpusScores(Scores):
    """A user's corpus metric ``function(outputs, labels) -> float`` on the whole set: paired
    percentile bootstrap over resampled samples (the function is called twice per resample)."""

    reference: np.ndarray  # the models' prediction rows
    candidate: np.ndarray
    labels: np.ndarray | None
    function: Callable[[np.ndarray, np.ndarray | None], float]
    name: str
    higher_is_better: bool

    @property
    def n(self) -> int:
        return len(self.reference)

    def subset(self, mask: np.ndarray) -> CorpusScores:
        return replace(self, reference=self.reference[mask], candidate=self.candidate[mask],
                       labels=None if self.labels is None else self.labels[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return self.reference, self.candidate

    def _value(self, outputs: np.ndarray, labels: np.ndarray | None) -> float:
        try:
            value = float(self.function(outputs, labels))
        except Exception as error:  # a user's function: name it, never a bare traceback
            raise QuantGuardError(f"custom metric {self.name!r}: its corpus function raised "
                                  f"{type(error).__name__}: {error}") from None
        if not math.isfinite(value):
            raise QuantGuardError(f"custom metric {self.name!r}: its corpus function returned "
                                  f"{value!r}; it must return a finite number")
        return value

    def _drop(self, reference: float, candidate: float, context: Context) -> float:
        if context.margin == "relative":
            return relative_change(reference, candidate, self.higher_is_better, self.name,
                                   context.where)
        return absolute_change(reference, candidate, self.higher_is_better)

    def evaluate(self, context: Context) -> Evaluation:
        require_margin(self.name, context.margin, ("absolute", "relative"))
        if context.groups is not None:
            raise QuantGuardError(f"custom corpus metric {self.name!r}: grouped data is not "
                                  "supported; use a per_sample metric or drop the groups")
        reference = self._value(self.reference, self.labels)
        candidate = self._value(self.candidate, self.labels)
        drop = self._drop(reference, candidate, context)
        replicates = np.empty(context.resamples)
        for b in range(context.resamples):
            index = context.rng.integers(0, self.n, self.n)
            labels = None if self.labels is None else self.labels[index]
            replicates[b] = self._drop(self._value(self.reference[index], labels),
                                       self._value(self.candidate[index], labels), context)
        alpha = 1.0 - context.confidence
        low, high = (float(q) for q in np.quantile(replicates, [alpha / 2, 1 - alpha / 2]))
        if low == high:  # every resample gives the same drop: the score bound, never zero width
            half = zero_discordance_halfwidth(self.n, context.confidence) * (abs(reference) or 1.0)
            return Evaluation(reference, candidate, drop,
                              IntervalResult(drop - half, drop + half, "degenerate-fallback", {}))
        return Evaluation(reference, candidate, drop, IntervalResult(low, high, "percentile", {}))


def breakdown(scores: Scores, keys: np.ndarray, context: Context,
              names: tuple[str, ...] | None = None) -> list[dict]:
    """The evaluation of ``scores`` on each value of ``keys`` (classes or slices): one row each,
    sorted by the upper bound, largest first ("which lost most"). Each slice has its own random
    stream, derived from the comparison's and the slice's value."""
    rows = []
    values = np.unique(keys)
    seeds = context.rng.integers(0, 2**63 - 1, size=len(values))
    for value, seed in zip(values, seeds, strict=True):
        mask = keys == value
        label = value.item() if isinstance(value, np.generic) else value
        shown = names[label] if names is not None and isinstance(label, int) and \
            0 <= label < len(names) else label
        sub = scores.subset(mask)
        local = replace(context, rng=np.random.default_rng(int(seed)),
                        groups=None if context.groups is None else context.groups[mask])
        try:
            evaluation = sub.evaluate(local)
        except QuantGuardError as error:
            rows.append({"slice": shown, "label": label, "n": int(mask.sum()), "error": str(error)})
            continue
        rows.append({"slice": shown, "label": label, "n": int(mask.sum()),
                     "reference": evaluation.reference_score,
                     "candidate": evaluation.candidate_score, "drop": evaluation.drop,
                     "low": evaluation.interval.low, "high": evaluation.interval.high,
                     "method": evaluation.interval.method})
    rows.sort(key=lambda row: (-row.get("high", -math.inf), str(row["slice"])))
    return rows


__all__ = [
    "SEVERITY",
    "AgreementScores",
    "BinaryScores",
    "CorpusScores",
    "DistanceScores",
    "MacroF1Scores",
    "MeanScores",
    "PerClassScores",
    "PerplexityScores",
    "R2Scores",
    "breakdown",
    "macro_f1",
]
