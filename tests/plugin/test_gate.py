"""The gate end to end through pytest (pytester), on the committed example models."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

GATE_TESTS = """
from pytest_quantguard import quant_tolerance

@quant_tolerance(max_drop=0.01)
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")

@quant_tolerance(max_drop=0.01)
def test_int2(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx")
"""
WIDE = "-Wignore::pytest_quantguard.QuantGuardWarning"  # a deliberately wide limit warns
JUNIT_FIELDS = ["metric", "reference_score", "candidate_score", "drop", "ci_low", "ci_high",
                "confidence", "method", "n", "max_drop", "gate", "verdict", "batch_size", "risks"]


def test_good_candidate_ships_and_degraded_one_fails_with_a_verdict(pytester, example, plugin_args):
    pytester.makepyfile(test_release=GATE_TESTS)
    result = pytester.runpytest("--quant-data", "prod_val", *plugin_args)
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "quantguard verdict: stay-fp16 (candidate models/int2.onnx vs reference models/fp32.onnx on "
        "prod_val, n=899)",
        "*accuracy: reference 0.9766, candidate 0.9021",
        "*drop 0.0745 (7.45 pt), 95% interval [[]+0.0567, +0.0944] (percentile+tango, 10000 resamples)",
        "*rule: stay-fp16 because the drop 0.0745 (7.45 pt) >= qat_limit 0.0300 (3.00 pt); "
        "degradation established*",
        "*remedy: stay at FP16*",
    ])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.fnmatch_lines([
        "*= quantguard: 2 comparison(s) =*",
        "test*metric*reference*candidate*drop*interval*limit*verdict*cache",
        "test_release.py::test_int2*accuracy*0.9766*0.9021*7.45 pt*[[]5.67 pt, 9.44 pt] 95%*1.00 pt"
        "*stay-fp16  *",
        "test_release.py::test_int8*accuracy*0.9766*0.9755*0.11 pt*[[]-0.31 pt, 0.63 pt] 95%*1.00 pt"
        "*ship  *",
    ])
    # the cache column: the first comparison misses, the second reuses the reference (same process)
    statuses = sorted(line.split()[-1] for line in result.stdout.lines
                      if line.startswith("test_release.py::"))
    assert statuses in (["hit", "miss"], ["miss", "miss"], ["hit", "hit"])


def test_summary_and_junit_are_complete_under_xdist_and_warnings_as_errors(pytester, example,
                                                                          plugin_args):
    pytester.makepyfile(test_release=GATE_TESTS)
    result = pytester.runpytest("--quant-data", "prod_val", "--junitxml=report.xml", "-W", "error",
                                "-q", *plugin_args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_release.py::test_int2*stay-fp16*",
                                 "*test_release.py::test_int8*ship*"])
    cases = {case.get("name"): case for case in ET.parse(pytester.path / "report.xml").iter("testcase")}
    assert set(cases) == {"test_int8", "test_int2"}
    for name, verdict in [("test_int8", "ship"), ("test_int2", "stay-fp16")]:
        properties = {p.get("name"): p.get("value") for p in cases[name].iter("property")}
        assert [key for key in properties] == [f"quant.{field}" for field in JUNIT_FIELDS]
        assert properties["quant.verdict"] == verdict
        assert properties["quant.metric"] == "accuracy" and properties["quant.n"] == "899"
        assert float(properties["quant.ci_low"]) < float(properties["quant.ci_high"])
    assert cases["test_int2"].find("failure") is not None


def test_missing_data_fails_with_the_how_to_never_skips(pytester, example):
    pytester.makepyfile(GATE_TESTS + """
def test_fixture_only(quant_data):
    assert len(quant_data) > 0
""")
    result = pytester.runpytest()
    result.assert_outcomes(failed=2, errors=1)
    result.stdout.fnmatch_lines(["*no validation data: pass --quant-data DIR, set quant_data = DIR "
                                 "in the ini file*"])
    result.stdout.no_fnmatch_line("*skipped*")


def test_data_given_on_the_call_needs_no_option(pytester, example):
    pytester.makepyfile("""
def test_int8(quant_compare):
    result = quant_compare("models/fp32.onnx", "models/int8.onnx", data="prod_val")
    assert result.n == 899
""")
    pytester.runpytest().assert_outcomes(passed=1)


def test_unknown_marker_key_errors_that_test_only(pytester, example):
    pytester.makepyfile("""
import pytest

@pytest.mark.quant_tolerance(max_dorp=0.01)
def test_typo(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")

@pytest.mark.quant_tolerance(max_drop="one percent")
def test_bad_type(quant_compare):
    pass

def test_other(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    result = pytester.runpytest("--quant-data", "prod_val")
    result.assert_outcomes(passed=1, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*@quant_tolerance: unknown key(s) max_dorp (did you mean 'max_drop'?); the allowed keys "
        "are max_drop, qat_limit, "
        "metric, relative, confidence, gate, output*",
        "*@quant_tolerance(max_drop=...): must be a number, got 'one percent'*",
    ])


def test_marker_is_registered_with_its_signature_under_strict_markers(pytester, example):
    pytester.makeini("[pytest]\nstrict_markers = true\n")
    pytester.makepyfile(GATE_TESTS)
    pytester.runpytest("--quant-data", "prod_val").assert_outcomes(passed=1, failed=1)
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.quant_tolerance(max_drop=0.01, qat_limit=0.03, "
                                  "metric=None, relative=None, confidence=0.95, gate='upper', "
                                  "output=None, max_error_increase=None, metrics=None, "
                                  "slice_max_drop=None, min_reference=None, batch_size='auto'): *"])


def test_both_marker_spellings_are_the_same_object():
    import pytest_quantguard

    assert pytest_quantguard.quant_tolerance.name == pytest.mark.quant_tolerance.name
    assert pytest_quantguard.quant_tolerance == pytest.mark.quant_tolerance


@pytest.fixture
def small_prod_val(example):
    data = np.load(example / "prod_val" / "digits_heldout.npz")
    (example / "small").mkdir()
    np.savez(example / "small" / "first100.npz", inputs=data["inputs"][:100],
             labels=data["labels"][:100])
    return example / "small"


# The in-process inner run inherits this suite's "error" filter; let the warning be a warning.
@pytest.mark.filterwarnings("default::pytest_quantguard.QuantGuardWarning")
def test_inconclusive_fails_by_default_and_warns_when_asked(pytester, small_prod_val, plugin_args):
    pytester.makepyfile("""
def test_int8(quant_compare):
    result = quant_compare("models/fp32.onnx", "models/int8.onnx")
    assert result.verdict == "inconclusive"
""")
    failing = pytester.runpytest("--quant-data", "small", *plugin_args)
    failing.assert_outcomes(failed=1)
    failing.stdout.fnmatch_lines(["*quantguard verdict: inconclusive*",
                                  "*remedy: about 2,355 samples (2,255 more) would resolve it*"])
    warned = pytester.runpytest("--quant-data", "small", "--quant-inconclusive", "warn",
                                *plugin_args)
    warned.assert_outcomes(passed=1, warnings=1)
    warned.stdout.fnmatch_lines(["*QuantGuardWarning: quantguard verdict: inconclusive*",
                                 "*test_int8*inconclusive*"])


def test_inconclusive_warning_is_a_pytest_warning_subclass():
    from pytest_quantguard import QuantGuardWarning

    assert issubclass(QuantGuardWarning, pytest.PytestWarning)


def test_precedence_default_ini_cli_marker_call(pytester, example):
    pytester.makeini("[pytest]\nquant_data = prod_val\nquant_max_drop = 0.2\nquant_qat_limit = 0.5\n")
    pytester.makepyfile(test_prec="""
from pytest_quantguard import quant_tolerance

def test_ini_or_cli(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx")

@quant_tolerance(max_drop=0.2)
def test_marker(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx")

@quant_tolerance(max_drop=0.2)
def test_call(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx", max_drop=0.05)
""")
    # ini 0.2 ships int2 (U = 0.108); the call keyword 0.05 beats the marker's 0.2
    # (a limit of 20 points on accuracy warns: it is meant here)
    pytester.runpytest("-k", "ini_or_cli or call", WIDE).assert_outcomes(passed=1, failed=1)
    # CLI 0.05 beats the ini; the marker's 0.2 beats the CLI
    result = pytester.runpytest("--quant-max-drop", "0.05", WIDE)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["FAILED test_prec.py::test_ini_or_cli - *try-qat*",
                                 "FAILED test_prec.py::test_call - *try-qat*"])


def test_defaults_apply_without_ini_or_cli(pytester, example):
    pytester.makepyfile("""
def test_int2(quant_compare):
    result = quant_compare("models/fp32.onnx", "models/int2.onnx")
""")
    result = pytester.runpytest("--quant-data", "prod_val")
    result.stdout.fnmatch_lines(["*stay-fp16 because the drop 0.0745 (7.45 pt) >= qat_limit "
                                 "0.0300 (3.00 pt)*"])


@pytest.mark.parametrize(("args", "ini", "match"), [
    (["--quant-max-drop", "-1"], "", "*argument --quant-max-drop: must be a number > 0, got '-1'*"),
    (["--quant-gate", "lower"], "", "*argument --quant-gate: must be one of upper, point*"),
    (["--quant-bootstrap", "1.5"], "", "*argument --quant-bootstrap: must be a whole number*"),
    ([], "quant_confidence = 95", "*quant_confidence = '95' in *: must be a number strictly between*"),
    ([], "quant_inconclusive = ignore", "*quant_inconclusive = 'ignore'*: must be one of fail, warn*"),
])
def test_bad_option_values_are_usage_errors_naming_the_option(pytester, args, ini, match):
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([match])


def test_several_comparisons_in_one_test_need_names(pytester, example):
    pytester.makepyfile("""
def test_unnamed(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
    quant_compare("models/fp32.onnx", "models/int8.onnx")

def test_named(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", name="int8")
    quant_compare("models/fp32.onnx", "models/fp32.onnx", name="self")
""")
    result = pytester.runpytest("--quant-data", "prod_val", "--junitxml=report.xml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*calls quant_compare more than once: give every call its own name=*",
                                 "*test_named::int8*ship*", "*test_named::self*ship*",
                                 "*test_unnamed *ship*"])
    cases = {case.get("name"): case for case in ET.parse(pytester.path / "report.xml").iter("testcase")}
    names = [p.get("name") for p in cases["test_named"].iter("property")]
    assert names[:len(JUNIT_FIELDS)] == [f"quant.int8.{field}" for field in JUNIT_FIELDS]
    assert names[len(JUNIT_FIELDS):] == [f"quant.self.{field}" for field in JUNIT_FIELDS]


def test_each_failing_call_records_its_figures_before_failing(pytester, example):
    pytester.makepyfile("""
def test_two(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", name="int8")
    quant_compare("models/fp32.onnx", "models/int2.onnx", name="int2")
""")
    result = pytester.runpytest("--quant-data", "prod_val")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_two::int2*stay-fp16*", "*test_two::int8*ship*"])


def test_plugin_can_be_disabled(pytester, example):
    pytester.makepyfile(GATE_TESTS)
    result = pytester.runpytest("-p", "no:quantguard")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*fixture 'quant_compare' not found*"])


def test_help_lists_the_options_with_ini_twins(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["quantization gate (pytest-quantguard):", "*--quant-data=DIR*",
                                 "*--quant-max-drop=X*", "*--quant-qat-limit=X*",
                                 "*--quant-confidence=C*", "*--quant-bootstrap=N*",
                                 "*--quant-seed=S*", "*--quant-gate={upper,point}*",
                                 "*--quant-inconclusive={fail,warn}*", "*--quant-batch-size={auto,N}*"])
    result.stdout.fnmatch_lines(["*quant_max_drop (string)*"])


def test_markers_merge_from_module_to_function_and_none_inherits(pytester, example):
    pytester.makeini("[pytest]\nquant_data = prod_val\nquant_confidence = 0.5\n")
    pytester.makepyfile(test_merge="""
import pytest

pytestmark = pytest.mark.quant_tolerance(qat_limit=0.5)

@pytest.mark.quant_tolerance(max_drop=0.2, confidence=None)
def test_merged(quant_compare):
    result = quant_compare("models/fp32.onnx", "models/int2.onnx")
    assert (result.max_drop, result.qat_limit, result.confidence) == (0.2, 0.5, 0.5)

@pytest.mark.quant_tolerance(max_drop=0.05)
def test_closest_wins(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx", confidence=0.99)
""")
    result = pytester.runpytest("-v", WIDE)
    result.assert_outcomes(passed=1, failed=1)
    # module qat_limit 0.5 + function max_drop 0.05: try-qat (not stay-fp16), at the call's 99%
    result.stdout.fnmatch_lines(["*quantguard verdict: try-qat*", "*99% interval*"])


def test_call_keywords_are_validated_and_named(pytester, example):
    pytester.makepyfile(test_kw="""
def test_bad(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", gate="lower")
""")
    result = pytester.runpytest("--quant-data=prod_val")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*quantguard: quant_compare(gate=...): must be one of upper, point*"])


def test_quant_data_fixture_gives_the_validation_set_and_the_header_names_it(pytester, example):
    pytester.makeini("[pytest]\nquant_data = prod_val\n")
    pytester.makepyfile(test_fixture="""
from pytest_quantguard import ValidationSet

def test_fixture(quant_data):
    assert isinstance(quant_data, ValidationSet)
    assert quant_data.n == 899 and quant_data.task == "classification"
    assert quant_data.path.name == "prod_val"
""")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["quantguard: data=*prod_val max_drop=0.01 qat_limit=0.03 "
                                 "confidence=0.95 gate=upper bootstrap=10000 seed=0"])


def test_no_header_and_no_summary_when_unused(pytester):
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("quantguard: *")  # no header line
    result.stdout.no_fnmatch_line("*comparison(s)*")  # no summary table
