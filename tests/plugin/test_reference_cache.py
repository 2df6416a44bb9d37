"""The reference model's outputs: reused within a run, cached between runs — shown by counting
the reference model's onnxruntime runs, not by trusting the status flag alone."""

from __future__ import annotations

from pathlib import Path

import pytest

# Every InferenceSession.run is logged with the model's file name, so a test can see which models
# actually ran (the pytester run is a subprocess: the patch lives in its conftest).
COUNTING_CONFTEST = """
import os
import onnxruntime

_run = onnxruntime.InferenceSession.run


def _counting_run(self, *args, **kwargs):
    with open(os.environ["QUANTGUARD_RUN_LOG"], "a") as log:
        log.write(os.path.basename(str(self._model_path)) + "\\n")
    return _run(self, *args, **kwargs)


onnxruntime.InferenceSession.run = _counting_run
"""

TWO_CANDIDATES = """
def test_two_candidates(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", name="int8")
    try:
        quant_compare("models/fp32.onnx", "models/int2.onnx", name="int2")
    except BaseException:
        pass  # int2 fails its gate; only the runs matter here
"""


@pytest.fixture
def counted(pytester, example, monkeypatch):
    log = pytester.path / "runs.log"
    monkeypatch.setenv("QUANTGUARD_RUN_LOG", str(log))
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(test_two=TWO_CANDIDATES)

    def run(*args: str) -> tuple[pytest.RunResult, list[str]]:
        log.write_text("")
        result = pytester.runpytest_subprocess("--quant-data", "prod_val", "--quant-batch-size",
                                               "300", *args)
        return result, log.read_text().split()

    return run


def test_reference_runs_once_per_run_and_not_at_all_on_a_hit(counted, pytester):
    first, runs = counted()
    first.stdout.fnmatch_lines(["*::int2 *hit*", "*::int8 *miss*"])  # reused within the run
    assert runs.count("fp32.onnx") == 3  # 899 samples in batches of 300: one pass, not two

    second, runs = counted()
    second.stdout.fnmatch_lines(["*::int2 *hit*", "*::int8 *hit*"])
    assert runs.count("fp32.onnx") == 0 and runs.count("int8.onnx") == 3

    no_cache, runs = counted("--quant-no-cache")  # off, but still one reference pass per run
    no_cache.stdout.fnmatch_lines(["*::int2 *off*", "*::int8 *off*"])
    assert runs.count("fp32.onnx") == 3

    no_provider, runs = counted("-p", "no:cacheprovider")
    no_provider.stdout.fnmatch_lines(["*::int8 *off*"])
    assert runs.count("fp32.onnx") == 3

    entries = list(Path(pytester.path, ".pytest_cache", "d", "quantguard").glob("*.npy"))
    assert entries
    for entry in entries:
        entry.write_bytes(b"not an npy file")
    corrupt, runs = counted()  # a corrupt entry is a miss, never an error
    corrupt.stdout.fnmatch_lines(["*::int8 *miss*"])
    assert corrupt.ret == 0 and runs.count("fp32.onnx") == 3
    _, runs = counted()
    assert runs.count("fp32.onnx") == 0  # rewritten

    cleared, runs = counted("--cache-clear")
    cleared.stdout.fnmatch_lines(["*::int8 *miss*"])
    assert runs.count("fp32.onnx") == 3


def test_ini_turns_the_cache_off(counted, pytester):
    pytester.makeini("[pytest]\nquant_cache = false\n")
    counted()
    result, runs = counted()
    result.stdout.fnmatch_lines(["*::int8 *off*"])
    assert runs.count("fp32.onnx") == 3


def test_plain_callables_are_never_cached():
    import numpy as np

    from pytest_quantguard.cache import ReferenceCache
    from pytest_quantguard.comparison import run
    from pytest_quantguard.settings import Execution, Tolerance

    x = np.eye(4)[np.arange(40) % 4] + np.arange(40)[:, None] * 1e-3  # 40 distinct samples
    cache = ReferenceCache(None)
    result = run(lambda b: b, lambda b: b, (x, np.arange(40) % 4), Tolerance(),
                 Execution(resamples=100, cache=cache))
    assert result.runtime["cache"] == "off" and result.runtime["reference_ran"] is True
    assert cache.memory == {}
