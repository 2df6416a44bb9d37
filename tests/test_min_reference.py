"""min_reference (docs/verdict.md, "Checks of the reference"): the reference must score at least
this well on the data, in the metric's own direction and units; a miss fails the test with its own
rule line while the record keeps the candidate's verdict."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from pytest_quantguard import QuantGuardWarning, compare
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.reports.json_report import load_schema

FAST = dict(resamples=500)


@pytest.fixture(scope="module")
def digits():
    inputs, labels = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=3000).fit(inputs[:900] / 16, labels[:900])
    predict = lambda x: model.predict_proba(x / 16)  # noqa: E731
    return predict, (inputs[900:], labels[900:])


def test_a_reference_below_the_floor_fails_the_check_and_keeps_the_verdict(digits):
    predict, data = digits
    plain = compare(predict, predict, data=data, **FAST)
    assert plain.passed and 0.9 < plain.reference_score < 0.99
    with pytest.warns(QuantGuardWarning, match=r"FAILED check: min_reference: the reference "
                                               r"scores 0\.9\d+ < 0\.99"):
        result = compare(predict, predict, data=data, min_reference=0.99, **FAST)
    assert result.verdict == plain.verdict == "ship"  # the candidate's verdict stands
    assert not result.passed and result.min_reference == 0.99
    [check] = result.failed_checks
    assert check["check"] == "min_reference" and check["limit"] == 0.99
    assert check["reference_score"] == pytest.approx(plain.reference_score)
    assert "the data or the reference is wrong, not the quantization" in check["rule"]
    assert "FAILED check: min_reference" in result.message
    chance, floor = result.to_dict()["details"]["reference_checks"]
    assert floor == check and chance["check"] == "chance" and chance["passed"]
    assert result.to_dict()["thresholds"]["min_reference"] == 0.99


def test_a_reference_above_the_floor_passes(digits):
    predict, data = digits
    result = compare(predict, predict, data=data, min_reference={"accuracy": 0.8}, **FAST)
    assert result.passed and not result.failed_checks
    assert result.details["reference_checks"][0]["passed"] is True
    assert "FAILED check" not in result.message


def test_a_lower_is_better_metric_has_a_ceiling(rounded_diabetes):
    reference, candidate, data = rounded_diabetes
    plain = compare(reference, candidate, data=data, relative=False, max_drop=5, qat_limit=15,
                    **FAST)
    rmse = plain.reference_score
    assert 40 < rmse < 80
    above = compare(reference, candidate, data=data, relative=False, max_drop=5, qat_limit=15,
                    min_reference={"rmse": rmse + 5, "accuracy": 0.99}, **FAST)
    assert above.passed == plain.passed and not above.failed_checks
    with pytest.warns(QuantGuardWarning, match=r"the reference scores \d+\.?\d* > 40"):
        below = compare(reference, candidate, data=data, relative=False, max_drop=5,
                        qat_limit=15, min_reference="rmse:40", **FAST)
    assert below.verdict == plain.verdict and not below.passed
    assert "rmse is lower-is-better: min_reference is its ceiling" in below.failed_checks[0]["rule"]


def test_one_number_under_several_metrics_is_an_error(digits):
    predict, data = digits
    with pytest.raises(QuantGuardError, match=r"the call's min_reference = 0\.9 is one score, but "
                                              r"metrics= gates accuracy, macro_f1"):
        compare(predict, predict, data=data, metrics={"accuracy": None, "macro_f1": None},
                min_reference=0.9, **FAST)


@pytest.mark.parametrize("bad", ["accuracy:high", {"accuracy": "x"}, [0.9], ""])
def test_bad_values_name_the_key(digits, bad):
    predict, data = digits
    with pytest.raises(QuantGuardError, match=r"^min_reference: ('accuracy': must be a number|must "
                                              r"be the reference's least acceptable score)"):
        compare(predict, predict, data=data, min_reference=bad, **FAST)


GATE = """
import pytest

@pytest.mark.quant_tolerance({marker})
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
"""


@pytest.mark.parametrize(("marker", "ini", "where"), [
    ("min_reference=0.99", "", "@quant_tolerance(min_reference=...)"),
    ("", "quant_min_reference = accuracy:0.99, rmse:55", "quant_min_reference (ini file)"),
    ("min_reference=0.5", "quant_policy_min_reference = accuracy:0.99",
     "quant_policy_min_reference (ini file)"),  # the policy's floor cannot be loosened
])
def test_the_test_fails_with_its_own_rule_line_and_the_record_keeps_ship(pytester, example,
                                                                         marker, ini, where):
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_reference_floor=GATE.format(marker=marker))
    result = pytester.runpytest("--quant-data", "prod_val", "--quant-report", "report.json",
                                "--quant-markdown", "summary.md")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*quantguard verdict: ship (but a check FAILED: the gate fails) "
        "(candidate models/int8.onnx*",
        f"*FAILED check: min_reference: the reference scores 0.9766 < 0.99 ({where}) on this data: "
        "the data or the reference is wrong, not the quantization*",
        "*remedy: fix the data or the reference first*"])
    report = json.loads((pytester.path / "report.json").read_text())
    Draft202012Validator(load_schema()).validate(report)
    [record] = report["comparisons"]
    assert record["verdict"] == "ship" and record["outcome"] == "failed"
    assert [check["passed"] for check in record["details"]["reference_checks"]][-1] is False
    assert report["summary"]["passed"] is False
    markdown = (pytester.path / "summary.md").read_text()
    assert "### Failed checks of the reference" in markdown and "**FAIL** ship" in markdown


def test_a_floor_typed_in_percent_is_refused_with_the_fraction_meant(digits):
    predict, data = digits
    with pytest.raises(QuantGuardError, match=r"min_reference.* = 97: accuracy is scored in \[0, 1\], "
                                              r"so the reference can never reach it; did you mean 0\.97\?"):
        compare(predict, predict, data=data, min_reference=97, **FAST)
