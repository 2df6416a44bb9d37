"""Run-wide knobs of the pipe: --quant-max-samples subsets, label-range errors, quant_model."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MODELS, PROD_VAL
from pytest_quantguard import QuantGuardWarning, ValidationSet
from pytest_quantguard.comparison import run, stratified_subset
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.settings import Execution, Tolerance

FP32, INT2 = (str(MODELS / f"{name}.onnx") for name in ("fp32", "int2"))


def call(reference, candidate, data, **knobs):
    return run(reference, candidate, data, Tolerance(), Execution(resamples=2000, **knobs))


def test_stratified_subset_keeps_each_class_share_and_is_seeded():
    labels = np.repeat(np.arange(4), [500, 300, 150, 50])
    data = ValidationSet(np.zeros((1000, 1)), labels)
    chosen = stratified_subset(data, 100, seed=0)
    assert len(chosen) == 100 and len(set(chosen.tolist())) == 100
    assert np.bincount(labels[chosen]).tolist() == [50, 30, 15, 5]
    assert stratified_subset(data, 100, seed=0).tolist() == chosen.tolist()
    assert stratified_subset(data, 100, seed=1).tolist() != chosen.tolist()


def test_max_samples_runs_an_advisory_subset():
    result = call(FP32, INT2, PROD_VAL, max_samples=300)
    assert result.n == 300 and result.details["advisory"] is True
    assert result.details["subset_of"] == 899
    assert "ADVISORY: a --quant-max-samples subset of 300 of the 899 samples" in result.message
    assert result.data["path"] == str(PROD_VAL)  # still named by its folder, not "in-memory"
    first_line = result.message.splitlines()[0]
    assert "prod_val" in first_line and "in-memory" not in first_line
    full = call(FP32, INT2, PROD_VAL, max_samples=5000)  # larger than the set: the whole set
    assert full.n == 899 and "advisory" not in full.details


def test_labels_outside_the_models_classes_are_an_error():
    scores = np.eye(3)[np.arange(60) % 3] + np.arange(60)[:, None] * 1e-3  # distinct rows
    labels = np.arange(60) % 3
    labels[:4] = 3  # a class the 3-column models cannot predict
    with pytest.raises(QuantGuardError, match=r"4 of 60 labels are classes the models cannot "
                                              r"produce \(3\): the models give 3 class scores "
                                              r"\(classes 0..2\)"):
        call(lambda x: x, lambda x: x, (scores, labels))


MAX_SAMPLES_AND_MODEL = """
def test_model_fixture_and_subset(quant_model, quant_compare):
    reference = quant_model("models/fp32.onnx")
    logits = quant_model("models/fp32.onnx", output=0)
    import numpy as np
    batch = {"inputs": np.zeros((2, 1, 8, 8), np.float32)}
    assert list(logits(batch)) == list(reference(batch))[:1]
    result = quant_compare(reference, "models/int8.onnx")
    assert result.n == 600 and result.details["advisory"]
"""


def test_max_samples_option_and_quant_model_fixture(pytester, example):
    pytester.makepyfile(test_subset=MAX_SAMPLES_AND_MODEL)
    result = pytester.runpytest_subprocess("--quant-data", "prod_val", "--quant-max-samples", "600")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*max_samples=600 (ADVISORY*", "*ship (advisory)*"])


def test_duplicate_samples_warn():
    scores = np.eye(3)[np.arange(60) % 3] + np.arange(60)[:, None] * 1e-3  # 60 distinct rows
    scores[50:] = scores[:10]  # ten repeats
    labels = np.argmax(scores, axis=1)
    with pytest.warns(QuantGuardWarning, match="10 of 60 samples repeat an earlier sample's inputs"):
        call(lambda x: x, lambda x: x, (scores, labels))


PROGRESS = """
import numpy as np
import pytest_quantguard.fixture as fixture

fixture.PROGRESS_AFTER_S = 0.0  # show progress at once, for the test
fixture.PROGRESS_EVERY_S = 0.0


def test_slow(quant_compare):
    x = np.eye(4)[np.arange(500) % 4] + np.arange(500)[:, None] * 1e-3
    quant_compare(lambda b: b, lambda b: b, data=(x, np.arange(500) % 4))
"""


@pytest.mark.parametrize(("args", "shown"), [(["-v"], True), ([], False)])
def test_progress_lines_go_through_the_terminal_reporter(pytester, args, shown):
    pytester.makepyfile(test_progress=PROGRESS)
    # the pipe passes a multiple of the pinned batch that fits the budget: here 100 (docs/models.md)
    result = pytester.runpytest("--quant-batch-size", "100", "--quant-memory", "100KB", *args)
    result.assert_outcomes(passed=1)
    lines = [line for line in result.stdout.lines if "samples/s)" in line]
    if shown:
        assert lines[0].startswith("quantguard: test_progress.py::test_slow: 100/500 samples (20%")
        assert len(lines) == 4  # 100..400; the finished pass is not announced
    else:
        assert lines == []  # not a terminal and not -v: quiet
