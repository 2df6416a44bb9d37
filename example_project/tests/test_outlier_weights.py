"""A model with an outlier weight: one weight scale per tensor stops it, one per channel ships it.

``models/outlier_fp32.onnx`` is an MLP with BatchNorm on the digits in which one channel of the
first layer's weights has drifted 40x (BatchNorm makes it the same function); its dynamic INT8
``models/outlier_int8_per_tensor.onnx`` is what ``quantize_dynamic`` makes by default: one scale
for the whole weight tensor, set by the drifted channel, so the other 63 channels fall onto a few
levels and it loses ~2 points (try-qat). The failure message's diagnosis names the layer
(``/1/Gemm``, weight ``1.weight``) and prints the remedy: the same call with ``per_channel=True``.
Applied (``models/outlier_int8_per_channel.onnx``), it ships (docs/diagnosis.md). All are dynamic
INT8, judged at batch 1.
"""

import pytest

from pytest_quantguard import quant_tolerance


@pytest.mark.xfail(reason="per-tensor INT8 of a weight with an outlier channel loses ~2 points: "
                          "try-qat; the diagnosis names /1/Gemm and the per-channel remedy",
                   strict=True)
@quant_tolerance(max_drop=0.01, batch_size=1)
def test_per_tensor_int8_is_stopped(quant_compare):
    quant_compare("models/outlier_fp32.onnx", "models/outlier_int8_per_tensor.onnx")


@quant_tolerance(max_drop=0.01, batch_size=1)
def test_the_per_channel_remedy_ships(quant_compare):
    # made by the remedy the diagnosis prints for outlier_int8_per_tensor.onnx (make_models.py):
    # quantize_dynamic("models/outlier_fp32.onnx", "models/outlier_int8_per_channel.onnx",
    #                  weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    quant_compare("models/outlier_fp32.onnx", "models/outlier_int8_per_channel.onnx")
