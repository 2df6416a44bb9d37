"""A real trained model for the diagnosis tests: scikit-learn's MLPClassifier on the digits
(64 pixels -> 32 -> 32 -> 32 -> 10), written as an ONNX graph of MatMul + Add (+ Relu) nodes, and
its quantized versions made by onnxruntime's own quantizers (QDQ, QOperator, MatMulNBits)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

LAYERS = 4  # MatMuls: fc0 .. fc3


def calibration_reader(inputs: np.ndarray):
    """onnxruntime's CalibrationDataReader over training inputs: the one ``quantguard quantize``
    uses."""
    from pytest_quantguard import ValidationSet
    from pytest_quantguard.quantize import CalibrationReader

    return CalibrationReader(ValidationSet(inputs), ["input"])


def digits():
    """(train inputs, train labels, held-out inputs, held-out labels), float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    inputs, labels = load_digits(return_X_y=True)
    inputs = (inputs / 16.0).astype(np.float32)
    return inputs[:1000], labels[:1000], inputs[1000:], labels[1000:]


def trained_weights(train_x: np.ndarray, train_y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    import warnings

    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: a few hundred steps are enough here
        model = MLPClassifier((32, 32, 32), max_iter=300, random_state=0).fit(train_x, train_y)
    return [(w.astype(np.float32), b.astype(np.float32))
            for w, b in zip(model.coefs_, model.intercepts_, strict=True)]


def write_mlp(weights: list[tuple[np.ndarray, np.ndarray]], path: Path, *, relu: bool = True) -> Path:
    """The MLP as ONNX: fcI/MatMul -> fcI/Add -> fcI/Relu, the last without Relu ("logits");
    ``relu=False``: a linear chain."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers, previous = [], [], "input"
    for index, (weight, bias) in enumerate(weights):
        last = index == len(weights) - 1
        initializers += [numpy_helper.from_array(weight, f"fc{index}.weight"),
                         numpy_helper.from_array(bias, f"fc{index}.bias")]
        nodes.append(helper.make_node("MatMul", [previous, f"fc{index}.weight"], [f"fc{index}_mm"],
                                      name=f"fc{index}/MatMul"))
        added = "logits" if last else f"fc{index}_out"
        nodes.append(helper.make_node("Add", [f"fc{index}_mm", f"fc{index}.bias"], [added],
                                      name=f"fc{index}/Add"))
        if not last and relu:
            nodes.append(helper.make_node("Relu", [added], [f"fc{index}_relu"],
                                          name=f"fc{index}/Relu"))
            previous = f"fc{index}_relu"
        elif not last:
            previous = added
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", weights[-1][0].shape[1]])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def quantize(fp32: Path, out: Path, calibration: np.ndarray, *, fmt: str = "QDQ",
             per_channel: bool = False) -> Path:
    """Static INT8 by onnxruntime's quantize_static, QDQ or QOperator."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(fp32), str(out), calibration_reader(calibration),
                    quant_format=getattr(QuantFormat, fmt), per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out


def quantize_4bit(fp32: Path, out: Path) -> Path:
    """4-bit MatMulNBits weights (onnxruntime's MatMulNBitsQuantizer, block 32)."""
    import onnx
    from onnxruntime.quantization import QuantFormat

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:  # importing it configures the root logger
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
    quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), algo_config=DefaultWeightOnlyQuantConfig(
        block_size=32, is_symmetric=True, bits=4, quant_format=QuantFormat.QOperator))
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    return out
