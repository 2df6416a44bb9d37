"""``--quant-diagnose`` / ``quant_diagnose`` / ``make_execution(diagnose=...)``: one row of the
settings table (docs/diagnosis.md, "When it runs")."""

from __future__ import annotations

import pytest

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.settings import BY_KEY, OPTIONS, Execution, make_execution, resolve_options


def test_the_row_and_its_default():
    row = BY_KEY["diagnose"]
    assert row in OPTIONS and row.flag == "--quant-diagnose" and row.ini == "quant_diagnose"
    assert row.default == "on-failure" and Execution().diagnose == "on-failure"
    assert make_execution(diagnose="always").diagnose == "always"
    assert make_execution(diagnose=None).diagnose == "on-failure"


def test_a_bad_value_names_the_option_and_the_choices(tmp_path):
    with pytest.raises(QuantGuardError, match="diagnose: must be one of on-failure, always, never, "
                                              "got 'sometimes'"):
        make_execution(diagnose="sometimes")
    with pytest.raises(QuantGuardError, match=r"quant_diagnose = 'yes' in pytest\.ini: must be one "
                                              r"of on-failure, always, never"):
        resolve_options({}.get, {"quant_diagnose": "yes"}.get, cli_dir=tmp_path, ini_dir=tmp_path,
                        ini_file=tmp_path.joinpath("pytest.ini").relative_to(tmp_path))


def test_ini_then_command_line_reach_the_execution(tmp_path):
    options = resolve_options({}.get, {"quant_diagnose": "never"}.get, cli_dir=tmp_path,
                              ini_dir=tmp_path)
    assert options.execution().diagnose == "never"
    options = resolve_options({"quant_diagnose": "always"}.get, {"quant_diagnose": "never"}.get,
                              cli_dir=tmp_path, ini_dir=tmp_path)
    assert options.execution().diagnose == "always"


def test_the_command_line_option_is_registered(pytester):
    pytester.makepyfile("def test_one(): pass")
    assert pytester.runpytest("--quant-diagnose", "never").ret == 0
    result = pytester.runpytest("--quant-diagnose", "sometimes")
    assert result.ret == 4
    assert "--quant-diagnose" in result.stderr.str() + result.stdout.str()
