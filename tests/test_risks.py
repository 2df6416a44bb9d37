"""Risk notes (docs/risks.md): each kind where it should be and nowhere else, on real models —
the example's trained CNN and its real onnxruntime quantizations (QDQ per-tensor and per-channel,
QOperator, dynamic, MatMulNBits 2 and 4 bits), a trained >= 1M-parameter torch MLP, and one
outlier planted in the CNN's trained weights."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from conftest import EXAMPLE, MODELS, PROD_VAL
from pytest_quantguard import compare
from pytest_quantguard.diagnosis.risks import (
    INSPECTED,
    KINDS,
    LOW_BIT_TEXT,
    OUTLIER_RATIO,
    REGRESSION_CAUTION,
    SMALL_MODEL,
    inspect,
    outlier_ratio,
    risk_notes,
)
from pytest_quantguard.runners import make_runner

PLANTED = ("6.weight", "/6/Gemm", 1234)  # the tensor, the node reading it, the flat index
FAST = {"resamples": 200}


def kinds(notes) -> list[tuple[str, str]]:
    return [(note["kind"], note["model"]) for note in notes]


def notes_of(reference, candidate, task="classification", batch=None):
    return risk_notes(make_runner(reference), make_runner(candidate), task=task, metric_task=task,
                      batch=batch or {})


class Images(CalibrationDataReader):
    def __init__(self, images: np.ndarray):
        self.batches = iter([images[i:i + 64] for i in range(0, len(images), 64)])

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"input": batch}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The example's trained fp32 CNN with one weight of its first fully connected layer set to
    30x the tensor's largest |w|, and its static INT8 quantizations: QDQ per-tensor, QDQ
    per-channel and QOperator."""
    folder = tmp_path_factory.mktemp("planted")
    model = onnx.load(str(MODELS / "fp32.onnx"))
    tensor = next(each for each in model.graph.initializer if each.name == PLANTED[0])
    weights = numpy_helper.to_array(tensor).copy()
    weights.flat[PLANTED[2]] = 30 * np.abs(weights).max()
    tensor.CopyFrom(numpy_helper.from_array(weights, PLANTED[0]))
    onnx.save(model, str(folder / "fp32.onnx"))
    images = np.load(PROD_VAL / "digits_heldout.npz")["inputs"][:128]
    found = {"fp32": folder / "fp32.onnx"}
    for name, per_channel, format_ in (("per_tensor", False, QuantFormat.QDQ),
                                       ("per_channel", True, QuantFormat.QDQ),
                                       ("qoperator", False, QuantFormat.QOperator)):
        found[name] = folder / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(found["fp32"]), str(found[name]), Images(images),
                            quant_format=format_, per_channel=per_channel,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    return found


@pytest.fixture(scope="module")
def int4(tmp_path_factory):
    """The example CNN with 4-bit MatMulNBits weights (onnxruntime's weight-only quantizer)."""
    from onnxruntime.quantization import quant_pre_process

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:  # importing the quantizer configures the root logger
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )
        from onnxruntime.quantization.onnx_model import ONNXModel
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
    folder = tmp_path_factory.mktemp("int4")
    quant_pre_process(str(MODELS / "fp32.onnx"), str(folder / "pre.onnx"))
    model = ONNXModel(onnx.load(str(folder / "pre.onnx")))
    model.replace_gemm_with_matmul()
    quantizer = MatMulNBitsQuantizer(model.model, algo_config=DefaultWeightOnlyQuantConfig(
        block_size=32, is_symmetric=True, bits=4, quant_format=QuantFormat.QOperator))
    quantizer.process()
    quantizer.model.save_model_to_file(str(folder / "int4.onnx"), use_external_data_format=False)
    return folder / "int4.onnx"


@pytest.fixture(scope="module")
def big_mlp():
    """A trained MLP of more than 1M parameters on the digits, and its weights rounded to 8 bits
    per tensor (both torch modules)."""
    torch = pytest.importorskip("torch")
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    inputs, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(inputs[:900] / 16.0, dtype=torch.float32), torch.tensor(labels[:900])
    model = torch.nn.Sequential(torch.nn.Linear(64, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 960), torch.nn.ReLU(),
                                torch.nn.Linear(960, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for batch in torch.randperm(900).split(64):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
    rounded = torch.nn.Sequential(*[torch.nn.Linear(layer.in_features, layer.out_features)
                                    if isinstance(layer, torch.nn.Linear) else layer
                                    for layer in model])
    with torch.no_grad():
        for source, target in zip(model.parameters(), rounded.parameters(), strict=True):
            scale = source.abs().max() / 127
            target.copy_(torch.round(source / scale) * scale)
    data = (inputs[900:].astype(np.float32) / 16.0, labels[900:])
    return model.eval(), rounded.eval(), data


def test_small_model_on_the_small_cnn_only(big_mlp):
    small = notes_of(MODELS / "fp32.onnx", MODELS / "int8.onnx")
    assert kinds(small) == [("small_model", "reference")]
    assert small[0]["parameters"] == 38_282 < SMALL_MODEL  # 16*9+16 + 32*16*9+32 + 64*512+64 + 650
    reference, candidate, data = big_mlp
    assert sum(p.numel() for p in reference.parameters()) >= SMALL_MODEL
    result = compare(reference, candidate, data=data, **FAST)
    assert result.details["risks"] == []  # >= 1M parameters, float weights without outliers


def test_regression_is_one_note_said_once(tmp_path):
    result = compare(MODELS / "diabetes_fp32.onnx", MODELS / "diabetes_int8.onnx",
                     data=EXAMPLE / "prod_val_diabetes", max_drop=5.0, qat_limit=15.0,
                     relative=False, **FAST)
    assert kinds(result.details["risks"]) == [("small_model", "reference"),
                                              ("regression", "candidate")]
    assert result.details["risks"][1]["text"] == REGRESSION_CAUTION
    # no longer a metric note beside it
    assert not any("fragile" in note for note in result.details.get("notes", ()))
    strict = compare(MODELS / "diabetes_fp32.onnx", MODELS / "diabetes_int8.onnx",
                     data=EXAMPLE / "prod_val_diabetes", max_drop=0.001, qat_limit=15.0,
                     relative=False, **FAST)
    assert strict.verdict != "ship"
    assert strict.message.count("fragile on regression") == 1
    assert "regression" not in kinds(notes_of(MODELS / "fp32.onnx", MODELS / "int8.onnx"))


@pytest.mark.parametrize("candidate, granularity, quantized", [
    ("per_tensor", "per-tensor", "6.weight_quantized"),
    ("per_channel", "per-channel", "6.weight_quantized"),
    ("qoperator", "per-tensor", "6.weight_quantized"),
])
def test_an_outlier_names_tensor_node_index_and_how_the_candidate_quantized_it(
        planted, candidate, granularity, quantized):
    notes = notes_of(planted["fp32"], planted[candidate])
    outliers = [note for note in notes if note["kind"] == "outlier_weights"]
    assert len(outliers) == 1, notes
    note = outliers[0]
    assert (note["tensor"], note["node"], note["index"]) == PLANTED
    assert note["ratio"] > OUTLIER_RATIO and note["model"] == "reference"
    assert (note["quantization"], note["quantized_tensor"]) == (granularity, quantized)
    assert f"'{PLANTED[0]}'" in note["text"] and f"flat index {PLANTED[2]}" in note["text"]
    assert ("quantize per-channel" in note["text"]) is (granularity == "per-tensor")


def test_no_outlier_in_the_trained_weights_or_on_the_candidate_side(planted):
    assert "outlier_weights" not in [kind for kind, _ in kinds(
        notes_of(MODELS / "fp32.onnx", MODELS / "int8.onnx"))]
    # the statistic is the reference's: a candidate with the outlier is not a reference with one
    assert "outlier_weights" not in [kind for kind, _ in kinds(
        notes_of(MODELS / "fp32.onnx", planted["per_tensor"]))]
    float_candidate = notes_of(planted["fp32"], MODELS / "fp32.onnx")
    assert [note["quantization"] for note in float_candidate
            if note["kind"] == "outlier_weights"] == ["not quantized"]


def test_per_block_and_dynamic_candidates_are_told_apart():
    weight_only = inspect(make_runner(MODELS / "int2.onnx")).quantized["6.weight"]
    dynamic = inspect(make_runner(MODELS / "int8_dynamic.onnx")).quantized["6.weight"]
    static = inspect(make_runner(MODELS / "int8.onnx")).quantized["6.weight"]
    assert weight_only["granularity"] == "per-block (block_size 32, 2 bits)"
    assert (dynamic["granularity"], dynamic["tensor"]) == ("per-tensor",
                                                           "6.weight_Transposed_quantized")
    assert static["granularity"] == "per-channel"  # the example's INT8 is per-channel


@pytest.mark.parametrize("name", ["int2", "int4"])
def test_low_bit_weights_outside_a_language_model(name, int4):
    candidate = MODELS / "int2.onnx" if name == "int2" else int4
    notes = notes_of(MODELS / "fp32.onnx", candidate)
    low = [note for note in notes if note["kind"] == "int4_non_lm"]
    bits = 2 if name == "int2" else 4
    assert [(note["model"], note["format"]) for note in low] == [
        ("candidate", f"MatMulNBits bits={bits}")]
    assert LOW_BIT_TEXT in low[0]["text"]
    assert "int4_non_lm" not in [kind for kind, _ in kinds(
        notes_of(MODELS / "fp32.onnx", candidate, task="language-model"))]
    for eight_bit in ("int8.onnx", "int8_dynamic.onnx"):
        assert "int4_non_lm" not in [kind for kind, _ in kinds(
            notes_of(MODELS / "fp32.onnx", MODELS / eight_bit))]


def test_dynamic_quantization_is_a_risk_note_of_the_dynamic_model_only():
    dynamic = notes_of(MODELS / "fp32.onnx", MODELS / "int8_dynamic.onnx")
    assert ("dynamic_quant", "candidate") in kinds(dynamic)
    assert "DynamicQuantizeLinear" in next(note["text"] for note in dynamic
                                           if note["kind"] == "dynamic_quant")
    for static in ("int8.onnx", "int2.onnx"):
        assert "dynamic_quant" not in [kind for kind, _ in kinds(
            notes_of(MODELS / "fp32.onnx", MODELS / static))]
    # none of the example's models is FP16 (tests/runners/test_onnx.py has the FP16 candidate)
    assert "fp16_on_cpu" not in [kind for kind, _ in kinds(dynamic)]


def test_the_message_says_the_notes_only_when_the_candidate_does_not_ship():
    failing = compare(MODELS / "fp32.onnx", MODELS / "int2.onnx", data=PROD_VAL, **FAST)
    shipped = compare(MODELS / "fp32.onnx", MODELS / "int8.onnx", data=PROD_VAL, **FAST)
    assert failing.verdict == "stay-fp16" and shipped.verdict == "ship"
    assert kinds(failing.details["risks"]) == [("small_model", "reference"),
                                               ("int4_non_lm", "candidate")]
    assert "  risk notes (docs/risks.md):" in failing.message
    assert "    - int4_non_lm (candidate): MatMulNBits bits=2" in failing.message
    assert failing.message.endswith(f"remedy: {failing.remedy}")  # the remedy stays last
    assert kinds(shipped.details["risks"]) == [("small_model", "reference")]
    assert "risk" not in shipped.message and "small model" not in shipped.message


def test_each_model_is_read_once_per_run():
    runner = make_runner(MODELS / "int2.onnx")
    first = inspect(runner)
    assert INSPECTED[runner.sha256] is first and inspect(make_runner(MODELS / "int2.onnx")) is first
    assert inspect(lambda batch: batch) is None  # a callable's weights are unknown: no note
    assert set(KINDS) == {"small_model", "regression", "outlier_weights", "int4_non_lm",
                          "dynamic_quant", "fp16_on_cpu"}


def test_the_statistic():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=10_000)
    ratio, index = outlier_ratio(weights)
    assert index == int(np.argmax(np.abs(weights))) and 1.0 <= ratio < 2.0
    weights[77] = 100.0
    assert outlier_ratio(weights) == (pytest.approx(100.0 / np.percentile(
        np.abs(weights), 99.9)), 77)
    assert outlier_ratio(np.zeros(5000)) == (0.0, 0)
