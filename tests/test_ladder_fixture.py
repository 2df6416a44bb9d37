"""The ``quant_ladder`` fixture (docs/ladder.md, "From pytest"): the ladder inside a test, on the
example's digits CNN calibrated on the training half of scikit-learn's digits, through pytest
(pytester, in a subprocess: the quantizers import onnxruntime's transformers)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from pytest_quantguard.reports.json_report import load_schema
from pytest_quantguard.stats.ladder import confidence_for


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    # the example's split (example_project/make_models.py): the held-out half is prod_val
    return train_test_split(images, digits.target.astype(np.int64), test_size=0.5, random_state=0,
                            stratify=digits.target)


@pytest.fixture
def ladder_project(pytester, example):
    """The example's models and prod_val, a calibration set of 256 training images, and one of
    200 training images plus 18 validation images (2 % of prod_val's 899)."""
    train, held, train_labels, held_labels = _digits()
    for folder, inputs, labels in (
            ("cal", train[:256], train_labels[:256]),
            ("leaky_cal", np.concatenate([train[:200], held[:18]]),
             np.concatenate([train_labels[:200], held_labels[:18]]))):
        (pytester.path / folder).mkdir()
        np.savez(pytester.path / folder / "calibration.npz", inputs=inputs, labels=labels)
    return pytester


RECOMMENDS = """
from pathlib import Path

def test_digits_ladder(quant_ladder):
    ladder = quant_ladder("models/fp32.onnx", calibration="cal",
                          schemes="fp16,int8-dynamic,int8-static")
    assert ladder.recommendation in ("int8-dynamic", "int8-static")
    assert ladder.model.is_file() and ladder.model.suffix == ".onnx"
    assert [rung["scheme"] for rung in ladder.rungs] == ["int8-dynamic", "int8-static"]
    assert ladder.summary["unjudged"] == ["fp16"]
    assert (ladder.folder / "ladder.json").is_file()
"""


def test_the_ladder_recommends_a_rung_and_every_report_shows_the_rungs(ladder_project):
    pytester = ladder_project
    pytester.makepyfile(test_ladder=RECOMMENDS)
    result = pytester.runpytest_subprocess(
        "--quant-data", "prod_val", "--quant-bootstrap", "2000", "-p", "no:cacheprovider",
        "--junitxml", "out/junit.xml", "--quant-report", "out/quant.json",
        "--quant-markdown", "out/quant.md")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "out" / "quant.json").read_text())
    Draft202012Validator(load_schema()).validate(report)
    records = {record["id"]: record for record in report["comparisons"]}
    rungs = ["int8-dynamic", "int8-static"]
    assert sorted(records) == [f"test_ladder.py::test_digits_ladder::{s}" for s in rungs]
    confidence = confidence_for(0.025 / 2)  # two INT8 rungs share the level's alpha: 0.975
    recommended = [r["name"] for r in records.values() if r["details"]["ladder"]["recommended"]]
    assert len(recommended) == 1
    properties = {p.get("name"): p.get("value")
                  for p in ET.parse(pytester.path / "out" / "junit.xml").iter("property")}
    stdout = result.stdout.str()
    for record in records.values():
        assert record["interval"]["confidence"] == pytest.approx(confidence)
        ladder = record["details"]["ladder"]
        assert ladder == {"level": 1, "alpha": 0.0125, "confidence": ladder["confidence"],
                          "shipped": record["verdict"] == "ship",
                          "recommended": record["name"] == recommended[0],
                          "ladder_passed": True}
        assert ladder["confidence"] == pytest.approx(confidence)
        assert properties[f"quant.{record['name']}.confidence"] == repr(ladder["confidence"])
        assert properties[f"quant.{record['name']}.verdict"] == record["verdict"]
        row = next(line for line in stdout.splitlines() if line.startswith(record["id"]))
        assert "97.5%" in row and record["verdict"] in row
    assert "test_digits_ladder::int8-static" in (pytester.path / "out" / "quant.md").read_text()
    assert report["summary"]["passed"] is True


NOTHING_SHIPS = """
def test_nothing_ships(quant_ladder):
    quant_ladder("models/fp32.onnx", calibration="cal", schemes="int8-static,int4-weight-only",
                 max_drop=0.0001)
"""


def test_a_ladder_where_nothing_ships_fails_the_test_listing_the_rungs(ladder_project):
    pytester = ladder_project
    pytester.makepyfile(test_ladder=NOTHING_SHIPS)
    result = pytester.runpytest_subprocess("--quant-data", "prod_val", "--quant-bootstrap", "2000",
                                           "-p", "no:cacheprovider", "--quant-report", "out.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*quantguard: quant_ladder: no rung ships; gatekeeping with propagated alpha keeps the "
        "chance of shipping any rung whose true drop is at or over the limit at one-sided 0.025*",
        "*ladder (one-sided alpha 0.025 over every rung; *",
        "*L1 int8-static: * at 0.95, *",
        "*L2 int4-weight-only: not tested (its level received no alpha), * bytes*",
        "*recommendation: none ships*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    report = json.loads((pytester.path / "out.json").read_text())
    (record,) = report["comparisons"]  # the untested rung is no comparison
    assert record["id"] == "test_ladder.py::test_nothing_ships::int8-static"
    assert record["details"]["ladder"]["shipped"] is False
    assert record["details"]["ladder"]["ladder_passed"] is False
    assert report["summary"]["passed"] is False
    assert record["verdict"] != "ship" and record["outcome"] == "failed"


BAD_INPUTS = """
import pytest

@pytest.mark.parametrize("model, calibration, schemes", [
    ("models/fp32.onnx", "no_such_folder", "int8-static"),
    ("prod_val/digits_heldout.npz", "cal", "int8-static"),
    ("models/fp32.onnx", "leaky_cal", "int8-static"),
    ("models/fp32.onnx", "prod_val", "int8-static"),
    ("models/fp32.onnx", "cal", "fp16"),
    ("models/fp32.onnx", "cal", "int3"),
], ids=["missing-calibration", "not-onnx", "overlap", "same-data", "fp16-on-cpu", "bad-scheme"])
def test_bad(quant_ladder, model, calibration, schemes):
    quant_ladder(model, calibration=calibration, schemes=schemes)

def test_confidence_is_refused(quant_ladder):
    quant_ladder("models/fp32.onnx", calibration="cal", confidence=0.9)
"""


def test_bad_input_fails_the_test_naming_the_argument(ladder_project):
    pytester = ladder_project
    pytester.makepyfile(test_ladder=BAD_INPUTS)
    result = pytester.runpytest_subprocess("--quant-data", "prod_val", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=7)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.fnmatch_lines_random([
        "*quantguard: quant_ladder: *not found: */no_such_folder. * with calibration= of "
        "quant_ladder (relative to the rootdir)",
        "*quantguard: quant_ladder: model='prod_val/digits_heldout.npz': not an .onnx file*",
        "*quantguard: quant_ladder: calibration= of quant_ladder leaky_cal and the test's data "
        "prod_val: 18 of 899 validation rows (2.00%) *over the 1% "
        "allowed*",
        "*quantguard: quant_ladder: calibration= of quant_ladder prod_val and the test's data "
        "prod_val are the same data (equal digests)*",
        "*quantguard: quant_ladder: no rung can be judged here (FP16 on a CPU runs as FP32); add an "
        "INT8 scheme to schemes= of quant_ladder",
        "*quantguard: quant_ladder: schemes= of quant_ladder: unknown scheme(s) int3*",
        "*quantguard: quant_ladder: confidence= is not taken*"])


TWO_LADDERS = """
def test_two_named(quant_ladder):
    first = quant_ladder("models/fp32.onnx", calibration="cal", schemes="int8-static", name="a")
    second = quant_ladder("models/fp32.onnx", calibration="cal", schemes="int8-static", name="b")
    assert first.folder.name == "quant_ladder-a" and second.folder.name == "quant_ladder-b"

def test_two_unnamed(quant_ladder):
    quant_ladder("models/fp32.onnx", calibration="cal", schemes="int8-static")
    quant_ladder("models/fp32.onnx", calibration="cal", schemes="int8-static")
"""


def test_two_ladders_in_one_test_need_their_own_names(ladder_project):
    pytester = ladder_project
    pytester.makepyfile(test_ladder=TWO_LADDERS)
    result = pytester.runpytest_subprocess("--quant-data", "prod_val", "--quant-bootstrap", "2000",
                                           "-p", "no:cacheprovider", "--quant-report", "out.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*quantguard: quant_ladder: this test runs more than one ladder: "
                                 "give every call its own name=*"])
    ids = sorted(record["id"] for record in json.loads((pytester.path / "out.json").read_text())[
        "comparisons"])
    assert ids == ["test_ladder.py::test_two_named::a.int8-static",
                   "test_ladder.py::test_two_named::b.int8-static",
                   "test_ladder.py::test_two_unnamed::int8-static"]
