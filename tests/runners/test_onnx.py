"""The onnxruntime runner on real sessions: batching, fixed batch dims, shapes, outputs, errors."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import MODELS, PROD_VAL
from pytest_quantguard import compare
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
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
    from pytest_quantguard.settings import Execution, Tolerance

    inputs, labels = digits
    model = linear_model(tmp_path / "m.onnx", weights)
    noisy = linear_model(tmp_path / "n.onnx", weights + np.random.default_rng(0).normal(0, 0.05,
                                                                                      weights.shape))
    small, large = (run(model, noisy, (inputs, labels), Tolerance(), Execution(batch_size=size))
                    for size in (33, 4096))
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
    with pytest.warns(QuantGuardWarning, match="FAILED check: chance"):
        negated = compare(model, model, data=(inputs, labels), output="negated")
    assert first.reference_score > 0.85 > negated.reference_score
    assert first.passed and not negated.passed  # the negated scores are worse than chance
    with pytest.warns(QuantGuardWarning, match="FAILED check: chance"):
        by_index = compare(model, model, data=(inputs, labels), output=1)
    assert by_index.reference_score == negated.reference_score


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


# Several named inputs and outputs, external data ----------------------------------------------

@pytest.fixture(scope="module")
def cancer():
    """Breast-cancer features, standardised, as two named feature groups, plus a real model's
    weights: random ReLU features ("embedding") and a least-squares readout ("logits")."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    features = ((bunch.data - bunch.data.mean(0)) / bunch.data.std(0)).astype(np.float32)
    hidden = np.random.default_rng(0).normal(0, 1 / np.sqrt(30), (30, 16))
    readout = np.linalg.lstsq(np.maximum(features @ hidden, 0), np.eye(2)[bunch.target],
                              rcond=None)[0]
    inputs = {"group_a": features[:, :15], "group_b": features[:, 15:]}
    return inputs, bunch.target, hidden, readout


def two_input_model(path, hidden: np.ndarray, readout: np.ndarray, *,
                    location: str | None = "default") -> str:
    """embedding = relu(group_a @ Wa + group_b @ Wb); logits = embedding @ W2 — saved with its
    weights in one external data file (``<name>.data``) unless ``location`` is None."""
    nodes = [helper.make_node("MatMul", ["group_a", "wa"], ["ha"]),
             helper.make_node("MatMul", ["group_b", "wb"], ["hb"]),
             helper.make_node("Add", ["ha", "hb"], ["h"]),
             helper.make_node("Relu", ["h"], ["embedding"]),
             helper.make_node("MatMul", ["embedding", "w2"], ["logits"])]
    weights = {"wa": hidden[:15], "wb": hidden[15:], "w2": readout}
    graph = helper.make_graph(
        nodes, "two_input",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 15])
         for name in ("group_a", "group_b")],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden.shape[1]]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(value.astype(np.float32), name)
                     for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    if location is None:
        onnx.save_model(model, str(path))
    else:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{path.name}.data" if location == "default" else location,
                        size_threshold=0)
    return str(path)


def fake_int8(weights: np.ndarray) -> np.ndarray:
    """Per-tensor symmetric int8 rounding: what a weight-only quantizer does to the values."""
    scale = np.abs(weights).max() / 127
    return np.round(weights / scale) * scale


def relocate(path, location: str, *, tensor: str | None = None) -> None:
    """Point the external data of ``tensor`` (default: every tensor) at ``location``."""
    model = onnx.load(str(path), load_external_data=False)
    for initializer in model.graph.initializer:
        if tensor in (None, initializer.name):
            for entry in initializer.external_data:
                if entry.key == "location":
                    entry.value = location
    onnx.save_model(model, str(path))


def test_two_input_external_data_model_compares_by_input_and_output_name(tmp_path, cancer):
    inputs, labels, hidden, readout = cancer
    reference = two_input_model(tmp_path / "fp32.onnx", hidden, readout)
    candidate = two_input_model(tmp_path / "int8.onnx", fake_int8(hidden), fake_int8(readout))
    assert (tmp_path / "fp32.onnx.data").stat().st_size == 4 * (30 * 16 + 16 * 2)
    runner = make_runner(reference)
    assert [spec.name for spec in runner.inputs] == ["group_a", "group_b"]
    assert runner.output_names == ["embedding", "logits"]
    # extra data arrays are left unused; inputs are matched by name, not order
    out = runner({"group_b": inputs["group_b"], "unused": labels, "group_a": inputs["group_a"]})
    features = np.hstack([inputs["group_a"], inputs["group_b"]])
    np.testing.assert_allclose(out["logits"], np.maximum(features @ hidden, 0) @ readout,
                               rtol=1e-4, atol=1e-4)
    result = compare(reference, candidate, data=(inputs, labels), output="logits")
    assert result.n == 569 and result.reference_score > 0.9
    assert abs(result.drop) < 0.01
    with pytest.warns(QuantGuardWarning, match="FAILED check: chance"):  # not a prediction
        embedding = compare(reference, candidate, data=(inputs, labels))
    assert embedding.reference_score < 0.1 and not embedding.passed
    assert embedding.failed_checks[0]["check"] == "chance"


def test_model_inputs_that_the_data_does_not_name(tmp_path, cancer):
    inputs, labels, hidden, readout = cancer
    model = two_input_model(tmp_path / "m.onnx", hidden, readout, location=None)
    together = np.hstack([inputs["group_a"], inputs["group_b"]])
    with pytest.raises(QuantGuardError, match=(
            r"m\.onnx: the model's inputs do not match the data's arrays \(missing \['group_a', "
            r"'group_b'\]\)\. Model inputs: 'group_a' \['batch', 15\] tensor\(float\), 'group_b' "
            r"\['batch', 15\] tensor\(float\)\. Data arrays \(per sample\): 'inputs' \[30\] float32\. "
            r"Name the data arrays after the model inputs \(np\.savez\(path, group_a=\.\.\., "
            r"group_b=\.\.\., labels=\.\.\.\)\)")):
        compare(model, model, data=(together, labels))
    with pytest.raises(QuantGuardError, match=r"missing \['group_b'\]"):
        compare(model, model, data=({"group_a": inputs["group_a"], "b": inputs["group_b"]}, labels))


def test_digest_and_size_cover_the_external_data(tmp_path, cancer):
    import hashlib

    _, _, hidden, readout = cancer
    path = tmp_path / "m.onnx"
    runner = make_runner(two_input_model(path, hidden, readout))
    data = tmp_path / "m.onnx.data"
    assert runner.files == [path, data]
    assert runner.nbytes == path.stat().st_size + data.stat().st_size
    assert runner.sha256 == hashlib.sha256(path.read_bytes() + data.read_bytes()).hexdigest()
    changed = bytearray(data.read_bytes())
    changed[0] ^= 1
    data.write_bytes(bytes(changed))
    assert make_runner(path).sha256 != runner.sha256
    single = make_runner(two_input_model(tmp_path / "single.onnx", hidden, readout, location=None))
    assert single.sha256 == hashlib.sha256((tmp_path / "single.onnx").read_bytes()).hexdigest()


@pytest.fixture
def no_onnxruntime_session(monkeypatch):
    """Fail the test if onnxruntime is asked to open a model."""
    import onnxruntime

    def refuse(*args, **kwargs):
        raise AssertionError("onnxruntime opened the model before quantguard's checks")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)


@pytest.mark.parametrize("location, reason", [
    ("../secret.bin", "a path that climbs out of the model's folder with '..'"),
    ("weights/../../secret.bin", "a path that climbs out of the model's folder with '..'"),
    ("..\\secret.bin", "a path that climbs out of the model's folder with '..'"),
    ("ABSOLUTE", "an absolute path"),
])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, cancer, no_onnxruntime_session,
                                                           location, reason):
    _, _, hidden, readout = cancer
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    two_input_model(path, hidden, readout)
    secret = tmp_path / "secret.bin"
    secret.write_bytes((folder / "m.onnx.data").read_bytes())  # a file that would load
    location = str(secret) if location == "ABSOLUTE" else location
    relocate(path, location, tensor="wb")
    with pytest.raises(QuantGuardError, match=(
            rf"m\.onnx: tensor 'wb' names its external data file {re.escape(repr(location))}, "
            rf"{re.escape(reason)}; quantguard reads external data only from files inside the "
            r"model's folder\. If the model is yours, re-save it with onnx\.save_model\(model, path, "
            r"save_as_external_data=True, location='m\.onnx\.data'\)")):
        make_runner(path)


def test_external_data_in_a_subgraph_is_checked_too(tmp_path, no_onnxruntime_session):
    """A Constant inside an If branch is as able to name a file as an initializer."""
    constant = numpy_helper.from_array(np.ones((2, 2), np.float32), "hidden")
    constant.ClearField("raw_data")
    constant.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "/etc/hostname"), ("offset", "0"), ("length", "16")):
        constant.external_data.add(key=key, value=value)
    branch = helper.make_graph([helper.make_node("Constant", [], ["t"], value=constant)], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 2])])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)], "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(tmp_path / "if.onnx"))
    with pytest.raises(QuantGuardError, match=r"tensor 'hidden' names its external data file "
                                              r"'/etc/hostname', an absolute path"):
        make_runner(tmp_path / "if.onnx")


def test_missing_external_data_file(tmp_path, cancer, no_onnxruntime_session):
    _, _, hidden, readout = cancer
    path = tmp_path / "m.onnx"
    two_input_model(path, hidden, readout)
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(QuantGuardError, match=(
            r"m\.onnx\.data: this external data file of m\.onnx is missing \(tensor '\w+' reads its "
            r"weights from 'm\.onnx\.data'\); an external-data model is two files: copy m\.onnx\.data "
            r"into the model's folder beside m\.onnx")):
        make_runner(path)


def test_truncated_external_data_file(tmp_path, cancer, no_onnxruntime_session):
    _, _, hidden, readout = cancer
    path = tmp_path / "m.onnx"
    two_input_model(path, hidden, readout)
    data = tmp_path / "m.onnx.data"
    full = data.read_bytes()
    data.write_bytes(full[:100])
    with pytest.raises(QuantGuardError, match=(
            rf"m\.onnx\.data: this external data file of m\.onnx is truncated: it has 100 bytes but "
            rf"tensor '\w+' reads up to byte {len(full)}; copy the complete file again")):
        make_runner(path)
    data.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 2048\n")
    with pytest.raises(QuantGuardError, match=r"m\.onnx\.data: this external data file of m\.onnx is "
                                              r"a Git LFS pointer, not the data \(run git lfs pull\)"):
        make_runner(path)


# FP16 -------------------------------------------------------------------------------------------

def half_model(path, weights: np.ndarray, *, keep_io_types: bool) -> str:
    """Y = X @ W with W in float16: with float16 inputs and outputs, or float32 ones cast inside
    (what onnxconverter-common's keep_io_types=True writes)."""
    features, classes = weights.shape
    io_type = TensorProto.FLOAT if keep_io_types else TensorProto.FLOAT16
    if keep_io_types:
        nodes = [helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
                 helper.make_node("MatMul", ["x16", "w"], ["y16"]),
                 helper.make_node("Cast", ["y16"], ["y"], to=TensorProto.FLOAT)]
    else:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(
        nodes, "half", [helper.make_tensor_value_info("x", io_type, ["batch", features])],
        [helper.make_tensor_value_info("y", io_type, ["batch", classes])],
        initializer=[numpy_helper.from_array(weights.astype(np.float16), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("keep_io_types", [False, True], ids=["float16-io", "float32-io"])
def test_fp16_model_matches_fp32_and_is_flagged_on_cpu(tmp_path, digits, weights, keep_io_types):
    from pytest_quantguard.runners.onnx import FP16_ON_CPU_NOTE

    inputs, labels = digits
    fp32 = make_runner(linear_model(tmp_path / "fp32.onnx", weights))
    fp16 = make_runner(half_model(tmp_path / "fp16.onnx", weights, keep_io_types=keep_io_types))
    assert fp16.inputs[0].type == ("tensor(float)" if keep_io_types else "tensor(float16)")
    out = fp16({"inputs": inputs})["y"]  # float32 data, cast to the model's input type
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, fp32({"inputs": inputs})["y"], atol=1e-2)
    assert fp16.fp16_on_cpu and not fp32.fp16_on_cpu
    assert fp16.notes == () and fp32.notes == ()  # a risk note says it (docs/risks.md)
    assert "CPU runs FP16 models in FP32" in FP16_ON_CPU_NOTE
    result = compare(fp32, fp16, data=(inputs, labels))
    assert result.reference_score > 0.85 and abs(result.drop) < 0.01
    # the record says what the verdict does not cover; a shipped candidate's message does not
    said = [risk for risk in result.details["risks"] if risk["kind"] == "fp16_on_cpu"]
    assert said == [{"kind": "fp16_on_cpu", "model": "candidate", "text": FP16_ON_CPU_NOTE}]
    assert result.verdict == "ship" and FP16_ON_CPU_NOTE not in result.message
    assert "notes" not in result.details


# Device and threads ----------------------------------------------------------------------------

def test_cuda_without_the_gpu_build_is_a_clear_error(monkeypatch, digits, weights, tmp_path):
    import onnxruntime

    from pytest_quantguard.runners.onnx import OnnxRunner

    model = tmp_path / "m.onnx"
    linear_model(model, weights)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(QuantGuardError, match=(
            r"m\.onnx: device 'cuda' needs onnxruntime's CUDAExecutionProvider, which this "
            r"onnxruntime .* lacks; install the GPU build: pip uninstall onnxruntime && "
            r"pip install onnxruntime-gpu \(or run with --quant-device cpu\)")):
        OnnxRunner(model, device="cuda")
    with pytest.raises(QuantGuardError, match=r"device='gpu': choose one of \['cpu', 'cuda'\]"):
        OnnxRunner(model, device="gpu")
    runner = OnnxRunner(model, device="cpu")
    assert runner.providers == ["CPUExecutionProvider"]
    assert runner.settings == {"backend": "onnxruntime", "device": "cpu",
                               "providers": ["CPUExecutionProvider"]}


def test_intra_op_threads(monkeypatch, tmp_path, weights):
    from pytest_quantguard.runners.onnx import OnnxRunner, default_threads

    model = tmp_path / "m.onnx"
    linear_model(model, weights)
    one = OnnxRunner(model, intra_op_threads=1)
    assert one.session.get_session_options().intra_op_num_threads == 1
    assert OnnxRunner(model).session.get_session_options().intra_op_num_threads == 0  # ORT default
    with pytest.raises(QuantGuardError, match=r"intra_op_threads=0: give a positive integer"):
        OnnxRunner(model, intra_op_threads=0)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert default_threads() == 1
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert default_threads() is None


def zipmap_model(path, weights: np.ndarray, *, only_zipmap: bool = False) -> str:
    """What skl2onnx writes by default for a classifier: class labels, and the probabilities as a
    ZipMap (a sequence of maps, not a tensor)."""
    features, classes = weights.shape
    nodes = [helper.make_node("MatMul", ["x", "w"], ["scores"]),
             helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
             helper.make_node("ZipMap", ["probabilities"], ["output_probability"], domain="ai.onnx.ml",
                              classlabels_int64s=list(range(classes)))]
    outputs = [helper.make_value_info("output_probability", helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(
            TensorProto.FLOAT, [])))) ]
    if not only_zipmap:
        nodes.append(helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0))
        outputs.insert(0, helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
    graph = helper.make_graph(
        nodes, "zipmap", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        outputs, initializer=[numpy_helper.from_array(weights.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def test_zipmap_outputs_are_left_out_and_a_model_of_only_maps_is_refused(digits, weights, tmp_path):
    inputs, labels = digits
    model = zipmap_model(tmp_path / "zip.onnx", weights)
    runner = make_runner(model)
    assert runner.output_names == ["label"]
    assert list(runner({"x": inputs[:5]})) == ["label"]
    result = compare(model, model, data=(inputs, labels), resamples=200)
    assert result.reference_score == result.candidate_score > 0.85
    with pytest.raises(QuantGuardError, match=r"no tensor output .*output_probability: "
                                              r"seq\(map\(int64,tensor\(float\)\)\).*zipmap': False"):
        make_runner(zipmap_model(tmp_path / "only.onnx", weights, only_zipmap=True))
