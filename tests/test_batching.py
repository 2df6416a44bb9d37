"""Batches sized by memory: the estimate, the power of two, its caps, the budget's parsing, the
same batch in every process, and the batch recorded in every report (docs/models.md, "Batch size")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import MODELS, PROD_VAL, REPO
from pytest_quantguard import compare
from pytest_quantguard.batching import (
    Footprint,
    auto_batch,
    bytes_per_sample,
    choose_batch,
    first_sample_shapes,
    peak_live_bytes,
)
from pytest_quantguard.comparison import run
from pytest_quantguard.data import ValidationSet
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.runners import make_runner
from pytest_quantguard.settings import Execution, Tolerance, make_execution
from pytest_quantguard.validators import batch_size, memory_size

MIB = 2**20


@pytest.mark.parametrize(("given", "expected"), [
    ("512MiB", 512 * MIB), ("1GiB", 2**30), ("1.5GB", 1_500_000_000), ("4096", 4096),
    (4096, 4096), ("64 kib", 65536), ("2KB", 2000)])
def test_memory_sizes_read_with_their_units(given, expected):
    assert memory_size(given) == expected


@pytest.mark.parametrize("given", ["lots", "0", "-1MiB", "MiB", "1.5PiB", True, "nan"])
def test_a_bad_memory_size_says_what_is_accepted(given):
    with pytest.raises(ValueError, match="512MiB, 1GiB"):
        memory_size(given)


def test_batch_size_is_auto_or_a_positive_number():
    assert batch_size("auto") == "auto" and batch_size("AUTO ") == "auto" and batch_size("8") == 8
    for bad in ("0", "big", 2.5):
        with pytest.raises(ValueError, match="'auto' or a whole number"):
            batch_size(bad)
    with pytest.raises(QuantGuardError, match="batch_size"):
        make_execution(batch_size="many")


def test_the_largest_power_of_two_that_fits_capped_by_the_set_and_a_fixed_batch():
    assert auto_batch(1000, 64_000, 10_000) == 64
    assert auto_batch(1000, 63_999, 10_000) == 32  # 64 samples need 64,000 bytes
    assert auto_batch(10, 10 * MIB, 899) == 899  # the whole set in one batch, not 512
    assert auto_batch(10, 10 * MIB, 899, [None, 7]) == 7  # a model's fixed batch dimension
    assert auto_batch(10**9, MIB, 100) == 1  # never below one sample


def test_bytes_per_sample_holds_both_outputs_and_the_larger_activations():
    footprints = [Footprint(outputs=40, activations=1000), Footprint(outputs=40, activations=300)]
    assert bytes_per_sample(256, footprints) == 2 * 256 + 80 + 1000
    assert bytes_per_sample(256, [None]) == 2 * 256 + 256 + 16 * 256  # the callables' rule


def test_peak_live_bytes_frees_each_value_after_its_last_reader():
    # x -> a -> b -> y, with a also read at the end: a stays alive across b
    nodes = [(["x"], ["a"]), (["a"], ["b"]), (["a", "b"], ["y"])]
    sizes = {"x": 1, "a": 10, "b": 100, "y": 1000}
    assert peak_live_bytes(nodes, sizes, ["x"], ["y"]) == 10 + 100 + 1000
    assert peak_live_bytes([(["x"], ["a"]), (["a"], ["b"]), (["b"], ["y"])], sizes, [], []) == 1100


def test_the_onnx_estimate_reads_the_graph_shapes():
    """The static INT8 model's graph has shapes (value_info): its first conv's output, 16 x 8 x 8
    floats, and the rest, are counted; the estimate grows with the data's samples."""
    runner = make_runner(MODELS / "int8.onnx")
    shapes = first_sample_shapes(ValidationSet.from_folder(PROD_VAL))
    footprint = runner.memory_per_sample(shapes)
    assert footprint.outputs == 10 * 4
    assert footprint.activations >= 16 * 8 * 8 * 4


def comparison_batch(memory: int) -> int:
    result = run(MODELS / "fp32.onnx", MODELS / "int8.onnx", PROD_VAL, Tolerance(),
                 Execution(memory=memory, resamples=200))
    return result.runtime["batch_size"]


def test_a_smaller_budget_gives_a_smaller_batch_the_same_in_another_process():
    """Estimated, not measured: the same batch in this process and in a fresh one."""
    here = comparison_batch(MIB)
    assert here == 32  # ~16.6 KB per sample: 64 would need more than 1 MiB
    assert comparison_batch(512 * MIB) == 899
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from test_batching import comparison_batch; "
            f"print(comparison_batch({MIB}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "tests")], capture_output=True,
                         text=True, env=env, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) == here


def test_a_pinned_batch_is_what_the_models_see():
    shapes = {"input": ((1, 8, 8), np.dtype(np.float32))}
    runner = make_runner(MODELS / "fp32.onnx")
    batch = choose_batch(3, 512 * MIB, 899, shapes, [("reference", runner)])
    assert (batch.size, batch.auto, batch.pipe % 3) == (3, False, 0)
    assert choose_batch(5000, MIB, 899, shapes, [("reference", runner)]).size == 899


def test_the_budget_is_a_usage_error_naming_the_option(pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--quant-memory", "lots")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--quant-memory*512MiB, 1GiB*'lots'*"])
    pytester.makeini("[pytest]\nquant_memory = 12 parsecs\n")
    result = pytester.runpytest()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*quant_memory = '12 parsecs'*512MiB*"])


def test_the_batch_is_recorded_in_json_junit_and_shown_with_v(pytester, example, plugin_args):
    pytester.makepyfile("""
        def test_int8(quant_compare):
            quant_compare("models/fp32.onnx", "models/int8.onnx")
    """)
    result = pytester.runpytest("--quant-data", "prod_val", "--quant-memory", "1MiB",
                                "--quant-report", "report.json", "--junitxml", "junit.xml",
                                "-v", "-p", "no:cacheprovider", *plugin_args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["quantguard: test_*::test_int8: batch 32 (auto: *per sample, "
                                 "budget 1 MiB)"])
    record = json.loads((example / "report.json").read_text())["comparisons"][0]
    assert (record["runtime"]["batch_size"], record["runtime"]["batch"]) == (32, "auto")
    assert "batch_dependent" not in record["runtime"]  # static models: nothing said
    properties = {p.get("name"): p.get("value")
                  for p in ET.parse(example / "junit.xml").iter("property")}
    assert properties["quant.batch_size"] == "32"
    assert "quant.batch_dependent" not in properties


def test_compare_takes_the_batch_as_a_keyword():
    result = compare(MODELS / "fp32.onnx", MODELS / "int8.onnx", data=PROD_VAL, batch_size=100,
                     resamples=200)
    assert (result.runtime["batch_size"], result.runtime["batch"]) == (100, "pinned")
