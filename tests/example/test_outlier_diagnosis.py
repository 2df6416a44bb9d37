"""The example's outlier-weight model end to end (docs/diagnosis.md): the per-tensor INT8 model
fails, the diagnosis names the drifted tensor and its node first, and the remedy it proposes,
executed as printed, makes a model that ships."""

from __future__ import annotations

import shutil

from conftest import MODELS, PROD_VAL
from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.diagnosis.layers import attach_diagnosis
from pytest_quantguard.runners import make_runner
from pytest_quantguard.settings import make_execution


def test_the_outlier_is_named_first_and_the_proposed_remedy_ships(tmp_path):
    for name in ("outlier_fp32.onnx", "outlier_int8_per_tensor.onnx"):
        shutil.copy(MODELS / name, tmp_path / name)
    reference, candidate = (make_runner(tmp_path / name) for name in
                            ("outlier_fp32.onnx", "outlier_int8_per_tensor.onnx"))
    data = ValidationSet.from_folder(PROD_VAL)
    comparison = compare(reference, candidate, data=data, batch_size=1)
    assert comparison.verdict == "try-qat"
    diagnosed = attach_diagnosis(comparison, reference, candidate, data, make_execution(), [])
    diagnosis = diagnosed.details["diagnosis"]
    assert diagnosis["format"] == "QOperator" and diagnosis["skipped"] is None
    first, second = diagnosis["layers"][:2]
    assert (first["node"], first["weight"], first["tensor"]) == ("/1/Gemm", "1.weight",
                                                               "/1/Gemm_output_0")
    assert first["local_error"] > 10 * second["local_error"]
    assert diagnosis["seconds"] < 2
    titles = [remedy["title"] for remedy in diagnosed.details["remedies"]]
    assert titles[0] == "quantize the weights per channel"
    assert titles[-1] == "quantization-aware training (torchao)"  # the verdict is try-qat
    code = diagnosed.details["remedies"][0]["code"]
    assert "quantize_dynamic(" in code and "per_channel=True," in code
    exec(compile(code, "<remedy>", "exec"), {})
    remedied = tmp_path / "outlier_int8_per_tensor_per_channel.onnx"
    after = compare(reference, remedied, data=data, batch_size=1)
    assert after.verdict == "ship", (after.drop, after.interval)
    # the example's committed per-channel model is this call's output
    assert remedied.read_bytes() == (MODELS / "outlier_int8_per_channel.onnx").read_bytes()
