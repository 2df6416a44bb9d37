"""Gates beyond classification: a regressor judged by its error, and label-free fidelity gates.

The figures these limits were set against (make_models.py prints them): on the 177 held-out
patients the INT8 regressor's RMSE is 0.2% lower than fp32's (56.10 vs 56.22; MAE 44.54 vs 44.73);
on the 899 unlabeled digits fp32 and INT8 agree on the top-1 class of all but one (0.9989), and
the INT8 embedding's mean cosine to fp32's is 0.99998.
"""

from pytest_quantguard import quant_tolerance


# RMSE and MAE drops are relative: int8/fp32 - 1, so 0.01 lets the error grow by 1% at most.
@quant_tolerance(max_drop=0.01)
def test_diabetes_int8_ships_on_rmse(quant_compare):
    comparison = quant_compare("models/diabetes_fp32.onnx", "models/diabetes_int8.onnx",
                               data="prod_val_diabetes")
    assert comparison.metric == "rmse"  # the regression task's default
    assert comparison.n == 177


@quant_tolerance(max_drop=0.01, metric="mae")
def test_diabetes_int8_ships_on_mae(quant_compare):
    quant_compare("models/diabetes_fp32.onnx", "models/diabetes_int8.onnx", data="prod_val_diabetes")


# No labels: the reference's own predictions are the truth the candidate must agree with.
@quant_tolerance(max_drop=0.01)
def test_int8_agrees_with_fp32_without_labels(quant_compare):
    comparison = quant_compare("models/fp32.onnx", "models/int8.onnx", data="prod_unlabeled")
    assert comparison.metric == "agreement"  # the fidelity task's default
    assert comparison.n == 899


@quant_tolerance(max_drop=0.001)
def test_int8_embedding_keeps_its_direction(quant_compare):
    quant_compare("models/embed_fp32.onnx", "models/embed_int8.onnx", data="prod_unlabeled",
                  metric="cosine")
