"""Language-model perplexity, from per-token logits with targets or from per-token NLL.

Each row of the validation set is a document (or a piece of one: manifest ``groups`` names the
document of each row, and the interval is clustered by document, never by token). Positions are
scored where ``attention_mask`` (an input of that name, when the data has one) is 1 and the
target is >= 0 (``-100``, the usual ignore index, is skipped). Targets are aligned with the
logits: position t of the logits scores target t (for a causal LM whose logits at t predict token
t + 1, store ``targets = input_ids`` shifted left by one, with ``-100`` at the end).

Its family, ``PerplexityScores``: exp(token-mean NLL), interval ``linearized-cluster`` over
documents (docs/intervals.md, "Perplexity").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import (
    Context,
    Discordance,
    Evaluation,
    Metric,
    Scores,
    largest_change,
    require_margin,
    variance_sizing,
)
from pytest_quantguard.stats.families import perplexity_interval


def token_mask(batch, shape: tuple[int, int], targets: np.ndarray | None, name: str) -> np.ndarray:
    """Which positions are scored: attention_mask (if the inputs have one) and target >= 0."""
    mask = np.ones(shape, dtype=bool)
    attention = getattr(batch, "inputs", {}).get("attention_mask") if batch is not None else None
    if attention is not None:
        attention = np.asarray(attention)
        if attention.shape != shape:
            raise QuantGuardError(f"{name}: attention_mask has shape {list(attention.shape)} but "
                                  f"the output's tokens are {list(shape)}")
        mask &= attention.astype(bool)
    if targets is not None:
        mask &= targets >= 0
    return mask


# No temporary array of a reduction (the copies and intermediates of one chunk together) is larger
# than this (docs/metrics.md, "Memory of the reductions").
REDUCTION_BYTES = 64 * 2**20


def token_chunks(arrays: tuple[np.ndarray, ...], temporaries: int, itemsize: int):
    """``(start, views)`` over the positions of (samples, tokens, features) arrays of one shape,
    flattened in order, each view small enough that ``temporaries`` working copies of it in
    ``itemsize``-byte floats fit ``REDUCTION_BYTES``: views, never copies of the arrays."""
    samples, tokens, features = arrays[0].shape
    step = max(1, REDUCTION_BYTES // max(temporaries * features * itemsize, 1))
    if all(array.flags.c_contiguous for array in arrays):
        flat = [array.reshape(samples * tokens, features) for array in arrays]
        for start in range(0, samples * tokens, step):
            yield start, tuple(each[start:start + step] for each in flat)
        return
    for row in range(samples):
        for start in range(0, tokens, step):
            yield row * tokens + start, tuple(array[row, start:start + step] for array in arrays)


def _working(dtype: np.dtype) -> type:
    """The precision logits are reduced in: float32 (float64 logits stay float64); sums over the
    vocabulary accumulate in float64."""
    return np.float64 if dtype == np.float64 else np.float32


def _exp_shifted(rows: np.ndarray, work: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """exp(rows - max of each row) in ``work`` precision (one new chunk-sized array), its sum per
    row and the log-sum-exp of each row, both float64 (stable: the maximum is shifted out)."""
    shifted = rows.astype(work, copy=True)
    top = shifted.max(axis=-1, keepdims=True)
    shifted -= top
    np.exp(shifted, out=shifted)
    total = shifted.sum(axis=-1, dtype=np.float64)
    return shifted, total, top[:, 0].astype(np.float64) + np.log(total)


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-token NLL (samples, tokens), float64, of ``targets`` (clipped to >= 0) under
    ``logits`` (samples, tokens, vocabulary), reduced over chunks of tokens."""
    samples, tokens, _ = logits.shape
    work = _working(logits.dtype)
    flat_targets = np.clip(targets, 0, None).reshape(-1)
    nll = np.empty(samples * tokens)
    for start, (rows,) in token_chunks((logits,), 1, np.dtype(work).itemsize):
        stop = start + len(rows)
        log_total = _exp_shifted(rows, work)[2]
        picked = rows[np.arange(len(rows)), flat_targets[start:stop]].astype(np.float64)
        nll[start:stop] = log_total - picked
    return nll.reshape(samples, tokens)


def token_agreement_kl(reference: np.ndarray, candidate: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per token (samples, tokens): whether both models' top tokens agree, and KL(reference ||
    candidate) = sum p_ref * (ref - cand) - (lse_ref - lse_cand), float64; over chunks of
    tokens."""
    samples, tokens, _ = reference.shape
    work = _working(np.result_type(reference.dtype, candidate.dtype))
    agree = np.empty(samples * tokens, dtype=bool)
    kl = np.empty(samples * tokens)
    chunks = token_chunks((reference, candidate), 2, np.dtype(work).itemsize)
    for start, (ref, cand) in chunks:  # two chunk-sized arrays at a time
        stop = start + len(ref)
        agree[start:stop] = ref.argmax(axis=-1) == cand.argmax(axis=-1)
        log_cand = _exp_shifted(cand, work)[2]
        probs, total, log_ref = _exp_shifted(ref, work)
        probs /= total.astype(work)[:, None]
        difference = np.subtract(ref, cand, dtype=work)
        difference *= probs
        kl[start:stop] = difference.sum(axis=-1, dtype=np.float64) - (log_ref - log_cand)
        del probs, difference  # before the next chunk's
    return agree.reshape(samples, tokens), kl.reshape(samples, tokens)


@dataclass(frozen=True)
class Perplexity(Metric):
    """exp(total NLL / scored tokens); the drop is the relative increase PPL_cand / PPL_ref - 1."""

    def _targets(self, output: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        if labels is None:
            raise QuantGuardError("perplexity from logits needs per-token targets as labels "
                                  "(shape (n, tokens)); or give the per-token NLL as the output")
        targets = np.asarray(labels)
        if targets.shape != output.shape[:2]:
            raise QuantGuardError(f"perplexity: the targets have shape {list(targets.shape)} and "
                                  f"the logits {list(output.shape)}; they must align position by "
                                  "position (shift the targets for a causal LM)")
        if not np.issubdtype(targets.dtype, np.integer):
            raise QuantGuardError(f"perplexity: targets must be integer token ids, got "
                                  f"{targets.dtype}")
        if (targets >= output.shape[2]).any():
            raise QuantGuardError(f"perplexity: a target token id is >= the vocabulary size "
                                  f"{output.shape[2]} of the logits")
        return targets

    def _token_nll(self, output: np.ndarray, labels, batch) -> tuple[np.ndarray, np.ndarray]:
        output = np.asarray(output)
        if output.ndim == 3:  # logits (batch, tokens, vocabulary)
            targets = self._targets(output, labels)
            mask = token_mask(batch, output.shape[:2], targets, self.name)
            return token_nll(output, targets), mask
        if output.ndim == 2:  # per-token NLL (batch, tokens)
            targets = None
            if labels is not None and np.asarray(labels).shape == output.shape:
                targets = np.asarray(labels)
            mask = token_mask(batch, output.shape, targets, self.name)
            return output.astype(np.float64), mask
        raise QuantGuardError(f"perplexity needs per-token logits (batch, tokens, vocabulary) or "
                              f"per-token NLL (batch, tokens), got an output of shape "
                              f"{list(output.shape)}; choose it with output=")

    def reduce(self, output, labels, batch):
        nll, mask = self._token_nll(output, labels, batch)
        if (nll[mask] < 0).any():
            raise QuantGuardError("perplexity: a per-token NLL is negative; the output must be the "
                                  "negative log-likelihood (or logits)")
        return np.stack([np.where(mask, nll, 0.0).sum(axis=1), mask.sum(axis=1)], axis=1)

    def reduce_pair(self, reference, candidate, labels, batch):
        """Top-token agreements, KL(reference || candidate) summed over scored tokens, and the
        scored tokens, per row; NaN when the outputs are per-token NLL (no distributions)."""
        reference, candidate = np.asarray(reference), np.asarray(candidate)
        if reference.ndim != 3 or candidate.shape != reference.shape:
            return np.full((len(reference), 3), np.nan)
        targets = None if labels is None else self._targets(reference, labels)
        mask = token_mask(batch, reference.shape[:2], targets, self.name)
        agree, kl = token_agreement_kl(reference, candidate)
        return np.stack([(agree & mask).sum(axis=1), np.where(mask, kl, 0.0).sum(axis=1),
                         mask.sum(axis=1)], axis=1).astype(np.float64)

    def scores(self, reference, candidate, labels, paired) -> Scores:
        if not np.array_equal(reference[:, 1], candidate[:, 1]):
            raise QuantGuardError("perplexity: the two models score different numbers of tokens; "
                                  "their outputs must have the same token positions")
        return PerplexityScores(reference, candidate, paired)


PERPLEXITY = Perplexity(name="perplexity", higher_is_better=False, kind="grouped",
                        interval_method="linearized-cluster", default_relative=True,
                        needs_labels=False, task="language-model", margins=("relative",),
                        paired=True, description="exp of the mean per-token negative "
                        "log-likelihood; reported beside it: top-token agreement and mean KL")


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

    def discordance(self) -> Discordance:
        """The documents whose per-token NLL grew most first; shown as each model's mean NLL per
        token."""
        with np.errstate(divide="ignore", invalid="ignore"):
            per_token = (self.candidate[:, 0] - self.reference[:, 0]) / self.reference[:, 1]
            per_token = np.where(self.reference[:, 1] > 0, per_token, 0.0)
        return largest_change(per_token != 0, per_token,
                              (self.reference[:, 0] / np.maximum(self.reference[:, 1], 1),
                               self.candidate[:, 0] / np.maximum(self.candidate[:, 1], 1)))

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
        return Evaluation(reference, candidate, candidate / reference - 1.0, result, details,
                          sizing=variance_sizing(result.details, self.n))


def top_k_logprobs(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each token's ``k`` largest log-probabilities (float32, descending) and their token ids
    (int32), each (samples, tokens, k), from logits (samples, tokens, vocabulary); over chunks of
    tokens (docs/results.md, "Language models: top-k log-probabilities")."""
    samples, tokens, vocabulary = logits.shape
    k = min(k, vocabulary)
    work = _working(logits.dtype)
    values = np.empty((samples * tokens, k), dtype=np.float32)
    ids = np.empty((samples * tokens, k), dtype=np.int32)
    for start, (rows,) in token_chunks((logits,), 3, np.dtype(work).itemsize):
        stop = start + len(rows)
        log_total = _exp_shifted(rows, work)[2]
        top = np.argpartition(rows, vocabulary - k, axis=-1)[:, vocabulary - k:]
        picked = np.take_along_axis(rows, top, axis=-1).astype(np.float64) - log_total[:, None]
        order = np.argsort(-picked, axis=-1, kind="stable")
        values[start:stop] = np.take_along_axis(picked, order, axis=-1)
        ids[start:stop] = np.take_along_axis(top, order, axis=-1)
    return values.reshape(samples, tokens, k), ids.reshape(samples, tokens, k)


# The least candidate mass the rest bucket is given: float32 log-probabilities cannot resolve a
# smaller one, and a larger mass only lowers the bound.
REST_FLOOR = 1e-6


def top_k_kl(reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per token: KL(reference || candidate) of the two distributions coarsened to the tokens in
    both top-k lists (each its own bucket) and one bucket for the rest of the mass, and whether
    the two top tokens agree. Coarsening never increases KL (the data-processing inequality), so
    each value is a lower bound of the exact KL (the rest's candidate mass taken as at least
    ``REST_FLOOR``, which keeps it one). ``reference``, ``candidate``: (log-probabilities,
    token ids), each (..., k); the results have the leading shape."""
    ref_values, ref_ids = (np.asarray(array) for array in reference)
    cand_values, cand_ids = (np.asarray(array) for array in candidate)
    shape = ref_values.shape[:-1]
    ref_values = ref_values.reshape(-1, ref_values.shape[-1]).astype(np.float64)
    cand_values = cand_values.reshape(-1, cand_values.shape[-1]).astype(np.float64)
    ref_ids = ref_ids.reshape(len(ref_values), -1)
    cand_ids = cand_ids.reshape(len(cand_values), -1)
    kl = np.empty(len(ref_values))
    step = max(1, REDUCTION_BYTES // max(8 * ref_ids.shape[1] * cand_ids.shape[1], 1))
    for start in range(0, len(kl), step):
        rows = slice(start, start + step)
        match = ref_ids[rows, :, None] == cand_ids[rows, None, :]
        common = match.any(axis=2)
        p = np.where(common, np.exp(ref_values[rows]), 0.0)
        q = np.where(common, (match * np.exp(cand_values[rows])[:, None, :]).sum(axis=2), 0.0)
        log_q = np.log(np.where(common, q, 1.0))
        terms = np.where(common, p * (ref_values[rows] - log_q), 0.0).sum(axis=1)
        p_rest = np.clip(1.0 - p.sum(axis=1), 0.0, 1.0)
        q_rest = np.clip(1.0 - q.sum(axis=1), REST_FLOOR, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rest = np.where(p_rest > 0, p_rest * np.log(p_rest / q_rest), 0.0)
        kl[rows] = np.maximum(terms + rest, 0.0)
    agree = ref_ids[:, 0] == cand_ids[:, 0]
    return kl.reshape(shape), agree.reshape(shape)
