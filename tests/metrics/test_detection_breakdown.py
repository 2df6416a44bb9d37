"""Detection mAP's per-class AP and per-size mAP drops: rows with intervals from the overall
interval's resamples, in the details and the message, judged by slice_max_drop
(docs/intervals.md, "Detection mAP")."""

from __future__ import annotations

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.data.detection import DETECTION
from pytest_quantguard.metrics.base import Context
from pytest_quantguard.metrics.detection import MAP50, DetectionScores
from pytest_quantguard.reports.json_report import build_report, load_schema
from pytest_quantguard.simulation.detection import Degradation, detection_set

N = 300


def lose_class(detections: np.ndarray, cls: int) -> np.ndarray:
    """The detections with every one of class ``cls`` turned into padding (score 0)."""
    out = detections.copy()
    out[(out[..., 5] == cls) & (out[..., 4] > 0)] = 0.0
    return out


def models(reference_out, candidate_out):
    return (lambda batch: reference_out[batch[:, 0].astype(int)],
            lambda batch: candidate_out[batch[:, 0].astype(int)])


@pytest.fixture(scope="module")
def drawn():
    return detection_set(np.random.default_rng(4), N, Degradation(0.0, 0.0, 0.0))


def test_the_lost_class_leads_the_rows_and_sizes_are_judged(drawn):
    """A candidate that loses class 1 entirely: its row comes first with a drop equal to its
    reference AP and an interval above zero; the other classes did not change (degenerate rows);
    every size lost some mAP; the message names both; slice_max_drop judges the rows."""
    candidate = lose_class(drawn.reference, 1)
    reference_fn, candidate_fn = models(drawn.reference, candidate)
    data = ValidationSet(np.arange(N, dtype=np.float32)[:, None], drawn.labels, task=DETECTION)
    result = compare(reference_fn, candidate_fn, data=data, metric="map50", max_drop=0.08, qat_limit=0.1,
                     resamples=300, slice_max_drop=0.05)
    rows = result.details["per_class"]
    first = rows[0]
    assert first["label"] == 1 and first["candidate"] == 0.0
    assert first["drop"] == pytest.approx(first["reference"]) and first["low"] > 0.05
    assert first["verdict"] == "stay-fp16"
    others = [row for row in rows if row["label"] != 1]
    assert others and all(row["drop"] == 0 and row["method"] == "degenerate-fallback"
                          for row in others)
    assert result.details["per_class_metric"] == "AP (map50)"
    sizes = {row["slice"]: row for row in result.details["per_size"]}
    assert set(sizes) == {"small", "medium", "large"}
    assert all(row["low"] <= row["drop"] <= row["high"] and row["drop"] > 0
               for row in sizes.values())
    # the class's loss fails the comparison through slice_max_drop, not through the mean
    assert result.verdict.value == "stay-fp16" and "class 1" in result.message
    assert "classes that lost most (AP (map50), by upper bound): 1 (n=" in result.message
    assert "object sizes that lost most (map50, by upper bound):" in result.message
    # the record, breakdowns included, is a valid JSON report record
    report = build_report([result.to_dict()], settings={"seed": 0, "confidence": 0.95,
                                                        "max_drop": 0.01, "inconclusive": "fail"},
                          policy={"max_drop": 0.02, "max_error_increase": None,
                                  "min_confidence": None, "allow_point_gate": True,
                                  "require_comparisons": 0, "comparisons": 1, "satisfied": True,
                                  "violations": []}, created="2024-05-01T12:00:00+00:00", host="h",
                          commit="0" * 40)
    validator = Draft202012Validator(load_schema())
    assert [error.message for error in validator.iter_errors(report)] == []


def test_rows_use_the_overall_draws_and_class_names(drawn):
    """The size rows' resamples are the overall interval's: an evaluation with breakdowns draws
    the same overall interval as one without; class names label the rows."""
    candidate = detection_set(np.random.default_rng(5), N).candidate
    scores = DetectionScores(drawn.reference, candidate, drawn.labels, MAP50.thresholds, "map50",
                             class_names=tuple(f"c{i}" for i in range(20)))
    plain = DetectionScores(drawn.reference, candidate, drawn.labels, MAP50.thresholds, "map50",
                            breakdowns=False)

    def context():
        return Context(margin="absolute", confidence=0.9, resamples=200,
                       rng=np.random.default_rng(0))

    full, alone = scores.evaluate(context()), plain.evaluate(context())
    assert (full.interval.low, full.interval.high) == (alone.interval.low, alone.interval.high)
    assert "per_class" not in alone.details
    assert {row["slice"] for row in full.details["per_class"]} <= {f"c{i}" for i in range(20)}
    again = scores.resampled(context(), sizes=True)
    drops = again["small"][0] - again["small"][1]
    small = next(row for row in full.details["per_size"] if row["slice"] == "small")
    assert small["low"] == pytest.approx(np.quantile(drops, 0.05))
    # a manifest slice's subset evaluates no breakdowns of its own
    assert scores.subset(np.arange(N) < 100).breakdowns is False
