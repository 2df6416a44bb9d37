"""The JSON report's pure pieces: environment, git commit, report assembly, the shipped schema and
the atomic writer. Records come from real comparisons on the example project's models."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import resources

import pytest
from jsonschema import Draft202012Validator

from conftest import EXAMPLE, MODELS, PROD_VAL, REPO
from pytest_quantguard import compare
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.reports import json_report
from pytest_quantguard.reports.json_report import (
    SCHEMA_VERSION,
    build_report,
    environment,
    git_commit,
    load_schema,
    write_json,
)

TOP_LEVEL = ["schema_version", "created", "host", "environment", "git_commit", "settings", "policy",
             "summary", "comparisons"]
RECORD_KEYS = ["id", "name", "metric", "metric_kind", "unit", "reference", "candidate", "data", "drop",
               "interval", "verdict", "thresholds", "cost", "discordant", "message", "remedy",
               "details", "runtime"]
SETTINGS = {"seed": 0, "confidence": 0.95, "max_drop": 0.01, "inconclusive": "fail"}
POLICY = {"max_drop": 0.02, "max_error_increase": None, "min_confidence": None,
          "allow_point_gate": True, "require_comparisons": 0, "comparisons": 6, "satisfied": True,
          "violations": []}
CREATED = "2024-05-01T12:00:00+00:00"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """Real records: classification (ship and stay-fp16), regression, fidelity and a two-metric
    comparison flattened per metric."""
    common = dict(resamples=500)
    found = [
        compare(MODELS / "fp32.onnx", MODELS / "int8.onnx", data=PROD_VAL, name="int8", **common),
        compare(MODELS / "fp32.onnx", MODELS / "int2.onnx", data=PROD_VAL, name="int2", **common),
        compare(MODELS / "diabetes_fp32.onnx", MODELS / "diabetes_int8.onnx",
                data=EXAMPLE / "prod_val_diabetes", name="diabetes", **common),
        compare(MODELS / "fp32.onnx", MODELS / "int8.onnx", data=EXAMPLE / "prod_unlabeled",
                name="unlabeled", **common),
    ]
    several = compare(MODELS / "fp32.onnx", MODELS / "int2.onnx", data=PROD_VAL,
                      metrics={"accuracy": 0.01, "macro_f1": 0.02}, **common)
    found.extend(several.all())
    return [comparison.to_dict() for comparison in found]


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def report_of(records: list[dict], **changes) -> dict:
    arguments = dict(settings=SETTINGS, policy=POLICY, created=CREATED, host="builder",
                     commit="0" * 40)
    arguments.update(changes)
    return build_report(records, **arguments)


def errors(validator: Draft202012Validator, report: dict) -> list[str]:
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(report)]


# --- the shipped schema ---------------------------------------------------------------------------

def test_schema_is_shipped_as_package_data():
    schema_file = resources.files("pytest_quantguard") / "schema" / "report.schema.json"
    assert schema_file.is_file()
    assert load_schema() == json.loads(schema_file.read_text(encoding="utf-8"))
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["pytest_quantguard"]
    assert "schema/*.json" in package_data


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["required"] == TOP_LEVEL
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert schema["$defs"]["comparison"]["required"] == RECORD_KEYS


# --- a report of real comparisons -----------------------------------------------------------------

def test_report_of_real_comparisons_validates(records, validator):
    report = report_of(records)
    assert errors(validator, report) == []
    assert list(report) == TOP_LEVEL
    assert report["schema_version"] == 1
    assert report["git_commit"] == "0" * 40
    assert report["settings"] == SETTINGS and report["policy"] == POLICY
    metrics = {record["metric"] for record in records}
    assert {"accuracy", "macro_f1", "rmse", "agreement"} <= metrics
    assert all(record["discordant"] is not None for record in records)


def test_comparisons_are_the_records_sorted_by_id_then_metric(records):
    report = report_of(records[::-1])
    keys = [(record["id"], record["metric"]) for record in report["comparisons"]]
    assert keys == sorted(keys)
    assert sorted(map(json.dumps, report["comparisons"])) == sorted(map(json.dumps, records))
    assert report == report_of(records), "arrival order (serial vs xdist) must not matter"


def test_summary_counts_verdicts(records):
    verdicts = [record["verdict"] for record in records]
    summary = report_of(records)["summary"]
    assert summary == {
        "comparisons": len(records), "ship": verdicts.count("ship"),
        "failed": verdicts.count("try-qat") + verdicts.count("stay-fp16"),
        "inconclusive": verdicts.count("inconclusive"), "expected_failures": 0, "passed": False,
        "failed_checks": 0, "shipped_in_failed_tests": 0}
    assert summary["ship"] >= 3 and summary["failed"] >= 3  # int8, diabetes, unlabeled; int2 x3


def test_a_failed_comparison_in_an_xfail_test_does_not_fail_the_summary(records):
    failing = next(record for record in records if record["verdict"] == "stay-fp16")
    expected = {**failing, "outcome": "xfailed"}
    summary = report_of([expected])["summary"]
    assert (summary["failed"], summary["expected_failures"], summary["passed"]) == (1, 1, True)
    assert report_of([{**failing, "outcome": "failed"}])["summary"]["passed"] is False


@pytest.mark.parametrize("ladder_passed", [True, False])
def test_a_rung_that_did_not_ship_fails_the_summary_only_where_its_ladder_failed(
        records, validator, ladder_passed):
    """docs/ladder.md, "The reports": the ladder passes when it recommends a rung; the other rungs
    keep their verdicts, marked as rungs in the terminal and Markdown."""
    from pytest_quantguard.reports.markdown import markdown_report
    from pytest_quantguard.reports.terminal import verdict_text

    failing = copy.deepcopy(next(record for record in records if record["verdict"] == "stay-fp16"))
    failing["details"]["ladder"] = {"level": 1, "alpha": 0.0125, "confidence": 0.975,
                                    "shipped": False, "recommended": False,
                                    "ladder_passed": ladder_passed}
    report = report_of([failing])
    assert errors(validator, report) == []
    assert report["summary"]["passed"] is ladder_passed
    assert report["summary"]["failed"] == 1  # counted as what it is, either way
    assert verdict_text(failing).endswith(" (ladder rung)") is ladder_passed
    row = next(line for line in markdown_report([failing]).splitlines() if "stay-fp16 " in line)
    assert row.startswith("| **ok** stay-fp16 (ladder rung; the ladder passed)" if ladder_passed
                          else "| **FAIL** stay-fp16 |")


@pytest.mark.parametrize(("verdict", "inconclusive", "passed"), [
    ("ship", "fail", True), ("inconclusive", "fail", False), ("inconclusive", "warn", True),
    ("try-qat", "warn", False), ("stay-fp16", "fail", False)])
def test_summary_passed(records, verdict, inconclusive, passed):
    shipped = [record for record in records if record["verdict"] == "ship"]
    changed = copy.deepcopy(shipped)
    changed[0]["verdict"] = verdict
    summary = report_of(changed, settings={**SETTINGS, "inconclusive": inconclusive})["summary"]
    assert summary["passed"] is passed


def test_an_unsatisfied_policy_fails_the_summary(records, validator):
    shipped = [record for record in records if record["verdict"] == "ship"]
    violation = {"id": "tests/test_a.py::test_loose", "key": "max_drop", "value": 0.5,
                 "limit": 0.02, "source": "marker",
                 "message": "max_drop=0.5 (set by the marker) exceeds quant_policy_max_drop = 0.02"}
    report = report_of(shipped, policy={**POLICY, "satisfied": False, "violations": [violation]})
    assert report["summary"]["passed"] is False
    assert errors(validator, report) == []
    assert report_of(shipped)["summary"]["passed"] is True


def test_plugin_records_may_carry_their_overrides(records, validator):
    record = {**records[0], "overrides": [{"key": "max_drop", "value": 0.02, "source": "marker"},
                                          {"key": "metrics", "value": {"accuracy": 0.01},
                                           "source": "call"}]}
    assert errors(validator, report_of([record])) == []
    record["overrides"][0]["source"] = "ini"
    assert errors(validator, report_of([record])) != []


def test_no_comparisons_is_a_valid_report(validator):
    report = report_of([], commit=None)
    assert errors(validator, report) == []
    assert report["summary"] == {"comparisons": 0, "ship": 0, "failed": 0, "inconclusive": 0,
                                 "expected_failures": 0, "passed": True,
                                 "failed_checks": 0, "shipped_in_failed_tests": 0}


def test_extra_adds_top_level_keys_but_never_replaces_one(records, validator):
    report = report_of(records, extra={"run": {"seed": 0}, "team": "vision"})
    assert report["team"] == "vision" and errors(validator, report) == []
    with pytest.raises(ValueError, match="summary"):
        report_of(records, extra={"summary": {}})


# --- a broken report fails ------------------------------------------------------------------------

@pytest.mark.parametrize("key", TOP_LEVEL)
def test_a_missing_top_level_key_fails_validation(records, validator, key):
    report = report_of(records)
    del report[key]
    assert any(f"'{key}' is a required property" in error for error in errors(validator, report))


@pytest.mark.parametrize("key", RECORD_KEYS)
def test_a_missing_record_key_fails_validation(records, validator, key):
    report = copy.deepcopy(report_of(records))
    del report["comparisons"][0][key]
    assert any(f"'{key}' is a required property" in error for error in errors(validator, report))


@pytest.mark.parametrize(("where", "value"), [
    (("verdict",), "maybe"),
    (("verdict",), "SHIP"),
    (("drop",), "0.01"),
    (("interval", "confidence"), 1.5),
    (("thresholds", "gate"), "lower"),
    (("runtime", "cache"), "warm"),
    (("details", "margin"), "percent"),
    (("reference", "sha256"), "not-a-digest"),
    (("discordant", "order"), "random"),
    (("data", "n"), 0),
])
def test_a_wrong_value_fails_validation(records, validator, where, value):
    report = copy.deepcopy(report_of(records))
    target = report["comparisons"][0]
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    assert errors(validator, report) != []


def test_unknown_keys_are_allowed_only_where_hooks_may_add_them(records, validator):
    report = copy.deepcopy(report_of(records))
    report["comparisons"][0]["details"]["custom_figure"] = 1
    report["comparisons"][0]["runtime"]["gpu"] = "none"
    report["reviewer"] = "someone"
    assert errors(validator, report) == []
    report["comparisons"][0]["drop_typo"] = 0.0
    assert errors(validator, report) != []
    del report["comparisons"][0]["drop_typo"]
    report["summary"]["extra"] = 1
    assert errors(validator, report) != []


def test_a_nan_cannot_be_written(records, tmp_path):
    report = copy.deepcopy(report_of(records))
    report["comparisons"][1]["drop"] = float("nan")
    target = tmp_path / "quant.json"
    with pytest.raises(QuantGuardError, match=r"quant\.json.*report\.comparisons\[1\]\.drop"):
        write_json(target, report)
    assert list(tmp_path.iterdir()) == []


# --- write_json -----------------------------------------------------------------------------------

def test_write_json_round_trips_and_creates_folders(records, validator, tmp_path):
    report = report_of(records)
    target = tmp_path / "reports" / "nested" / "quant.json"
    write_json(target, report)
    text = target.read_text(encoding="utf-8")
    assert json.loads(text) == report
    assert text == json.dumps(report, indent=2, allow_nan=False) + "\n"
    assert list(json.loads(text)) == TOP_LEVEL  # key order kept (sort_keys=False)
    assert errors(validator, json.loads(text)) == []
    assert os.listdir(target.parent) == ["quant.json"]  # no temporary file left


def test_write_json_replaces_an_existing_file_whole(records, tmp_path):
    target = tmp_path / "quant.json"
    target.write_text("x" * 1_000_000)
    small = report_of(records[:1])
    write_json(target, small)
    assert json.loads(target.read_text(encoding="utf-8")) == small
    assert os.listdir(tmp_path) == ["quant.json"]


def test_write_json_follows_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        write_json(tmp_path / "quant.json", {"a": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "quant.json").stat().st_mode & 0o777 == 0o640


def test_a_failed_write_keeps_the_old_report_and_leaves_no_temporary_file(
        records, tmp_path, monkeypatch):
    target = tmp_path / "quant.json"
    target.write_text('{"old": true}\n')

    def refuse(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json_report.os, "replace", refuse)
    with pytest.raises(QuantGuardError, match=r"quant\.json.*No space left on device"):
        write_json(target, report_of(records))
    assert target.read_text() == '{"old": true}\n'
    assert os.listdir(tmp_path) == ["quant.json"]


@pytest.mark.parametrize("case", ["parent is a file", "path is a folder"])
def test_an_unwritable_path_is_a_clear_error(tmp_path, case):
    if case == "parent is a file":
        (tmp_path / "blocker").write_text("")
        target = tmp_path / "blocker" / "quant.json"
    else:
        target = tmp_path / "quant.json"
        target.mkdir()
    with pytest.raises(QuantGuardError, match="cannot write the quantguard JSON report") as raised:
        write_json(target, {"a": 1})
    assert str(target) in str(raised.value)
    assert sorted(os.listdir(tmp_path)) == [target.parent.name if case == "parent is a file"
                                            else "quant.json"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_a_read_only_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(QuantGuardError, match="locked"):
            write_json(folder / "quant.json", {"a": 1})
    finally:
        folder.chmod(0o700)


# --- environment ----------------------------------------------------------------------------------

def test_environment_names_versions_from_package_metadata():
    env = environment()
    assert list(env) == ["python", "implementation", "platform", "machine", "pytest", "numpy",
                         "onnxruntime", "torch", "scipy", "pytest_quantguard",
                         "execution_providers"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    for key in ("pytest", "numpy", "onnxruntime", "torch", "scipy"):
        assert env[key] == importlib.metadata.version(key)
    assert env["pytest_quantguard"] == importlib.metadata.version("pytest-quantguard")
    assert env == environment(), "deterministic on one machine"


def test_environment_lists_providers_once_onnxruntime_is_imported():
    import onnxruntime

    env = environment()
    assert env["execution_providers"] == onnxruntime.get_available_providers()
    assert "CPUExecutionProvider" in env["execution_providers"]


def test_environment_takes_providers_gathered_elsewhere():
    assert environment(execution_providers=("CPUExecutionProvider",))["execution_providers"] == [
        "CPUExecutionProvider"]


def test_environment_imports_neither_torch_nor_onnxruntime():
    code = ("import sys\n"
            "from pytest_quantguard.reports.json_report import environment\n"
            "env = environment()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'\n"
            "assert env['execution_providers'] is None, env\n"
            "assert env['torch'] is not None, env\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_a_missing_package_is_null(monkeypatch):
    real = importlib.metadata.version

    def version(name):
        if name == "torch":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(json_report.importlib.metadata, "version", version)
    assert environment()["torch"] is None


# --- git_commit -----------------------------------------------------------------------------------

@pytest.fixture
def no_git_context(monkeypatch, tmp_path):
    """Git may not look above tmp_path, and GitHub's variable is unset."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("GITHUB_SHA", raising=False)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_of_a_repository(tmp_path, no_git_context):
    repo = tmp_path / "repo"
    repo.mkdir()
    git_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                   "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}

    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, env=git_env, capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()

    git("init", "-q")
    assert git_commit(repo) is None  # no commit yet
    (repo / "a.txt").write_text("a")
    git("add", "a.txt")
    git("-c", "commit.gpgsign=false", "commit", "-q", "-m", "first")
    sha = git("rev-parse", "HEAD")
    assert len(sha) == 40
    assert git_commit(repo) == sha
    (repo / "sub").mkdir()
    assert git_commit(repo / "sub") == sha


def test_git_commit_outside_a_repository_is_none(tmp_path, no_git_context):
    assert git_commit(tmp_path) is None
    assert git_commit(tmp_path / "missing") is None


def test_git_commit_falls_back_to_github_sha(tmp_path, no_git_context, monkeypatch):
    sha = "a1b2c3d4" * 5
    monkeypatch.setenv("GITHUB_SHA", sha)
    assert git_commit(tmp_path) == sha
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert git_commit(tmp_path) == sha
    monkeypatch.setenv("GITHUB_SHA", "not a commit")
    assert git_commit(tmp_path) is None


def test_the_summary_counts_failed_checks_and_ships_in_failed_tests(records, validator):
    """A release script reading only the verdicts would ship these: the summary names them."""
    from pytest_quantguard.reports.markdown import markdown_report

    shipped = next(record for record in records if record["verdict"] == "ship")
    check = {"check": "chance", "passed": False, "rule": "chance: labels shuffled"}
    at_chance = {**shipped, "id": "t::a", "outcome": "failed",
                 "details": {**shipped["details"], "reference_checks": [check]}}
    failed_later = {**shipped, "id": "t::b", "outcome": "failed"}
    report = report_of([at_chance, failed_later])
    assert errors(validator, report) == []
    summary = report["summary"]
    assert (summary["ship"], summary["failed_checks"], summary["shipped_in_failed_tests"],
            summary["passed"]) == (2, 1, 1, False)
    text = markdown_report([at_chance, failed_later], inconclusive="fail")
    assert ("2 ship, 0 failed, 0 inconclusive; 1 with a failed check of the reference (the test "
            "fails whatever the verdict); 1 shipped in a test that failed otherwise; **the gate "
            "fails**") in text
