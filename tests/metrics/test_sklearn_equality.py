"""Every built-in labelled metric equals scikit-learn's on real data, through ``compare()``.

Classification: scikit-learn's digits, a logistic regression (the reference) against the same
model with its weights rounded to a 4-bit grid (the "quantized" candidate), both given to
``compare()`` as callables. Regression: scikit-learn's diabetes data, a ridge regression against
its coefficients rounded to a coarse grid. Scores must match scikit-learn's to 1e-6, and each drop
must follow docs/verdict.md (absolute ref - cand / cand - ref; relative cand/ref - 1 in the worse
direction).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    recall_score,
    root_mean_squared_error,
    top_k_accuracy_score,
)
from sklearn.preprocessing import StandardScaler

from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.errors import QuantGuardError
from real_models import Diabetes, Digits, rounded

TOL = 1e-6
FAST = dict(resamples=2000)


@pytest.fixture(scope="module")
def digits() -> Digits:
    data = Digits()
    # The comparison with top_k_accuracy_score is only meaningful on tie-free scores (ties break
    # differently): every row of both models' scores must have 10 distinct values.
    for scores in (data.reference_scores, data.candidate_scores):
        assert all(len(np.unique(row)) == 10 for row in scores)
    reference, candidate = data.predictions()
    # two models of different quality, so drops are non-trivial
    assert accuracy_score(data.y, reference) != accuracy_score(data.y, candidate)
    return data


@pytest.fixture(scope="module")
def diabetes() -> Diabetes:
    data = Diabetes()
    assert mean_absolute_error(data.y, data.reference_predictions) != pytest.approx(
        mean_absolute_error(data.y, data.candidate_predictions), abs=1e-3)
    return data


def assert_interval_holds_the_drop(result) -> None:
    low, high = result.interval
    assert np.isfinite(low) and np.isfinite(high) and low < high
    assert low <= result.drop <= high


# --- classification ---------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["accuracy", "top1"])
def test_accuracy_equals_accuracy_score_for_both_models(digits, metric):
    result = compare(digits.reference, digits.candidate, data=(digits.x, digits.y), metric=metric,
                     **FAST)
    reference, candidate = digits.predictions()
    expected_reference = accuracy_score(digits.y, reference)
    expected_candidate = accuracy_score(digits.y, candidate)
    assert result.reference_score == pytest.approx(expected_reference, abs=TOL)
    assert result.candidate_score == pytest.approx(expected_candidate, abs=TOL)
    assert result.drop == pytest.approx(expected_reference - expected_candidate, abs=TOL)
    assert not result.relative and result.n == len(digits.y)
    assert_interval_holds_the_drop(result)


def test_relative_accuracy_drop_is_one_minus_the_ratio(digits):
    result = compare(digits.reference, digits.candidate, data=(digits.x, digits.y),
                     metric="accuracy", relative=True, **FAST)
    reference, candidate = digits.predictions()
    ratio = accuracy_score(digits.y, candidate) / accuracy_score(digits.y, reference)
    assert result.relative
    assert result.drop == pytest.approx(1.0 - ratio, abs=TOL)
    assert_interval_holds_the_drop(result)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_top_k_equals_top_k_accuracy_score(digits, k):
    result = compare(digits.reference, digits.candidate, data=(digits.x, digits.y),
                     metric=f"top{k}", **FAST)
    labels = list(range(10))
    expected_reference = top_k_accuracy_score(digits.y, digits.reference_scores, k=k, labels=labels)
    expected_candidate = top_k_accuracy_score(digits.y, digits.candidate_scores, k=k, labels=labels)
    assert result.metric == f"top{k}"
    assert result.reference_score == pytest.approx(expected_reference, abs=TOL)
    assert result.candidate_score == pytest.approx(expected_candidate, abs=TOL)
    assert result.drop == pytest.approx(expected_reference - expected_candidate, abs=TOL)
    assert_interval_holds_the_drop(result)


def test_top_k_with_k_option_equals_top3(digits):
    by_option = compare(digits.reference, digits.candidate, data=(digits.x, digits.y),
                        metric="top_k", k=3, **FAST)
    by_name = compare(digits.reference, digits.candidate, data=(digits.x, digits.y),
                      metric="top3", **FAST)
    expected = top_k_accuracy_score(digits.y, digits.candidate_scores, k=3, labels=list(range(10)))
    assert by_option.candidate_score == pytest.approx(expected, abs=TOL)
    assert by_option.reference_score == pytest.approx(by_name.reference_score, abs=TOL)
    assert by_option.drop == pytest.approx(by_name.drop, abs=TOL)
    assert "k=3" in by_option.metric


def test_top_k_without_k_says_k_is_needed(digits):
    with pytest.raises(QuantGuardError, match=r"\bk\b"):
        compare(digits.reference, digits.candidate, data=(digits.x, digits.y), metric="top_k",
                **FAST)


def test_macro_f1_equals_f1_score_macro(digits):
    result = compare(digits.reference, digits.candidate, data=(digits.x, digits.y),
                     metric="macro_f1", **FAST)
    reference, candidate = digits.predictions()
    expected_reference = f1_score(digits.y, reference, average="macro")
    expected_candidate = f1_score(digits.y, candidate, average="macro")
    assert result.reference_score == pytest.approx(expected_reference, abs=TOL)
    assert result.candidate_score == pytest.approx(expected_candidate, abs=TOL)
    assert result.drop == pytest.approx(expected_reference - expected_candidate, abs=TOL)
    assert_interval_holds_the_drop(result)


def test_macro_f1_counts_a_predicted_class_absent_from_the_labels(digits):
    """scikit-learn averages over the classes in the labels OR the predictions: a class only the
    candidate predicts (F1 0) lowers its macro F1."""
    keep = digits.y != 9
    x, y = digits.x[keep], digits.y[keep]
    _, candidate = digits.predictions()
    assert (candidate[keep] == 9).any()  # the candidate predicts the absent class somewhere
    result = compare(digits.reference, digits.candidate, data=(x, y), metric="macro_f1", **FAST)
    reference_predictions = digits.reference_scores[keep].argmax(1)
    candidate_predictions = candidate[keep]
    expected_reference = f1_score(y, reference_predictions, average="macro")
    expected_candidate = f1_score(y, candidate_predictions, average="macro")
    assert result.reference_score == pytest.approx(expected_reference, abs=TOL)
    assert result.candidate_score == pytest.approx(expected_candidate, abs=TOL)
    # and averaging over the labels' classes only would have given a different figure
    labels_only = f1_score(y, candidate_predictions, average="macro", labels=np.unique(y))
    assert abs(labels_only - expected_candidate) > 1e-3


def test_macro_f1_offers_only_an_absolute_drop(digits):
    with pytest.raises(QuantGuardError, match=r"macro_f1.*absolute"):
        compare(digits.reference, digits.candidate, data=(digits.x, digits.y),
                metric="macro_f1", relative=True, **FAST)


def test_per_class_accuracy_rows_equal_recall_and_the_worst_class_is_reported(digits):
    result = compare(digits.reference, digits.candidate, data=(digits.x, digits.y),
                     metric="per_class_accuracy", max_drop=0.02, **FAST)
    reference, candidate = digits.predictions()
    classes = list(range(10))
    recall_reference = recall_score(digits.y, reference, average=None, labels=classes)
    recall_candidate = recall_score(digits.y, candidate, average=None, labels=classes)
    rows = result.details["per_class"]
    assert sorted(row["slice"] for row in rows) == classes
    for row in rows:
        k = row["slice"]
        assert row["n"] == int(np.sum(digits.y == k))
        assert row["reference"] == pytest.approx(recall_reference[k], abs=TOL)
        assert row["candidate"] == pytest.approx(recall_candidate[k], abs=TOL)
        assert row["drop"] == pytest.approx(recall_reference[k] - recall_candidate[k], abs=TOL)
        assert row["low"] <= row["drop"] <= row["high"]
        assert row["verdict"] in ("ship", "inconclusive", "try-qat", "stay-fp16")
    severity = {"ship": 0, "inconclusive": 1, "try-qat": 2, "stay-fp16": 3}
    worst = max(rows, key=lambda row: (severity[row["verdict"]], row["high"], row["drop"]))
    assert result.details["worst_class"] == worst["slice"]
    assert result.reference_score == pytest.approx(recall_reference[worst["slice"]], abs=TOL)
    assert result.candidate_score == pytest.approx(recall_candidate[worst["slice"]], abs=TOL)
    assert tuple(result.interval) == (worst["low"], worst["high"])
    assert result.verdict == worst["verdict"]
    assert f"worst class: {worst['slice']!r}" in result.message


def test_one_column_probabilities_and_logits_are_thresholded_like_sklearn_predict():
    """A one-column score is thresholded, never argmaxed: at 0.5 for probabilities, 0 for logits;
    scikit-learn's predict() makes the same choice."""
    inputs, labels = load_breast_cancer(return_X_y=True)
    scaler = StandardScaler().fit(inputs[:300])
    x_train, x = scaler.transform(inputs[:300]), scaler.transform(inputs[300:])
    y = labels[300:]
    model = LogisticRegression(max_iter=5000).fit(x_train, labels[:300])
    quantized = rounded(model.coef_[0], 2)

    def probability(batch):
        return model.predict_proba(batch)[:, 1]

    def logit(batch):
        return batch @ quantized + model.intercept_[0]

    expected_reference = accuracy_score(y, model.predict(x))
    candidate_predictions = (logit(x) > 0).astype(int)
    expected_candidate = accuracy_score(y, candidate_predictions)
    assert (model.predict(x) != candidate_predictions).any()
    result = compare(probability, logit, data=(x, y), metric="accuracy", **FAST)
    assert result.reference_score == pytest.approx(expected_reference, abs=TOL)
    assert result.candidate_score == pytest.approx(expected_candidate, abs=TOL)
    f1 = compare(probability, logit, data=(x, y), metric="macro_f1", **FAST)
    assert f1.reference_score == pytest.approx(f1_score(y, model.predict(x), average="macro"),
                                               abs=TOL)
    assert f1.candidate_score == pytest.approx(f1_score(y, candidate_predictions, average="macro"),
                                               abs=TOL)


def test_per_class_rows_are_named_by_the_manifest_class_names(tmp_path, digits):
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    folder = tmp_path / "digits"
    folder.mkdir()
    np.savez(folder / "shard_0.npz", inputs=digits.x, labels=digits.y)
    (folder / "quantguard.toml").write_text(f"class_names = {names!r}\n".replace("'", '"'),
                                            encoding="utf-8")
    result = compare(digits.reference, digits.candidate, data=str(folder),
                     metric="per_class_accuracy", **FAST)
    _, candidate = digits.predictions()
    recall_candidate = recall_score(digits.y, candidate, average=None, labels=list(range(10)))
    rows = {row["slice"]: row for row in result.details["per_class"]}
    assert set(rows) == set(names)
    for k, name in enumerate(names):
        assert rows[name]["candidate"] == pytest.approx(recall_candidate[k], abs=TOL)
    assert result.details["worst_class"] in names


def test_top_k_with_k_as_large_as_the_classes_is_an_error(digits):
    with pytest.raises(QuantGuardError, match=r"10 classes.*smaller k"):
        compare(digits.reference, digits.candidate, data=(digits.x, digits.y), metric="top10",
                **FAST)


# --- regression -------------------------------------------------------------------------------

def test_mae_equals_mean_absolute_error_and_its_drop_is_relative_by_default(diabetes):
    result = compare(diabetes.reference, diabetes.candidate, data=diabetes.data, metric="mae",
                     **FAST)
    reference = mean_absolute_error(diabetes.y, diabetes.reference_predictions)
    candidate = mean_absolute_error(diabetes.y, diabetes.candidate_predictions)
    assert result.reference_score == pytest.approx(reference, abs=TOL)
    assert result.candidate_score == pytest.approx(candidate, abs=TOL)
    assert result.relative
    assert result.drop == pytest.approx(candidate / reference - 1.0, abs=TOL)
    assert_interval_holds_the_drop(result)


def test_mae_absolute_drop_is_candidate_minus_reference(diabetes):
    result = compare(diabetes.reference, diabetes.candidate, data=diabetes.data, metric="mae",
                     relative=False, max_drop=1.0, qat_limit=3.0, **FAST)
    reference = mean_absolute_error(diabetes.y, diabetes.reference_predictions)
    candidate = mean_absolute_error(diabetes.y, diabetes.candidate_predictions)
    assert not result.relative
    assert result.drop == pytest.approx(candidate - reference, abs=TOL)
    assert_interval_holds_the_drop(result)


@pytest.mark.parametrize("relative", [None, False])
def test_rmse_equals_root_mean_squared_error(diabetes, relative):
    result = compare(diabetes.reference, diabetes.candidate, data=diabetes.data, metric="rmse",
                     relative=relative, max_drop=0.5, qat_limit=0.9, **FAST)
    reference = root_mean_squared_error(diabetes.y, diabetes.reference_predictions)
    candidate = root_mean_squared_error(diabetes.y, diabetes.candidate_predictions)
    assert result.reference_score == pytest.approx(reference, abs=TOL)
    assert result.candidate_score == pytest.approx(candidate, abs=TOL)
    expected = candidate / reference - 1.0 if relative is None else candidate - reference
    assert result.drop == pytest.approx(expected, abs=TOL)
    assert_interval_holds_the_drop(result)


def test_rmse_is_the_regression_default_and_carries_the_ptq_caution(diabetes):
    result = compare(diabetes.reference, diabetes.candidate, data=diabetes.data, **FAST)
    assert result.metric == "rmse"
    assert result.reference_score == pytest.approx(
        root_mean_squared_error(diabetes.y, diabetes.reference_predictions), abs=TOL)
    assert [risk["kind"] for risk in result.details["risks"]] == ["regression"]
    assert "fragile on regression" in result.details["risks"][0]["text"]
    # said in the message only when the candidate does not ship (docs/risks.md)
    assert ("fragile on regression" in result.message) is (result.verdict != "ship")


def test_r2_equals_r2_score_with_an_absolute_drop(diabetes):
    result = compare(diabetes.reference, diabetes.candidate, data=diabetes.data, metric="r2",
                     **FAST)
    reference = r2_score(diabetes.y, diabetes.reference_predictions)
    candidate = r2_score(diabetes.y, diabetes.candidate_predictions)
    assert result.reference_score == pytest.approx(reference, abs=TOL)
    assert result.candidate_score == pytest.approx(candidate, abs=TOL)
    assert not result.relative
    assert result.drop == pytest.approx(reference - candidate, abs=TOL)
    assert_interval_holds_the_drop(result)
    with pytest.raises(QuantGuardError, match=r"r2.*relative"):
        compare(diabetes.reference, diabetes.candidate, data=diabetes.data, metric="r2",
                relative=True, **FAST)


def test_regression_from_a_tuple_with_a_column_output(diabetes):
    """(inputs, targets) and an (n, 1) prediction column score the same as the 1-D form."""
    def column(batch):
        return diabetes.candidate(batch)[:, None]

    result = compare(diabetes.reference, column, data=(diabetes.x, diabetes.y), metric="mae",
                     **FAST)
    assert result.candidate_score == pytest.approx(
        mean_absolute_error(diabetes.y, diabetes.candidate_predictions), abs=TOL)


# --- several metrics on one run -----------------------------------------------------------------

def _same(one, alone) -> None:
    assert one.metric == alone.metric
    assert one.reference_score == alone.reference_score
    assert one.candidate_score == alone.candidate_score
    assert one.drop == alone.drop
    assert tuple(one.interval) == tuple(alone.interval)  # same seed derivation, same interval
    assert one.method == alone.method
    assert one.verdict == alone.verdict
    assert one.max_drop == alone.max_drop
    assert one.relative == alone.relative


def test_several_classification_metrics_each_equal_their_single_metric_compare(digits):
    limits = {"accuracy": 0.01, "macro_f1": 0.02, "top3": 0.005, "per_class_accuracy": 0.05}
    data = (digits.x, digits.y)
    result = compare(digits.reference, digits.candidate, data=data, metrics=limits, qat_limit=0.1,
                     **FAST)
    assert [one.metric for one in result.metrics] == list(limits)
    assert [one.name for one in result.metrics] == list(limits)
    assert result.all() == result.metrics
    for one in result.metrics:
        alone = compare(digits.reference, digits.candidate, data=data, metric=one.metric,
                        max_drop=limits[one.metric], qat_limit=0.1, **FAST)
        _same(one, alone)
    severity = {"ship": 0, "inconclusive": 1, "try-qat": 2, "stay-fp16": 3}
    worst = max(severity[str(one.verdict)] for one in result.metrics)
    assert severity[str(result.verdict)] == worst
    assert result.metric in limits
    # the scores are scikit-learn's there too
    _, candidate = digits.predictions()
    by_name = {one.metric: one for one in result.metrics}
    assert by_name["macro_f1"].candidate_score == pytest.approx(
        f1_score(digits.y, candidate, average="macro"), abs=TOL)
    assert by_name["top3"].candidate_score == pytest.approx(
        top_k_accuracy_score(digits.y, digits.candidate_scores, k=3, labels=list(range(10))),
        abs=TOL)


def test_several_metrics_with_a_metric_option(digits):
    data = (digits.x, digits.y)
    result = compare(digits.reference, digits.candidate, data=data,
                     metrics={"accuracy": None, "top_k": 0.02}, k=3, max_drop=0.015, **FAST)
    accuracy, top_k = result.metrics
    _same(accuracy, compare(digits.reference, digits.candidate, data=data, metric="accuracy",
                            max_drop=0.015, **FAST))
    _same(top_k, compare(digits.reference, digits.candidate, data=data, metric="top_k", k=3,
                         max_drop=0.02, **FAST))
    assert accuracy.max_drop == 0.015  # None: the call's max_drop


def test_several_regression_metrics_each_equal_their_single_metric_compare(diabetes):
    limits = {"mae": 0.05, "rmse": 0.05, "r2": 0.02}
    result = compare(diabetes.reference, diabetes.candidate, data=diabetes.data, metrics=limits,
                     qat_limit=0.15, **FAST)
    assert [one.metric for one in result.metrics] == list(limits)
    for one in result.metrics:
        _same(one, compare(diabetes.reference, diabetes.candidate, data=diabetes.data,
                           metric=one.metric, max_drop=limits[one.metric], qat_limit=0.15,
                           **FAST))
    by_name = {one.metric: one for one in result.metrics}
    assert by_name["rmse"].candidate_score == pytest.approx(
        root_mean_squared_error(diabetes.y, diabetes.candidate_predictions), abs=TOL)
    assert by_name["r2"].candidate_score == pytest.approx(
        r2_score(diabetes.y, diabetes.candidate_predictions), abs=TOL)


def test_a_regression_folder_defaults_to_rmse_equal_to_sklearn(tmp_path, diabetes):
    folder = tmp_path / "diabetes"
    folder.mkdir()
    np.savez(folder / "patients.npz", inputs=diabetes.x, labels=diabetes.y)
    (folder / "quantguard.toml").write_text('task = "regression"\n', encoding="utf-8")
    result = compare(diabetes.reference, diabetes.candidate, data=str(folder), **FAST)
    assert result.metric == "rmse" and result.relative
    assert result.candidate_score == pytest.approx(
        root_mean_squared_error(diabetes.y, diabetes.candidate_predictions), abs=TOL)


def test_a_regressor_gated_as_a_classifier_is_an_error_not_a_silent_ship(diabetes):
    """(inputs, targets) without a task is a classification set (docs/data.md); a regressor's one-column
    output is then thresholded into classes 0/1 and every target is 'wrong' for both models, so
    accuracy 0.0 vs 0.0 used to ship whatever the candidate did."""
    def halved(batch):
        return diabetes.reference(batch) * 0.5

    with pytest.raises(QuantGuardError, match=r"thresholded into classes 0 and 1.*regression"):
        compare(diabetes.reference, halved, data=(diabetes.x, diabetes.y), **FAST)


def test_mae_on_two_outputs_equals_sklearns_uniform_average(diabetes):
    targets = np.stack([diabetes.y, np.log(diabetes.y)], axis=1)

    def reference(batch):
        prediction = diabetes.reference(batch)
        return np.stack([prediction, np.log(np.clip(prediction, 1, None))], axis=1)

    def candidate(batch):
        prediction = diabetes.candidate(batch)
        return np.stack([prediction, np.log(np.clip(prediction, 1, None))], axis=1)

    data = ValidationSet(diabetes.x, targets, task="regression")
    result = compare(reference, candidate, data=data, metric="mae", **FAST)
    assert result.candidate_score == pytest.approx(
        mean_absolute_error(targets, candidate(diabetes.x)), abs=TOL)


@pytest.mark.parametrize("metric", ["accuracy", "top3", "macro_f1", "per_class_accuracy"])
def test_a_class_metric_on_a_regression_set_says_which_metrics_fit(diabetes, metric):
    with pytest.raises(QuantGuardError, match=rf"metric '{metric}' scores class predictions, but "
                                              r"this set's task is 'regression'; use mae, rmse "
                                              r"or r2"):
        compare(diabetes.reference, diabetes.candidate, data=diabetes.data, metric=metric,
                **FAST)
