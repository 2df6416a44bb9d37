"""Generated marker / call keywords, ini values and ``quantguard`` CLI arguments: every value is
accepted (and typed) or refused with a QuantGuardError / usage error naming the key or option —
never another exception; NaN, Inf and negative numbers are refused where a limit is asked
(docs/development.md, "Fuzzing and faults")."""

from __future__ import annotations

import io
import math
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import fuzz_sets  # noqa: F401  (registers the Hypothesis profiles)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_quantguard import cli
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.settings import INI, SETTINGS, TOLERANCE_KEYS, check_layer, resolve_options

ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["accuracy", "nan", "inf", "-1", "0.01", "1e999", "upper", "point", "1/0"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
LIMITS = ("max_drop", "qat_limit", "confidence", "max_error_increase", "slice_max_drop")


@given(key=st.sampled_from(TOLERANCE_KEYS) | st.text(min_size=1, max_size=12), value=ANY_VALUE)
def test_a_marker_or_call_value_is_typed_or_refused_naming_its_key(key, value):
    try:
        checked = check_layer({key: value}, "@quant_tolerance")
    except QuantGuardError as error:
        assert key in str(error) or "unknown key" in str(error)
        return
    assert key in TOLERANCE_KEYS
    if key in LIMITS and value is not None:
        number = checked[key]
        assert isinstance(number, float | int) and math.isfinite(number) and number > 0


@given(key=st.sampled_from([s.ini for s in SETTINGS if INI in s.layers]),
       text=st.text(max_size=16) | st.sampled_from(["nan", "inf", "-1", "1e999", "0", "true"]))
def test_an_ini_value_is_typed_or_refused_naming_the_ini_key(key, text):
    def read_ini(name):
        return text if name == key else None

    try:
        options = resolve_options(lambda name: None, read_ini, cli_dir=Path("/tmp"),
                                  ini_dir=Path("/tmp"), ini_file=Path("/tmp/pytest.ini"))
    except QuantGuardError as error:
        assert key in str(error) or "matplotlib" in str(error)
        return
    value = options.as_dict().get(key.removeprefix("quant_"))
    if isinstance(value, float):
        assert math.isfinite(value)


NUMBERS = st.floats() .map(repr) | st.text(max_size=8) | st.sampled_from(["nan", "inf", "-0", "1e999"])


@given(arguments=st.lists(st.sampled_from(["--discordance", "--margin", "--power", "--confidence",
                                           "--drop", "--json"]) | NUMBERS, max_size=8))
def test_the_cli_answers_every_argument_list_with_a_status(arguments):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(["plan", *arguments])
    assert status in (0, 2), (arguments, status)
    if status == 2:
        assert "quantguard plan: error:" in err.getvalue() or "usage:" in err.getvalue()
    else:
        assert "sample" in out.getvalue() or '"n"' in out.getvalue()


@pytest.mark.parametrize("option", ["--discordance", "--margin", "--power", "--confidence"])
@given(bad=st.sampled_from(["nan", "inf", "-inf", "-0.5", "1e999", "", "x"]))
def test_a_non_finite_or_negative_number_is_refused_naming_the_option(option, bad):
    given_ = {"--discordance": "0.02", "--margin": "0.01", option: bad}
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        status = cli.main(["plan", *[item for pair in given_.items() for item in pair]])
    assert status == 2 and f"argument {option}" in err.getvalue()
