"""The `quantguard` console script (docs/verdict.md, "Sample size"): `plan`, --version, usage errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_quantguard import __version__
from pytest_quantguard.cli import main

PLAN = ["plan", "--discordance", "0.02", "--margin", "0.01"]


def _sizes(stdout: str) -> tuple[int, int, str]:
    """(n at the requested power, n at 50% power, the requested power) from the text output."""
    first, second, *_ = stdout.splitlines()
    head = re.match(r"([\d,]+) samples? for ([\d.]+)% power", first)
    fifty = re.match(r"([\d,]+) samples? for 50% power", second)
    assert head and fifty, stdout
    return int(head[1].replace(",", "")), int(fifty[1].replace(",", "")), head[2]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(("discordance", "n_80", "n_50"), [("0.02", 1570, 768), ("0.05", 3925, 1921)])
def test_plan_prints_the_80_and_50_percent_power_sizes(capsys, discordance, n_80, n_50):
    status, out, err = _run(capsys, "plan", "--discordance", discordance, "--margin", "0.01")
    assert (status, err) == (0, "")
    n, n_half, power = _sizes(out)
    assert abs(n - n_80) <= 1 and abs(n_half - n_50) <= 1 and power == "80"
    assert out.startswith(f"{n:,} samples for 80% power") and out[1] == ","  # thousands separator
    lines = out.splitlines()
    assert len(lines) == 3 and lines[2].startswith(f"inputs: discordance {discordance}")


def test_lower_confidence_lowers_n_and_an_assumed_drop_raises_it(capsys):
    base, base_50, _ = _sizes(_run(capsys, *PLAN)[1])
    lower, lower_50, _ = _sizes(_run(capsys, *PLAN, "--confidence", "0.90")[1])
    dropped, dropped_50, _ = _sizes(_run(capsys, *PLAN, "--drop", "0.005")[1])
    assert lower < base and lower_50 < base_50
    assert abs(lower - 1237) <= 1  # (1.645 + 0.842)^2 * 0.02 / 0.01^2
    assert dropped > base and dropped_50 > base_50
    assert abs(dropped - 6271) <= 1  # (1.96 + 0.842)^2 * (0.02 - 0.005^2) / 0.005^2


def test_power_option_is_used(capsys):
    n, n_50, power = _sizes(_run(capsys, *PLAN, "--power", "0.9")[1])
    assert power == "90"
    assert abs(n - 2102) <= 1 and abs(n_50 - 768) <= 1  # (1.96 + 1.2816)^2 * 200


def test_json_output_parses_and_matches_the_text(capsys):
    status, out, _ = _run(capsys, *PLAN, "--drop", "0.002", "--json")
    assert status == 0
    record = json.loads(out)
    assert set(record) == {"n", "n_50", "inputs"}
    assert record["inputs"] == {"discordance": 0.02, "margin": 0.01, "power": 0.8, "confidence": 0.95,
                                "drop": 0.002}
    n, n_50, _ = _sizes(_run(capsys, *PLAN, "--drop", "0.002")[1])
    assert (record["n"], record["n_50"]) == (n, n_50)
    assert type(record["n"]) is int and record["n_50"] < record["n"]


@pytest.mark.parametrize(("option", "argv"), [
    ("--discordance", ["--discordance", "-0.1", "--margin", "0.01"]),
    ("--discordance", ["--discordance", "1.5", "--margin", "0.01"]),
    ("--discordance", ["--discordance", "nan", "--margin", "0.01"]),
    ("--discordance", ["--discordance", "two", "--margin", "0.01"]),
    ("--margin", ["--discordance", "0.02", "--margin", "0"]),
    ("--margin", ["--discordance", "0.02", "--margin", "-0.01"]),
    ("--margin", ["--discordance", "0.02", "--margin", "1"]),  # "1 point" is 0.01
    ("--margin", ["--discordance", "0.02"]),
    ("--power", ["--discordance", "0.02", "--margin", "0.01", "--power", "0"]),
    ("--power", ["--discordance", "0.02", "--margin", "0.01", "--power", "1"]),
    ("--power", ["--discordance", "0.02", "--margin", "0.01", "--power", "80"]),
    ("--confidence", ["--discordance", "0.02", "--margin", "0.01", "--confidence", "0"]),
    ("--confidence", ["--discordance", "0.02", "--margin", "0.01", "--confidence", "1"]),
    ("--confidence", ["--discordance", "0.02", "--margin", "0.01", "--confidence", "inf"]),
    ("--drop", ["--discordance", "0.02", "--margin", "0.01", "--drop", "0.01"]),
    ("--drop", ["--discordance", "0.02", "--margin", "0.01", "--drop", "0.02"]),
    ("--drop", ["--discordance", "0.002", "--margin", "0.01", "--drop", "0.005"]),  # |drop| > discordance
])
def test_bad_values_are_usage_errors_naming_the_option(capsys, option, argv):
    status, out, err = _run(capsys, "plan", *argv)
    assert status == 2 and out == ""
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and option in errors[0], err
    assert errors[0].startswith("quantguard plan: error:")
    assert "Traceback" not in err


def test_no_subcommand_prints_help_and_exits_2(capsys):
    status, out, err = _run(capsys)
    assert status == 2 and out == ""
    assert err.startswith("usage: quantguard") and "plan" in err


def test_version(capsys):
    status, out, _ = _run(capsys, "--version")
    assert (status, out.strip()) == (0, f"quantguard {__version__}")


def _subprocess(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", [[str(Path(sys.executable).parent / "quantguard")],
                                     [sys.executable, "-m", "pytest_quantguard"]],
                         ids=["console-script", "python-m"])
def test_installed_entry_points(command):
    done = _subprocess(*command, *PLAN)
    assert done.returncode == 0, done.stderr
    n, n_50, _ = _sizes(done.stdout)
    assert abs(n - 1570) <= 1 and abs(n_50 - 768) <= 1
    bad = _subprocess(*command, "plan", "--discordance", "0.02", "--margin", "0")
    assert bad.returncode == 2 and "--margin" in bad.stderr and "Traceback" not in bad.stderr


def test_the_cli_imports_no_heavy_backend():
    code = ("import sys; from pytest_quantguard.cli import main; main(['plan', '--discordance', '0.02', "
            "'--margin', '0.01', '--json']); "
            "print(sorted(m for m in ('scipy', 'torch', 'onnxruntime', 'onnx', 'matplotlib') "
            "if m in sys.modules))")
    done = _subprocess(sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_a_closed_pipe_is_not_a_traceback():
    """`quantguard plan ... | head -1`: the reader leaves after one line."""
    script = Path(sys.executable).parent / "quantguard"
    reader = subprocess.Popen([str(script), "plan", "--discordance", "0.02", "--margin", "0.01"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()  # nothing will read the output
    _, errors = reader.communicate(timeout=60)
    assert b"Traceback" not in errors and reader.returncode == 0
