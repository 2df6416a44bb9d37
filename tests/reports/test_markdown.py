"""The Markdown summary, read back as a reviewer's tool would: the table is parsed and every cell
checked against the records it came from. The records are real comparisons of the example's
models (500 resamples: the figures, not the intervals' precision, are under test)."""

from __future__ import annotations

import copy
import re

import pytest

from conftest import EXAMPLE, MODELS, PROD_VAL
from pytest_quantguard import compare
from pytest_quantguard.reports.markdown import markdown_report

HEADER = ["verdict", "test", "metric", "reference", "candidate", "drop", "interval", "n", "size",
          "time per sample"]
SEVERITY = {"stay-fp16": 0, "try-qat": 1, "inconclusive": 2, "ship": 3}
# how each comparison's drops read: accuracy points, percent (relative / error-increase), plain
UNITS = {"int8": "pt", "int8_strict": "pt", "int8_unlabeled": "pt", "int2.accuracy": "pt",
         "int2_lenient": "pt", "int2.macro_f1": "plain", "diabetes": "%", "int8_errors": "%"}


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """One comparison of each verdict and unit, as the plugin hands them to the report."""
    fp32, int8, int2 = MODELS / "fp32.onnx", MODELS / "int8.onnx", MODELS / "int2.onnx"
    common = dict(resamples=500)
    found = [
        compare(fp32, int8, data=PROD_VAL, max_drop=0.01, name="int8", **common),
        compare(fp32, int8, data=PROD_VAL, max_drop=0.003, name="int8_strict", **common),
        compare(fp32, int8, data=PROD_VAL, max_error_increase=0.3, name="int8_errors", **common),
        compare(fp32, int2, data=PROD_VAL, metrics={"accuracy": 0.01, "macro_f1": 0.02},
                name="int2", **common),
        compare(fp32, int2, data=PROD_VAL, max_drop=0.01, qat_limit=0.2, name="int2_lenient",
                **common),
        compare(MODELS / "diabetes_fp32.onnx", MODELS / "diabetes_int8.onnx",
                data=EXAMPLE / "prod_val_diabetes", max_drop=0.01, name="diabetes", **common),
        compare(fp32, int8, data=EXAMPLE / "prod_unlabeled", max_drop=0.01, name="int8_unlabeled",
                **common),
    ]
    records = [each.to_dict() for comparison in found for each in comparison.all()]
    assert {r["id"]: r["verdict"] for r in records} == {
        "int8": "ship", "int8_strict": "inconclusive", "int8_errors": "ship",
        "int2.accuracy": "stay-fp16", "int2.macro_f1": "stay-fp16", "int2_lenient": "try-qat",
        "diabetes": "ship", "int8_unlabeled": "ship"}
    return records


def test_records_say_how_their_drops_read(records):
    """The record carries its unit, so no report guesses it from the metric's name."""
    shown = {"pt": "points", "%": "percent", "plain": "metric"}
    assert {r["id"]: r["unit"] for r in records} == {key: shown[unit] for key, unit in UNITS.items()}
    assert {r["id"]: r["metric_kind"] for r in records}["int2.macro_f1"] == "corpus"
    assert all(r["remedy"] and r["message"].endswith(f"remedy: {r['remedy']}") for r in records)


def cells(line: str) -> list[str]:
    """A GFM table row's cells: split on unescaped pipes, then unescaped."""
    assert line.startswith("|") and line.endswith("|"), line
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line[1:-1])]


def parse_table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The one table in ``text``: its header and its rows as {column: cell}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append(line)
    assert not any(line.startswith("|") for line in lines[start + len(block):]), "one table only"
    header, separator, *rows = block
    names = cells(header)
    assert all(re.fullmatch(r":?-{3,}:?", cell) for cell in cells(separator))
    assert len(cells(separator)) == len(names)
    parsed = []
    for row in rows:
        values = cells(row)
        assert len(values) == len(names), row
        parsed.append(dict(zip(names, values, strict=True)))
    return names, parsed


def number(text: str, unit: str) -> float:
    """A drop as written back in metric units (fractions)."""
    if unit == "pt":
        assert text.endswith(" pt"), text
        return float(text.removesuffix(" pt")) / 100
    if unit == "%":
        assert re.fullmatch(r"[+-]\d+\.\d\d%", text), text
        return float(text.removesuffix("%")) / 100
    assert re.fullmatch(r"-?[0-9.e+-]+", text), text
    return float(text)


def test_the_table_has_a_row_per_comparison_worst_verdict_first(records):
    header, rows = parse_table(markdown_report(records))
    assert header == HEADER
    assert len(rows) == len(records)
    expected = sorted(records, key=lambda r: (SEVERITY[r["verdict"]], r["id"]))
    assert [row["test"].strip("`") for row in rows] == [r["id"] for r in expected]
    verdicts = [row["verdict"].split()[-1] for row in rows]
    assert verdicts == [r["verdict"] for r in expected]
    assert verdicts[0] == "stay-fp16" and verdicts[-1] == "ship"
    for row in rows:
        marker = row["verdict"].split()[0]
        assert marker == ("**ok**" if row["verdict"].endswith("ship") else "**FAIL**")


def test_every_cell_matches_its_record(records):
    _, rows = parse_table(markdown_report(records))
    by_id = {r["id"]: r for r in records}
    for row in rows:
        record = by_id[row["test"].strip("`")]
        unit = UNITS[record["id"]]
        tolerance = 5e-5 if unit != "plain" else 1e-3 * max(abs(record["drop"]), 1e-9)
        assert row["metric"] == record["metric"]
        assert row["reference"] == f"{record['reference']['score']:.4f}"
        assert row["candidate"] == f"{record['candidate']['score']:.4f}"
        assert number(row["drop"], unit) == pytest.approx(record["drop"], abs=tolerance)
        match = re.fullmatch(r"\[(.+), (.+)\] (\d+(?:\.\d+)?)% (\S+)", row["interval"])
        assert match, row["interval"]
        low, high, level, method = match.groups()
        interval = record["interval"]
        assert number(low, unit) == pytest.approx(interval["low"], abs=max(tolerance, 5e-5 * abs(
            interval["low"])))
        assert number(high, unit) == pytest.approx(interval["high"], abs=max(tolerance, 5e-5 * abs(
            interval["high"])))
        assert float(level) / 100 == pytest.approx(interval["confidence"])
        assert method == interval["method"]
        assert int(row["n"].replace(",", "")) == record["data"]["n"]
        size = re.fullmatch(r"(\S+) (B|KB|MB|GB) → (\S+) (B|KB|MB|GB) \((\d+\.\d\d)×\)", row["size"])
        assert size, row["size"]
        scale = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}
        cost = record["cost"]
        assert float(size[1]) * scale[size[2]] == pytest.approx(cost["reference_bytes"], rel=5e-3)
        assert float(size[3]) * scale[size[4]] == pytest.approx(cost["candidate_bytes"], rel=5e-3)
        assert float(size[5]) == pytest.approx(cost["compression"], abs=5e-3)
        times = re.fullmatch(r"(\S+) ms → (\S+) ms", row["time per sample"])
        assert times, row["time per sample"]
        runtime = record["runtime"]
        assert float(times[1]) == pytest.approx(runtime["reference_ms_per_sample"], rel=5e-3)
        assert float(times[2]) == pytest.approx(runtime["candidate_ms_per_sample"], rel=5e-3)


def test_units_points_percent_and_plain(records):
    _, rows = parse_table(markdown_report(records))
    drops = {row["test"].strip("`"): row["drop"] for row in rows}
    assert drops["int2.accuracy"] == f"{100 * _record(records, 'int2.accuracy')['drop']:.2f} pt"
    assert drops["diabetes"] == f"{100 * _record(records, 'diabetes')['drop']:+.2f}%"
    assert drops["int8_errors"].endswith("%")  # an error-rate increase, not accuracy points
    assert drops["int2.macro_f1"] == f"{_record(records, 'int2.macro_f1')['drop']:.4g}"


def test_summary_line_counts_and_gate(records):
    text = markdown_report(records, title="Release gate")
    lines = text.splitlines()
    assert lines[0] == "## Release gate"
    assert "8 comparisons: 4 ship, 3 failed, 1 inconclusive; **the gate fails**." in lines
    shipping = [r for r in records if r["verdict"] == "ship"]
    assert "4 comparisons: 4 ship, 0 failed, 0 inconclusive; **the gate passes**." in \
        markdown_report(shipping)
    unsure = [*shipping, _record(records, "int8_strict")]
    assert "**the gate fails**" in markdown_report(unsure)
    warned = markdown_report(unsure, inconclusive="warn")
    assert "**the gate passes**" in warned
    assert "**warn** inconclusive" in warned


def test_what_lost_most_and_the_discordant_samples_follow_the_table(records):
    text = markdown_report(records)
    section = text.split("### What did not ship", 1)[1]
    failing = sorted((r for r in records if r["verdict"] != "ship"),
                     key=lambda r: (SEVERITY[r["verdict"]], r["id"]))
    bullets = [line for line in section.splitlines() if line.startswith("- `")]
    assert [line.split("`")[1] for line in bullets] == [r["id"] for r in failing]
    int2 = _record(records, "int2.accuracy")
    block = section.split("- `int2.accuracy`", 1)[1].split("\n- ", 1)[0]
    classes = next(line for line in block.splitlines() if "classes that lost most" in line)
    assert classes.count("(n=") == 3  # the first three rows only
    top = int2["details"]["per_class"][0]
    assert f"`{top['slice']}` (n={top['n']}) {100 * top['drop']:.2f} pt" in classes
    details = int2["details"]
    assert (f"discordant samples: {int2['discordant']['count']} flipped "
            f"({details['reference_only']} only the reference gets right, "
            f"{details['candidate_only']} only the candidate)") in block
    assert f"#{int2['discordant']['samples'][0]['index']}" in block
    assert "remedy: stay at FP16" in block


def test_slices_and_pipes_are_escaped(records):
    record = copy.deepcopy(_record(records, "int2.accuracy"))
    record["id"] = "tests/test_gate.py::test_int2[a|b]"
    record["details"]["slices"] = [dict(row, slice=f"night|{row['slice']}")
                                   for row in record["details"]["per_class"]]
    text = markdown_report([record])
    _, rows = parse_table(text)
    assert rows[0]["test"].strip("`") == "tests/test_gate.py::test_int2[a|b]"
    assert "`night|3` (n=92)" in text  # outside the table: a code span needs no escape
    assert "slices that lost most (accuracy, by upper bound)" in text


def test_a_cached_reference_has_no_time_of_its_own(records):
    record = copy.deepcopy(_record(records, "int8"))
    record["runtime"]["reference_ms_per_sample"] = None
    _, rows = parse_table(markdown_report([record]))
    assert re.fullmatch(r"reused → \S+ ms", rows[0]["time per sample"])


def test_notes_are_listed_after_the_table(records):
    notes = ["policy: test_x asked max_drop=0.5; quant_policy_max_drop = 0.02 applies",
             "advisory: a subset of\n500 samples"]
    text = markdown_report(records, notes=notes)
    tail = text.split("### Notes", 1)[1].strip().splitlines()
    assert tail == [f"- {notes[0]}", "- advisory: a subset of 500 samples"]
    assert text.index("### Notes") > text.index("| verdict")


def test_no_comparison_says_so_and_has_no_table():
    text = markdown_report([])
    assert "No comparison ran" in text
    assert not any(line.startswith("|") for line in text.splitlines())


def _record(records: list[dict], identifier: str) -> dict:
    return next(r for r in records if r["id"] == identifier)
