"""A detection gate through the plugin: .npz detection shards and two real ONNX detectors in a
pytester project; the JSON and Markdown reports carry the per-class and per-size breakdowns
(docs/metrics.md, "Detection")."""

from __future__ import annotations

import json

import numpy as np
from detection_models import onnx_detector, write_detection_shards
from jsonschema import Draft202012Validator

from pytest_quantguard.reports.json_report import load_schema
from pytest_quantguard.simulation.detection import Degradation, detection_set

GATE = """
def test_detector(quant_compare):
    quant_compare("models/reference.onnx", "models/candidate.onnx", metric="map50",
                  max_drop=0.3, qat_limit=0.4, slice_max_drop=0.05)
"""


def test_detection_gate_reports_classes_and_sizes(pytester):
    """The candidate loses every detection of class 1: the mean stays within max_drop but the
    class's AP drop fails slice_max_drop; both reports show the class rows and the size rows."""
    drawn = detection_set(np.random.default_rng(4), 150, Degradation(0.0, 0.0, 0.0))
    candidate = drawn.reference.copy()
    candidate[(candidate[..., 5] == 1) & (candidate[..., 4] > 0)] = 0.0
    (pytester.path / "models").mkdir()
    onnx_detector(pytester.path / "models" / "reference.onnx", drawn.reference, separate=True)
    onnx_detector(pytester.path / "models" / "candidate.onnx", candidate)
    write_detection_shards(pytester.path / "det_val", drawn.labels, [0, 70, 150])
    pytester.makepyfile(test_gate=GATE)
    result = pytester.runpytest_subprocess(
        "--quant-data", "det_val", "--quant-bootstrap", "300", "--quant-report", "out/quant.json",
        "--quant-markdown", "out/quant.md", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*quantguard verdict: stay-fp16*"])
    report = json.loads((pytester.path / "out" / "quant.json").read_text())
    Draft202012Validator(load_schema()).validate(report)
    (record,) = report["comparisons"]
    assert record["metric"] == "map50" and record["verdict"] == "stay-fp16"
    rows = record["details"]["per_class"]
    assert rows[0]["label"] == 1 and rows[0]["verdict"] == "stay-fp16"
    assert {row["slice"] for row in record["details"]["per_size"]} == {"small", "medium", "large"}
    markdown = (pytester.path / "out" / "quant.md").read_text()
    assert "classes that lost most (AP (map50)" in markdown
    assert "object sizes that lost most (map50" in markdown
