"""The onnxruntime runner on real sessions: batching, fixed batch dims, shapes, outputs, errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import MODELS, PROD_VAL
from pytest_quantguard import compare
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.runners import make_runner


def linear_model(path, weights: np.ndarray, *, batch: int | str = "batch", extra_op: str | None = None,
                 second_output: bool = False) -> str:
    """Y = X @ W (optionally followed by ``extra_op``, e.g. Sqrt), as a real ONNX file."""
    features, classes = weights.shape
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y" if extra_op is None else "z"])]
    if extra_op is not None:
        nodes.append(helper.make_node(extra_op, ["z"], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, classes])]
    if second_output:
        nodes.append(helper.make_node("Neg", ["y"], ["negated"]))
        outputs.append(helper.make_tensor_value_info("negated", TensorProto.FLOAT, [batch, classes]))
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        outputs, initializer=[numpy_helper.from_array(weights.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16).astype(np.float32), bunch.target


@pytest.fixture(scope="module")
def weights(digits):
    inputs, labels = digits
    # least-squares one-vs-rest linear classifier on real digits
    return np.linalg.lstsq(inputs, np.eye(10)[labels], rcond=None)[0]


def test_fixed_batch_dimension_is_padded_and_trimmed(tmp_path, digits, weights):
    inputs, labels = digits
    dynamic = linear_model(tmp_path / "dynamic.onnx", weights)
    fixed = linear_model(tmp_path / "fixed.onnx", weights, batch=7)
    runner = make_runner(fixed)
    assert runner.fixed_batch == 7
    out = runner({"inputs": inputs[:20]})["y"]  # 20 = 2 full chunks of 7 + a padded chunk of 6
    np.testing.assert_allclose(out, inputs[:20] @ weights, rtol=1e-4, atol=1e-4)
    result = compare(dynamic, fixed, data=(inputs, labels))
    assert result.drop == 0.0 and result.reference_score > 0.85
    assert compare(dynamic, fixed, data=(inputs, labels)).interval == result.interval


def test_batch_size_does_not_change_the_result(digits, weights, tmp_path):
    from pytest_quantguard.comparison import run

    inputs, labels = digits
    model = linear_model(tmp_path / "m.onnx", weights)
    noisy = linear_model(tmp_path / "n.onnx", weights + np.random.default_rng(0).normal(0, 0.05,
                                                                                      weights.shape))
    common = dict(data=(inputs, labels), metric=None, max_drop=None, qat_limit=None, relative=None,
                  confidence=0.95, gate="upper", resamples=10000, seed=0, output=None, name=None,
                  metric_options={})
    small, large = (run(model, noisy, batch_size=size, **common) for size in (33, 4096))
    assert small.drop == large.drop and small.interval == large.interval


def test_model_input_that_does_not_fit_the_data(tmp_path):
    model = linear_model(tmp_path / "m.onnx", np.ones((5, 2)))
    with pytest.raises(QuantGuardError, match=r"m\.onnx: model input 'x' expects shape \['batch', 5\] "
                                              r"but the data array 'inputs' has samples of shape \[64\]"):
        compare(model, model, data=(np.zeros((3, 64), np.float32), np.zeros(3, int)))
    with pytest.raises(QuantGuardError, match=r"expects shape \[.*\] but the data array 'inputs' has "
                                              r"samples of shape \[1, 8, 8\]"):
        compare(model, model, data=PROD_VAL)


def test_nan_outputs_name_the_model_and_the_file(tmp_path):
    good = linear_model(tmp_path / "good.onnx", np.eye(2))
    broken = linear_model(tmp_path / "broken.onnx", np.eye(2), extra_op="Sqrt")  # sqrt(<0) = NaN
    data = (np.array([[1.0, 2.0], [-1.0, 3.0], [2.0, 1.0]], np.float32), np.array([1, 1, 0]))
    with pytest.raises(QuantGuardError, match=r"candidate .*broken\.onnx: NaN or Inf in output 'y' "
                                              r"for 1 of 3 samples .*first: sample 1"):
        compare(good, broken, data=data)


def test_unreadable_and_missing_model_files(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")
    with pytest.raises(QuantGuardError, match=r"junk\.onnx: onnxruntime cannot load this model .* "
                                              r"Git LFS pointer"):
        compare(MODELS / "fp32.onnx", junk, data=PROD_VAL)
    with pytest.raises(QuantGuardError, match=r"candidate model file not found: .*nowhere\.onnx"):
        compare(MODELS / "fp32.onnx", tmp_path / "nowhere.onnx", data=PROD_VAL)
    with pytest.raises(QuantGuardError, match=r"unsupported reference model format '\.tflite'"):
        (tmp_path / "m.tflite").write_bytes(b"x")
        compare(tmp_path / "m.tflite", MODELS / "fp32.onnx", data=PROD_VAL)


def test_outputs_are_chosen_by_name_or_index(tmp_path, digits, weights):
    inputs, labels = digits
    model = linear_model(tmp_path / "two.onnx", weights, second_output=True)
    assert make_runner(model).output_names == ["y", "negated"]
    first = compare(model, model, data=(inputs, labels))
    negated = compare(model, model, data=(inputs, labels), output="negated")
    assert first.reference_score > 0.85 > negated.reference_score
    assert compare(model, model, data=(inputs, labels), output=1).reference_score == \
        negated.reference_score


def test_integer_model_inputs_refuse_float_data(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["y"], to=TensorProto.FLOAT)], "cast",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "ids.onnx"))
    with pytest.raises(QuantGuardError, match=r"model input 'ids' is tensor\(int64\) but the data "
                                              r"array 'inputs' is float32; store it as integers"):
        compare(tmp_path / "ids.onnx", tmp_path / "ids.onnx",
                data=(np.zeros((2, 2), np.float32), np.zeros(2, int)))
    result = compare(tmp_path / "ids.onnx", tmp_path / "ids.onnx",
                     data=(np.array([[0, 1], [1, 0]]), np.array([1, 0])))
    assert result.reference_score == 1.0
