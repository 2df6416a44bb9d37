"""The one settings table and its resolvers: precedence, the special cases, validation, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.settings import (
    SETTINGS,
    Execution,
    Tolerance,
    check_layer,
    default,
    make_execution,
    resolve_options,
    resolve_tolerance,
)

RUN = {"max_drop": 0.02, "qat_limit": 0.05, "confidence": 0.9, "gate": "upper"}


def test_nearer_layers_win_key_by_key():
    tolerance = resolve_tolerance(RUN, ("marker", {"max_drop": 0.03, "confidence": 0.99}),
                                  ("call", {"max_drop": 0.04}))
    assert (tolerance.max_drop, tolerance.confidence, tolerance.qat_limit) == (0.04, 0.99, 0.05)
    assert tolerance.sources == {"max_drop": "call", "confidence": "marker"}
    assert tolerance.limits() == {None: 0.04}


def test_defaults_come_from_the_table():
    tolerance = resolve_tolerance(None)
    assert tolerance == Tolerance()
    assert (tolerance.max_drop, tolerance.qat_limit, tolerance.confidence, tolerance.gate) == (
        default("max_drop"), default("qat_limit"), default("confidence"), default("gate"))
    assert Execution().resamples == default("bootstrap") == 10000


def test_an_error_rate_limit_replaces_max_drop_and_brings_its_own_qat_band():
    tolerance = resolve_tolerance(RUN, ("marker", {"max_error_increase": 0.2}))
    assert tolerance.max_drop is None and tolerance.limit == 0.2
    assert tolerance.qat_limit == 0.6  # 3x the limit: the run-wide qat_limit is in another unit
    assert tolerance.relative is False
    given = resolve_tolerance(RUN, ("marker", {"qat_limit": 0.4}), ("call", {"max_error_increase": 0.2}))
    assert given.qat_limit == 0.4  # a qat_limit given beside it, by a marker or call, applies
    back = resolve_tolerance(RUN, ("marker", {"max_error_increase": 0.2}), ("call", {"max_drop": 0.01}))
    assert (back.max_drop, back.max_error_increase, back.qat_limit) == (0.01, None, 0.05)


@pytest.mark.parametrize(("layers", "message"), [
    ((("call", {"max_error_increase": 0.2, "relative": True}),), "two different margins"),
    ((("call", {"max_error_increase": 0.2, "metrics": {"accuracy": 0.01}}),),
     "applies to one metric"),
])
def test_conflicts_the_resolver_refuses(layers, message):
    with pytest.raises(QuantGuardError, match=message):
        resolve_tolerance(RUN, *layers)


def test_one_metric_or_several_replace_each_other():
    several = resolve_tolerance(RUN, ("marker", {"metrics": {"accuracy": None, "macro_f1": 0.03}}))
    assert several.limits() == {"accuracy": 0.02, "macro_f1": 0.03}
    one = resolve_tolerance(RUN, ("marker", {"metrics": {"accuracy": None}}), ("call", {"metric": "top1"}))
    assert one.metrics is None and one.limits() == {"top1": 0.02}


@pytest.mark.parametrize(("given", "where", "message"), [
    ({"max_drop": -1}, "quant_compare", r"quant_compare\(max_drop=\.\.\.\): must be a number > 0"),
    ({"max_drop": -1}, None, r"^max_drop: must be a number > 0"),
    ({"max_dorp": 0.01}, "@quant_tolerance", r"unknown key\(s\) max_dorp \(did you mean 'max_drop'\?\); "
                                             r"the allowed keys are "
                                             r"max_drop, qat_limit, metric"),
    ({"max_drop": 0.01, "max_error_increase": 0.1}, None, "not both"),
    ({"metric": "accuracy", "metrics": {"top1": 0.01}}, None, "not both"),
    ({"gate": "lower"}, None, "gate: must be one of upper, point"),
])
def test_each_layer_is_checked_where_it_enters(given, where, message):
    with pytest.raises(QuantGuardError, match=message):
        check_layer(given, where)


def test_none_means_inherit():
    assert check_layer({"max_drop": None, "relative": None, "gate": "point"}) == {"gate": "point"}


def test_overrides_list_what_the_test_set_except_what_is_measured():
    tolerance = resolve_tolerance(RUN, ("marker", {"metric": "mae", "confidence": 0.99}),
                                  ("call", {"output": 0, "max_drop": 0.005}))
    assert tolerance.overrides() == [
        {"key": "confidence", "value": 0.99, "source": "marker"},
        {"key": "max_drop", "value": 0.005, "source": "call"}]


def test_execution_keywords_are_checked_and_named_as_given():
    assert make_execution(resamples=500, seed=None).resamples == 500
    assert make_execution(seed=None).seed == default("seed")
    with pytest.raises(QuantGuardError, match="resamples: must be a whole number >= 1"):
        make_execution(resamples=0)
    with pytest.raises(QuantGuardError, match="device: must be one of cpu, cuda"):
        make_execution(device="tpu")


def test_run_wide_options_resolve_default_ini_cli(tmp_path):
    cli = {"quant_max_drop": 0.03, "quant_data": "cli_data"}
    ini = {"quant_data": "ini_data", "quant_seed": " 7 ", "quant_max_drop": "0.02",
           "quant_policy_max_drop": "0.05", "quant_bootstrap": ""}
    options = resolve_options(cli.get, lambda key: ini.get(key, ""), cli_dir=tmp_path / "here",
                              ini_dir=tmp_path / "project")
    assert options.max_drop == 0.03  # the command line beats the ini file
    assert options.data == str(tmp_path / "here" / "cli_data")
    assert options.seed == 7 and options.policy_max_drop == 0.05
    assert options.bootstrap == 10000 and options.junit == "both"  # defaults from the table
    assert set(options.as_dict()) == {s.key for s in SETTINGS if "ini" in s.layers}
    assert options.execution(base_dir=Path("x")).resamples == 10000
    assert options.tolerance() == {"max_drop": 0.03, "qat_limit": 0.03, "confidence": 0.95,
                                   "min_reference": None, "batch_size": "auto",
                                   "gate": "upper"}
    ini["quant_confidence"] = "95"
    with pytest.raises(QuantGuardError, match=r"quant_confidence = '95' in pytest\.ini: must be a "
                                              r"number strictly between 0 and 1"):
        resolve_options(cli.get, lambda key: ini.get(key, ""), cli_dir=tmp_path, ini_dir=tmp_path,
                        ini_file=Path("pytest.ini"))
