"""Label-free fidelity: how closely the candidate reproduces the reference's outputs.

- ``agreement``: top-1 agreement of class-score outputs; the drop is the disagreement rate, its
  upper bound Wilson's.
- ``cosine`` and ``rel_error``: real-valued outputs (embeddings, hidden states), per sample. A
  per-token output (batch, tokens, features) is compared token by token and averaged over the
  sample's tokens, with padded positions masked by ``attention_mask`` when the data has one; or,
  with a pooling (``pooling = "mean" | "max" | "first" | "last"``, manifest key or metric option),
  pooled over the unmasked tokens first.

| family | scores | interval |
|---|---|---|
| ``AgreementScores`` | reference 1, candidate the top-1 agreement | ``wilson`` on the disagreement rate |
| ``DistanceScores`` (cosine, rel_error) | reference 1 (0), candidate the mean | ``bca`` |

With groups both resample groups (``cluster-bca``; docs/intervals.md).
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
    Sizing,
    absolute_change,
    largest_change,
    relative_change,
    require_margin,
    variance_sizing,
)
from pytest_quantguard.metrics.classification import predicted_classes, predicted_records
from pytest_quantguard.metrics.language import REDUCTION_BYTES, token_chunks, token_mask
from pytest_quantguard.stats.families import difference_interval
from pytest_quantguard.stats.paired_binary import wilson_interval
from pytest_quantguard.stats.result import IntervalResult
from pytest_quantguard.vocabulary import POOLINGS  # the manifest key's values, checked in data/


@dataclass(frozen=True)
class Agreement(Metric):
    def reduce(self, output, labels, batch):
        if np.asarray(output).ndim > 2 and np.asarray(output).shape[-1] != 1:
            raise QuantGuardError(f"agreement compares one row of class scores per sample, got an "
                                  f"output of shape {list(np.shape(output))}; for embeddings or "
                                  "per-token outputs use metric='cosine' or 'rel_error'")
        return predicted_records(self.name, output)

    def scores(self, reference, candidate, labels, paired) -> Scores:
        return AgreementScores((predicted_classes(reference) == predicted_classes(candidate))
                               .astype(np.int8))


def _pool(values: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """Pool (samples, tokens, features) over the unmasked tokens, float64, over chunks of samples
    (docs/metrics.md, "Memory of the reductions")."""
    samples, tokens, features = values.shape
    pooled = np.empty((samples, features))
    step = max(1, REDUCTION_BYTES // max(2 * tokens * features * 8, 1))
    for start in range(0, samples, step):
        rows = slice(start, start + step)
        pooled[rows] = _pool_rows(values[rows], mask[rows], pooling)
    return pooled


def _pool_rows(values: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    weights = mask[..., None]
    positions = np.arange(mask.shape[1])[None, :]
    if pooling == "first":
        index = np.where(mask, positions, mask.shape[1]).min(axis=1)
    elif pooling == "last":
        index = np.where(mask, positions, -1).max(axis=1)
    else:
        values = values.astype(np.float64)
        if pooling == "mean":
            return (values * weights).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)[:, None]
        return np.where(weights, values, -np.inf).max(axis=1)
    return values[np.arange(len(values)), np.clip(index, 0, mask.shape[1] - 1)]


def _token_figures(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per position of (samples, tokens, features) outputs: the reference's norm, the
    candidate's, their dot product and the norm of their difference, (4, samples, tokens) in
    float64, over chunks of tokens (two float64 copies of a chunk at a time)."""
    samples, tokens, _ = reference.shape
    figures = np.empty((4, samples * tokens))
    for start, (ref, cand) in token_chunks((reference, candidate), 2, 8):
        stop = start + len(ref)
        ref, cand = ref.astype(np.float64), cand.astype(np.float64)
        figures[0, start:stop] = np.einsum("ij,ij->i", ref, ref)
        figures[1, start:stop] = np.einsum("ij,ij->i", cand, cand)
        figures[2, start:stop] = np.einsum("ij,ij->i", ref, cand)
        cand -= ref
        figures[3, start:stop] = np.einsum("ij,ij->i", cand, cand)
        del ref, cand  # before the next chunk's
    figures[[0, 1, 3]] = np.sqrt(figures[[0, 1, 3]])
    return figures.reshape(4, samples, tokens)


@dataclass(frozen=True)
class Similarity(Metric):
    """Per-sample cosine similarity or relative error of the candidate's output to the
    reference's (paired: computed batch by batch from both outputs, over chunks of tokens)."""

    def reduce(self, output, labels, batch):
        return np.zeros((len(output), 0))

    def _vectors(self, reference, candidate, batch):
        """Both outputs as (samples, tokens, features) (pooled: one token) and the token mask."""
        reference, candidate = np.asarray(reference), np.asarray(candidate)
        if reference.shape != candidate.shape:
            raise QuantGuardError(f"{self.name}: the reference's output has shape "
                                  f"{list(reference.shape)} and the candidate's "
                                  f"{list(candidate.shape)}; they must match")
        if reference.ndim <= 2:
            shape = (len(reference), 1, -1)
            return (reference.reshape(shape), candidate.reshape(shape),
                    np.ones((len(reference), 1), bool))
        if reference.ndim > 3:  # (batch, tokens, ...): flatten the features
            reference = reference.reshape(*reference.shape[:2], -1)
            candidate = candidate.reshape(*candidate.shape[:2], -1)
        mask = token_mask(batch, reference.shape[:2], None, self.name)
        empty = ~mask.any(axis=1)
        if empty.any():
            sample = int(batch.ids[np.flatnonzero(empty)[0]]) if batch is not None else 0
            raise QuantGuardError(f"{self.name}: sample {sample} has no unmasked token "
                                  "(attention_mask is all 0); remove it from the validation set")
        pooling = self.options.get("pooling")
        if pooling is not None:
            return (_pool(reference, mask, pooling)[:, None, :],
                    _pool(candidate, mask, pooling)[:, None, :], np.ones((len(mask), 1), bool))
        return reference, candidate, mask

    def reduce_pair(self, reference, candidate, labels, batch):
        pooling = self.options.get("pooling")
        if pooling is not None and pooling not in POOLINGS:
            raise QuantGuardError(f"{self.name}: pooling must be one of {', '.join(POOLINGS)}, got "
                                  f"{pooling!r}")
        reference, candidate, mask = self._vectors(reference, candidate, batch)
        ref_norm, cand_norm, dot, difference = _token_figures(reference, candidate)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.name == "cosine":
                value = dot / (ref_norm * cand_norm)
                # zero vectors: identical ones agree fully, otherwise no similarity
                value = np.where((ref_norm == 0) | (cand_norm == 0),
                                 np.where(difference == 0, 1.0, 0.0), value)
                value = np.clip(value, -1.0, 1.0)
            else:
                if np.any((ref_norm == 0) & mask & (difference > 0)):
                    raise QuantGuardError("rel_error: the reference's output is all zeros for a "
                                          "sample where the candidate's is not, so the relative "
                                          "error is undefined; use metric='cosine'")
                value = np.where(ref_norm == 0, 0.0, difference / ref_norm)
        per_sample = np.where(mask, value, 0.0).sum(axis=1) / mask.sum(axis=1)
        return per_sample[:, None]

    def scores(self, reference, candidate, labels, paired) -> Scores:
        if self.name == "cosine":
            return DistanceScores(paired[:, 0], "cosine", 1.0, True)
        return DistanceScores(paired[:, 0], "rel_error", 0.0, False)


AGREEMENT = Agreement(name="agreement", higher_is_better=True, kind="binary",
                      interval_method="wilson", default_relative=False, needs_labels=False,
                      task="fidelity", description="share of samples where both models pick the "
                      "same top class (reference 1.0)")
COSINE = Similarity(name="cosine", higher_is_better=True, kind="continuous", interval_method="bca",
                    default_relative=False, needs_labels=False, task="fidelity",
                    option_names=("pooling",), paired=True, unit_interval=True,
                    description="mean per-sample cosine similarity to the reference's output "
                    "(reference 1.0)")
REL_ERROR = Similarity(name="rel_error", higher_is_better=False, kind="continuous",
                       interval_method="bca", default_relative=False, needs_labels=False,
                       task="fidelity", option_names=("pooling",), paired=True,
                       margins=("absolute",),
                       description="mean per-sample ||candidate - reference|| / ||reference|| "
                       "(reference 0.0)")


# --- Scores -------------------------------------------------------------------------------------

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

    def discordance(self) -> Discordance:
        """The samples where the models' top-1 classes differ, in sample order."""
        return Discordance(np.flatnonzero(self.agree == 0), "index")

    def evaluate(self, context: Context) -> Evaluation:
        require_margin("agreement", context.margin, ("absolute", "relative"))
        agreement = float(np.mean(self.agree))
        disagreements = int(self.n - np.count_nonzero(self.agree))
        if context.groups is None:
            low, high = wilson_interval(disagreements, self.n, context.confidence)
            result = IntervalResult(low, high, "wilson", {"disagreements": disagreements})
            # the disagreement rate's own variance, the rate floored at 3/n
            rate = max(disagreements / self.n, 3.0 / self.n)
            sizing = Sizing(self.n, variance=rate * (1 - rate))
        else:
            result = difference_interval(np.ones(self.n), self.agree.astype(np.float64),
                                         higher_is_better=True, groups=context.groups,
                                         **context.resampling)
            result.details["disagreements"] = disagreements
            sizing = variance_sizing(result.details, self.n)
        return Evaluation(1.0, agreement, 1.0 - agreement, result, sizing=sizing)


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

    def discordance(self) -> Discordance:
        """The samples the candidate does not reproduce exactly, the farthest first; shown as
        the reference's value and the candidate's."""
        badness = -self.values if self.higher_is_better else self.values
        return largest_change(self.values != self.reference_value, badness,
                              (np.full(self.n, self.reference_value), self.values))

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
                                     **context.resampling)
        if context.margin == "relative":  # reference 1: relative and absolute coincide
            result = IntervalResult(result.low / self.reference_value,
                                    result.high / self.reference_value, result.method,
                                    result.details)
        return Evaluation(self.reference_value, candidate, drop, result,
                          sizing=variance_sizing(result.details, self.n))
