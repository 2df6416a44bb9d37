"""Label-free fidelity: how closely the candidate reproduces the reference's outputs.

- ``agreement``: top-1 agreement of class-score outputs; the drop is the disagreement rate, its
  upper bound Wilson's.
- ``cosine`` and ``rel_error``: real-valued outputs (embeddings, hidden states), per sample. A
  per-token output (batch, tokens, features) is compared token by token and averaged over the
  sample's tokens, with padded positions masked by ``attention_mask`` when the data has one; or,
  with a pooling (``pooling = "mean" | "max" | "first" | "last"``, manifest key or metric option),
  pooled over the unmasked tokens first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Metric, Scores
from pytest_quantguard.metrics.classification import predicted_classes, predicted_records
from pytest_quantguard.metrics.language import token_mask
from pytest_quantguard.metrics.scores import AgreementScores, DistanceScores
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
    weights = mask[..., None]
    if pooling == "mean":
        return (values * weights).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)[:, None]
    if pooling == "max":
        return np.where(weights, values, -np.inf).max(axis=1)
    positions = np.arange(mask.shape[1])[None, :]
    if pooling == "first":
        index = np.where(mask, positions, mask.shape[1]).min(axis=1)
    else:
        index = np.where(mask, positions, -1).max(axis=1)
    return values[np.arange(len(values)), np.clip(index, 0, mask.shape[1] - 1)]


@dataclass(frozen=True)
class Similarity(Metric):
    """Per-sample cosine similarity or relative error of the candidate's output to the
    reference's (paired: computed batch by batch from both outputs)."""

    def reduce(self, output, labels, batch):
        return np.zeros((len(output), 0))

    def _vectors(self, reference, candidate, batch):
        reference = np.asarray(reference, dtype=np.float64)
        candidate = np.asarray(candidate, dtype=np.float64)
        if reference.shape != candidate.shape:
            raise QuantGuardError(f"{self.name}: the reference's output has shape "
                                  f"{list(reference.shape)} and the candidate's "
                                  f"{list(candidate.shape)}; they must match")
        if reference.ndim == 1:
            reference, candidate = reference[:, None], candidate[:, None]
        if reference.ndim == 2:
            return reference[:, None, :], candidate[:, None, :], np.ones((len(reference), 1), bool)
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
        ref_norm = np.linalg.norm(reference, axis=-1)
        difference = np.linalg.norm(candidate - reference, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.name == "cosine":
                cand_norm = np.linalg.norm(candidate, axis=-1)
                value = (reference * candidate).sum(axis=-1) / (ref_norm * cand_norm)
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
                    option_names=("pooling",), paired=True,
                    description="mean per-sample cosine similarity to the reference's output "
                    "(reference 1.0)")
REL_ERROR = Similarity(name="rel_error", higher_is_better=False, kind="continuous",
                       interval_method="bca", default_relative=False, needs_labels=False,
                       task="fidelity", option_names=("pooling",), paired=True,
                       margins=("absolute",),
                       description="mean per-sample ||candidate - reference|| / ||reference|| "
                       "(reference 0.0)")
