"""The terminal summary through pytest (pytester, the example's real models): it fits the width
(``COLUMNS``), reads drops in the Markdown report's unit, never says ``ship`` for a test that failed
for another reason, and explains its cache column (docs/reports.md, "Terminal summary")."""

from __future__ import annotations

import shutil

import pytest

from conftest import EXAMPLE

GATES = """
from pytest_quantguard import quant_tolerance

@quant_tolerance(max_drop=0.01)
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")

@quant_tolerance(max_drop=0.01)
def test_int2(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx")

def test_int8_errors(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_error_increase=0.3)

def test_diabetes(quant_compare):
    quant_compare("models/diabetes_fp32.onnx", "models/diabetes_int8.onnx",
                  data="prod_val_diabetes", max_drop=5.0, qat_limit=15.0, relative=False)
"""
ALL_COLUMNS = ["test", "metric", "reference", "candidate", "drop", "interval", "limit", "verdict",
               "risks", "size", "ms/sample", "cache"]
ARGS = ["--quant-data", "prod_val", "--quant-bootstrap", "500", "-p", "no:cacheprovider"]


@pytest.fixture
def gates(pytester, example):
    shutil.copytree(EXAMPLE / "prod_val_diabetes", pytester.path / "prod_val_diabetes")
    pytester.makepyfile(test_gates=GATES)
    return pytester


def table(result) -> tuple[list[str], list[str]]:
    """The summary's lines (header first, then rows and legend, up to the next section) and the
    header's column names."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "quantguard:" in line
                 and "comparison(s)" in line) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("=")), len(lines))
    return lines[start:end], lines[start].split()


def rows(result) -> dict[str, dict[str, str]]:
    """test id -> {column: cell}, cut at the header's column starts."""
    lines, names = table(result)
    header = lines[0]
    starts = [0] + [header.index(f"  {name}") + 2 for name in names[1:]]
    found = {}
    for line in lines[1:]:
        if not line.startswith(("test_gates.py::", "...")):
            continue
        cells = {name: line[begin:end].strip()
                 for name, begin, end in zip(names, starts, [*starts[1:], None], strict=True)}
        found[cells["test"].split("::", 1)[-1]] = cells
    return found


@pytest.mark.parametrize("width", [80, 120, 225])
def test_the_table_fits_the_width_dropping_the_least_needed_columns_first(gates, monkeypatch,
                                                                         width):
    monkeypatch.setenv("COLUMNS", str(width))
    result = gates.runpytest(*ARGS)
    result.assert_outcomes(passed=3, failed=1)
    lines, names = table(result)
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    assert names[:1] == ["test"] and {"interval", "verdict", "limit"} <= set(names)
    assert names == [name for name in ALL_COLUMNS if name in names]  # the order is kept
    dropped = [name for name in ALL_COLUMNS if name not in names]
    # the least needed go first: what is left out is a tail of the drop order
    order = ["cache", "ms/sample", "size", "risks", "candidate", "reference", "drop", "metric",
             "limit"]
    assert set(dropped) == set(order[:len(dropped)])
    if width == 225:
        assert names == ALL_COLUMNS
    else:
        assert "cache" not in names
        note = " ".join(lines[lines.index(next(line for line in lines
                                                if line.startswith("columns left out"))):])
        assert ", ".join(order[:len(dropped)]) in note
    verdicts = {test: row["verdict"] for test, row in rows(result).items()}
    assert verdicts == {"test_int8": "ship", "test_int2": "stay-fp16", "test_int8_errors": "ship",
                        "test_diabetes": "ship"}


def test_a_narrow_terminal_shortens_long_test_ids_from_the_left(pytester, example, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    pytester.makepyfile(test_a_module_with_a_rather_long_name_for_its_release_gates="""
def test_int8_against_the_fp32_reference_on_the_production_validation_set(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_drop=0.01)
""")
    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(passed=1)
    lines, names = table(result)
    assert all(len(line) <= 60 for line in lines)
    assert names == ["test", "interval", "verdict"]
    assert lines[1].startswith("...") and "validation_set  [" in lines[1]
    assert lines[1].rstrip().endswith("ship")


def test_drops_and_intervals_read_in_the_markdown_reports_unit(gates):
    result = gates.runpytest(*ARGS, "--quant-markdown", "summary.md")
    result.assert_outcomes(passed=3, failed=1)
    markdown = {}
    for line in (gates.path / "summary.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if len(cells) > 6 and cells[1].startswith("`test_gates.py::"):
            markdown[cells[1].strip("`").split("::", 1)[1]] = cells
    terminal = rows(result)
    assert set(markdown) == set(terminal) == {"test_int8", "test_int2", "test_int8_errors",
                                              "test_diabetes"}
    for test, cells in markdown.items():
        drop, interval = cells[5], cells[6]
        assert terminal[test]["drop"] == drop
        assert interval.startswith(terminal[test]["interval"] + " ")  # Markdown adds the method
    assert terminal["test_int8"]["drop"].endswith(" pt")  # accuracy: points
    assert terminal["test_int8_errors"]["interval"].count("%") == 3  # error increase: percent
    assert "pt" not in terminal["test_diabetes"]["drop"] + terminal["test_diabetes"]["interval"]
    assert terminal["test_int8"]["limit"] == "1.00 pt"
    assert terminal["test_int8_errors"]["limit"] == "30.00%"


FAILS_OTHERWISE = """
def test_two_unnamed_calls(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_drop=0.01)
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_drop=0.02)

def test_later_error(quant_compare):
    comparison = quant_compare("models/fp32.onnx", "models/int8.onnx", max_drop=0.01)
    assert comparison.n == 5, "the set was expected to hold 5 samples"

def test_policy_violation(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_drop=0.01, name="ok")
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_drop=0.05, name="too_loose")

def test_ships(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_drop=0.01)
"""


@pytest.mark.parametrize("extra", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_shipped_comparison_in_a_test_that_failed_otherwise_is_not_shown_as_ship(
        pytester, example, extra):
    pytester.makeini("[pytest]\nquant_policy_max_drop = 0.02\n")
    pytester.makepyfile(test_gates=FAILS_OTHERWISE)
    result = pytester.runpytest_subprocess(*ARGS, *extra, "--quant-markdown", "summary.md")
    result.assert_outcomes(passed=1, failed=3)
    found = rows(result)
    assert {test: row["verdict"] for test, row in found.items()} == {
        "test_two_unnamed_calls": "ship (test failed)", "test_later_error": "ship (test failed)",
        "test_policy_violation::ok": "ship (test failed)", "test_ships": "ship"}
    result.stdout.fnmatch_lines_random([
        "quantguard: test_gates.py::test_two_unnamed_calls: its comparison shipped, but the test "
        "failed: *calls quant_compare more than once*",
        "quantguard: test_gates.py::test_later_error: its comparison shipped, but the test failed: "
        "*the set was expected to hold 5 samples*",
        "quantguard: test_gates.py::test_policy_violation: its comparison shipped, but the test "
        "failed: *policy forbids this*",
    ])
    result.stdout.no_fnmatch_line("*test_ships: its comparison shipped*")
    markdown = (pytester.path / "summary.md").read_text()
    assert "- test_gates.py::test_two_unnamed_calls: its comparison shipped, but the test " \
           "failed: " in markdown


def test_a_failure_in_teardown_after_a_ship_is_said(pytester, example):
    pytester.makepyfile(test_gates="""
import pytest

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("the temporary export could not be removed")

def test_teardown(quant_compare, broken_teardown):
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_drop=0.01)
""")
    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "quantguard: test_gates.py::test_teardown: its comparison shipped, but the test failed "
        "(in teardown): *the temporary export could not be removed*"])


def test_the_legend_explains_the_cache_column(pytester, example, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # no terminal and no COLUMNS: nothing is left out
    pytester.makepyfile(test_gates="""
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", max_drop=0.01)
""")
    result = pytester.runpytest(*ARGS)
    lines, names = table(result)
    assert names == ALL_COLUMNS
    legend = [line for line in lines if line.startswith("cache:")]
    assert len(legend) == 1
    for status in ("hit =", "miss =", "off ="):
        assert status in legend[0]
