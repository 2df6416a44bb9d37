"""The metrics' reductions run over chunks of tokens: no temporary outgrows REDUCTION_BYTES, and the
results equal the former whole-batch float64 computation (kept here as the oracle).

The language-model logits are real-sized: a batch of 4 × 256 tokens over a 16,384-token vocabulary
(64 MiB of float32), made by an LM head (hidden states @ W) and by the same head with W rounded to
the int8 grid per output column (the candidate). The embeddings are 8 × 512 tokens × 4,096
features from a projection and its int8-rounded copy. Peak temporaries are measured with
tracemalloc, which sees numpy's allocations; the former path holds several float64 copies of the
whole batch (more than 500 MiB here).
"""

from __future__ import annotations

import math
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from pytest_quantguard.metrics.fidelity import COSINE, REL_ERROR
from pytest_quantguard.metrics.language import PERPLEXITY, REDUCTION_BYTES

SAMPLES, TOKENS, VOCAB, HIDDEN = 4, 256, 16_384, 64
SLACK = 2**20  # per-token arrays (a few floats per position) and numpy's small buffers


def int8_rounded(weights: np.ndarray) -> np.ndarray:
    """Symmetric int8 rounding of each output column (what a weight-only INT8 export does)."""
    scale = np.abs(weights).max(axis=0) / 127
    return (np.round(weights / scale) * scale).astype(np.float32)


def batch_of(attention: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(inputs={"attention_mask": attention}, ids=np.arange(len(attention)))


@pytest.fixture(scope="module")
def lm() -> SimpleNamespace:
    rng = np.random.default_rng(14)
    hidden = rng.standard_normal((SAMPLES, TOKENS, HIDDEN)).astype(np.float32)
    head = (rng.standard_normal((HIDDEN, VOCAB)) / 3).astype(np.float32)
    reference = hidden @ head
    candidate = hidden @ int8_rounded(head)
    # documents of different lengths, right-padded; the last position of each has no target
    lengths = np.array([256, 200, 131, 17])
    attention = (np.arange(TOKENS)[None, :] < lengths[:, None]).astype(np.int64)
    targets = rng.integers(0, VOCAB, (SAMPLES, TOKENS))
    targets[attention == 0] = -100
    targets[np.arange(SAMPLES), lengths - 1] = -100
    return SimpleNamespace(reference=reference, candidate=candidate, targets=targets,
                           batch=batch_of(attention), mask=(attention == 1) & (targets >= 0))


# --- the former whole-batch float64 path: the oracle --------------------------------------------

def old_log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    top = logits.max(axis=-1, keepdims=True)
    shifted = logits - top
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def old_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    log_probs = old_log_softmax(logits)
    return -np.take_along_axis(log_probs, np.clip(targets, 0, None)[..., None], axis=-1)[..., 0]


def old_kl(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    log_ref, log_cand = old_log_softmax(reference), old_log_softmax(candidate)
    return (np.exp(log_ref) * (log_ref - log_cand)).sum(axis=-1)


def old_similarity(name: str, reference: np.ndarray, candidate: np.ndarray,
                   mask: np.ndarray) -> np.ndarray:
    reference, candidate = reference.astype(np.float64), candidate.astype(np.float64)
    ref_norm = np.linalg.norm(reference, axis=-1)
    difference = np.linalg.norm(candidate - reference, axis=-1)
    if name == "cosine":
        value = (reference * candidate).sum(axis=-1) / (ref_norm * np.linalg.norm(candidate,
                                                                                 axis=-1))
    else:
        value = difference / ref_norm
    return np.where(mask, value, 0.0).sum(axis=1) / mask.sum(axis=1)


def per_row(function, *arrays):
    """The oracle one document at a time (its own temporaries stay a few hundred MiB)."""
    return np.stack([function(*(array[i] for array in arrays)) for i in range(SAMPLES)])


def peak_bytes(function, *args) -> tuple[object, int]:
    """``function(*args)`` and the peak of what it allocated beyond its inputs."""
    tracemalloc.start()
    try:
        result = function(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- perplexity -----------------------------------------------------------------------------------

def test_perplexity_equals_the_float64_path(lm):
    records = PERPLEXITY.reduce(lm.reference, lm.targets, lm.batch)
    candidate = PERPLEXITY.reduce(lm.candidate, lm.targets, lm.batch)
    for logits, got in ((lm.reference, records), (lm.candidate, candidate)):
        nll = per_row(old_nll, logits, lm.targets)
        expected_sums = np.where(lm.mask, nll, 0.0).sum(axis=1)
        np.testing.assert_allclose(got[:, 0], expected_sums, rtol=1e-6)
        np.testing.assert_array_equal(got[:, 1], lm.mask.sum(axis=1))
        expected = math.exp(expected_sums.sum() / lm.mask.sum())
        assert math.exp(got[:, 0].sum() / got[:, 1].sum()) == pytest.approx(expected, rel=1e-6)
    scores = PERPLEXITY.scores(records, candidate, lm.targets, None)
    assert scores.candidate[:, 0].sum() > scores.reference[:, 0].sum() * 0.99  # a real change


def test_agreement_and_kl_equal_the_float64_path(lm):
    paired = PERPLEXITY.reduce_pair(lm.reference, lm.candidate, lm.targets, lm.batch)
    agree = lm.reference.argmax(axis=-1) == lm.candidate.argmax(axis=-1)
    np.testing.assert_array_equal(paired[:, 0], (agree & lm.mask).sum(axis=1))
    kl = np.where(lm.mask, per_row(old_kl, lm.reference, lm.candidate), 0.0).sum(axis=1)
    assert kl.sum() > 0
    np.testing.assert_allclose(paired[:, 1], kl, rtol=1e-4)
    np.testing.assert_array_equal(paired[:, 2], lm.mask.sum(axis=1))


def test_views_and_half_precision_give_the_same_records(lm):
    """A non-contiguous output (a view into a larger one) and float16 logits reduce alike."""
    wide = np.zeros((SAMPLES, TOKENS, VOCAB + 8), dtype=np.float32)
    wide[..., :VOCAB] = lm.reference
    view = wide[..., :VOCAB]
    assert not view.flags.c_contiguous
    np.testing.assert_allclose(PERPLEXITY.reduce(view, lm.targets, lm.batch),
                               PERPLEXITY.reduce(lm.reference, lm.targets, lm.batch), rtol=1e-12)
    half = lm.reference.astype(np.float16)
    nll = np.where(lm.mask, per_row(old_nll, half, lm.targets), 0.0).sum(axis=1)
    np.testing.assert_allclose(PERPLEXITY.reduce(half, lm.targets, lm.batch)[:, 0], nll, rtol=1e-6)


def test_logit_temporaries_stay_under_the_bound(lm):
    """The batch holds 64 MiB of logits per model; no more than REDUCTION_BYTES is allocated on
    top of them, by either reduction (the float64 path allocated over 500 MiB)."""
    assert lm.reference.nbytes >= REDUCTION_BYTES
    _, single = peak_bytes(PERPLEXITY.reduce, lm.reference, lm.targets, lm.batch)
    _, paired = peak_bytes(PERPLEXITY.reduce_pair, lm.reference, lm.candidate, lm.targets,
                           lm.batch)
    assert single <= REDUCTION_BYTES + SLACK
    assert paired <= REDUCTION_BYTES + SLACK


# --- cosine and rel_error on per-token embeddings -----------------------------------------------

@pytest.fixture(scope="module")
def embeddings() -> SimpleNamespace:
    rng = np.random.default_rng(15)
    hidden = rng.standard_normal((8, 512, 32)).astype(np.float32)
    projection = rng.standard_normal((32, 4096)).astype(np.float32)
    lengths = np.array([512, 300, 77, 512, 1, 250, 499, 64])
    attention = (np.arange(512)[None, :] < lengths[:, None]).astype(np.int64)
    return SimpleNamespace(reference=hidden @ projection,
                           candidate=hidden @ int8_rounded(projection),
                           batch=batch_of(attention), mask=attention == 1)


@pytest.mark.parametrize("metric", [COSINE, REL_ERROR], ids=["cosine", "rel_error"])
def test_similarity_equals_the_float64_path_with_bounded_temporaries(embeddings, metric):
    assert embeddings.reference.nbytes >= REDUCTION_BYTES
    got, peak = peak_bytes(metric.reduce_pair, embeddings.reference, embeddings.candidate, None,
                           embeddings.batch)
    expected = np.stack([old_similarity(metric.name, embeddings.reference[i:i + 1],
                                        embeddings.candidate[i:i + 1], embeddings.mask[i:i + 1])
                         for i in range(8)])[:, 0]
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-9)
    assert (got[:, 0] != (1.0 if metric.name == "cosine" else 0.0)).all()  # a real change
    assert peak <= REDUCTION_BYTES + SLACK


def test_pooled_similarity_equals_the_float64_path(embeddings):
    metric = COSINE.configure({"pooling": "mean"})
    got, peak = peak_bytes(metric.reduce_pair, embeddings.reference, embeddings.candidate, None,
                           embeddings.batch)
    weights = embeddings.mask[..., None]
    pooled = [(array.astype(np.float64) * weights).sum(axis=1) / embeddings.mask.sum(axis=1)[:, None]
              for array in (embeddings.reference, embeddings.candidate)]
    expected = (pooled[0] * pooled[1]).sum(axis=1) / (np.linalg.norm(pooled[0], axis=1)
                                                      * np.linalg.norm(pooled[1], axis=1))
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-9)
    assert peak <= REDUCTION_BYTES + SLACK
