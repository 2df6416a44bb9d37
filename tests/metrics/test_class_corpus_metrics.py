"""Custom corpus metrics of class predictions (``corpus_of_classes=f(labels, predicted)``): scored
as scikit-learn scores them on real data (digits), their interval resampled as prediction patterns
(docs/intervals.md, "Corpus metrics of class predictions"), and their misuse a clear
``QuantGuardError``.

``register_metric`` forwards ``corpus_of_classes=`` to ``make_metric``; these tests register
through ``make_metric`` into the test's own registry.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, matthews_corrcoef

import pytest_quantguard.metrics as metrics_module
from pytest_quantguard import compare
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics import register_metric
from pytest_quantguard.metrics.custom import ClassCorpusScores, make_metric
from pytest_quantguard.simulation.class_corpus import per_call
from real_models import Digits

TOL = 1e-9


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    monkeypatch.setattr(metrics_module, "_CUSTOM", {})


def register(name: str, **declaration) -> None:
    register_metric(name, **declaration)


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits()


@pytest.mark.parametrize(("metric", "sklearn_metric"), [
    ("balanced_accuracy", balanced_accuracy_score), ("mcc", matthews_corrcoef),
    ("kappa", cohen_kappa_score)])
def test_a_class_corpus_metric_scores_the_predicted_classes(digits, metric, sklearn_metric):
    register(metric, corpus_of_classes=per_call(metric))
    result = compare(digits.reference, digits.candidate, data=digits.data, metric=metric,
                     resamples=40)
    reference, candidate = digits.predictions()
    assert result.reference_score == pytest.approx(sklearn_metric(digits.y, reference), abs=TOL)
    assert result.candidate_score == pytest.approx(sklearn_metric(digits.y, candidate), abs=TOL)
    assert result.drop == pytest.approx(result.reference_score - result.candidate_score, abs=TOL)
    # ~90 samples a class: the rare-class widening applies, and no small-set note is needed
    assert result.method == "bca+adjusted"
    assert "under-covers" not in result.message
    low, high = result.interval
    assert low < result.drop < high


def test_the_user_function_and_its_vectorized_twin_give_the_same_interval():
    """The simulation evaluates vectorized twins of the per-call functions: on the same stream
    both must give the same limits, so the simulated coverage is the product's."""
    from pytest_quantguard.metrics.base import Context
    from pytest_quantguard.simulation.class_corpus import cell_score, class_corpus_sample

    labels, reference, candidate = class_corpus_sample(np.random.default_rng(3), 300, "rare")
    limits = []
    for twin in (cell_score("mcc", 4), None):
        scores = ClassCorpusScores(labels, reference, candidate, per_call("mcc"), "mcc", True,
                                   cell_score=twin)
        interval = scores.evaluate(Context(margin="absolute", confidence=0.95, resamples=80,
                                           rng=np.random.default_rng(7))).interval
        limits.append((interval.low, interval.high, interval.method))
    assert limits[0][:2] == pytest.approx(limits[1][:2], rel=1e-12)
    assert limits[0][2] == limits[1][2] == "bca+adjusted"


def test_a_relative_class_corpus_drop(digits):
    register("kappa", corpus_of_classes=cohen_kappa_score, relative=True)
    result = compare(digits.reference, digits.candidate, data=digits.data, metric="kappa",
                     resamples=30)
    assert result.drop == pytest.approx(1 - result.candidate_score / result.reference_score,
                                        abs=TOL)
    assert result.interval.low < result.drop < result.interval.high


def test_identical_models_give_a_nonzero_interval(digits):
    register("balanced", corpus_of_classes=per_call("balanced_accuracy"))
    result = compare(digits.reference, digits.reference, data=digits.data, metric="balanced",
                     resamples=40)
    assert result.drop == 0.0 and result.interval.low < 0.0 < result.interval.high


def test_an_order_dependent_function_is_refused(digits):
    register("first_half", corpus_of_classes=lambda labels, predicted: float(
        np.mean(labels[: len(labels) // 2] == predicted[: len(labels) // 2])))
    with pytest.raises(QuantGuardError, match=r"'first_half'.*depend only on the \(label, "
                                              r"predicted class\) pairs.*corpus= instead"):
        compare(digits.reference, digits.candidate, data=digits.data, metric="first_half",
                resamples=20)


@pytest.mark.parametrize(("declaration", "match"), [
    (dict(corpus_of_classes=balanced_accuracy_score, needs_labels=False),
     "needs_labels=True and task='classification'"),
    (dict(corpus_of_classes=balanced_accuracy_score, task="regression"),
     "needs_labels=True and task='classification'"),
    (dict(corpus_of_classes=balanced_accuracy_score, corpus=balanced_accuracy_score),
     "exactly one of"),
    (dict(corpus_of_classes=balanced_accuracy_score, kind="binary"), "kind is 'corpus'"),
])
def test_bad_class_corpus_registrations(declaration, match):
    with pytest.raises(QuantGuardError, match=match):
        make_metric("mine", **declaration)


def test_a_function_returning_no_number_is_named(digits):
    register("broken", corpus_of_classes=lambda labels, predicted: "high")
    with pytest.raises(QuantGuardError, match=r"'broken'.*must return one number, got str"):
        compare(digits.reference, digits.candidate, data=digits.data, metric="broken",
                resamples=20)
