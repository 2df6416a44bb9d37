"""Custom metrics: ``register_metric(name, per_sample=... | corpus=...)`` used by name in
``compare()``, scored exactly as a direct computation on real data (scikit-learn's digits and
diabetes), and every bad registration a clear ``QuantGuardError``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error

import pytest_quantguard.metrics as metrics_module
from pytest_quantguard import compare, register_metric
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics import available
from real_models import Diabetes, Digits

TOL = 1e-9
FAST = dict(resamples=2000)


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Each test registers into its own empty registry, dropped afterwards."""
    # empty: metrics that in-process pytester sessions registered earlier stay out too
    monkeypatch.setattr(metrics_module, "_CUSTOM", {})


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits()


@pytest.fixture(scope="module")
def diabetes() -> Diabetes:
    return Diabetes()


def top2_hit(output: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1 where the label is among the two top-scored classes."""
    top2 = np.argsort(-output, axis=1)[:, :2]
    return (top2 == labels[:, None]).any(axis=1).astype(int)


def absolute_error(output: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(output, dtype=np.float64).reshape(len(labels)) - labels)


def balanced_accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return balanced_accuracy_score(labels, outputs.argmax(1))


# --- per_sample, binary -------------------------------------------------------------------------

def test_a_binary_per_sample_metric_scores_the_mean_of_its_values(digits):
    register_metric("top2_hit", per_sample=top2_hit, kind="binary")
    result = compare(digits.reference, digits.candidate, data=digits.data, metric="top2_hit",
                     **FAST)
    expected_reference = top2_hit(digits.reference_scores, digits.y).mean()
    expected_candidate = top2_hit(digits.candidate_scores, digits.y).mean()
    assert result.metric == "top2_hit"
    assert result.reference_score == pytest.approx(expected_reference, abs=TOL)
    assert result.candidate_score == pytest.approx(expected_candidate, abs=TOL)
    assert result.drop == pytest.approx(expected_reference - expected_candidate, abs=TOL)
    assert result.method in ("percentile+tango", "tango-score")  # the 0/1 family's interval
    assert result.interval.low <= result.drop <= result.interval.high
    # the same figures as the built-in top2 (tie-free scores)
    builtin = compare(digits.reference, digits.candidate, data=digits.data, metric="top2", **FAST)
    assert (builtin.reference_score, builtin.candidate_score) == pytest.approx(
        (result.reference_score, result.candidate_score), abs=TOL)
    b = int(np.sum((top2_hit(digits.reference_scores, digits.y) == 1)
                   & (top2_hit(digits.candidate_scores, digits.y) == 0)))
    assert result.details["reference_only"] == b


def test_a_binary_per_sample_metric_offers_max_error_increase(digits):
    register_metric("top2_hit", per_sample=top2_hit, kind="binary")
    result = compare(digits.reference, digits.candidate, data=digits.data, metric="top2_hit",
                     max_error_increase=0.5, **FAST)
    reference_error = 1 - top2_hit(digits.reference_scores, digits.y).mean()
    candidate_error = 1 - top2_hit(digits.candidate_scores, digits.y).mean()
    assert result.drop == pytest.approx(candidate_error / reference_error - 1, abs=TOL)


# --- per_sample, continuous ---------------------------------------------------------------------

def test_a_continuous_per_sample_metric_lower_is_better(diabetes):
    register_metric("abs_err", per_sample=absolute_error, higher_is_better=False, task="regression")
    result = compare(diabetes.reference, diabetes.candidate, data=diabetes.data, metric="abs_err",
                     max_drop=1.0, qat_limit=3.0, **FAST)
    reference = mean_absolute_error(diabetes.y, diabetes.reference(diabetes.x))
    candidate = mean_absolute_error(diabetes.y, diabetes.candidate(diabetes.x))
    assert result.reference_score == pytest.approx(reference, abs=1e-6)
    assert result.candidate_score == pytest.approx(candidate, abs=1e-6)
    assert not result.relative  # relative=False is the registration's default
    assert result.drop == pytest.approx(candidate - reference, abs=1e-6)
    assert result.method == "bca"
    assert result.interval.low <= result.drop <= result.interval.high
    assert [risk["kind"] for risk in result.details["risks"]] == ["regression"]


def test_a_continuous_metric_registered_relative_gives_a_relative_drop(diabetes):
    register_metric("abs_err", per_sample=absolute_error, higher_is_better=False, relative=True)
    result = compare(diabetes.reference, diabetes.candidate, data=diabetes.data, metric="abs_err",
                     **FAST)
    builtin = compare(diabetes.reference, diabetes.candidate, data=diabetes.data, metric="mae",
                      **FAST)
    assert result.relative and builtin.relative
    assert result.drop == pytest.approx(builtin.drop, abs=1e-9)
    assert result.drop == pytest.approx(result.candidate_score / result.reference_score - 1, abs=TOL)
    # relative=False on the call wins over the registration's default
    absolute = compare(diabetes.reference, diabetes.candidate, data=diabetes.data,
                       metric="abs_err", relative=False, max_drop=1.0, qat_limit=3.0, **FAST)
    assert absolute.drop == pytest.approx(absolute.candidate_score - absolute.reference_score,
                                          abs=TOL)


def test_a_label_free_per_sample_metric_on_unlabeled_data(digits):
    """needs_labels=False: e.g. the candidate's mean top-class score, on inputs alone."""
    def confidence(output, labels):
        assert labels is None
        shifted = np.exp(output - output.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).max(axis=1)

    register_metric("confidence", per_sample=confidence, needs_labels=False, task="fidelity")
    result = compare(digits.reference, digits.reference, data=digits.x, metric="confidence",
                     **FAST)
    expected = confidence(digits.reference_scores, None).mean()
    assert result.reference_score == pytest.approx(expected, abs=TOL)
    assert result.drop == 0.0


def test_a_metric_that_needs_labels_on_unlabeled_data_says_so(digits):
    register_metric("top2_hit", per_sample=top2_hit, kind="binary")
    with pytest.raises(QuantGuardError, match=r"'top2_hit' needs labels"):
        compare(digits.reference, digits.candidate, data=digits.x, metric="top2_hit", **FAST)


# --- corpus -------------------------------------------------------------------------------------

def test_a_corpus_metric_is_the_function_on_the_whole_set(digits):
    register_metric("balanced_accuracy", corpus=balanced_accuracy)
    result = compare(digits.reference, digits.candidate, data=digits.data,
                     metric="balanced_accuracy", resamples=150)
    expected_reference = balanced_accuracy_score(digits.y, digits.reference_scores.argmax(1))
    expected_candidate = balanced_accuracy_score(digits.y, digits.candidate_scores.argmax(1))
    assert expected_reference != expected_candidate
    assert result.reference_score == pytest.approx(expected_reference, abs=TOL)
    assert result.candidate_score == pytest.approx(expected_candidate, abs=TOL)
    assert result.drop == pytest.approx(expected_reference - expected_candidate, abs=TOL)
    assert result.method == "percentile"
    # below 2,000 samples its comparisons say the percentile interval under-covers
    assert len(digits.y) < 2000 and "under-covers below 2,000 samples" in result.message
    low, high = result.interval
    assert low < high and low <= result.drop <= high
    # deterministic: the same inputs give the same interval
    again = compare(digits.reference, digits.candidate, data=digits.data,
                    metric="balanced_accuracy", resamples=150)
    assert tuple(again.interval) == tuple(result.interval)


def test_a_corpus_metric_of_identical_models_has_a_nonzero_interval(digits):
    register_metric("balanced_accuracy", corpus=balanced_accuracy)
    result = compare(digits.reference, digits.reference, data=digits.data,
                     metric="balanced_accuracy", resamples=50)
    assert result.drop == 0.0
    assert result.interval.low < 0.0 < result.interval.high
    assert result.verdict == "ship"


def test_custom_metrics_beside_built_in_ones_in_one_run(digits):
    register_metric("top2_hit", per_sample=top2_hit, kind="binary")
    register_metric("balanced_accuracy", corpus=balanced_accuracy)
    limits = {"accuracy": 0.02, "top2_hit": 0.01, "balanced_accuracy": 0.02}
    result = compare(digits.reference, digits.candidate, data=digits.data, metrics=limits,
                     resamples=150)
    assert [one.metric for one in result.metrics] == list(limits)
    for one in result.metrics:
        alone = compare(digits.reference, digits.candidate, data=digits.data, metric=one.metric,
                        max_drop=limits[one.metric], resamples=150)
        assert (one.drop, tuple(one.interval), one.verdict) == (
            alone.drop, tuple(alone.interval), alone.verdict)


def test_registering_a_name_again_replaces_the_custom_metric(digits):
    register_metric("hit", per_sample=top2_hit, kind="binary")
    register_metric("hit", per_sample=lambda output, labels: (output.argmax(1) == labels) * 1,
                    kind="binary")
    result = compare(digits.reference, digits.candidate, data=digits.data, metric="hit", **FAST)
    assert result.candidate_score == pytest.approx(
        np.mean(digits.candidate_scores.argmax(1) == digits.y), abs=TOL)


def test_the_registry_is_clean_between_tests():
    assert "top2_hit" not in available() and "balanced_accuracy" not in available()


# --- bad registrations and bad functions ---------------------------------------------------------

@pytest.mark.parametrize(("declaration", "match"), [
    (dict(per_sample=top2_hit, corpus=balanced_accuracy),
     "exactly one of per_sample=.* corpus=.* or corpus_of_classes="),
    (dict(), "exactly one of per_sample=.* corpus=.* or corpus_of_classes="),
    (dict(per_sample="top2"), "is not callable"),
    (dict(per_sample=top2_hit, kind="corpus"), "per_sample metric's kind is 'binary'.*'continuous'"),
    (dict(corpus=balanced_accuracy, kind="binary"), "corpus metric's kind is 'corpus'"),
    (dict(per_sample=top2_hit, kind="binary", higher_is_better=False), "binary metric scores 1"),
    (dict(per_sample=top2_hit, higher_is_better="yes"), "higher_is_better, relative and needs_labels"),
    (dict(per_sample=top2_hit, task="regresion"), "task.*regresion.*classification"),
    (dict(per_sample=top2_hit, needs_labels="no"), "needs_labels"),
])
def test_bad_registrations_say_what_is_wrong(declaration, match):
    with pytest.raises(QuantGuardError, match=match):
        register_metric("mine", **declaration)
    assert "mine" not in available()


@pytest.mark.parametrize("name", ["accuracy", "top1", "top7", "macro_f1", "agreement", "top_k"])
def test_built_in_names_cannot_be_registered(name):
    with pytest.raises(QuantGuardError, match=f"'{name}' is a built-in metric"):
        register_metric(name, per_sample=top2_hit)


@pytest.mark.parametrize("name", ["my-metric", "", "two words", 3])
def test_a_name_must_be_identifier_like(name):
    with pytest.raises(QuantGuardError, match="name must be an identifier-like string"):
        register_metric(name, per_sample=top2_hit)


def test_a_binary_metric_returning_halves_is_an_error_at_compare(digits):
    register_metric("half", per_sample=lambda output, labels: np.full(len(output), 0.5),
                    kind="binary")
    with pytest.raises(QuantGuardError, match=r"'half'.*kind='binary'.*other than 0 and 1.*"
                                              r"kind='continuous'"):
        compare(digits.reference, digits.candidate, data=digits.data, metric="half", **FAST)


@pytest.mark.parametrize(("function", "match"), [
    (lambda output, labels: 1 // 0,
     r"'broken': its function raised ZeroDivisionError: integer division or modulo by zero"),
    (lambda output, labels: np.ones(len(output) - 1), r"'broken'.*one value per sample"),
    (lambda output, labels: np.full(len(output), np.nan), r"'broken'.*NaN or Inf"),
    (lambda output, labels: ["good"] * len(output), r"'broken'.*numbers"),
])
def test_a_misbehaving_per_sample_function_is_named(digits, function, match):
    register_metric("broken", per_sample=function)
    with pytest.raises(QuantGuardError, match=match):
        compare(digits.reference, digits.candidate, data=digits.data, metric="broken", **FAST)


@pytest.mark.parametrize(("function", "match"), [
    (lambda outputs, labels: {}["missing"], r"'broken': its corpus function raised KeyError"),
    (lambda outputs, labels: float("nan"), r"'broken': its corpus function returned nan"),
])
def test_a_misbehaving_corpus_function_is_named(digits, function, match):
    register_metric("broken", corpus=function)
    with pytest.raises(QuantGuardError, match=match):
        compare(digits.reference, digits.candidate, data=digits.data, metric="broken",
                resamples=20)


def test_an_unknown_metric_lists_the_available_ones(digits):
    register_metric("top2_hit", per_sample=top2_hit, kind="binary")
    with pytest.raises(QuantGuardError) as error:
        compare(digits.reference, digits.candidate, data=digits.data, metric="top2hit", **FAST)
    message = str(error.value)
    assert "unknown metric 'top2hit'" in message
    for name in ("accuracy", "macro_f1", "per_class_accuracy", "rmse", "cosine", "top{k}",
                 "top2_hit"):
        assert name in message
    assert "register_metric" in message
