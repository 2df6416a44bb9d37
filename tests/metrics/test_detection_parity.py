"""COCO mAP from arrays equals pycocotools' COCOeval (bbox) to 1e-6 on generated annotation files
(docs/metrics.md, "Detection")."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from pytest_quantguard.metrics.detection_coco import (
    AREA_RANGES,
    RECALL_THRESHOLDS,
    Boxes,
    class_ap,
    match,
    mean_ap,
    per_class_ap,
)

N_CLASSES = 6  # class 4: ground truth but no detections; class 5: detections but no ground truth


def _box(rng, size):
    """x, y, w, h on a 0.25 grid (x + w is exact in binary floating point)."""
    w, h = (np.round(rng.uniform(0.6, 1.4, 2) * size * 4) / 4).clip(0.25)
    x, y = np.round(rng.uniform(0, 400, 2) * 4) / 4
    return [float(x), float(y), float(w), float(h)]


def _jitter(rng, box, scale):
    x, y, w, h = box
    dx, dy, dw, dh = np.round(rng.normal(0, scale, 4) * max(w, h) * 4) / 4
    return [x + dx, y + dy, max(w + dw, 0.25), max(h + dh, 0.25)]


def generate(seed: int, n_images: int = 40):
    """COCO-format ground truth and results covering empty images, crowd boxes, a class without
    detections, a class without ground truth, score ties, the three area ranges and > 100
    detections in an image."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "width": 500, "height": 500})
        if image_id % 9 == 0:
            continue  # an empty image: no truth, no detection
        count = 0 if image_id % 7 == 0 else int(rng.integers(1, 12))
        for _ in range(count):
            size = float(rng.choice([12.0, 50.0, 150.0]))  # small, medium, large
            box = _box(rng, size)
            cls = int(rng.integers(0, 5))
            crowd = int(rng.random() < 0.1)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls,
                                "bbox": box, "area": box[2] * box[3], "iscrowd": crowd})
            if cls != 4 and rng.random() < 0.8:
                for _ in range(int(rng.integers(1, 3))):
                    score = float(np.round(rng.uniform(0.05, 1.0), 1))  # coarse: many ties
                    results.append({"image_id": image_id, "category_id": cls, "score": score,
                                    "bbox": _jitter(rng, box, 0.1)})
        n_false = 130 if image_id == 3 else int(rng.integers(0, 6))  # image 3: > 100 detections
        for _ in range(n_false):
            cls = int(rng.choice([0, 0, 1, 2, 5]))
            results.append({"image_id": image_id, "category_id": cls,
                            "score": float(np.round(rng.uniform(0.05, 1.0), 2)),
                            "bbox": _box(rng, float(rng.choice([12.0, 50.0, 150.0])))})
    categories = [{"id": c, "name": f"c{c}"} for c in range(N_CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def pycocotools_stats(tmp_path, truth, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    (tmp_path / "gt.json").write_text(json.dumps(truth))
    with contextlib.redirect_stdout(io.StringIO()):
        ground = COCO(str(tmp_path / "gt.json"))
        found = ground.loadRes(results)
        evaluation = COCOeval(ground, found, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


def to_arrays(truth, results):
    """Per image (in id order) truth and detection Boxes, x1y1x2y2."""
    def corners(b):
        return [b[0], b[1], b[0] + b[2], b[1] + b[3]]

    ids = [image["id"] for image in truth["images"]]
    truths, detections = [], []
    for image_id in ids:
        anns = [a for a in truth["annotations"] if a["image_id"] == image_id]
        dets = [r for r in results if r["image_id"] == image_id]
        truths.append(Boxes(np.array([corners(a["bbox"]) for a in anns]).reshape(-1, 4),
                            np.array([a["category_id"] for a in anns], np.int64),
                            crowd=np.array([bool(a["iscrowd"]) for a in anns], bool),
                            areas=np.array([a["area"] for a in anns], float)))
        detections.append(Boxes(np.array([corners(r["bbox"]) for r in dets]).reshape(-1, 4),
                                np.array([r["category_id"] for r in dets], np.int64),
                                scores=np.array([r["score"] for r in dets], float)))
    return truths, detections


def ours(truths, detections, area):
    per_class = per_class_ap(match(truths, detections, np.arange(N_CLASSES), area), np.ones(len(truths)))
    return per_class


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_equals_pycocotools(tmp_path, seed):
    truth, results = generate(seed)
    assert max(sum(r["image_id"] == i for r in results) for i in range(1, 41)) > 100
    assert any(a["iscrowd"] for a in truth["annotations"])
    stats = pycocotools_stats(tmp_path, truth, results)
    truths, detections = to_arrays(truth, results)
    every = ours(truths, detections, "all")
    assert mean_ap(every)[0] == pytest.approx(stats[0], abs=1e-6)  # AP@[.50:.95]
    assert mean_ap(every, 0)[0] == pytest.approx(stats[1], abs=1e-6)  # AP@.50
    assert mean_ap(every, 5)[0] == pytest.approx(stats[2], abs=1e-6)  # AP@.75
    assert stats[1] > stats[2] > 0
    for index, area in enumerate(("small", "medium", "large")):
        expected = stats[3 + index]
        got = mean_ap(ours(truths, detections, area))[0]
        assert (expected if expected > -1 else np.nan) == pytest.approx(got, abs=1e-6, nan_ok=True)
    assert np.isnan(every[0, 5]).all()  # no ground truth: no AP (COCO's -1)
    assert (every[0, 4] == 0).all()  # ground truth, no detection: AP 0


def test_only_crowd_and_empty_images(tmp_path):
    """A set whose only truths are crowd regions has no AP in any class, as in pycocotools."""
    truth, results = generate(5, n_images=10)
    for annotation in truth["annotations"]:
        annotation["iscrowd"] = 1
    stats = pycocotools_stats(tmp_path, truth, results)
    truths, detections = to_arrays(truth, results)
    assert stats[0] == -1
    assert np.isnan(mean_ap(ours(truths, detections, "all"))[0])


def test_area_ranges_are_coco():
    assert AREA_RANGES["small"][1] == AREA_RANGES["medium"][0] == 32**2


def naive_class_ap(matches, weights):
    """COCO's accumulate, one weighted row at a time, over every column and 101 searches."""
    rows = []
    for row in np.atleast_2d(weights):
        npig = row @ matches.positives
        values = []
        for t in range(matches.tp.shape[0]):
            if npig == 0:
                values.append(np.nan)
                continue
            w = row[matches.image].astype(float)
            tp, fp = np.cumsum(w * matches.tp[t]), np.cumsum(w * matches.fp[t])
            recall, precision = tp / npig, tp / (fp + tp + np.spacing(1))
            precision = np.maximum.accumulate(precision[::-1])[::-1]
            found = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
            inside = found < len(recall)
            values.append(np.where(inside, precision[np.minimum(found, len(recall) - 1)]
                                   if len(recall) else 0.0, 0.0).mean())
        rows.append(values)
    return np.array(rows)


@pytest.mark.parametrize("seed", [0, 3])
def test_weighted_accumulation_equals_coco_row_by_row(seed):
    """The vectorized re-accumulation of bootstrap rows (true positives only) gives COCO's
    accumulate of every weighted row (to rounding), zero weights and empty resamples included."""
    truth, results = generate(seed)
    truths, detections = to_arrays(truth, results)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(truths), np.full(len(truths), 1 / len(truths)), size=40)
    weights[0] = 0
    for matches in match(truths, detections, np.arange(N_CLASSES), "all"):
        np.testing.assert_allclose(class_ap(matches, weights), naive_class_ap(matches, weights),
                                   rtol=1e-12, atol=1e-15)
