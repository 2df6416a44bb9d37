"""The grouped per-class breakdown gives the per-class loop's numbers: every class's figures and
interval to 1e-12, the same methods and the same order ("which lost most", ties included), and
the replayed multinomial draws are numpy's own, draw for draw."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Context
from pytest_quantguard.metrics.breakdown import breakdown
from pytest_quantguard.metrics.classification import BinaryScores
from pytest_quantguard.stats.multinomial_replay import replay_differences, replay_eligible
from pytest_quantguard.stats.paired_binary import paired_binary_interval
from pytest_quantguard.stats.paired_binary_many import paired_binary_intervals, tango_intervals
from tests.metrics.real_models import Digits, rounded

FIELDS = ("reference", "candidate", "drop", "low", "high")


def loop_breakdown(scores, keys, context, names=None):
    """The breakdown as it was: one mask, one subset and one evaluation per class."""
    rows = []
    values = np.unique(keys)
    seeds = context.rng.integers(0, 2**63 - 1, size=len(values))
    for value, seed in zip(values, seeds, strict=True):
        mask = keys == value
        label = value.item()
        shown = names[label] if names is not None and 0 <= label < len(names) else label
        local = replace(context, rng=np.random.default_rng(int(seed)))
        try:
            evaluation = scores.subset(mask).evaluate(local)
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


@pytest.fixture(scope="module")
def digits_scores():
    """Held-out digits: a logistic regression against its weights on a 2-level grid (many
    classes lose samples) -- each sample right (1) or wrong (0) for both models."""
    digits = Digits()
    coarse = rounded(digits.model.coef_, 2)
    reference = digits.reference_scores.argmax(1)
    candidate = (digits.x @ coarse.T + digits.model.intercept_).argmax(1)
    return (BinaryScores((reference == digits.y).astype(np.int8),
                         (candidate == digits.y).astype(np.int8)), digits.y)


def assert_same_rows(new, old):
    assert [row["label"] for row in new] == [row["label"] for row in old]  # order, ties included
    for a, b in zip(new, old, strict=True):
        assert list(a) == list(b)
        assert (a["slice"], a["n"], a.get("method"), a.get("error")) == \
            (b["slice"], b["n"], b.get("method"), b.get("error"))
        for field in FIELDS:
            if field in b:
                assert a[field] == pytest.approx(b[field], abs=1e-12, rel=0)


@pytest.mark.parametrize("margin", ["absolute", "relative", "error-increase"])
def test_digits_breakdown_equals_the_per_class_loop(digits_scores, margin):
    scores, labels = digits_scores
    names = tuple(f"digit {k}" for k in range(10))

    def context():
        return Context(margin=margin, confidence=0.95, resamples=10_000,
                       rng=np.random.default_rng(2024))

    new = breakdown(scores, labels, context(), names)
    old = loop_breakdown(scores, labels, context(), names)
    assert_same_rows(new, old)
    assert any(row.get("method") in ("percentile+tango", "tango-score") for row in new)


def test_many_classes_with_ties_equal_the_loop(digits_scores):
    """300 classes cut from the digits' right/wrong outcomes (tiled), labels shuffled: small
    classes, degenerate ones (b = c = 0, equal upper bounds) and chunked replay."""
    scores, _ = digits_scores
    rng = np.random.default_rng(7)
    reference = np.tile(scores.reference, 40)
    candidate = np.tile(scores.candidate, 40)
    keys = rng.integers(0, 300, len(reference))
    tiled = BinaryScores(reference, candidate)

    def context():
        return Context(margin="absolute", confidence=0.95, resamples=2_000,
                       rng=np.random.default_rng(11))

    new = breakdown(tiled, keys, context())
    assert_same_rows(new, loop_breakdown(tiled, keys, context()))
    highs = [row["high"] for row in new]
    assert len(set(highs)) < len(highs)  # ties exist, and their order matched


def test_replayed_draws_are_numpys():
    cases = [(1, 1, 2), (1, 0, 1), (0, 1, 1), (2, 0, 2), (3, 5, 9), (0, 7, 1000), (7, 0, 1000),
             (18, 2, 1000), (30, 30, 100_000), (1, 29, 30_000), (25, 25, 60)]
    b, c, n = (np.array(v) for v in zip(*cases, strict=True))
    eligible = replay_eligible(b, c, n)
    seeds = np.arange(len(cases)) * 7919 + 3
    differences, failed = replay_differences(b[eligible], c[eligible], n[eligible],
                                             seeds[eligible], 5_000)
    assert not failed[n[eligible] > 2].any()
    for row, i in enumerate(np.flatnonzero(eligible)):
        if failed[row]:
            continue
        draws = np.random.default_rng(int(seeds[i])).multinomial(
            int(n[i]), [b[i] / n[i], c[i] / n[i], 1.0 - (b[i] + c[i]) / n[i]], size=5_000)
        np.testing.assert_array_equal(differences[row], draws[:, 0] - draws[:, 1])


def test_many_intervals_equal_the_scalar_one_outside_the_replay_too():
    """Large discordance (numpy's BTPE sampler, drawn by numpy itself), b = n, b = c = 0."""
    cases = [(400, 300, 1000), (5, 3, 10), (10, 0, 10), (0, 0, 50), (12, 4, 800)]
    b, c, n = (np.array(v) for v in zip(*cases, strict=True))
    seeds = np.array([5, 6, 7, 8, 9])
    many = paired_binary_intervals(b, c, n, seeds, confidence=0.9, resamples=3_000)
    for (bi, ci, ni), seed, result in zip(cases, seeds, many, strict=True):
        one = paired_binary_interval(bi, ci, ni, confidence=0.9, resamples=3_000,
                                     rng=np.random.default_rng(int(seed)))
        assert (result.method, set(result.details)) == (one.method, set(one.details))
        assert (result.low, result.high) == pytest.approx((one.low, one.high), abs=1e-12)
    low, high = tango_intervals(b, c, n, 0.9)
    assert np.all(low <= (b - c) / n) and np.all(high >= (b - c) / n)
