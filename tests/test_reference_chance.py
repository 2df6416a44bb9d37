"""A reference not demonstrably better than chance on the labels: Cohen's κ's one-sided lower bound
≤ 0 (classes) or R² ≤ 0 (regression) (docs/intervals.md, "A reference at chance"). The check reads
the reference's per-sample summary, collected in the inference stream and cached beside its
records. Real scikit-learn models on scikit-learn datasets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits, make_classification
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

from conftest import MODELS, PROD_VAL
from pytest_quantguard import ValidationSet
from pytest_quantguard.cache import ReferenceCache
from pytest_quantguard.inference import infer
from pytest_quantguard.metrics import get_metric
from pytest_quantguard.reference_check import check_reference, kappa_check
from pytest_quantguard.runners import make_runner


def inferred(reference, candidate, data, metric="accuracy", cache=None):
    return infer(data, [get_metric(metric, data.task)], make_runner(reference, role="reference"),
                 make_runner(candidate, role="candidate"), None, 128,
                 cache if cache is not None else ReferenceCache(None))


@pytest.fixture(scope="module")
def digits():
    inputs, labels = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=5000).fit(inputs[:900] / 16, labels[:900])
    return inputs[900:] / 16, labels[900:], model.predict_proba


def test_shuffled_labels_on_a_balanced_set_fail(digits):
    inputs, labels, model = digits
    shuffled = np.random.default_rng(0).permutation(labels)
    check = inferred(model, model, ValidationSet(inputs, shuffled)).reference_check(0.95)
    assert check is not None and not check.passed and check.statistic == "kappa"
    assert check.lower <= 0 < 1 - abs(check.value)
    assert "not demonstrably better than chance" in check.message
    assert "the labels or the preprocessing are wrong, not the quantization" in check.message
    kept = inferred(model, model, ValidationSet(inputs, labels)).reference_check(0.95)
    assert kept.passed and kept.value > 0.9 and kept.message == ""


def test_feature_columns_in_another_order_make_a_reference_at_chance(digits):
    """Another way to lose the labels: the inputs prepared unlike in training (here the pixel
    columns in another order)."""
    inputs, labels, model = digits
    columns = np.random.default_rng(0).permutation(inputs.shape[1])
    check = inferred(model, model, ValidationSet(inputs[:, columns], labels)).reference_check(0.95)
    assert not check.passed and check.lower <= 0 and check.notes == ()


def test_an_imbalanced_binary_model_below_the_majority_share_passes():
    """Balanced accuracy ~0.87 while accuracy is below the majority share: better than chance."""
    inputs, labels = make_classification(n_samples=6000, n_features=8, n_informative=3,
                                         weights=[0.93], class_sep=0.9, flip_y=0.0, random_state=3)
    model = LogisticRegression(class_weight="balanced", max_iter=2000).fit(inputs[:3000],
                                                                           labels[:3000])
    x, y = inputs[3000:], labels[3000:]
    predicted = model.predict(x)
    accuracy, majority = float(np.mean(predicted == y)), float(np.mean(y == 0))
    assert accuracy < majority and 0.82 < balanced_accuracy_score(y, predicted) < 0.92
    check = inferred(model.predict_proba, model.predict_proba, ValidationSet(x, y)).reference_check(0.95)
    assert check.passed and check.lower > 0
    assert check.value == pytest.approx(cohen_kappa_score(y, predicted), abs=1e-12)
    assert any("below the majority-class share" in note for note in check.notes)


def test_a_regression_reference_with_r2_at_most_zero_fails():
    inputs, targets = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.05).fit(inputs[:300], targets[:300])
    x, y = inputs[300:], targets[300:]
    good = inferred(model.predict, model.predict, ValidationSet(x, y, task="regression"), "rmse")
    assert good.reference_check(0.95).passed and good.reference_check(0.95).value > 0.3
    shuffled = np.random.default_rng(1).permutation(y)  # targets of other patients
    bad = inferred(model.predict, model.predict, ValidationSet(x, shuffled, task="regression"), "rmse")
    check = bad.reference_check(0.95)
    assert not check.passed and check.statistic == "r2" and check.value <= 0
    assert "no better than predicting the targets' mean" in check.message


def test_kappa_standard_error_matches_a_bootstrap():
    """The large-sample standard error (Fleiss, Cohen and Everitt 1969) against a seeded bootstrap
    of κ over samples."""
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 4, size=800)
    predicted = np.where(rng.random(800) < 0.35, truth, rng.integers(0, 4, size=800))
    check = kappa_check(predicted, truth, 0.95)
    assert check.value == pytest.approx(cohen_kappa_score(truth, predicted), abs=1e-12)
    draws = [cohen_kappa_score(truth[index], predicted[index])
             for index in rng.integers(0, 800, size=(1000, 800))]
    se = (check.value - check.lower) / 1.6448536269514722
    assert se == pytest.approx(np.std(draws), rel=0.1)


def test_one_class_of_labels_and_other_tasks_skip_the_check():
    skipped = kappa_check(np.array([0, 1, 0, 0]), np.zeros(4, np.int64), 0.95)
    assert skipped.passed and skipped.statistic == "skipped"
    assert check_reference(np.zeros(4), None, "classification", 0.95) is None
    assert check_reference(np.zeros((4, 3)), np.zeros((4, 3)), "language-model", 0.95) is None


def test_the_reference_summary_is_cached_with_its_records(tmp_path):
    data = ValidationSet.from_folder(PROD_VAL)
    fp32, int8 = str(MODELS / "fp32.onnx"), str(MODELS / "int8.onnx")
    first = inferred(fp32, int8, data, cache=ReferenceCache(tmp_path))
    assert first.reference_ran and first.reference_summary is not None
    second = inferred(fp32, int8, data, cache=ReferenceCache(tmp_path))  # a new run: from disk
    assert not second.reference_ran and second.cache["accuracy"] == "hit"
    assert np.array_equal(second.reference_summary, first.reference_summary)
    assert second.reference_check(0.95) == first.reference_check(0.95)
    assert first.reference_check(0.95).passed


def test_compare_fails_the_check_and_keeps_the_candidates_verdict(digits):
    """Through the public API: the failed check is in the message, the record and ``passed``."""
    from pytest_quantguard import compare
    from pytest_quantguard.errors import QuantGuardWarning

    inputs, labels, model = digits
    shuffled = np.random.default_rng(0).permutation(labels)
    with pytest.warns(QuantGuardWarning, match="FAILED check: chance: .*not demonstrably better"):
        result = compare(model, model, data=ValidationSet(inputs, shuffled), resamples=500)
    assert result.verdict == "ship" and not result.passed  # identical models: the drop is 0
    [check] = result.failed_checks
    assert check["check"] == "chance" and check["statistic"] == "kappa" and check["lower"] <= 0
    assert "labels or the preprocessing are wrong" in result.message


def test_a_gate_on_shuffled_labels_fails_the_test_with_the_rule_line(pytester, digits):
    inputs, labels, _ = digits
    np.savez(pytester.path / "val.npz", inputs=np.float32(inputs),
             labels=np.random.default_rng(1).permutation(labels))
    pytester.makepyfile(f'''
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        model = LogisticRegression(max_iter=5000).fit(x[:900] / 16, y[:900]).predict_proba

        def test_gate(quant_compare):
            quant_compare(model, model, data={str(pytester.path / "val.npz")!r})
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--quant-bootstrap", "500")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*FAILED check: chance:*not demonstrably better than chance*"])
