"""Limits in their unit (docs/verdict.md, "Limits and their units"): a percent typed where a
fraction belongs is an error naming the option, its layer and the fix, never a silent ship."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from pytest_quantguard import QuantGuardWarning, compare
from pytest_quantguard.errors import QuantGuardError

FAST = dict(resamples=500)


@pytest.fixture(scope="module")
def digits():
    """Held-out digits: a logistic regression and the same with weights rounded to 4 bits."""
    inputs, labels = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=3000).fit(inputs[:900] / 16, labels[:900])
    step = np.abs(model.coef_).max() / 7
    rounded = np.round(model.coef_ / step) * step
    return (lambda x: model.predict_proba(x / 16), lambda x: x / 16 @ rounded.T + model.intercept_,
            (inputs[900:], labels[900:]))


@pytest.mark.parametrize(("keywords", "message"), [
    (dict(max_drop=1), r"the call's max_drop = 1 is a limit of 100 % on accuracy.*"
                       r"0\.01 = 1 point; did you mean 0\.01\?"),
    (dict(max_drop=5.0), r"the call's max_drop = 5 .*did you mean 0\.05\?"),
    (dict(metrics={"accuracy": 2}), r"the call's metrics = 2 .*did you mean 0\.02"),
    (dict(slice_max_drop=3), r"the call's slice_max_drop = 3 .*did you mean 0\.03"),
    (dict(qat_limit=3), r"the call's qat_limit = 3 .*did you mean 0\.03"),
    (dict(max_drop=1.5, relative=True), r"the call's max_drop = 1\.5 is a limit of 150 %.*"
                                        r"0\.01 = 1 %; did you mean 0\.015\?"),
    (dict(max_error_increase=1.5), r"the call's max_error_increase = 1\.5 .*did you mean 0\.015"),
    (dict(metric="cosine", max_drop=1), r"on cosine.*scored in \[0, 1\]"),
    (dict(metric="agreement", max_drop=2), r"on agreement.*did you mean 0\.02"),
])
def test_a_percent_for_a_fraction_on_a_unit_score_is_an_error(digits, keywords, message):
    reference, candidate, data = digits
    with pytest.raises(QuantGuardError, match=message):
        compare(reference, candidate, data=data, **keywords, **FAST)


def test_a_metric_in_its_own_units_takes_a_limit_above_one(rounded_diabetes):
    """rmse is in the target's units: 5 is a plain limit; a relative one of 1.5 (150 %) is not."""
    reference, candidate, data = rounded_diabetes
    result = compare(reference, candidate, data=data, max_drop=5, qat_limit=15, relative=False,
                     **FAST)
    assert result.metric == "rmse" and result.max_drop == 5
    with pytest.raises(QuantGuardError, match=r"the call's max_drop = 1\.5 is a limit of 150 % on rmse.*"
                                              r"0\.01 = 1 %; did you mean 0\.015\?"):
        compare(reference, candidate, data=data, max_drop=1.5, relative=True, **FAST)


@pytest.mark.parametrize(("keywords", "message"), [
    (dict(max_drop=0.2, qat_limit=0.5), r"the call's max_drop = 0\.2 lets accuracy lose up to 20 points"),
    (dict(max_drop=0.01, slice_max_drop=0.15), r"the call's slice_max_drop = 0\.15 lets accuracy lose up "
                                               r"to 15 points"),
])
def test_a_wide_absolute_limit_on_a_unit_score_warns(digits, keywords, message):
    reference, candidate, data = digits
    with pytest.warns(QuantGuardWarning, match=message):
        compare(reference, candidate, data=data, **keywords, **FAST)


@pytest.mark.parametrize("keywords", [dict(max_drop=0.02, qat_limit=0.02),
                                      dict(max_drop=0.05), dict(max_drop=0.05, qat_limit=0.01)])
def test_max_drop_at_or_above_qat_limit_warns_that_try_qat_is_empty(digits, keywords):
    reference, candidate, data = digits
    with pytest.warns(QuantGuardWarning, match=r"so the try-qat band is empty.*set qat_limit "
                                               r"above the limit"):
        compare(reference, candidate, data=data, **keywords, **FAST)


GATE = """
def test_int2(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx")
"""


@pytest.mark.parametrize(("args", "ini", "message"), [
    (["--quant-max-drop", "5"], "", "*quantguard: --quant-max-drop (command line) = 5 is a limit of "
                                    "500 % on accuracy*0.01 = 1 point; did you mean 0.05?"),
    ([], "quant_max_drop = 5\n", "*quant_max_drop (ini file) = 5 is a limit of 500 %*did you mean "
                                 "0.05?"),
    (["--quant-qat-limit", "3"], "", "*--quant-qat-limit (command line) = 3*did you mean 0.03?"),
    ([], "quant_policy_max_drop = 2\n", "*quant_policy_max_drop (ini file) = 2 is a limit of 200 %*"),
])
def test_the_run_wide_layers_name_themselves_and_nothing_ships(pytester, example, args, ini,
                                                               message):
    """int2 loses 7.45 points: under --quant-max-drop 5 it shipped (upper bound 9.44 pt < 500 pt)."""
    pytester.makeini(f"[pytest]\n{ini}")
    pytester.makepyfile(test_unit_gate=GATE)
    result = pytester.runpytest("--quant-data", "prod_val", *args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([message])
    result.stdout.no_fnmatch_line("*verdict: ship*")
    result.stdout.no_fnmatch_line("*Traceback*")


def test_a_marker_limit_names_the_marker(pytester, example):
    pytester.makepyfile(test_unit_gate="""
import pytest

@pytest.mark.quant_tolerance(max_drop=1.0)
def test_int2(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx")
""")
    result = pytester.runpytest("--quant-data", "prod_val")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*@quant_tolerance(max_drop=...) = 1 is a limit of 100 % on "
                                 "accuracy*did you mean 0.01?"])


def test_every_limit_states_its_unit_in_help(pytester):
    result = pytester.runpytest("--help")
    text = " ".join(" ".join(result.stdout.lines).split())
    for flag in ("--quant-max-drop=X", "--quant-qat-limit=X"):
        after = text.split(flag, 1)[1][:400]
        assert "0.01 = 1 point" in after and "0.01 = 1 percent" in after, after


def test_a_warning_points_at_the_tests_own_line(pytester, example):
    """Not into the plugin (fixture.py): the warnings summary names the line that called
    quant_compare."""
    pytester.makepyfile(test_band='''
def test_band(quant_compare):
    x = 1
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_drop=0.05, qat_limit=0.05)
''')
    result = pytester.runpytest("--quant-data", "prod_val", "-p", "no:cacheprovider",
                                "-W", "always::pytest_quantguard.QuantGuardWarning")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_band.py:3: QuantGuardWarning*try-qat band is empty*"])
    assert "fixture.py" not in result.stdout.str()


@pytest.mark.parametrize(("args", "ini", "shown"), [
    (["--quant-max-drop", "5"], "", "--quant-max-drop (command line) = 5 is 500 % as a fraction"),
    ([], "quant_qat_limit = 3\n", "quant_qat_limit (ini file) = 3 is 300 % as a fraction"),
])
def test_a_run_wide_percent_is_said_at_start_even_where_a_marker_hides_it(pytester, example, args,
                                                                          ini, shown):
    """The marker's own limit is used (and fine); the option the user typed is not silently
    ignored: a warning at start names it and the fraction meant."""
    pytester.makeini("[pytest]\n" + ini)
    pytester.makepyfile(test_marked='''
import pytest

@pytest.mark.quant_tolerance(max_drop=0.01, qat_limit=0.03)
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
''')
    result = pytester.runpytest("--quant-data", "prod_val", "-p", "no:cacheprovider",
                                "-W", "always::pytest_quantguard.QuantGuardWarning", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*QuantGuardWarning: {shown}*did you mean 0.0*a test whose "
                                 "marker or call sets*does not use it at all*"])


def test_under_w_error_the_run_wide_percent_is_a_usage_error(pytester, example):
    pytester.makepyfile(test_one="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--quant-max-drop", "5", "-p", "no:cacheprovider",
                                "-W", "error::pytest_quantguard.QuantGuardWarning")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: quantguard: --quant-max-drop (command line) = 5 is 500 %*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
