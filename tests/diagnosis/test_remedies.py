"""Remedies that run (docs/diagnosis.md, "Remedies"): each snippet the diagnosis proposes is
executed here on a real model, and what it makes is judged again."""

from __future__ import annotations

import numpy as np
import pytest
from mlp_models import calibration_reader, digits, quantize, quantize_4bit, trained_weights, write_mlp

from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.diagnosis import layers, remedies
from pytest_quantguard.runners import make_runner


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The digits MLP with an outlier weight in fc1 (as in test_layers.py), per-tensor QDQ INT8."""
    folder = tmp_path_factory.mktemp("remedies")
    train_x, train_y, x, y = digits()
    weights = trained_weights(train_x, train_y)
    hidden = np.maximum(train_x @ weights[0][0] + weights[0][1], 0)
    weights[1][0][int(np.argmin(hidden.max(axis=0))), 5] = 40 * np.abs(weights[1][0]).max()
    fp32 = write_mlp(weights, folder / "fp32.onnx")
    return {"fp32": fp32, "int8": quantize(fp32, folder / "int8.onnx", train_x[:256]),
            "data": ValidationSet(x, y), "calibration": train_x[:256], "folder": folder}


def proposed(planted, candidate="int8", verdict="stay-fp16"):
    reference, runner = make_runner(planted["fp32"]), make_runner(planted[candidate])
    diagnosis = layers.diagnose(reference, runner, planted["data"])
    return diagnosis, {remedy["title"]: remedy for remedy in
                       remedies.propose(diagnosis, reference, runner, verdict)}


def run_snippet(code: str, planted) -> None:
    reader = calibration_reader(planted["calibration"])
    exec(compile(code, "<remedy>", "exec"), {"calibration_reader": reader})


def test_the_per_channel_remedy_is_the_exact_call_and_it_ships(planted):
    before = compare(planted["fp32"], planted["int8"], data=planted["data"])
    assert before.verdict != "ship"
    _, found = proposed(planted)
    remedy = found["quantize the weights per channel"]
    assert "'fc1.weight'" in remedy["why"] and "'fc1/MatMul'" in remedy["why"]
    assert f"    {str(planted['fp32'])!r},\n" in remedy["code"]
    assert "per_channel=True," in remedy["code"] and "quantize_static(" in remedy["code"]
    run_snippet(remedy["code"], planted)
    made = planted["folder"] / "int8_per_channel.onnx"
    assert made.is_file()
    after = compare(planted["fp32"], made, data=planted["data"])
    assert after.verdict == "ship", (after.drop, after.interval)


def test_the_exclude_remedy_leaves_the_worst_layer_in_float(planted):
    import onnx

    diagnosis, found = proposed(planted)
    remedy = found["leave the worst layer in float"]
    assert "nodes_to_exclude=['fc1/MatMul']," in remedy["code"]
    run_snippet(remedy["code"], planted)
    made = onnx.load(str(planted["folder"] / "int8_exclude.onnx"))
    matmul = next(node for node in made.graph.node if node.name == "fc1/MatMul")
    producers = {name: node for node in made.graph.node for name in node.output}
    assert all(producers.get(name) is None or producers[name].op_type != "DequantizeLinear"
               for name in matmul.input[1:])  # its weight is the float initializer again
    after = layers.diagnose(make_runner(planted["fp32"]),
                            make_runner(planted["folder"] / "int8_exclude.onnx"), planted["data"])
    assert "fc1/MatMul" not in [layer["node"] for layer in after["layers"]]
    assert after["layers"][0]["local_error"] < diagnosis["layers"][0]["local_error"] / 5


def test_qat_is_proposed_for_try_qat_only(planted):
    assert "quantization-aware training (torchao)" in proposed(planted, verdict="try-qat")[1]
    for verdict in ("stay-fp16", "inconclusive", "ship"):
        assert "quantization-aware training (torchao)" not in proposed(planted, verdict=verdict)[1]


def test_a_weight_only_4bit_candidate_gets_the_8bit_remedy(planted, tmp_path):
    planted = {**planted, "int4": quantize_4bit(planted["fp32"], tmp_path / "int4.onnx"),
               "folder": tmp_path}
    _, found = proposed(planted, "int4")
    code = found["8-bit weights instead of the 4-bit (or lower) format"]["code"]
    run_snippet(code, planted)
    assert (tmp_path / "int4_int8.onnx").is_file()
    assert compare(planted["fp32"], tmp_path / "int4_int8.onnx", data=planted["data"]).n == 797


def test_a_skipped_diagnosis_proposes_no_onnx_call(planted):
    skipped = layers.empty(skipped="the reference is not an ONNX model file")
    titles = [remedy["title"] for remedy in remedies.propose(
        skipped, make_runner(planted["fp32"]), make_runner(planted["int8"]), "try-qat")]
    assert titles == ["quantization-aware training (torchao)"]


def test_the_qat_snippet_trains_one_epoch_with_torchao(planted):
    """The snippet as printed, on a small trained torch MLP and the digits: one epoch with
    fake-quantized Linear layers, plain ones after the convert step, and the model still
    classifies."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchao")
    from torch import nn

    code = remedies.qat_code()
    assert "torch.ao.quantization" not in code and "from torchao.quantization" in code
    train_x, train_y, x, y = digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    inputs, labels = torch.from_numpy(train_x), torch.from_numpy(train_y)
    loader = [(inputs[i:i + 32], labels[i:i + 32]) for i in range(0, len(inputs), 32)]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):  # the float model first: QAT fine-tunes a trained model
        for batch, target in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(batch), target).backward()
            optimizer.step()
    with torch.no_grad():
        before = (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean()
    namespace = {"model": model, "train_loader": loader, "epochs": 1,
                 "loss_fn": nn.functional.cross_entropy}
    exec(compile(code, "<qat>", "exec"), namespace)
    model = namespace["model"]
    assert all(type(layer) is nn.Linear for layer in (model[0], model[2]))  # converted back
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean()
    assert before > 0.85 and accuracy > before - 0.03
