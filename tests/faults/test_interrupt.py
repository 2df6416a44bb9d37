"""Ctrl-C through a whole pytest session (docs/development.md, "Fuzzing and faults"): a real
`pytest` gating the example's onnxruntime models with the JSON, Markdown and plot reports asked
for, SIGINT sent to its process group (as a terminal's Ctrl-C is) right after the reference cache
is written, or in the middle of writing the JSON report or the plot. The run stops as interrupted
(exit 2), with no INTERNALERROR, no temporary file, and no report a reader would take as the whole
run's: the file being written is not there, those written before it are whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from test_faults import GATE, REPO  # the example's two comparisons

# Where the signal comes from: the process group gets SIGINT (every xdist worker too), once.
CONFTEST = """
import os
import signal
import time

import pytest

from pytest_quantguard.cache import ReferenceCache

STAGE = os.environ["QUANTGUARD_SIGINT_AT"]


def ctrl_c(*args, **kwargs):
    os.killpg(os.getpgid(0), signal.SIGINT)
    time.sleep(3)  # the signal lands here (an xdist worker may ignore it: the controller stops)


if STAGE == "cache":
    put = ReferenceCache.put

    def put_then_ctrl_c(self, *args, **kwargs):
        put(self, *args, **kwargs)
        ctrl_c()

    ReferenceCache.put = put_then_ctrl_c


def pytest_runtest_logreport(report):
    if STAGE == "test" and report.when == "teardown" and report.nodeid.endswith("test_int8"):
        ctrl_c()  # one comparison done and recorded, the other not run


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session):
    if STAGE in ("report", "plot") and not hasattr(session.config, "workerinput"):
        fsync, writes = os.fsync, []

        def fsync_until_the_file(fd):  # the JSON report, then the Markdown, then the plot
            writes.append(fd)
            if len(writes) == (1 if STAGE == "report" else 3):
                ctrl_c()  # its bytes are written, not yet renamed into place
            fsync(fd)

        os.fsync = fsync_until_the_file
    yield
"""
REPORTS = ("gate.json", "gate.md", "gate.png")
WHOLE = {"cache": 0, "test": 0, "report": 0, "plot": 2}  # how many reports are whole before the signal


@pytest.mark.parametrize("stage", ["cache", "test", "report", "plot"])
def test_ctrl_c_during_a_gated_session_leaves_no_report_taken_as_whole(example, plugin_args, stage):
    pytest.importorskip("matplotlib")
    (example / "test_gate.py").write_text(GATE)
    (example / "conftest.py").write_text(CONFTEST)
    env = {**os.environ, "PYTHONPATH": str(REPO), "QUANTGUARD_SIGINT_AT": stage}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "--quant-data", "prod_val",
         "--quant-report", "gate.json", "--quant-markdown", "gate.md", "--quant-plot", "gate.png",
         *plugin_args], cwd=example, env=env, capture_output=True, text=True, timeout=300,
        start_new_session=True)  # its own process group: the signal stays inside the run
    output = result.stdout + result.stderr
    # pytest's exit status; a Ctrl-C while pytest itself finishes the session ends Python on
    # KeyboardInterrupt, killed by SIGINT (130 in a shell)
    assert result.returncode in (pytest.ExitCode.INTERRUPTED, -signal.SIGINT), output
    assert "INTERNALERROR" not in output and "KeyboardInterrupt" in output, output
    assert not [path for path in example.rglob("*.tmp")], output
    left = [name for name in REPORTS if (example / name).exists()]
    assert left == list(REPORTS[:WHOLE[stage]]), output  # the file being written is not there
    if left:  # those written before the signal are the whole run's: both comparisons
        assert len(json.loads((example / "gate.json").read_text())["comparisons"]) == 2
        assert "again" in (example / "gate.md").read_text()
    for entry in (example / ".pytest_cache").rglob("*.npy"):  # a cache entry left is whole
        assert len(np.load(entry, allow_pickle=False)) == 899
