"""The example's GitHub Actions workflow runs the gate command of docs/release.md ("The gate command")
and keeps its four reports."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from conftest import EXAMPLE, REPO
from pytest_quantguard import settings

WORKFLOW = EXAMPLE / ".github" / "workflows" / "quantization-gate.yml"
RELEASE_PAGE = REPO / "docs" / "release.md"
GATE_MARKER = "<!-- gate-command -->"
# The option that writes each report, and the file name the upload must keep for it.
REPORT_OPTIONS = ("--junitxml", "--quant-report", "--quant-markdown", "--quant-plot")


def page_gate_command(page: str) -> str:
    """The first line of the fenced bash block that follows the gate-command marker line."""
    assert page.count(GATE_MARKER) == 1, f"docs/release.md needs exactly one {GATE_MARKER} line"
    found = re.search(re.escape(GATE_MARKER) + r"[ \t]*\n```bash[ \t]*\n([^\n]+)\n", page)
    assert found, f"docs/release.md: {GATE_MARKER} must be followed by a ```bash block"
    return found.group(1).strip()


def report_paths(command: str) -> dict[str, str]:
    """{option: path} for each report option of a pytest command (`--opt PATH` or `--opt=PATH`)."""
    words = shlex.split(command)
    paths = {}
    for position, word in enumerate(words):
        option, equals, value = word.partition("=")
        if option in REPORT_OPTIONS:
            paths[option] = value if equals else words[position + 1]
    return paths


def uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(action + "@")


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    return job["steps"]


@pytest.fixture(scope="module")
def gate_command() -> str:
    return page_gate_command(RELEASE_PAGE.read_text(encoding="utf-8"))


def gate_step(steps: list[dict[str, Any]]) -> dict[str, Any]:
    (step,) = [step for step in steps if shlex.split(step.get("run", "") or "")[:1] == ["pytest"]]
    return step


def test_workflow_runs_on_pull_requests_and_pushes_to_main(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1: PyYAML reads the key `on` as True
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"]


def test_the_gate_step_runs_the_documented_gate_command(steps, gate_command):
    assert gate_command.startswith("pytest ")
    assert gate_step(steps)["run"].strip() == gate_command


def test_the_gate_command_writes_all_four_reports_with_registered_options(gate_command):
    assert set(report_paths(gate_command)) == set(REPORT_OPTIONS)
    flags = {word.partition("=")[0] for word in shlex.split(gate_command) if word.startswith("--quant-")}
    assert flags <= {option.flag for option in settings.OPTIONS}


def test_the_upload_keeps_every_report_even_when_the_gate_fails(steps, gate_command):
    (upload,) = [step for step in steps if uses(step, "actions/upload-artifact")]
    assert upload["uses"] == "actions/upload-artifact@v4"
    assert re.fullmatch(r"(\$\{\{\s*)?always\(\)(\s*\}\})?", str(upload["if"]).strip())
    uploaded = {line.strip() for line in upload["with"]["path"].splitlines() if line.strip()}
    assert uploaded == set(report_paths(gate_command).values())
    assert upload["with"]["name"] == "quantguard-reports"
    assert upload["with"]["retention-days"] == 90
    assert steps.index(upload) > steps.index(gate_step(steps))


def test_python_311_and_the_plugin_with_the_onnx_and_plot_extras_come_first(steps):
    (checkout,) = [step for step in steps if uses(step, "actions/checkout")]
    (python,) = [step for step in steps if uses(step, "actions/setup-python")]
    assert (checkout["uses"], python["uses"]) == ("actions/checkout@v4", "actions/setup-python@v5")
    assert python["with"]["python-version"] == "3.11"  # quoted: unquoted, YAML reads 3.10 as 3.1
    (install,) = [step for step in steps if "pip install" in (step.get("run") or "")]
    extras = re.search(r"pytest-quantguard\[([^\]]*)\]", install["run"])
    assert extras, install["run"]
    assert {"onnx", "plot"} <= {extra.strip() for extra in extras.group(1).split(",")}
    order = [steps.index(step) for step in (checkout, python, install, gate_step(steps))]
    assert order == sorted(order)


def test_gate_command_extraction():
    page = f"intro\n{GATE_MARKER}\n```bash\npytest --junitxml=a.xml --quant-report b.json\nls\n```\n"
    assert page_gate_command(page) == "pytest --junitxml=a.xml --quant-report b.json"
    assert report_paths(page_gate_command(page)) == {"--junitxml": "a.xml", "--quant-report": "b.json"}
