"""Unknown keys give the closest valid key and the list: markers, quant_compare and compare()
keywords, and quant_* ini keys (pytest's own "unknown config option" names no fix)."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_quantguard import compare
from pytest_quantguard.errors import QuantGuardError


def data():
    labels = np.arange(200) % 2
    return np.eye(2)[labels].astype(np.float32), labels


@pytest.mark.parametrize(("keyword", "closest"), [("max_dorp", "max_drop"),
                                                  ("qat_limt", "qat_limit"),
                                                  ("min_refrence", "min_reference")])
def test_a_compare_keyword_typo_names_the_closest_key(keyword, closest):
    inputs, labels = data()
    with pytest.raises(QuantGuardError) as error:
        compare(lambda x: x, lambda x: x, data=(inputs, labels), **{keyword: 0.01})
    text = str(error.value)
    assert f"unknown keyword(s) {keyword} (did you mean {closest!r}?)" in text
    assert "the tolerance keys are max_drop, qat_limit" in text
    assert "options: k for top_k" not in text.split(";")[0]  # not blamed on the metric's options


def test_a_keyword_close_to_nothing_still_lists_the_keys():
    inputs, labels = data()
    with pytest.raises(QuantGuardError, match=r"unknown keyword\(s\) zzz: not a tolerance key, and "
                                              r"not an option of metric accuracy.*the tolerance "
                                              r"keys are max_drop"):
        compare(lambda x: x, lambda x: x, data=(inputs, labels), zzz=1)


def test_a_metric_option_typo_names_the_option():
    inputs, labels = data()
    with pytest.raises(QuantGuardError, match=r"unknown keyword\(s\) poling \(did you mean 'pooling'\?\)"):
        compare(lambda x: x, lambda x: x, data=(inputs, labels), metric="cosine", poling="mean")


def test_quant_compare_and_marker_typos(pytester, example):
    pytester.makepyfile(test_typos="""
import pytest

def test_call(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_dorp=0.01)

@pytest.mark.quant_tolerance(slice_max_dorp=0.01)
def test_marker(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    result = pytester.runpytest("--quant-data", "prod_val")
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*quantguard: unknown keyword(s) max_dorp (did you mean 'max_drop'?): not a tolerance key*"])
    result.stdout.fnmatch_lines(["*@quant_tolerance: unknown key(s) slice_max_dorp (did you mean "
                                 "'slice_max_drop'?); the allowed keys are max_drop*"])
    result.stdout.no_fnmatch_line("*not an option of metric accuracy (options: k for top_k*")


@pytest.mark.parametrize(("name", "text", "closest"), [
    ("pytest.ini", "[pytest]\nquant_max_dorp = 0.01\n", "quant_max_drop"),
    ("pyproject.toml", "[tool.pytest.ini_options]\nquant_qat_limt = 0.05\n", "quant_qat_limit"),
    ("tox.ini", "[pytest]\nquant_polcy_max_drop = 0.02\n", "quant_policy_max_drop"),
])
def test_an_ini_typo_is_a_usage_error_naming_the_closest_key(pytester, name, text, closest):
    pytester.path.joinpath(name).write_text(text, encoding="utf-8")
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*quantguard: *{name}: unknown ini key * (did you mean "
                                 f"{closest!r}?); the allowed keys are quant_data, quant_max_drop*"])


def test_an_override_typo_is_named_too(pytester):
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest("-o", "quant_bootstap=100")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown ini key quant_bootstap (did you mean 'quant_bootstrap'?)*"])
