"""Margins through the plugin: max_error_increase in markers and calls, how it layers with
max_drop, and a grouped validation folder."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

LAYERS = """
import pytest

pytestmark = pytest.mark.quant_tolerance(max_error_increase=0.5)

FP32, INT8 = "models/fp32.onnx", "models/int8.onnx"


def test_module_limit_applies(quant_compare):
    result = quant_compare(FP32, INT8)
    assert (result.max_error_increase, result.max_drop) == (0.5, 0.5)
    assert result.qat_limit == 1.5  # --quant-qat-limit is in accuracy points: not applied here


@pytest.mark.quant_tolerance(max_drop=0.02)
def test_a_nearer_max_drop_replaces_it(quant_compare):
    result = quant_compare(FP32, INT8)
    assert result.max_error_increase is None
    assert (result.max_drop, result.qat_limit) == (0.02, 0.05)


def test_call_keywords_win(quant_compare):
    result = quant_compare(FP32, INT8, max_error_increase=0.3, qat_limit=2.0)
    assert (result.max_error_increase, result.qat_limit) == (0.3, 2.0)


@pytest.mark.quant_tolerance(max_drop=0.01, max_error_increase=0.2)
def test_both_in_one_marker_errors(quant_compare):
    quant_compare(FP32, INT8)
"""


def test_max_error_increase_layers_with_max_drop(pytester, example, plugin_args):
    pytester.makepyfile(test_layers=LAYERS)
    result = pytester.runpytest_subprocess("--quant-data", "prod_val", "--quant-qat-limit", "0.05",
                                           *plugin_args)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*@quant_tolerance: give max_drop or max_error_increase, not both*"])


GROUPED = """
def test_grouped(quant_compare):
    result = quant_compare("models/fp32.onnx", "models/int2.onnx")
    assert result.method == "cluster-bca"
    assert result.n_groups == 90
"""


def test_a_grouped_folder_gives_a_clustered_interval(pytester, example):
    source = np.load(example / "prod_val" / "digits_heldout.npz")
    folder = pytester.path / "grouped"
    folder.mkdir()
    n = len(source["labels"])
    np.savez(folder / "part.npz", inputs=source["inputs"], labels=source["labels"],
             writer=np.arange(n) % 90)  # e.g. 90 writers, ten digits each
    (folder / "quantguard.toml").write_text('groups = "writer"\n')
    pytester.makepyfile(test_grouped_folder=GROUPED)
    result = pytester.runpytest_subprocess("--quant-data", "grouped", "--junitxml", "junit.xml")
    result.assert_outcomes(failed=1)  # int2 is stopped: stay-fp16
    result.stdout.fnmatch_lines(["*stay-fp16*", "*cluster-bca: the 90 groups are resampled*"])
    properties = {p.get("name"): p.get("value")
                  for p in ET.parse(pytester.path / "junit.xml").iter("property")}
    assert properties["quant.method"] == "cluster-bca"


@pytest.mark.parametrize(("manifest", "match"), [
    ('groups = "doc"\n', "*no group array 'doc'*"),
    ("groups = 3\n", "*groups must be a name (string)*"),
])
def test_bad_group_manifests_name_the_file(pytester, example, manifest, match):
    (example / "prod_val" / "quantguard.toml").write_text(manifest)
    pytester.makepyfile(test_grouped_folder=GROUPED)
    result = pytester.runpytest_subprocess("--quant-data", "prod_val")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([match])
