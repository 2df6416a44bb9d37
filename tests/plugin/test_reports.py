"""Release sign-off reports through the plugin: JUnit (testcase and suite properties), JSON (valid
against the shipped schema), Markdown, the forest plot; serial and under pytest-xdist; the policy
floor and the required comparison count."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from pytest_quantguard.reports.json_report import load_schema

GATES = """
import pytest

def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")

@pytest.mark.quant_tolerance(metrics={"accuracy": 0.01, "macro_f1": 0.02})
def test_int2(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx")

def test_two_named(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", name="int8")
    quant_compare("models/fp32.onnx", "models/int8.onnx", name="int8_top3", metric="top3")
"""
REPORT_ARGS = ["--quant-data", "prod_val", "--quant-bootstrap", "2000", "-W", "error",
               "--junitxml", "out/junit.xml", "--quant-report", "out/quant.json",
               "--quant-markdown", "out/quant.md", "--quant-plot", "out/forest.png"]
VOLATILE = ("created", "host")  # and each comparison's runtime (docs/reports.md, "The comparison record")


def _properties(element) -> dict[str, str]:
    return {prop.get("name"): prop.get("value") for prop in element.iter("property")}


@pytest.fixture
def runs(pytester, example, tmp_path_factory):
    """The same suite serially and under -n 2, each writing every report."""
    pytester.makepyfile(test_gates=GATES)
    found = {}
    for label, extra in (("serial", []), ("xdist", ["-n", "2"])):
        result = pytester.runpytest_subprocess(*REPORT_ARGS, *extra, "-p", "no:cacheprovider")
        result.assert_outcomes(passed=2, failed=1)  # int2 fails on both metrics
        out = pytester.path / "out"
        found[label] = {
            "junit": ET.parse(out / "junit.xml").getroot(),
            "json": json.loads((out / "quant.json").read_text()),
            "markdown": (out / "quant.md").read_text(),
            "png": (out / "forest.png").read_bytes(),
            "stdout": result.stdout.str(),
        }
        saved = tmp_path_factory.mktemp(label)
        (saved / "forest.png").write_bytes(found[label]["png"])
        found[label]["png_path"] = saved / "forest.png"
    return found


def test_junit_has_testcase_and_suite_properties_serially_and_under_xdist(runs):
    for label, run in runs.items():
        cases = {case.get("name"): _properties(case) for case in run["junit"].iter("testcase")}
        assert cases["test_int8"]["quant.metric"] == "accuracy", label
        assert cases["test_int8"]["quant.verdict"] == "ship"
        assert cases["test_int2"]["quant.accuracy.verdict"] == "stay-fp16"
        assert cases["test_int2"]["quant.macro_f1.verdict"] == "stay-fp16"
        assert cases["test_two_named"]["quant.int8_top3.metric"] == "top3"
        assert float(cases["test_int2"]["quant.accuracy.ci_high"]) > float(
            cases["test_int2"]["quant.accuracy.ci_low"])
        suite = _properties(run["junit"].find("testsuite").find("properties"))
        assert suite["quant.run.comparisons"] == "5", label
        assert (suite["quant.run.ship"], suite["quant.run.failed"],
                suite["quant.run.inconclusive"]) == ("3", "2", "0")
        assert suite["quant.run.seed"] == "0" and suite["quant.run.version"]
        assert suite["quant.run.policy_violations"] == "0"


def test_json_report_is_valid_and_identical_serial_and_xdist(runs):
    validator = Draft202012Validator(load_schema(),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    reports = {label: run["json"] for label, run in runs.items()}
    for report in reports.values():
        validator.validate(report)
        assert report["summary"] == {"comparisons": 5, "ship": 3, "failed": 2,
                                     "inconclusive": 0, "expected_failures": 0,
                                     "passed": False, "failed_checks": 0, "shipped_in_failed_tests": 0}
        assert report["environment"]["execution_providers"]  # asked on the controller
    serial, xdist = ({key: value for key, value in report.items() if key not in VOLATILE}
                     for report in reports.values())
    assert [c["runtime"]["worker"] for c in xdist["comparisons"]] != ["main"] * 5
    for report in (serial, xdist):
        for comparison in report["comparisons"]:
            comparison.pop("runtime")
    assert serial == xdist  # field by field, outside created, host and runtime
    int2 = next(c for c in serial["comparisons"] if c["id"].endswith("test_int2::accuracy"))
    assert int2["discordant"]["count"] == 75 and len(int2["discordant"]["samples"]) == 75
    assert set(int2["discordant"]["samples"][0]) == {"index", "label", "reference", "candidate"}
    assert int2["cost"]["compression"] == pytest.approx(154355 / 34275)


def test_markdown_and_plot_are_written_by_the_controller(runs):
    for label, run in runs.items():
        table = [line for line in run["markdown"].splitlines() if line.startswith("|")]
        assert len(table) == 2 + 5, label  # header, separator, one row per comparison
        assert "stay-fp16" in table[2] and "ship" in table[-1]  # verdicts first
        with Image.open(run["png_path"]) as image:
            image.verify()
        for key, name in (("report", "quant.json"), ("markdown", "quant.md"),
                          ("plot", "forest.png")):
            assert f"quantguard: {key} written to " in run["stdout"] and name in run["stdout"]


def test_reports_are_written_once_on_the_controller_and_hooks_can_add_fields(pytester, example):
    pytester.makeconftest("""
def pytest_quantguard_update_json(config, report):
    report["release"] = {"ticket": "REL-42"}
    with open("update_json_calls.txt", "a") as handle:
        handle.write(("worker" if hasattr(config, "workerinput") else "controller") + "\\n")
""")
    pytester.makepyfile(test_gates=GATES)
    result = pytester.runpytest_subprocess(*REPORT_ARGS, "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    assert (pytester.path / "update_json_calls.txt").read_text() == "controller\n"
    report = json.loads((pytester.path / "out" / "quant.json").read_text())
    assert report["release"] == {"ticket": "REL-42"}
    assert not [p for p in (pytester.path / "out").iterdir() if p.name.startswith(".")]


def test_github_step_summary_gets_the_markdown_appended(pytester, example, monkeypatch):
    summary = pytester.path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makepyfile(test_one="""
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    pytester.runpytest_subprocess("--quant-data", "prod_val", "-p", "no:cacheprovider",
                                  "--quant-bootstrap", "2000").assert_outcomes(passed=1)
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "| " in text and "ship" in text


POLICY_INI = """
[pytest]
quant_policy_max_drop = 0.02
quant_policy_min_confidence = 0.95
quant_policy_allow_point_gate = false
"""


def test_a_marker_cannot_loosen_the_policy_and_the_reports_show_it(pytester, example):
    pytester.makeini(POLICY_INI)
    pytester.makepyfile(test_policy="""
import pytest

@pytest.mark.quant_tolerance(max_drop=0.5)
def test_loose(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx")

@pytest.mark.quant_tolerance(gate="point", confidence=0.8)
def test_point(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")

@pytest.mark.quant_tolerance(max_drop=0.015)
def test_tighter_is_fine(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    result = pytester.runpytest_subprocess(
        "--quant-data", "prod_val", "-p", "no:cacheprovider", "--quant-bootstrap", "2000",
        "--junitxml", "junit.xml", "--quant-report", "quant.json")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*policy forbids this: max_drop=0.5 (set by @quant_tolerance(max_drop=...)) exceeds "
        "quant_policy_max_drop = 0.02*",
        "*gate='point' (set by @quant_tolerance(gate=...)) is not allowed*",
        "*confidence=0.8 (set by @quant_tolerance(confidence=...)) is below "
        "quant_policy_min_confidence = 0.95*",
    ])
    report = json.loads((pytester.path / "quant.json").read_text())
    violations = report["policy"]["violations"]
    assert {(v["id"].split("::")[-1], v["key"]) for v in violations} == {
        ("test_loose", "max_drop"), ("test_point", "gate"), ("test_point", "confidence")}
    assert report["policy"]["satisfied"] is False and report["summary"]["passed"] is False
    (tight,) = report["comparisons"]
    assert tight["overrides"] == [{"key": "max_drop", "value": 0.015, "source": "marker"}]
    suite = _properties(ET.parse(pytester.path / "junit.xml").getroot().find("testsuite"))
    assert suite["quant.run.policy_violations"] == "3"


def test_the_command_line_cannot_loosen_the_policy_either(pytester, example):
    pytester.makeini(POLICY_INI)
    pytester.makepyfile(test_one="""
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    result = pytester.runpytest_subprocess("--quant-data", "prod_val", "--quant-max-drop", "0.05",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*max_drop=0.05 (set by --quant-max-drop (command line)) exceeds*"])
    # a percent typed where a fraction belongs: the policy's refusal says so too
    percent = pytester.runpytest_subprocess("--quant-data", "prod_val", "--quant-max-drop", "5",
                                            "-p", "no:cacheprovider")
    percent.assert_outcomes(failed=1)
    percent.stdout.fnmatch_lines(["*max_drop=5.0 (set by --quant-max-drop (command line)) exceeds "
                                  "quant_policy_max_drop = *; a limit is a fraction (0.01 = 1 point "
                                  "or 1 %): did you mean 0.05?*"])


def test_required_comparisons_fail_a_run_that_deselected_its_gates(pytester, example):
    pytester.makeini("[pytest]\nquant_require_comparisons = 2\n")
    pytester.makepyfile(test_gates=GATES)
    result = pytester.runpytest_subprocess(
        "--quant-data", "prod_val", "-p", "no:cacheprovider", "--quant-bootstrap", "2000",
        "-k", "test_int8", "--junitxml", "junit.xml", "--quant-report", "quant.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*quantguard: 1 comparison(s) ran, but quant_require_comparisons "
                                 "= 2: the session fails*"])
    report = json.loads((pytester.path / "quant.json").read_text())
    assert report["policy"]["require_comparisons"] == 2 and report["policy"]["comparisons"] == 1
    assert report["policy"]["satisfied"] is False
    suite = _properties(ET.parse(pytester.path / "junit.xml").getroot().find("testsuite"))
    assert suite["quant.run.required_comparisons"] == "2"
    assert suite["quant.run.comparisons"] == "1"


def test_a_run_with_no_comparison_writes_no_report_and_says_so(pytester, example):
    pytester.makepyfile(test_gates=GATES)
    result = pytester.runpytest_subprocess(*REPORT_ARGS, "-k", "nothing_matches",
                                           "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["*quantguard: no comparison ran; no report written*"])
    assert not (pytester.path / "out" / "quant.json").exists()
    assert not (pytester.path / "out" / "quant.md").exists()
    assert not (pytester.path / "out" / "forest.png").exists()


@pytest.mark.parametrize("mode", ["testcase", "suite", "off"])
def test_quant_junit_chooses_which_properties_are_written(pytester, example, mode):
    pytester.makeini(f"[pytest]\nquant_junit = {mode}\n")
    pytester.makepyfile(test_one="""
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    pytester.runpytest_subprocess("--quant-data", "prod_val", "-p", "no:cacheprovider",
                                  "--junitxml", "junit.xml").assert_outcomes(passed=1)
    root = ET.parse(pytester.path / "junit.xml").getroot()
    case = _properties(root.find(".//testcase"))
    suite_props = root.find("testsuite").find("properties")
    suite = {} if suite_props is None else _properties(suite_props)
    assert ("quant.verdict" in case) == (mode == "testcase")
    assert ("quant.run.comparisons" in suite) == (mode == "suite")


def test_xdist_is_optional(pytester, example):
    pytester.makepyfile(test_one="""
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    result = pytester.runpytest_subprocess("--quant-data", "prod_val", "-p", "no:xdist",
                                           "-p", "no:cacheprovider", "--quant-report", "q.json")
    result.assert_outcomes(passed=1)
    assert json.loads((pytester.path / "q.json").read_text())["summary"]["comparisons"] == 1


def test_a_policy_set_with_dash_o_is_named_and_collect_only_is_not_a_failure(pytester, example):
    pytester.makeini("[pytest]\nquant_require_comparisons = 5\nquant_policy_max_drop = 0.01\n")
    pytester.makepyfile(test_one="""
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    collected = pytester.runpytest_subprocess("--quant-data", "prod_val", "--collect-only",
                                              "-p", "no:cacheprovider")
    assert collected.ret == pytest.ExitCode.OK
    result = pytester.runpytest_subprocess(
        "--quant-data", "prod_val", "-p", "no:cacheprovider", "--quant-report", "q.json",
        "-o", "quant_require_comparisons=1", "-o", "quant_policy_max_drop=0.5")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*policy set on the command line (-o), not by the project's "
                                 "config file: quant_policy_max_drop, quant_require_comparisons*"])
    policy = json.loads((pytester.path / "q.json").read_text())["policy"]
    assert policy["set_on_command_line"] == ["quant_policy_max_drop", "quant_require_comparisons"]
    assert (policy["max_drop"], policy["require_comparisons"]) == (0.5, 1)


def test_advisory_subsets_do_not_count_and_too_few_resamples_break_the_policy(pytester, example):
    pytester.makeini("[pytest]\nquant_require_comparisons = 1\nquant_policy_min_bootstrap = 5000\n")
    pytester.makepyfile(test_one="""
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    subset = pytester.runpytest_subprocess("--quant-data", "prod_val", "-p", "no:cacheprovider",
                                           "--quant-max-samples", "600", "--quant-report", "q.json")
    subset.assert_outcomes(passed=1)
    assert subset.ret == pytest.ExitCode.TESTS_FAILED
    subset.stdout.fnmatch_lines(["*0 comparison(s) ran, but quant_require_comparisons = 1: the "
                                 "session fails (1 more ran on a --quant-max-samples subset*"])
    policy = json.loads((pytester.path / "q.json").read_text())["policy"]
    assert (policy["comparisons"], policy["advisory_comparisons"]) == (0, 1)
    few = pytester.runpytest_subprocess("--quant-data", "prod_val", "-p", "no:cacheprovider",
                                        "--quant-bootstrap", "100")
    few.assert_outcomes(failed=1)
    few.stdout.fnmatch_lines(["*bootstrap=100 (set by the project (ini or command line)) is below "
                              "quant_policy_min_bootstrap = 5000*"])
