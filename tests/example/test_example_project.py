"""The example project: its gate runs green as shipped, and its models can be rebuilt."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys

import pytest

from conftest import EXAMPLE, MODELS
from pytest_quantguard import compare


def load_make_models():
    spec = importlib.util.spec_from_file_location("make_models", EXAMPLE / "make_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_gate_is_green_and_shows_both_verdicts():
    result = subprocess.run([sys.executable, "-m", "pytest", str(EXAMPLE), "-p", "no:cacheprovider"],
                            capture_output=True, text=True, cwd=EXAMPLE.parent,
                            env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 passed, 2 xfailed" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "test_quantization_gate.py::" in line]
    assert any("test_int8_ships" in row and " ship " in row for row in rows)
    assert any("test_int2_is_stopped" in row and "stay-fp16" in row for row in rows)
    dynamic = [line for line in result.stdout.splitlines() if "test_dynamic_quantization.py::" in line]
    assert len(dynamic) == 1 and " ship " in dynamic[0]  # at its deployment batch 1
    outlier = [line for line in result.stdout.splitlines() if "test_outlier_weights.py::" in line]
    assert any("test_per_tensor_int8_is_stopped" in row and "try-qat" in row for row in outlier)
    assert any("test_the_per_channel_remedy_ships" in row and " ship " in row for row in outlier)


def test_two_bit_quantization_leaves_the_root_logger_alone(tmp_path):
    make_models = load_make_models()
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    make_models.quantize_weights_2bit(MODELS / "fp32.onnx", tmp_path / "int2.onnx", tmp_path)
    assert (root.level, list(root.handlers)) == before
    import onnx

    ops = {node.op_type for node in onnx.load(str(tmp_path / "int2.onnx")).graph.node}
    assert "MatMulNBits" in ops and "Gemm" not in ops  # the rewrite happened, weights are 2-bit


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("rebuilt")
    result = subprocess.run([sys.executable, str(EXAMPLE / "make_models.py"), "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_make_models_rebuilds_a_pair_that_the_gate_separates(rebuilt):
    assert sorted(p.name for p in (rebuilt / "models").iterdir()) == [
        "diabetes_fp32.onnx", "diabetes_int8.onnx", "embed_fp32.onnx", "embed_int8.onnx",
        "fp32.onnx", "int2.onnx", "int8.onnx", "int8_dynamic.onnx", "outlier_fp32.onnx",
        "outlier_int8_per_channel.onnx", "outlier_int8_per_tensor.onnx"]
    for name in ("fp32.onnx", "int8.onnx", "int2.onnx", "diabetes_fp32.onnx", "embed_int8.onnx",
                 "int8_dynamic.onnx", "outlier_fp32.onnx", "outlier_int8_per_tensor.onnx",
                 "outlier_int8_per_channel.onnx"):
        assert (rebuilt / "models" / name).read_bytes() == (EXAMPLE / "models" / name).read_bytes()
    models, data = rebuilt / "models", rebuilt / "prod_val"
    good = compare(models / "fp32.onnx", models / "int8.onnx", data=data)
    bad = compare(models / "fp32.onnx", models / "int2.onnx", data=data)
    assert good.n == bad.n == 899  # at least half of load_digits, held out from training
    assert good.reference_score > 0.95
    assert good.verdict == "ship"
    assert bad.verdict in ("stay-fp16", "try-qat")
