"""Dynamically quantized models are detected, and said to depend on the batch; static ones are
not (docs/models.md, "Dynamic quantization and the batch")."""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import MODELS, PROD_VAL
from pytest_quantguard import compare
from pytest_quantguard.batching import ChunkedRunner
from pytest_quantguard.runners import make_runner


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory):
    """onnxruntime's quantize_dynamic of the example's fp32 CNN, made here."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = tmp_path_factory.mktemp("dynamic") / "dynamic.onnx"
    quantize_dynamic(str(MODELS / "fp32.onnx"), str(path), weight_type=QuantType.QInt8)
    return path


def test_an_onnxruntime_dynamic_model_is_detected_and_noted(dynamic_onnx):
    runner = make_runner(dynamic_onnx)
    assert runner.dynamic_quantization
    assert "DynamicQuantizeLinear" in runner.dynamic_ops
    assert runner.notes == ()  # a risk note says it (docs/risks.md)


@pytest.mark.parametrize("name", ["fp32.onnx", "int8.onnx", "int2.onnx"])
def test_static_and_weight_only_models_are_not(name):
    runner = make_runner(MODELS / name)
    assert not runner.dynamic_quantization
    assert not any("dynamic" in note for note in runner.notes)


def test_the_dynamic_candidate_depends_on_the_batch_and_says_so():
    auto = compare(MODELS / "fp32.onnx", MODELS / "int8_dynamic.onnx", data=PROD_VAL,
                   resamples=200)
    one = compare(MODELS / "fp32.onnx", MODELS / "int8_dynamic.onnx", data=PROD_VAL,
                  resamples=200, batch_size=1)
    assert (auto.runtime["batch_size"], one.runtime["batch_size"]) == (899, 1)
    assert auto.candidate_score != one.candidate_score  # ranges set per batch
    for result in (auto, one):
        assert result.runtime["batch_dependent"] == ["candidate"]
        said = [risk for risk in result.details["risks"] if risk["kind"] == "dynamic_quant"]
        assert [risk["model"] for risk in said] == ["candidate"]
        assert "dynamically quantized (DynamicQuantizeLinear" in said[0]["text"]
        # in the message only when the candidate does not ship (docs/risks.md)
        assert ("dynamically quantized" in result.message) is (result.verdict != "ship")
    static = compare(MODELS / "fp32.onnx", MODELS / "int8.onnx", data=PROD_VAL, resamples=200)
    assert "batch_dependent" not in static.runtime
    assert "dynamic_quant" not in [risk["kind"] for risk in static.details["risks"]]
    assert "dynamic" not in static.message and "notes" not in static.details


def test_a_pinned_batch_runs_the_model_in_exactly_those_chunks():
    runner = make_runner(MODELS / "int8_dynamic.onnx")
    images = np.load(PROD_VAL / "digits_heldout.npz")["inputs"][:10]
    chunked = ChunkedRunner(runner, 3)({"input": images})["logits"]
    direct = np.concatenate([runner({"input": images[start:start + 3]})["logits"]
                             for start in range(0, 10, 3)])
    np.testing.assert_array_equal(chunked, direct)
    assert chunked.shape == (10, 10)
    assert ChunkedRunner(runner, 3).description == runner.description


def test_torch_dynamic_modules_are_detected():
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        dynamic = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        runner, scripted = make_runner(dynamic), make_runner(torch.jit.script(dynamic))
    plain = make_runner(model)
    assert runner.dynamic_quantization and scripted.dynamic_quantization
    assert not plain.dynamic_quantization
    assert getattr(runner, "notes", ()) == () and getattr(plain, "notes", ()) == ()
    shapes = {"x": ((64,), np.dtype(np.float32))}
    footprint = plain.memory_per_sample(shapes)
    assert footprint == plain.memory_per_sample(shapes)  # counted, not measured
    assert footprint.outputs == 10 * 4 and footprint.activations == (32 + 32 + 10) * 4


def test_junit_and_json_say_it_for_the_dynamic_candidate_only(pytester, example):
    pytester.makepyfile("""
        from pytest_quantguard import quant_tolerance

        @quant_tolerance(batch_size=1)
        def test_dynamic(quant_compare):
            quant_compare("models/fp32.onnx", "models/int8_dynamic.onnx", name="dynamic")
            quant_compare("models/fp32.onnx", "models/int8.onnx", name="static")
    """)
    result = pytester.runpytest("--quant-data", "prod_val", "--quant-report", "report.json",
                                "--junitxml", "junit.xml", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    records = {r["name"]: r for r in json.loads((example / "report.json").read_text())["comparisons"]}
    assert records["dynamic"]["runtime"]["batch_dependent"] == ["candidate"]
    assert records["dynamic"]["runtime"]["batch_size"] == 1
    assert "batch_dependent" not in records["static"]["runtime"]
    assert {"key": "batch_size", "value": 1, "source": "marker"} in records["dynamic"]["overrides"]
    properties = {p.get("name"): p.get("value") for p in ET.parse(example / "junit.xml").iter("property")}
    assert properties["quant.dynamic.batch_dependent"] == "candidate"
    assert properties["quant.dynamic.batch_size"] == "1"
    assert "quant.static.batch_dependent" not in properties
