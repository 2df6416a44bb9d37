"""Several candidates on one pass of the reference (docs/usage.md, "Several candidates").

Real models: the example's FP32 digits CNN (the reference, wrapped in a callable that counts its
calls around a real onnxruntime session) against its INT8 and INT2 exports, on the held-out digit
images (with labels: accuracy; without: the paired metric cosine, which cannot use the reference
cache). Each candidate's comparison must equal the one a separate call gives, seed included.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnxruntime as ort
import pytest

from conftest import MODELS, PROD_VAL
from pytest_quantguard import compare
from pytest_quantguard.cache import ReferenceCache
from pytest_quantguard.comparison import candidate_names, run
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.settings import check_layer, make_execution, resolve_tolerance

FP32, INT8, INT2 = (str(MODELS / f"{name}.onnx") for name in ("fp32", "int8", "int2"))
FAST = dict(resamples=2000)


class Counting:
    """A real onnxruntime session behind a callable that counts its calls and samples."""

    def __init__(self, path: str):
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.calls = self.samples = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.samples += len(batch)
        return self.session.run(None, {self.input: batch})[0]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    found = np.load(PROD_VAL / "digits_heldout.npz")
    return found["inputs"], found["labels"]


def piped(reference, candidates, data, metric: str, batch_size: int, cache=None):
    tolerance = resolve_tolerance(None, ("call", check_layer({"metric": metric})))
    return run(reference, candidates, data, tolerance,
               make_execution(batch_size=batch_size, cache=cache, **FAST), comparison_id="t")


@pytest.mark.parametrize("metric", ["cosine", "accuracy"])
def test_the_reference_runs_once_per_batch_for_all_candidates(digits, metric):
    """Two candidates, one pass of the reference: as many reference calls as batches (a paired
    metric, and accuracy with the cache off alike), while each candidate runs every batch."""
    inputs, labels = digits
    data = inputs if metric == "cosine" else (inputs, labels)
    reference, int8, int2 = Counting(FP32), Counting(INT8), Counting(INT2)
    found = piped(reference, [int8, int2], data, metric, batch_size=128)
    batches = math.ceil(len(inputs) / 128)
    assert reference.calls == batches and reference.samples == len(inputs)
    assert int8.calls == int2.calls == batches
    assert isinstance(found, tuple) and len(found) == 2
    assert [each.name for each in found] == ["candidate-1", "candidate-2"]
    assert [each.id for each in found] == ["t::candidate-1", "t::candidate-2"]
    assert found[0].candidate_score != found[1].candidate_score
    assert all(each.runtime["reference_seconds"] == found[0].runtime["reference_seconds"]
               for each in found)


def test_a_cached_reference_is_not_run_for_either_candidate(digits, tmp_path):
    inputs, labels = digits
    cache = ReferenceCache(tmp_path / "cache")
    piped(FP32, [INT8], (inputs, labels), "accuracy", 256, cache)
    found = piped(FP32, [INT8, INT2], (inputs, labels), "accuracy", 256, cache)
    assert [each.runtime["cache"] for each in found] == ["hit", "hit"]
    assert not any(each.runtime["reference_ran"] for each in found)


def _without_run_specific(comparison) -> dict:
    record = comparison.to_dict()
    for key in ("runtime", "name", "id"):
        record.pop(key)
    return record


@pytest.mark.parametrize("metric", ["cosine", "accuracy"])
def test_each_comparison_equals_a_separate_call(digits, metric):
    """Records, interval (its seed derives from the candidate's own scores), verdict and message
    are those of compare(reference, candidate) alone."""
    inputs, labels = digits
    data = inputs if metric == "cosine" else (inputs, labels)
    together = compare(FP32, [INT8, INT2], data=data, metric=metric, **FAST)
    assert [each.name for each in together] == ["int8", "int2"]
    assert [each.id for each in together] == ["int8", "int2"]
    for candidate, each in zip([INT8, INT2], together, strict=True):
        alone = compare(FP32, candidate, data=data, metric=metric, **FAST)
        assert _without_run_specific(each) == _without_run_specific(alone)
    assert together[0].verdict == "ship" and together[1].verdict != "ship"
    assert together[0].interval != together[1].interval


def test_several_metrics_name_each_candidates_metrics(digits):
    inputs, labels = digits
    int8, int2 = compare(FP32, [INT8, INT2], data=(inputs, labels),
                         metrics={"accuracy": 0.01, "macro_f1": 0.02}, name=["a", "b"], **FAST)
    assert [each.name for each in int8.all()] == ["a.accuracy", "a.macro_f1"]
    assert [each.id for each in int2.all()] == ["b.accuracy", "b.macro_f1"]


def test_a_single_candidate_still_gives_one_comparison_and_a_list_of_one_a_tuple(digits):
    inputs, labels = digits
    single = compare(FP32, INT8, data=(inputs, labels), **FAST)
    (listed,) = compare(FP32, [INT8], data=(inputs, labels), **FAST)
    assert not isinstance(single, tuple) and listed.name == "int8"
    assert _without_run_specific(single) == _without_run_specific(listed)


def test_names():
    assert candidate_names([INT8, INT2], None) == ["int8", "int2"]
    assert candidate_names([INT8, "other/int8.onnx"], None) == ["candidate-1", "candidate-2"]
    assert candidate_names([INT8, len], None) == ["candidate-1", "candidate-2"]
    assert candidate_names([INT8, INT2], ("x", "y")) == ["x", "y"]
    for name, says in (("int8", "give one name per candidate"), (["a"], "one non-empty string"),
                       (["a", "a"], "must be distinct"), (["a", ""], "one non-empty string")):
        with pytest.raises(QuantGuardError, match=says):
            candidate_names([INT8, INT2], name)
    with pytest.raises(QuantGuardError, match="empty list"):
        candidate_names([], None)


GATES = """
def test_both(quant_compare):
    int8, int2 = quant_compare("models/fp32.onnx", ["models/int8.onnx", "models/int2.onnx"])
    raise AssertionError("not reached: int2 does not ship")

def test_listed(quant_compare):
    (only,) = quant_compare("models/fp32.onnx", ["models/int8.onnx"], name=["only"])
    assert only.verdict == "ship" and only.name == "only"
    quant_compare("models/fp32.onnx", "models/int8.onnx", name="single")
"""


def test_the_plugin_records_every_candidate_then_fails_serial_and_xdist_alike(pytester, example):
    pytester.makepyfile(test_gates=GATES)
    reports = {}
    for label, extra in (("serial", []), ("xdist", ["-n", "2"])):
        result = pytester.runpytest_subprocess("--quant-data", "prod_val", "--quant-bootstrap",
                                               "2000", "--quant-report", "out/quant.json",
                                               "-p", "no:cacheprovider", *extra)
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*test_both::int2*stay-fp16*"])
        assert "not reached" not in result.stdout.str()
        reports[label] = json.loads((pytester.path / "out" / "quant.json").read_text())
    records = {c["id"]: c for c in reports["serial"]["comparisons"]}
    assert set(records) == {"test_gates.py::test_both::int8", "test_gates.py::test_both::int2",
                            "test_gates.py::test_listed::only", "test_gates.py::test_listed::single"}
    assert records["test_gates.py::test_both::int8"]["verdict"] == "ship"
    assert records["test_gates.py::test_both::int2"]["verdict"] == "stay-fp16"
    assert records["test_gates.py::test_both::int2"]["name"] == "int2"
    serial, xdist = ({key: value for key, value in report.items() if key not in ("created", "host")}
                     for report in reports.values())
    for report in (serial, xdist):
        for comparison in report["comparisons"]:
            comparison.pop("runtime")
    assert serial == xdist
