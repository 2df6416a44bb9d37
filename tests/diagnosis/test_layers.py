"""The per-layer diagnosis (docs/diagnosis.md) on real models quantized by onnxruntime's own
quantizers: QDQ, QOperator and MatMulNBits candidates, the local ranking, and the hook."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
from mlp_models import LAYERS, digits, quantize, quantize_4bit, trained_weights, write_mlp

from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.diagnosis import layers
from pytest_quantguard.diagnosis.graphs import Graph
from pytest_quantguard.runners import make_runner
from pytest_quantguard.settings import make_execution

PLANTED = 1  # fc1: the layer given an outlier weight


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """The trained MLP with one outlier weight planted in fc1 (a single entry 40x the tensor's
    largest, on the input from fc0's least active unit, so fc1's outputs keep their range:
    per-tensor INT8 spends its levels on it and crushes the rest of fc1), its held-out set, and
    its quantized versions."""
    folder = tmp_path_factory.mktemp("mlp")
    train_x, train_y, x, y = digits()
    weights = trained_weights(train_x, train_y)
    planted = weights[PLANTED][0]
    hidden = np.maximum(train_x @ weights[0][0] + weights[0][1], 0)
    quiet = int(np.argmin(hidden.max(axis=0)))  # the input unit fc1 reads least: a dead ReLU
    planted[quiet, 5] = 40 * np.abs(planted).max()
    fp32 = write_mlp(weights, folder / "fp32.onnx")
    made = {"fp32": fp32, "data": ValidationSet(x, y)}
    made["qdq"] = quantize(fp32, folder / "qdq.onnx", train_x[:256])
    made["qoperator"] = quantize(fp32, folder / "qoperator.onnx", train_x[:256], fmt="QOperator")
    made["int4"] = quantize_4bit(fp32, folder / "int4.onnx")
    return made


def diagnosed(mlp, candidate, **options):
    return layers.diagnose(make_runner(mlp["fp32"]), make_runner(mlp[candidate]), mlp["data"],
                           **options)


@pytest.mark.parametrize("candidate,fmt,op_type", [("qdq", "QDQ", "MatMul"),
                                                    ("qoperator", "QOperator", "QLinearMatMul")])
def test_the_planted_layer_is_named_first(mlp, candidate, fmt, op_type):
    diagnosis = diagnosed(mlp, candidate)
    assert diagnosis["format"] == fmt and diagnosis["skipped"] is None
    assert diagnosis["samples"] == 797 // 32 and diagnosis["seed"] == 0  # a 32nd of the set
    first = diagnosis["layers"][0]
    assert first["rank"] == 1 and first["op_type"] == op_type
    assert first["weight"] == f"fc{PLANTED}.weight", diagnosis["layers"]
    assert first["node"] == f"fc{PLANTED}/MatMul" and first["tensor"] == f"fc{PLANTED}_mm"
    assert first["local_error"] > 3 * diagnosis["layers"][1]["local_error"]
    assert first["weight_error"] > 5 * diagnosis["layers"][1]["weight_error"]
    assert [layer["rank"] for layer in diagnosis["layers"]] == [1, 2, 3, 4, 5]
    assert diagnosis["not_matched"] == []


def test_a_matmulnbits_candidate_is_matched_layer_by_layer(mlp):
    """4-bit blocks of 32: every MatMul matched to the reference's, its weight unpacked and
    compared (the outlier spoils only its own block, so no layer stands out)."""
    diagnosis = diagnosed(mlp, "int4")
    assert diagnosis["format"] == "MatMulNBits" and diagnosis["not_matched"] == []
    assert sorted(layer["node"] for layer in diagnosis["layers"]) == [
        f"fc{index}/MatMul" for index in range(LAYERS)]
    assert all(layer["op_type"] == "MatMulNBits" for layer in diagnosis["layers"])
    errors = {layer["weight"]: layer["weight_error"] for layer in diagnosis["layers"]}
    assert all(0.01 < error < 0.3 for error in errors.values()), errors  # 4-bit: a few percent


def test_the_ranking_is_local_where_the_cumulative_error_blames_the_last_layer(tmp_path):
    """Eight linear layers (random rotations) on the digits: every INT8 layer adds a little error,
    so the error grows to the last layer; the layer given an outlier weight adds the most."""
    import onnx

    train_x, _, x, y = digits()
    rng = np.random.default_rng(0)
    weights = [(np.linalg.qr(rng.normal(size=(64, 64)))[0].astype(np.float32),
                np.zeros(64, np.float32)) for _ in range(8)]
    weights[2][0][7, 9] = 5 * np.abs(weights[2][0]).max()
    fp32 = write_mlp(weights, tmp_path / "chain.onnx", relu=False)
    int8 = quantize(fp32, tmp_path / "chain_int8.onnx", train_x[:256])
    models = [onnx.load(str(fp32)), onnx.load(str(int8))]
    candidate = Graph.of(models[1])
    matched, _ = layers.match_layers(Graph.of(models[0]), candidate, "QDQ")
    cumulative = layers.tensor_errors(models, candidate, layers.sample(ValidationSet(x, y), 64, 0),
                                      matched, anchored=False)
    growing = [cumulative[layer["output"]] for layer in matched if layer["op_type"] == "MatMul"]
    assert growing == sorted(growing) and growing[-1] > 1.05 * growing[2]
    diagnosis = layers.diagnose(make_runner(fp32), make_runner(int8), ValidationSet(x, y))
    assert diagnosis["layers"][0]["node"] == "fc2/MatMul"
    assert diagnosis["layers"][0]["local_error"] > 2 * diagnosis["layers"][1]["local_error"]


def test_per_channel_quantization_removes_the_planted_layers_error(mlp, tmp_path):
    per_channel = quantize(mlp["fp32"], tmp_path / "pc.onnx", digits()[0][:256], per_channel=True)
    mlp = {**mlp, "pc": per_channel}
    planted = {layer["node"]: layer for layer in diagnosed(mlp, "pc")["layers"]}[f"fc{PLANTED}/MatMul"]
    assert planted["local_error"] < diagnosed(mlp, "qdq")["layers"][0]["local_error"] / 3


def test_the_sample_is_seeded(mlp):
    one, again, other = (layers.sample(mlp["data"], 64, seed) for seed in (0, 0, 1))
    assert np.array_equal(one["inputs"], again["inputs"])
    assert not np.array_equal(one["inputs"], other["inputs"])
    assert diagnosed(mlp, "qdq", seed=1)["seed"] == 1


def test_risk_notes_that_name_a_layer_are_listed_with_it(mlp):
    risks = [{"kind": "outlier_weights", "tensor": f"fc{PLANTED}.weight", "node": None},
             {"kind": "small_model", "model": "reference"}]
    first = diagnosed(mlp, "qdq", risks=risks)["layers"][0]
    assert first["risks"] == ["outlier_weights"]


def comparison_of(mlp, candidate="qdq"):
    return compare(mlp["fp32"], mlp[candidate], data=mlp["data"])


@pytest.mark.parametrize("mode,ships,expected", [("on-failure", False, True), ("on-failure", True, False),
                                                 ("always", True, True), ("never", False, False)])
def test_the_option_decides_when_the_hook_runs(mlp, mode, ships, expected):
    comparison = compare(mlp["fp32"], mlp["qdq"], data=mlp["data"], diagnose="never")
    assert comparison.verdict != "ship"
    if ships:
        comparison = dataclasses.replace(comparison, verdict=type(comparison.verdict)("ship"))
    attached = layers.attach_diagnosis(comparison, make_runner(mlp["fp32"]),
                                       make_runner(mlp["qdq"]), mlp["data"],
                                       make_execution(diagnose=mode), [])
    assert ("diagnosis" in attached.details) is expected
    assert ("remedies" in attached.details) is expected
    assert "diagnosis" not in comparison.details  # the record given is not changed
    if expected:
        assert attached.details["diagnosis"]["layers"][0]["node"] == f"fc{PLANTED}/MatMul"
        assert attached.details["diagnosis"]["seconds"] > 0
        assert attached.details["remedies"]


def test_a_model_that_is_not_onnx_is_skipped_with_the_reason(mlp):
    comparison = comparison_of(mlp)
    reference = make_runner(lambda batch: {"logits": np.zeros((len(batch["inputs"]), 10))})
    attached = layers.attach_diagnosis(comparison, reference, make_runner(mlp["qdq"]), mlp["data"],
                                       make_execution(), [])
    diagnosis = attached.details["diagnosis"]
    assert diagnosis["skipped"].startswith("the reference is not an ONNX model file")
    assert diagnosis["layers"] == []


def test_a_float_candidate_is_skipped_as_nothing_quantized(mlp):
    diagnosis = layers.diagnose(make_runner(mlp["fp32"]), make_runner(mlp["fp32"]), mlp["data"])
    assert "no quantized operator" in diagnosis["skipped"]


def test_a_failing_diagnosis_is_skipped_never_raised(mlp):
    comparison = comparison_of(mlp)
    wrong = ValidationSet(np.zeros((8, 3), np.float32), np.zeros(8, np.int64))  # not the model's shape
    attached = layers.attach_diagnosis(comparison, make_runner(mlp["fp32"]), make_runner(mlp["qdq"]),
                                       wrong, make_execution(), [])
    assert attached.details["diagnosis"]["skipped"].startswith("the diagnosis failed: ")


def test_without_onnx_the_diagnosis_says_what_to_install(mlp, monkeypatch):
    comparison = comparison_of(mlp)
    runners = [make_runner(mlp[name]) for name in ("fp32", "qdq")]
    monkeypatch.setitem(sys.modules, "onnx", None)  # onnxruntime alone does not bring onnx
    attached = layers.attach_diagnosis(comparison, *runners, mlp["data"], make_execution(), [])
    assert attached.details["diagnosis"]["skipped"] == ("the per-layer diagnosis needs the onnx "
                                                        "package: pip install onnx")


def test_compare_attaches_the_diagnosis_to_a_failing_comparison_and_says_it(mlp):
    """The pipe calls the hook: a failing compare() carries the diagnosis and the remedies in its
    details and names the planted layer in its message; diagnose="never" leaves them out."""
    comparison = comparison_of(mlp)
    assert comparison.details["diagnosis"]["layers"][0]["node"] == f"fc{PLANTED}/MatMul"
    assert comparison.details["remedies"]
    assert f"fc{PLANTED}/MatMul" in comparison.message
    quiet = compare(mlp["fp32"], mlp["qdq"], data=mlp["data"], diagnose="never")
    assert "diagnosis" not in quiet.details and f"fc{PLANTED}/MatMul" not in quiet.message
