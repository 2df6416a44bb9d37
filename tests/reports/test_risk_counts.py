"""The risk notes through the plugin (docs/risks.md, "Where the notes appear"): one failing and one
shipping pair gated by pytest; the terminal's risks column, the JSON report, the Markdown report
and the JUnit property count agree, the failure message says the notes and a passing test's
output does not."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from jsonschema import Draft202012Validator

from pytest_quantguard.message import with_findings
from pytest_quantguard.reports.junit import junit_properties
from pytest_quantguard.reports.markdown import markdown_report
from pytest_quantguard.reports.schema import SCHEMA_FILE

GATES = """
def test_int2(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx")

def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
"""
EXPECTED = {"test_gates.py::test_int2": ["small_model", "int4_non_lm"],
            "test_gates.py::test_int8": ["small_model"]}


def terminal_counts(lines: list[str]) -> dict[str, str]:
    """test id -> the risks cell of the summary table."""
    start = next(i for i, line in enumerate(lines) if "comparison(s)" in line) + 1
    header = lines[start]
    column = header.index("  risks") + 2
    found = {}
    for line in lines[start + 1:]:
        if line.startswith("test_gates.py::"):
            found[line.split()[0]] = line[column:].split()[0]
    return found


def test_the_four_reports_agree_on_the_risk_notes(pytester, example):
    pytester.makepyfile(test_gates=GATES)
    result = pytester.runpytest("--quant-data", "prod_val", "--quant-bootstrap", "500",
                                "-p", "no:cacheprovider", "--junitxml", "junit.xml",
                                "--quant-report", "quant.json", "--quant-markdown", "quant.md")
    result.assert_outcomes(passed=1, failed=1)
    report = json.loads((pytester.path / "quant.json").read_text())
    Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(report)
    in_json = {each["id"]: [risk["kind"] for risk in each["details"]["risks"]]
               for each in report["comparisons"]}
    assert in_json == EXPECTED
    counts = {key: str(len(value)) for key, value in EXPECTED.items()}

    assert terminal_counts(result.stdout.lines) == counts
    assert any(line.startswith("risks: how many risk notes") for line in result.stdout.lines)

    junit = ET.parse(pytester.path / "junit.xml").getroot()
    in_junit = {f"test_gates.py::{case.get('name')}": {
        prop.get("name"): prop.get("value") for prop in case.iter("property")}
        for case in junit.iter("testcase")}
    assert {key: props["quant.risks"] for key, props in in_junit.items()} == counts
    diagnosed = [each for each in report["comparisons"] if "diagnosis" in each["details"]]
    assert all(("quant.diagnosed_layers" in props) is any(
        each["id"] == key and each["details"]["diagnosis"]["layers"] for each in diagnosed)
        for key, props in in_junit.items())

    markdown = (pytester.path / "quant.md").read_text()
    section = markdown.split("### Risk notes", 1)[1].split("###", 1)[0]
    heads = dict(re.findall(r"^- `([^`]+)`: (\d+) risk notes?$", section, flags=re.M))
    assert heads == counts
    assert len(re.findall(r"^  - `(\w+)` \(", section, flags=re.M)) == sum(map(int, counts.values()))

    # said in the failure message, once; never in the passing test's output. The short test
    # summary is cut off: where the environment sets CI, pytest prints whole messages there.
    output = result.stdout.str().split("short test summary info", 1)[0]
    assert output.count("- int4_non_lm (candidate): MatMulNBits bits=2") == 1
    assert output.count("- small_model (reference)") == 1  # the failing test's message only


DIAGNOSIS = {"measure": "relative error", "format": "QDQ", "samples": 64, "seed": 0,
             "seconds": 0.4, "not_matched": ["/4/MaxPool"], "skipped": None,
             "layers": [{"rank": rank, "node": f"/{rank}/Gemm", "op_type": "Gemm",
                         "tensor": f"/{rank}/Gemm_output_0", "local_error": 0.5 / rank,
                         "weight": f"{rank}.weight", "weight_error": 0.01,
                         "risks": ["outlier_weights"] if rank == 1 else []}
                        for rank in range(1, 8)]}
REMEDIES = [{"title": "quantize per-channel", "why": "an outlier weight sets a per-tensor scale",
             "code": "quantize_static(fp32, int8, reader, per_channel=True)"},
            {"title": "keep the worst layers in float", "why": "they lose most on their own",
             "code": "\n".join(f"line {index}" for index in range(10))}]


def test_the_diagnosis_and_remedies_render_in_the_message_markdown_and_junit():
    """The diagnosis's fixed schema (docs/risks.md) as each report shows it: the top 5 layers,
    the remedies' titles, short code in the message and all code in the Markdown."""
    schema = json.loads(SCHEMA_FILE.read_text())
    details = {"risks": [{"kind": "small_model", "model": "reference", "text": "small",
                          "parameters": 10}], "diagnosis": DIAGNOSIS, "remedies": REMEDIES}
    Draft202012Validator(schema["$defs"]["details"]["properties"]["diagnosis"]).validate(DIAGNOSIS)
    message = with_findings("quantguard verdict: try-qat\n  rule: r\n  remedy: x", details)
    lines = message.splitlines()
    assert lines[-2:] == ["  rule: r", "  remedy: x"]
    layers = [line for line in lines if re.match(r"    \d\. /", line)]
    assert len(layers) == 5 and layers[0] == (
        "    1. /1/Gemm (Gemm) local error 0.5, weight 1.weight (weight error 0.01), "
        "risks: outlier_weights")
    assert "        quantize_static(fp32, int8, reader, per_channel=True)" in lines
    assert "line 9" not in message and "    - keep the worst layers in float: they lose" in message
    assert "(1 layer(s) not matched" in message
    record = {"id": "t", "name": None, "metric": "accuracy", "verdict": "try-qat", "drop": 0.02,
              "interval": {"low": 0.01, "high": 0.03, "confidence": 0.95, "method": "wilson"},
              "thresholds": {"max_drop": 0.01, "gate": "upper"}, "data": {"n": 100},
              "reference": {"score": 0.9}, "candidate": {"score": 0.88}, "details": details}
    properties = dict(junit_properties(record))
    assert (properties["quant.risks"], properties["quant.diagnosed_layers"]) == ("1", "7")
    markdown = markdown_report([record])
    assert "    1. `/1/Gemm` (Gemm): local error 0.5" in markdown and "`/6/Gemm`" not in markdown
    assert "    line 9" in markdown and "**quantize per-channel**" in markdown
