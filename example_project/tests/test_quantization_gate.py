"""The example's release gate: the INT8 model must ship; the 2-bit one is shown failing."""

import pytest

from pytest_quantguard import quant_tolerance


@quant_tolerance(max_drop=0.01)
def test_int8_ships(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")


@pytest.mark.xfail(reason="2-bit weights lose ~7.5 points of accuracy: the gate says stay-fp16",
                   strict=True)
@quant_tolerance(max_drop=0.01)
def test_int2_is_stopped(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx")
