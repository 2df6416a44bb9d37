"""Metrics beyond top-1, end to end through pytest (pytester), on the committed example models: macro_f1 and
top-k markers, several metrics in one marker, a custom metric from the conftest hook, a slice report
and the suspicious-gain warning."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

FAST = ["--quant-bootstrap", "2000"]  # where the interval's detail is not the point
WIDE = "-Wignore::pytest_quantguard.QuantGuardWarning"  # a deliberately wide limit warns
HEAD = """
import numpy as np
import pytest
from pytest_quantguard import quant_tolerance

FP32, INT8, INT2 = "models/fp32.onnx", "models/int8.onnx", "models/int2.onnx"
"""


def junit(path):
    """testcase name -> its properties (in order) and the testcase element."""
    cases = {}
    for case in ET.parse(path).iter("testcase"):
        cases[case.get("name")] = ({p.get("name"): p.get("value") for p in case.iter("property")},
                                   case)
    return cases


def summary_rows(result):
    """The quantguard summary table: id -> {column: cell}, cut at the header's column starts."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "quantguard:" in line and
                 "comparison(s)" in line)
    header = lines[start + 1]
    names = header.split()
    starts = [header.index(f" {name} ") + 1 if i else 0 for i, name in enumerate(names[:-1])]
    starts.append(header.rindex(" " + names[-1]) + 1)
    bounds = [*starts[1:], None]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("test_"):
            break
        cells = {name: line[begin:end].strip()
                 for name, begin, end in zip(names, starts, bounds, strict=True)}
        rows[cells["test"]] = cells
    return rows


def failed_tests(result):
    """The names of the tests the short summary lists as FAILED (in any order: xdist)."""
    return {line.split(" - ")[0].split("::")[-1] for line in result.stdout.lines
            if line.startswith("FAILED ")}


# ------------------------------------------------------------------ macro_f1 and top-k markers

METRIC_MARKERS = HEAD + """
@quant_tolerance(metric="macro_f1", max_drop=0.02)
def test_macro_f1_int8(quant_compare):
    result = quant_compare(FP32, INT8)
    assert result.metric == "macro_f1" and result.max_drop == 0.02


@quant_tolerance(metric="macro_f1", max_drop=0.02)
def test_macro_f1_int2(quant_compare):
    quant_compare(FP32, INT2)


@quant_tolerance(metric="top5")
def test_top5_int8(quant_compare):
    result = quant_compare(FP32, INT8)
    assert result.metric == "top5"


@quant_tolerance(metric="top5")
def test_top5_int2(quant_compare):
    # int2 loses 7.45 points of top-1 accuracy (an accuracy gate stops it) yet keeps every label
    # within its five top-scored classes: only a gate on top5 itself passes it
    result = quant_compare(FP32, INT2)
    assert result.candidate_score == result.reference_score


@quant_tolerance(metric="top2")
def test_top2_int2(quant_compare):
    quant_compare(FP32, INT2)
"""


def test_macro_f1_and_top_k_markers_gate_on_their_metric(pytester, example, plugin_args):
    pytester.makepyfile(test_metric_markers=METRIC_MARKERS)
    result = pytester.runpytest("--quant-data", "prod_val", "--junitxml=report.xml", *FAST,
                                *plugin_args)
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.no_fnmatch_line("*Traceback*")
    # the failure messages name the metric that failed, with both models' scores
    result.stdout.fnmatch_lines([
        "*quantguard verdict: stay-fp16 (candidate models/int2.onnx vs reference models/fp32.onnx*",
        "*  macro_f1: reference 0.9*, candidate 0.9*",
        "*rule: stay-fp16 because the drop * >= qat_limit*",
    ])
    result.stdout.fnmatch_lines([
        "*quantguard verdict: * (candidate models/int2.onnx vs reference models/fp32.onnx*",
        "*  top2: reference 0.9*, candidate 0.9*",
        "*rule: * because *",
    ])
    assert failed_tests(result) == {"test_macro_f1_int2", "test_top2_int2"}
    # the summary table shows each comparison's metric and verdict
    rows = summary_rows(result)
    prefix = "test_metric_markers.py::"
    assert set(rows) == {prefix + name for name in ("test_macro_f1_int8", "test_macro_f1_int2",
                                                    "test_top5_int8", "test_top5_int2",
                                                    "test_top2_int2")}
    assert rows[prefix + "test_macro_f1_int8"]["metric"] == "macro_f1"
    assert rows[prefix + "test_macro_f1_int2"]["metric"] == "macro_f1"
    assert rows[prefix + "test_top5_int8"]["metric"] == "top5"
    assert rows[prefix + "test_top2_int2"]["metric"] == "top2"
    verdicts = {name: row["verdict"] for name, row in rows.items()}
    assert verdicts[prefix + "test_macro_f1_int8"] == verdicts[prefix + "test_top5_int8"] == "ship"
    assert verdicts[prefix + "test_top5_int2"] == "ship"
    assert verdicts[prefix + "test_macro_f1_int2"] == "stay-fp16"
    assert verdicts[prefix + "test_top2_int2"] in ("try-qat", "stay-fp16")
    # JUnit: quant.metric is the marker's metric
    cases = junit(pytester.path / "report.xml")
    for name in ("test_macro_f1_int8", "test_macro_f1_int2"):
        properties, _ = cases[name]
        assert properties["quant.metric"] == "macro_f1"
    assert cases["test_macro_f1_int8"][0]["quant.max_drop"] == "0.02"
    assert cases["test_top5_int8"][0]["quant.metric"] == "top5"
    assert cases["test_top5_int8"][0]["quant.verdict"] == "ship"
    assert cases["test_macro_f1_int2"][1].find("failure") is not None
    assert cases["test_top2_int2"][1].find("failure") is not None
    # the macro_f1 interval is the bootstrap's, not the 0/1 family's
    assert cases["test_macro_f1_int2"][0]["quant.method"].startswith("bca")


# ------------------------------------------------------------------ several metrics in one marker

SEVERAL = HEAD + """
@quant_tolerance(metrics={"accuracy": 0.01, "macro_f1": 0.02})
def test_int8(quant_compare):
    result = quant_compare(FP32, INT8)
    assert [one.metric for one in result.all()] == ["accuracy", "macro_f1"]
    assert [one.max_drop for one in result.all()] == [0.01, 0.02]


@quant_tolerance(metrics={"accuracy": 0.01, "macro_f1": 0.02})
def test_int2(quant_compare):
    quant_compare(FP32, INT2)


@quant_tolerance(metrics={"accuracy": 0.01, "macro_f1": 0.02})
def test_named(quant_compare):
    quant_compare(FP32, INT8, name="int8")


@quant_tolerance(metrics={"accuracy": 0.01, "macro_f1": 0.02})
def test_call_metric_replaces_the_markers_metrics(quant_compare):
    # accuracy would stop int2; the call's metric="top5" replaces the marker's metrics= entirely
    result = quant_compare(FP32, INT2, metric="top5")
    assert result.metrics == () and result.all() == (result,)
    assert result.metric == "top5" and result.verdict == "ship"


@quant_tolerance(metric="top5")
def test_call_metrics_replace_the_markers_metric(quant_compare):
    result = quant_compare(FP32, INT8, metrics={"accuracy": None, "macro_f1": 0.02})
    assert [one.metric for one in result.all()] == ["accuracy", "macro_f1"]
    assert result.all()[0].max_drop == 0.01  # None: the max_drop in force (the default)
"""


def test_several_metrics_in_one_marker_each_gated_and_reported(pytester, example, plugin_args):
    pytester.makepyfile(test_several=SEVERAL)
    result = pytester.runpytest("--quant-data", "prod_val", "--junitxml=report.xml", *FAST,
                                *plugin_args)
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.no_fnmatch_line("*Traceback*")
    # the failure lists both metrics' verdicts, one message each
    result.stdout.fnmatch_lines([
        "*quantguard verdict: stay-fp16 (candidate models/int2.onnx vs reference models/fp32.onnx*",
        "*  accuracy: reference *, candidate *",
        "*rule: stay-fp16 because*",
        "*quantguard verdict: stay-fp16 (candidate models/int2.onnx vs reference models/fp32.onnx*",
        "*  macro_f1: reference *, candidate *",
        "*rule: stay-fp16 because*",
    ])
    # the summary: one row per metric, named by the metric
    rows = summary_rows(result)
    prefix = "test_several.py::"
    for test in ("test_int8", "test_int2"):
        for metric in ("accuracy", "macro_f1"):
            assert rows[f"{prefix}{test}::{metric}"]["metric"] == metric
    assert rows[prefix + "test_int8::accuracy"]["verdict"] == "ship"
    assert rows[prefix + "test_int8::macro_f1"]["verdict"] == "ship"
    assert rows[prefix + "test_int2::accuracy"]["verdict"] == "stay-fp16"
    assert rows[prefix + "test_int2::macro_f1"]["verdict"] == "stay-fp16"
    assert rows[prefix + "test_named::int8.accuracy"]["metric"] == "accuracy"
    assert rows[prefix + "test_named::int8.macro_f1"]["metric"] == "macro_f1"
    override = [name for name in rows if "test_call_metric_replaces" in name]
    assert len(override) == 1 and rows[override[0]]["metric"] == "top5"
    assert len(rows) == 2 + 2 + 2 + 1 + 2
    # JUnit: quant.<metric>.* for each metric, quant.<name>.<metric>.* with a name
    cases = junit(pytester.path / "report.xml")
    for test, verdict in (("test_int8", "ship"), ("test_int2", "stay-fp16")):
        properties, _ = cases[test]
        assert properties["quant.accuracy.metric"] == "accuracy"
        assert properties["quant.macro_f1.metric"] == "macro_f1"
        assert properties["quant.accuracy.max_drop"] == "0.01"
        assert properties["quant.macro_f1.max_drop"] == "0.02"
        assert properties["quant.accuracy.verdict"] == properties["quant.macro_f1.verdict"] == verdict
        assert float(properties["quant.accuracy.ci_low"]) < float(properties["quant.accuracy.ci_high"])
        assert not any(key.startswith("quant.metric") for key in properties)
    named = cases["test_named"][0]
    assert {key.rsplit(".", 1)[0] for key in named} == {"quant.int8.accuracy", "quant.int8.macro_f1"}
    replaced = cases["test_call_metric_replaces_the_markers_metrics"][0]
    assert replaced["quant.metric"] == "top5"
    assert not any("accuracy" in key or "macro_f1" in key for key in replaced)


# ------------------------------------------------------------------ a custom metric (conftest hook)

CUSTOM_CONFTEST = """
import numpy as np


def within_two(output, labels):
    # 1 when the label is among the two top-scored classes
    output = np.asarray(output)
    label_score = output[np.arange(len(labels)), labels]
    return ((output > label_score[:, None]).sum(axis=1) < 2).astype(np.int8)


def balanced_accuracy(outputs, labels):
    predicted = np.asarray(outputs).argmax(axis=1)
    hits = np.bincount(labels, weights=predicted == labels, minlength=10)
    counts = np.bincount(labels, minlength=10)
    return float(np.mean(hits[counts > 0] / counts[counts > 0]))


def pytest_quantguard_register_metrics(register):
    register("within_two", per_sample=within_two, kind="binary")
    register("balanced_accuracy", corpus=balanced_accuracy)
"""
CUSTOM_TESTS = HEAD + """
import onnxruntime


def scores_and_labels(model):
    data = np.load("prod_val/digits_heldout.npz")
    session = onnxruntime.InferenceSession(model)
    scores = session.run(None, {session.get_inputs()[0].name: data["inputs"]})[0]
    return scores, data["labels"]


@quant_tolerance(metric="within_two")
def test_custom_int8(quant_compare):
    result = quant_compare(FP32, INT8)
    scores, labels = scores_and_labels(FP32)
    top_two = np.argsort(-scores, axis=1, kind="stable")[:, :2]
    assert result.metric == "within_two"
    assert result.method in ("percentile+tango", "tango-score", "degenerate-fallback")  # 0/1 family
    assert result.reference_score == pytest.approx((top_two == labels[:, None]).any(axis=1).mean())


@quant_tolerance(metric="within_two")
def test_custom_int2(quant_compare):
    quant_compare(FP32, INT2)


@quant_tolerance(metrics={"balanced_accuracy": 0.2, "within_two": 0.2}, qat_limit=0.5)
def test_custom_corpus_beside_another(quant_compare):
    result = quant_compare(FP32, INT2)
    by_metric = {one.metric: one for one in result.all()}
    assert set(by_metric) == {"balanced_accuracy", "within_two"}
    for model, score in ((FP32, "reference_score"), (INT2, "candidate_score")):
        scores, labels = scores_and_labels(model)
        predicted = scores.argmax(axis=1)
        recall = [np.mean(predicted[labels == c] == c) for c in range(10)]
        assert getattr(by_metric["balanced_accuracy"], score) == pytest.approx(np.mean(recall))
    assert by_metric["balanced_accuracy"].method == "percentile"
    assert by_metric["balanced_accuracy"].drop > 0.05  # int2 loses whole classes
"""


def test_custom_metric_from_the_conftest_hook_is_usable_by_name(pytester, example, plugin_args):
    pytester.makeconftest(CUSTOM_CONFTEST)
    pytester.makepyfile(test_custom=CUSTOM_TESTS)
    result = pytester.runpytest("--quant-data", "prod_val", "--junitxml=report.xml", *FAST,
                                WIDE, *plugin_args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.no_fnmatch_line("*unknown metric*")
    result.stdout.fnmatch_lines([
        "*quantguard verdict: * (candidate models/int2.onnx vs reference models/fp32.onnx*",
        "*  within_two: reference 0.9*, candidate 0.9*",
    ])
    rows = summary_rows(result)
    assert rows["test_custom.py::test_custom_int8"]["metric"] == "within_two"
    assert rows["test_custom.py::test_custom_int8"]["verdict"] == "ship"
    assert rows["test_custom.py::test_custom_int2"]["verdict"] in ("try-qat", "stay-fp16")
    assert rows["test_custom.py::test_custom_corpus_beside_another::balanced_accuracy"]["metric"] \
        == "balanced_accuracy"
    cases = junit(pytester.path / "report.xml")
    assert cases["test_custom_int8"][0]["quant.metric"] == "within_two"
    assert cases["test_custom_int2"][0]["quant.metric"] == "within_two"
    assert cases["test_custom_corpus_beside_another"][0]["quant.balanced_accuracy.method"] \
        == "percentile"


def test_custom_metric_from_a_nested_conftest(pytester, example):
    (pytester.path / "quant").mkdir()
    (pytester.path / "quant" / "conftest.py").write_text("""
import numpy as np


def pytest_quantguard_register_metrics(register):
    register("nested_hit", per_sample=lambda output, labels:
             (np.asarray(output).argmax(axis=1) == labels).astype(np.int8), kind="binary")
""")
    (pytester.path / "quant" / "test_nested.py").write_text(HEAD + """
@quant_tolerance(metric="nested_hit")
def test_nested(quant_compare):
    assert quant_compare(FP32, INT8).metric == "nested_hit"
""")
    result = pytester.runpytest("--quant-data", "prod_val", *FAST)
    result.stdout.no_fnmatch_line("*unknown metric 'nested_hit'*")
    result.assert_outcomes(passed=1)


# ------------------------------------------------------------------ a slice report

SLICES = HEAD + """
import onnxruntime


def predictions(model):
    data = np.load("sliced/digits.npz")
    session = onnxruntime.InferenceSession(model)
    scores = session.run(None, {session.get_inputs()[0].name: data["inputs"]})[0]
    return scores.argmax(axis=1), data["labels"], data["device"]


def test_report_only_by_default(quant_compare):
    result = quant_compare(FP32, INT8, data="sliced")
    rows = {row["slice"]: row for row in result.details["slices"]}
    assert set(rows) == {"cam_a", "cam_b"}
    assert (rows["cam_a"]["n"], rows["cam_b"]["n"]) == (450, 449)
    for row in rows.values():
        assert row["low"] <= row["drop"] <= row["high"] and "verdict" not in row


@quant_tolerance(max_drop=0.2, qat_limit=0.5)
def test_a_losing_slice_is_reported_not_gated(quant_compare):
    result = quant_compare(FP32, INT2, data="sliced")
    assert result.verdict == "ship"
    reference, labels, device = predictions(FP32)
    candidate, _, _ = predictions(INT2)
    for row in result.details["slices"]:
        mask = device == row["slice"]
        assert row["reference"] == pytest.approx(np.mean(reference[mask] == labels[mask]))
        assert row["candidate"] == pytest.approx(np.mean(candidate[mask] == labels[mask]))
        assert row["low"] > 0.01  # each slice's loss is established, yet only reported
    classes = {row["slice"] for row in result.details["per_class"]}
    assert classes == set(range(10))


@quant_tolerance(max_drop=0.2, qat_limit=0.5, slice_max_drop=0.01)
def test_slice_limit_gates_every_slice(quant_compare):
    quant_compare(FP32, INT2, data="sliced")


@quant_tolerance(max_drop=0.2, qat_limit=0.5, slice_max_drop=0.01)
def test_slice_limit_names_the_slice(quant_compare):
    quant_compare(FP32, INT2, data="sliced_unlabeled")  # no labels: no classes, only slices


@quant_tolerance(max_drop=0.01)
def test_int2_failure_lists_the_classes_that_lost_most(quant_compare):
    quant_compare(FP32, INT2, data="sliced")
"""


@pytest.fixture
def sliced(example):
    source = np.load(example / "prod_val" / "digits_heldout.npz")
    n = len(source["labels"])
    device = np.where(np.arange(n) % 2 == 0, "cam_a", "cam_b")
    for folder, arrays in [("sliced", {"labels": source["labels"]}), ("sliced_unlabeled", {})]:
        (example / folder).mkdir()
        np.savez(example / folder / "digits.npz", inputs=source["inputs"], device=device, **arrays)
        (example / folder / "quantguard.toml").write_text('slices = "device"\n')
    return example


def test_slice_report_is_report_only_unless_slice_max_drop(pytester, sliced, plugin_args):
    pytester.makepyfile(test_sliced_gates=SLICES)
    result = pytester.runpytest(*FAST, WIDE, *plugin_args)
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.no_fnmatch_line("*Traceback*")
    assert failed_tests(result) == {"test_slice_limit_gates_every_slice", "test_slice_limit_names_the_slice",
                      "test_int2_failure_lists_the_classes_that_lost_most"}
    # slice_max_drop: the verdict is the worst slice's (or class's), and the rule names it
    result.stdout.fnmatch_lines([
        "*quantguard verdict: try-qat (candidate models/int2.onnx * on sliced, n=899)",
        "*classes that lost most (accuracy, by upper bound): * try-qat; * try-qat; * try-qat",
        "*slices that lost most (accuracy, by upper bound): 'cam_?' (n=4??) * try-qat; "
        "'cam_?' (n=4??) * try-qat",
        "*rule: ship because the upper bound * < max_drop 0.2000 (20.00 pt); but * is try-qat "
        "against slice_max_drop*",
    ])
    result.stdout.fnmatch_lines([
        "*quantguard verdict: try-qat (candidate models/int2.onnx * on sliced_unlabeled, n=899)",
        "*slices that lost most (agreement, by upper bound): 'cam_?' (n=4??) * try-qat; "
        "'cam_?' (n=4??) * try-qat",
        "*rule: ship because the upper bound * < max_drop 0.2000 (20.00 pt); but slice 'cam_?' "
        "(n=4??) is try-qat against slice_max_drop: drop *, interval [[]*]",
    ])
    # without slice_max_drop the failing comparison still shows which classes and slices lost most
    result.stdout.fnmatch_lines([
        "*quantguard verdict: stay-fp16 (candidate models/int2.onnx * on sliced, n=899)",
        "*classes that lost most (accuracy, by upper bound): ? (n=*) * [[]*]; ? (n=*) * [[]*]; "
        "? (n=*) * [[]*]",
        "*slices that lost most (accuracy, by upper bound): 'cam_?' (n=4??) * [[]*]; "
        "'cam_?' (n=4??) * [[]*]",
        "*rule: stay-fp16 because*",
    ])


def test_slice_inconclusive_remedy_is_about_the_slice(pytester, sliced):
    pytester.makepyfile(test_slice_remedy=HEAD + """
@quant_tolerance(slice_max_drop=0.02)
def test_int8(quant_compare):
    quant_compare(FP32, INT8, data="sliced")
""")
    result = pytester.runpytest(*FAST)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*quantguard verdict: inconclusive*",
        "*rule: ship because the upper bound * < max_drop *; but * is inconclusive against "
        "slice_max_drop*",
    ])
    remedy = next(line for line in result.stdout.lines if line.startswith("  remedy:"))
    # the inconclusive one is class 9 (n=90, one sample lost: drop 1.11 pt < slice_max_drop):
    # the remedy sizes that class, not the whole set
    assert "this set already has 899" not in remedy


# ------------------------------------------------------------------ suspicious gain

GAIN = HEAD + """
@quant_tolerance(max_drop=0.01)
def test_gain(quant_compare):
    result = quant_compare(INT2, FP32)  # the "candidate" is the full-precision model
    assert result.verdict == "ship" and result.details["suspicious_gain"] is True
    assert result.interval.high < -result.max_drop
    assert "check that both models get the same preprocessing" in result.message


@quant_tolerance(max_drop=0.01)
def test_no_gain(quant_compare):
    result = quant_compare(FP32, INT8)
    assert result.verdict == "ship" and "suspicious_gain" not in result.details
"""


# The in-process inner run inherits this suite's "error" filter; let the warning be a warning.
@pytest.mark.filterwarnings("default::pytest_quantguard.QuantGuardWarning")
def test_suspicious_gain_passes_with_a_warning(pytester, example, plugin_args):
    pytester.makepyfile(test_gain=GAIN)
    result = pytester.runpytest("--quant-data", "prod_val", *FAST, *plugin_args)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines([
        "*warnings summary*",
        "test_gain.py::test_gain",
        "*test_gain.py:*: QuantGuardWarning: test_gain.py::test_gain: the candidate scores better "
        "than the reference beyond the limit (accuracy drop -*mismatched preprocessing between "
        "the two models*",
    ])
    rows = summary_rows(result)
    assert rows["test_gain.py::test_gain"]["verdict"] == "ship (suspicious gain)"  # flagged


@pytest.mark.filterwarnings("default::pytest_quantguard.QuantGuardWarning")
def test_suspicious_gain_fails_under_warnings_as_errors(pytester, example):
    from pytest_quantguard.errors import QuantGuardWarning

    assert f"{QuantGuardWarning.__module__}.{QuantGuardWarning.__qualname__}" \
        == "pytest_quantguard.errors.QuantGuardWarning"
    pytester.makepyfile(test_gain=GAIN)
    result = pytester.runpytest("--quant-data", "prod_val", *FAST,
                                "-W", "error::pytest_quantguard.QuantGuardWarning")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*QuantGuardWarning: *mismatched preprocessing*",
        "FAILED test_gain.py::test_gain - *QuantGuardWarning*",
    ])


@pytest.mark.filterwarnings("default::pytest_quantguard.QuantGuardWarning")
def test_suspicious_gain_under_warnings_as_errors_keeps_the_figures(pytester, example):
    pytester.makepyfile(test_gain=GAIN)
    result = pytester.runpytest("--quant-data", "prod_val", *FAST, "--junitxml=report.xml",
                                "-W", "error::pytest_quantguard.QuantGuardWarning")
    result.assert_outcomes(passed=1, failed=1)
    assert "test_gain.py::test_gain" in summary_rows(result)
    assert junit(pytester.path / "report.xml")["test_gain"][0].get("quant.verdict") == "ship"
    result.stdout.no_fnmatch_line("*pytest_quantguard/comparison.py*")


# ------------------------------------------------------------------ marker validation

BAD_MARKERS = HEAD + """
@quant_tolerance(metrics={})
def test_empty(quant_compare):
    quant_compare(FP32, INT8)


@quant_tolerance(metrics={"accuracy": -1})
def test_negative(quant_compare):
    quant_compare(FP32, INT8)


@quant_tolerance(metrics={"accuracy": 0.01, "macro_f1": "2 points"})
def test_not_a_number(quant_compare):
    quant_compare(FP32, INT8)


@quant_tolerance(metric="macro_f1", metrics={"accuracy": 0.01})
def test_both(quant_compare):
    quant_compare(FP32, INT8)


@quant_tolerance(metrics={"accuracy": 0.01, "macro_f2": 0.02})
def test_unknown_metric(quant_compare):
    quant_compare(FP32, INT8)


pytestmark = pytest.mark.quant_tolerance(metrics={"accuracy": 0.01, "macro_f1": 0.02})


@quant_tolerance(metric="macro_f1")
def test_nearer_metric_replaces_module_metrics(quant_compare):
    result = quant_compare(FP32, INT8)
    assert result.all() == (result,) and result.metric == "macro_f1"
"""


def test_bad_metrics_markers_error_at_setup_naming_the_key(pytester, example):
    pytester.makepyfile(test_bad=BAD_MARKERS)
    result = pytester.runpytest("--quant-data", "prod_val", *FAST)
    result.assert_outcomes(passed=1, failed=1, errors=4)
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_empty*",
        "@quant_tolerance(metrics=...): must be a non-empty dict of metric name -> max_drop*got {}",
        "*ERROR at setup of test_negative*",
        "@quant_tolerance(metrics=...): 'accuracy': must be a number > 0, got -1",
        "*ERROR at setup of test_not_a_number*",
        "@quant_tolerance(metrics=...): 'macro_f1': must be a number, got '2 points'",
        "*ERROR at setup of test_both*",
        "@quant_tolerance: give metric= (one metric) or metrics= (several), not both",
        "*test_unknown_metric*",
        "quantguard: unknown metric 'macro_f2'; available: *",
    ])

