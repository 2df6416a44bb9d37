"""Detection mAP through compare(): data contract, errors, the paired bootstrap over images, and a
small coverage check (docs/intervals.md, "Detection mAP")."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.data.detection import DETECTION, detection_labels
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Context
from pytest_quantguard.metrics.detection import MAP50, MAP50_95, DetectionScores
from pytest_quantguard.metrics.detection_coco import Boxes, match, mean_ap, per_class_ap

MAX_DET = 30


def scene(rng, n_images, n_classes=8):
    """Flat ground truth: 0-6 objects per image (some images empty), long-tailed classes, a few
    crowd regions, sizes across COCO's three area ranges."""
    counts = rng.integers(0, 7, n_images)
    total = int(counts.sum())
    size = rng.choice([16.0, 60.0, 140.0], total)
    xy = rng.uniform(0, 300, (total, 2))
    wh = size[:, None] * rng.uniform(0.7, 1.3, (total, 2))
    boxes = np.column_stack([xy, xy + wh])
    weights = 1.0 / np.arange(1, n_classes + 1)
    classes = rng.choice(n_classes, total, p=weights / weights.sum())
    crowd = (rng.random(total) < 0.05).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return offsets, boxes, classes, crowd


def detect(rng, offsets, boxes, classes, jitter, miss, score_noise):
    """Post-NMS detections [images, MAX_DET, 6] from the truth: jittered hits, misses, false
    positives; padding rows have score 0."""
    out = np.zeros((len(offsets) - 1, MAX_DET, 6))
    for i in range(len(offsets) - 1):
        rows = []
        for j in range(offsets[i], offsets[i + 1]):
            if rng.random() < miss:
                continue
            w = boxes[j, 2] - boxes[j, 0]
            box = boxes[j] + rng.normal(0, jitter * w, 4)
            score = np.clip(0.7 + rng.normal(0, score_noise), 0.01, 1.0)
            rows.append([*box, score, classes[j]])
        for _ in range(rng.integers(0, 4)):
            xy = rng.uniform(0, 300, 2)
            rows.append([*xy, *(xy + 40), rng.uniform(0.01, 0.6), rng.integers(0, 8)])
        if rows:
            out[i, :len(rows)] = np.array(rows)[:MAX_DET]
    return out


def models(reference_out, candidate_out):
    def reference(batch):
        return reference_out[batch[:, 0].astype(int)]

    def candidate(batch):
        return candidate_out[batch[:, 0].astype(int)]

    return reference, candidate


def dataset(n, seed=0, candidate_jitter=0.05, candidate_miss=0.1):
    rng = np.random.default_rng(seed)
    offsets, boxes, classes, crowd = scene(rng, n)
    labels = detection_labels(offsets, boxes, classes, crowd)
    ref = detect(rng, offsets, boxes, classes, 0.03, 0.05, 0.1)
    cand = detect(rng, offsets, boxes, classes, candidate_jitter, candidate_miss, 0.1)
    data = ValidationSet(np.arange(n, dtype=np.float32)[:, None], labels, task=DETECTION)
    return data, labels, ref, cand


def test_compare_gives_coco_map_and_a_paired_interval():
    data, labels, ref, cand = dataset(150)
    reference, candidate = models(ref, cand)
    result = compare(reference, candidate, data=data, metric="map50_95", max_drop=0.02,
                     resamples=400)
    scores = DetectionScores(ref, cand, labels, MAP50_95.thresholds, "map50_95")
    expected = scores.map(np.ones((1, 150)))
    assert result.reference_score == pytest.approx(expected[0][0], abs=1e-12)
    assert result.candidate_score == pytest.approx(expected[1][0], abs=1e-12)
    assert result.drop == pytest.approx(result.reference_score - result.candidate_score)
    assert result.interval.low < result.drop < result.interval.high
    assert result.metric == "map50_95"
    assert result.verdict.value in ("ship", "try-qat", "stay-fp16", "inconclusive")
    same = compare(reference, reference, data=data, metric="map50", max_drop=0.02, resamples=200)
    assert same.drop == 0 and same.method == "degenerate-fallback"
    assert same.interval.low < 0 < same.interval.high


def test_map50_above_map50_95_and_default_metric():
    data, _, ref, cand = dataset(60, seed=1)
    reference, candidate = models(ref, cand)
    at_50 = compare(reference, candidate, data=data, metric="map50", resamples=100)
    default = compare(reference, candidate, data=data, resamples=100)
    assert default.metric == "map50_95"
    assert at_50.reference_score > default.reference_score > 0


def test_bad_detection_data_is_refused_with_a_fix():
    with pytest.raises(QuantGuardError, match=r"offsets end at 3, so boxes need shape \[3, 4\]"):
        detection_labels([0, 1, 3], np.zeros((2, 4)), [0, 1])
    with pytest.raises(QuantGuardError, match="detection labels need shape"):
        ValidationSet(np.zeros((2, 1)), np.zeros((2, 3)), task=DETECTION)
    data, _, ref, _ = dataset(10)
    with pytest.raises(QuantGuardError, match=r"\[batch, max_det, 6\]"):
        compare(lambda b: ref[:len(b), :, :5], lambda b: ref[:len(b)],
                data=data, metric="map50", resamples=50)


def test_detection_metric_refuses_a_classification_set():
    x = np.zeros((10, 2), np.float32)
    with pytest.raises(QuantGuardError, match=r"metric .map50. scores boxes, but this set.s task "
                                              r"is .classification.; use accuracy"):
        compare(lambda b: b, lambda b: b, data=ValidationSet(x, np.zeros(10)),
                metric="map50")


def test_resample_weights_equal_a_resampled_set():
    """A resample's mAP from image weights equals COCO mAP on the images repeated (copies of one
    image kept adjacent): the bootstrap re-accumulates without re-matching."""
    _, labels, ref, _ = dataset(40, seed=3)
    scores = DetectionScores(ref, ref, labels, MAP50.thresholds, "map50")
    weights = np.random.default_rng(0).multinomial(40, np.full(40, 1 / 40))
    index = np.repeat(np.arange(40), weights)
    again = DetectionScores(ref[index], ref[index], labels[index], MAP50.thresholds, "map50")
    classes = scores.classes
    assert np.isin(again.classes, classes).all()
    full = mean_ap(per_class_ap(again.matches[0], np.ones((1, len(index)))))[0]
    # the class set of the resample is the full set's; AP of absent classes is NaN and left out
    weighted = scores.map(weights[None, :])[0][0]
    assert weighted == pytest.approx(full, abs=1e-12)


def test_coverage_smoke():
    """Image bootstrap of the map50 drop: the interval covers the drop measured on a large set of
    the same generator in most repetitions (a smoke form of the coverage cells)."""
    rng = np.random.default_rng(11)
    def drawn(n):
        offsets, boxes, classes, crowd = scene(rng, n)
        labels = detection_labels(offsets, boxes, classes, crowd)
        return (detect(rng, offsets, boxes, classes, 0.03, 0.05, 0.1),
                detect(rng, offsets, boxes, classes, 0.06, 0.12, 0.1), labels)

    ref, cand, labels = drawn(3000)
    truth = DetectionScores(ref, cand, labels, MAP50.thresholds, "map50").map(np.ones((1, 3000)))
    true_drop = truth[0][0] - truth[1][0]
    covered = 0
    repetitions = 12
    for r in range(repetitions):
        ref, cand, labels = drawn(150)
        context = Context(margin="absolute", confidence=0.9, resamples=200,
                          rng=np.random.default_rng(r))
        result = DetectionScores(ref, cand, labels, MAP50.thresholds, "map50").evaluate(context)
        covered += result.interval.low <= true_drop <= result.interval.high
    assert covered >= repetitions - 3


def test_boxes_of_one_image_match_once():
    truth = Boxes(np.array([[0, 0, 10, 10.0]]), np.array([0]), crowd=np.array([False]),
                  areas=np.array([100.0]))
    found = Boxes(np.array([[0, 0, 10, 10.0], [0, 0, 10, 10.0]]), np.array([0, 0]),
                  scores=np.array([0.9, 0.8]))
    (matches,) = match([truth], [found], np.array([0]))
    assert matches.tp[:, 0].all() and matches.fp[:, 1].all()


def test_a_classification_metric_refuses_a_detection_set():
    x = np.zeros((2, 2), np.float32)
    labels = detection_labels(np.array([0, 1, 2]), np.array([[0, 0, 4, 4], [1, 1, 5, 5]], float),
                              np.array([0, 1]))
    with pytest.raises(QuantGuardError, match=r"metric 'accuracy' scores class predictions, but "
                                              r"this set's task is 'detection'; use map50_95"):
        compare(lambda b: b, lambda b: b, data=ValidationSet(x, labels, task="detection"),
                metric="accuracy")
