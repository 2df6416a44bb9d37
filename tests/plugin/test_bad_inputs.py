"""Every bad input ends the run with a clear message naming the file and the fix: exit 1 or 4,
never 3 (INTERNALERROR), never a raw numpy/onnxruntime traceback, never a silent pass."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest


def _evil(tmp: pathlib.Path) -> None:
    objects = np.empty(2, dtype=object)
    objects[:] = [{"a": 1}, {"b": 2}]
    np.savez(tmp / "data" / "evil.npz", inputs=objects, labels=np.zeros(2))


def _digits(tmp: pathlib.Path):
    return np.load(tmp / "prod_val" / "digits_heldout.npz")


SCENARIOS = {
    "missing data folder": (lambda t: None, "--quant-data=nowhere",
                            "*validation data folder not found: */nowhere*"),
    "empty folder": (lambda t: None, "--quant-data=data", "*data: no validation data found (the folder "
                     "has no .npz files); write the samples as .npz shards*"),
    "classification npz without labels": (
        lambda t: (np.savez(t / "data" / "x.npz", inputs=_digits(t)["inputs"]),
                   (t / "data" / "quantguard.toml").write_text('task = "classification"\n')),
        "--quant-data=data", "*x.npz: metric 'accuracy' needs labels, and the validation set has "
        "none*"),
    "label count != input count": (
        lambda t: np.savez(t / "data" / "x.npz", inputs=_digits(t)["inputs"],
                           labels=_digits(t)["labels"][:-3]),
        "--quant-data=data", "*x.npz: 896 labels for 899 input samples; save exactly one label*"),
    "pickled object array": (_evil, "--quant-data=data", "*evil.npz: array 'inputs' holds Python "
                             "objects (a pickled object array); quantguard never unpickles data*"),
    "model input does not fit": (
        lambda t: np.savez(t / "data" / "x.npz", inputs=_digits(t)["inputs"].reshape(-1, 64),
                           labels=_digits(t)["labels"]),
        "--quant-data=data", "*fp32.onnx: model input 'input' expects shape [[]'batch', 1, 8, 8] but the "
        "data array 'inputs' has samples of shape [[]64]*reshape the data*"),
    "unreadable onnx": (lambda t: (t / "models" / "int8.onnx").write_bytes(b"\x08\x07garbage" * 10),
                        "--quant-data=prod_val", "*int8.onnx: onnxruntime cannot load this model*"),
    "missing model file": (lambda t: (t / "models" / "int8.onnx").unlink(), "--quant-data=prod_val",
                           "*candidate model file not found: */models/int8.onnx*"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_bad_input_gives_a_clear_failure(pytester, example, scenario):
    setup, option, expected = SCENARIOS[scenario]
    (example / "data").mkdir()
    setup(example)
    pytester.makepyfile(test_bad="""
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    result = pytester.runpytest(option)
    assert result.ret in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.USAGE_ERROR)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([expected])
    for forbidden in ("*INTERNALERROR*", "*Traceback*", "*During handling*", "*site-packages/numpy*",
                      "*site-packages/onnxruntime*", "*pytest_quantguard/*.py:*"):
        result.stdout.no_fnmatch_line(forbidden)


def test_nan_in_a_model_output_fails_clearly(pytester, example):
    pytester.makepyfile(test_nan="""
import numpy as np

def broken(batch):
    logits = np.ones((len(batch), 10))
    logits[5] = np.inf
    return logits

def test_broken(quant_compare):
    quant_compare("models/fp32.onnx", broken)
""")
    result = pytester.runpytest("--quant-data=prod_val")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*candidate test_nan.broken: NaN or Inf in output 'output' for 1 of "
                                 "899 samples in this batch (first: sample 5 of */digits_heldout.npz)*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_missing_backend_fails_naming_the_extra(pytester, example):
    # onnxruntime made unimportable for this run only, as if the extra were not installed
    pytester.makeconftest("import sys\nsys.modules['onnxruntime'] = None\n")
    pytester.makepyfile(test_backend="""
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")
""")
    result = pytester.runpytest_subprocess("--quant-data=prod_val")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the ONNX model */fp32.onnx needs onnxruntime, which is not "
                                 "installed. Install it with: pip install 'pytest-quantguard[[]onnx]'*"])
    result.stdout.no_fnmatch_line("*skipped*")


HEAVY = ("torch", "onnxruntime", "onnx", "scipy", "matplotlib")


def test_loading_the_plugin_imports_no_backend_and_not_even_numpy(pytester):
    # The plugin loads in every pytest run where the package is installed.
    pytester.makepyfile(test_modules=f"""
import sys

def test_nothing_heavy_loaded(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("quantguard")
    loaded = sorted(name for name in sys.modules
                    if name.split(".")[0] in {(*HEAVY, "numpy")!r})
    assert loaded == []
""")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_a_session_without_comparisons_imports_not_even_numpy_at_its_end(pytester):
    """The end-of-session reports run in every pytest run (--collect-only of an unrelated suite
    included): they too stay clear of numpy when no comparison ran."""
    pytester.makepyfile(test_modules="def test_nothing():\n    pass\n")
    pytester.makeconftest(f"""
import sys

def pytest_unconfigure(config):
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in {(*HEAVY, "numpy")!r})
    print("HEAVY MODULES", loaded)
""")
    result = pytester.runpytest_subprocess("--collect-only", "-s")
    result.stdout.fnmatch_lines(["HEAVY MODULES []"])


def _modules_after(code: str, cwd) -> list[str]:
    import subprocess

    probe = f"{code}; import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=cwd)
    return eval(out.stdout)  # a printed list of str


def test_importing_the_public_names_imports_no_backend(tmp_path):
    assert _modules_after("import pytest_quantguard", tmp_path) == []
    assert _modules_after("from pytest_quantguard import compare, plan, quant_tolerance, Comparison, "
                          "Interval, Verdict, ValidationSet, QuantGuardWarning, register_metric, "
                          "__version__", tmp_path) == []


def test_root_logger_is_left_alone_and_onnxruntime_is_quiet(pytester, example):
    import logging

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    pytester.makepyfile(test_quiet="""
def test_int2(quant_compare):
    quant_compare("models/fp32.onnx", "models/int2.onnx", max_drop=0.2, qat_limit=0.5)
""")
    result = pytester.runpytest("--quant-data=prod_val", "-s",
                                "-Wignore::pytest_quantguard.QuantGuardWarning")  # 0.2 is meant
    result.assert_outcomes(passed=1)
    assert (root.level, list(root.handlers)) == before
    for noise in ("*onnxruntime*W:*", "*[[]W:onnxruntime*", "*[[]I:onnxruntime*"):
        result.stdout.no_fnmatch_line(noise)
        result.stderr.no_fnmatch_line(noise)
