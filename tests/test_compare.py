"""compare() on the committed example pair and on in-memory data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import MODELS, PROD_VAL
from pytest_quantguard import Comparison, Interval, ValidationSet, Verdict, compare
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning

FP32, INT8, INT2 = (str(MODELS / f"{name}.onnx") for name in ("fp32", "int8", "int2"))


def assert_reads_like_a_verdict(result: Comparison) -> None:
    message = result.message
    assert f"reference {result.reference_score:.4f}" in message
    assert f"candidate {result.candidate_score:.4f}" in message
    assert f"drop {result.drop:.4f}" in message
    assert f"95% interval [{result.interval.low:+.4f}, {result.interval.high:+.4f}]" in message
    assert result.method in message
    assert f"verdict: {result.verdict}" in message
    assert f"rule: {result.verdict} because" in message
    assert "remedy: " in message


@pytest.fixture(scope="module")
def predictions():
    import onnxruntime

    data = np.load(PROD_VAL / "digits_heldout.npz")
    out = {}
    for name in ("fp32", "int8", "int2"):
        session = onnxruntime.InferenceSession(str(MODELS / f"{name}.onnx"),
                                               providers=["CPUExecutionProvider"])
        out[name] = session.run(None, {"input": data["inputs"]})[0].argmax(1)
    return out, data["labels"]


def test_int8_ships_on_the_full_set():
    result = compare(FP32, INT8, data=PROD_VAL, metric="accuracy")
    assert result.verdict == Verdict.SHIP and result.verdict == "ship"
    assert result.n == 899 and result.interval.high < 0.01
    assert result.reference["sha256"] and result.reference["bytes"] > 0
    assert_reads_like_a_verdict(result)


def test_int2_is_stopped_with_stay_fp16(predictions):
    result = compare(FP32, INT2, data=PROD_VAL, metric="accuracy")
    assert result.verdict == "stay-fp16"
    assert result.interval.low >= 0.01 and "degradation established" in result.message
    assert "stay at FP16" in result.message
    preds, labels = predictions
    assert result.reference_score == pytest.approx(np.mean(preds["fp32"] == labels))
    assert result.candidate_score == pytest.approx(np.mean(preds["int2"] == labels))
    assert_reads_like_a_verdict(result)


def test_a_small_subset_is_inconclusive():
    subset = ValidationSet.from_folder(PROD_VAL).subset(np.arange(100))
    result = compare(FP32, INT8, data=subset)
    assert result.verdict == "inconclusive"
    assert result.drop < 0.01 <= result.interval.high
    assert "about 2,355 samples (2,255 more) would resolve it" in result.message
    assert_reads_like_a_verdict(result)


def test_a_subset_with_a_two_point_drop_is_try_qat(predictions):
    preds, labels = predictions
    reference_only = np.flatnonzero((preds["fp32"] == labels) & (preds["int2"] != labels))
    agree = np.flatnonzero((preds["fp32"] == labels) == (preds["int2"] == labels))
    indices = np.sort(np.concatenate([agree[:780], reference_only[:16]]))  # 16 / 796 = 2.0 pt
    result = compare(FP32, INT2, data=ValidationSet.from_folder(PROD_VAL).subset(indices))
    assert result.verdict == "try-qat"
    assert 0.01 <= result.drop < 0.03
    assert "quantization-aware training" in result.message
    assert_reads_like_a_verdict(result)


def test_point_gate_ships_what_the_upper_gate_calls_inconclusive():
    subset = ValidationSet.from_folder(PROD_VAL).subset(np.arange(100))
    result = compare(FP32, INT8, data=subset, gate="point")
    assert result.verdict == "ship" and "gate=point" in result.message


def test_to_dict_is_builtins_only_and_round_trips():
    result = compare(FP32, INT2, data=PROD_VAL, name="int2")
    record = result.to_dict()
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert set(record) >= {"id", "metric", "reference", "candidate", "data", "drop", "interval",
                           "verdict", "thresholds", "runtime"}
    assert set(record["interval"]) == {"low", "high", "confidence", "method", "resamples", "seed"}
    assert set(record["thresholds"]) == {"max_drop", "qat_limit", "gate", "relative", "max_error_increase",
                                         "slice_max_drop", "min_reference"}
    assert set(record["reference"]) == {"path", "sha256", "bytes", "score"}
    assert set(record["data"]) == {"path", "n", "n_groups", "sha256"}
    rebuilt = Comparison.from_dict(record)
    assert rebuilt == result
    assert isinstance(rebuilt.interval, Interval) and rebuilt.verdict is Verdict.STAY_FP16


def test_interval_is_exactly_two_floats():
    result = compare(FP32, INT8, data=PROD_VAL)
    low, high = result.interval
    assert type(low) is float and type(high) is float and len(result.interval) == 2


def test_identical_inputs_give_identical_results_and_the_seed_is_recorded():
    first = compare(FP32, INT2, data=PROD_VAL, seed=3)
    second = compare(FP32, INT2, data=ValidationSet.from_folder(PROD_VAL), seed=3)
    assert first.interval == second.interval and first.seed == 3


def test_callables_and_in_memory_tuples():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 500)
    logits = np.eye(4)[labels] * 2 + rng.normal(0, 1, (500, 4))
    noisy = logits + rng.normal(0, 0.8, (500, 4))
    with pytest.warns(QuantGuardWarning, match="lose up to 20 points before the gate fails"):
        result = compare(lambda x: logits[x[:, 0].astype(int)], lambda x: noisy[x[:, 0].astype(int)],
                         data=(np.arange(500.0)[:, None], labels), max_drop=0.2, qat_limit=0.4)
    expected = np.mean(logits.argmax(1) == labels) - np.mean(noisy.argmax(1) == labels)
    assert result.drop == pytest.approx(expected)
    assert result.reference["path"].endswith("<lambda>") and result.reference["sha256"] is None


def test_dict_outputs_and_output_selection():
    labels = np.array([0, 1, 1, 0])
    right = np.eye(2)[labels]
    def model(x):
        return {"aux": np.zeros((len(x), 2)), "logits": right[x[:, 0].astype(int)]}

    data = (np.arange(4.0)[:, None], labels)
    assert compare(model, model, data=data, output="logits").reference_score == 1.0
    assert compare(model, model, data=data, output=1).reference_score == 1.0
    with pytest.raises(QuantGuardError,
                       match=r"no output named 'probs'; its outputs are \['aux', 'logits'\]"):
        compare(model, model, data=data, output="probs")
    with pytest.raises(QuantGuardError, match="output=5 is out of range"):
        compare(model, model, data=data, output=5)


def test_one_column_scores_are_thresholded_on_the_whole_set():
    labels = np.array([1, 0, 1, 0])
    probabilities = np.array([[0.9], [0.2], [0.6], [0.4]])  # in [0, 1]: threshold 0.5
    logits = np.array([[2.0], [-1.0], [0.3], [-0.2]])  # outside [0, 1]: threshold 0
    data = (np.arange(4.0)[:, None], labels)
    assert compare(lambda x: probabilities[x[:, 0].astype(int)],
                   lambda x: logits[x[:, 0].astype(int)], data=data).drop == 0.0


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(max_drop=-1), "max_drop: must be a number > 0"),
    (dict(confidence=1.5), "confidence: must be a number strictly between 0 and 1"),
    (dict(gate="lower"), "gate: must be one of upper, point"),
    (dict(resamples=0), "resamples: must be a whole number >= 1"),
    (dict(metric="map50"), "metric .map50. scores boxes, but this set.s task is .classification."),
    (dict(metric="f2"), "unknown metric 'f2'"),
    (dict(max_error_increase=0.2, max_drop=0.01), "give max_drop=0.01 or max_error_increase=0.2"),
    (dict(max_error_increase=0.2, relative=True), "relative=True and max_error_increase= are two"),
    (dict(max_error_increase=-1), "max_error_increase: must be a number > 0"),
    (dict(k=5), r"unknown keyword\(s\) k: not a tolerance key, and not an option of metric "
                r"accuracy \(it takes none"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(QuantGuardError, match=match):
        compare(FP32, INT8, data=PROD_VAL, **kwargs)


def test_nan_outputs_are_an_error_naming_the_model_and_the_sample():
    labels = np.zeros(10, dtype=int)
    def broken(x):
        out = np.ones((len(x), 2))
        out[3] = np.nan
        return out

    with pytest.raises(QuantGuardError, match=r"candidate .*broken.*NaN or Inf .* 1 of 10 .*sample 3"):
        compare(lambda x: np.ones((len(x), 2)), broken, data=(np.zeros((10, 1)), labels))


def test_never_nan_and_never_zero_width_for_identical_models():
    result = compare(FP32, FP32, data=PROD_VAL)
    assert result.method == "degenerate-fallback"
    assert math.isfinite(result.interval.low) and result.interval.low < 0 < result.interval.high


def test_compare_signature_is_the_contract():
    import inspect

    parameters = inspect.signature(compare).parameters
    assert [(name, p.kind.name, p.default) for name, p in parameters.items()] == [
        ("reference", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("candidate", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("data", "KEYWORD_ONLY", inspect.Parameter.empty),
        ("metric", "KEYWORD_ONLY", None), ("max_drop", "KEYWORD_ONLY", None),
        ("qat_limit", "KEYWORD_ONLY", None), ("relative", "KEYWORD_ONLY", None),
        ("confidence", "KEYWORD_ONLY", 0.95), ("gate", "KEYWORD_ONLY", "upper"),
        ("resamples", "KEYWORD_ONLY", None), ("seed", "KEYWORD_ONLY", 0),
        ("output", "KEYWORD_ONLY", None), ("name", "KEYWORD_ONLY", None),
        ("diagnose", "KEYWORD_ONLY", None),
        ("metric_options", "VAR_KEYWORD", inspect.Parameter.empty)]


def test_per_class_accuracy_on_grouped_data_names_its_groups():
    """The worst class's clustered interval: the message says how many groups were resampled."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    scores = np.eye(3)[labels] + rng.normal(0, 0.6, (600, 3))
    noisy = scores + rng.normal(0, 0.1, scores.shape)
    data = ValidationSet(scores, labels, groups=np.arange(600) // 10)
    # one batch holds the whole set (the default batch size is larger), so the candidate can
    # answer with its precomputed noisy scores
    result = compare(lambda batch: batch, lambda batch: noisy, data=data,
                     metric="per_class_accuracy", resamples=500)
    assert result.method == "cluster-bca"
    assert "(cluster-bca: the 60 groups are resampled as units" in result.message
