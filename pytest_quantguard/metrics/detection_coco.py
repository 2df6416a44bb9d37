"""COCO box mAP from arrays, exactly as pycocotools computes it, split in two steps so a bootstrap
over images can re-accumulate without re-matching (docs/intervals.md, "Detection mAP").

``match`` runs COCO's greedy matching once per image, class, area range and IoU threshold;
``Matches.average_precision(weights)`` accumulates with one weight (multiplicity) per image:
weights of 1 give pycocotools' numbers, a bootstrap resample's counts give that resample's mAP.

COCO's rules, as ``COCOeval`` (bbox) applies them (docs/metrics.md, "Detection"):
- IoU thresholds 0.50:0.05:0.95; recall thresholds 0:0.01:1 (101-point interpolated precision);
- per image and class, detections sorted by score (a stable sort: ties keep their row order) and
  cut to the 100 best;
- a crowd box is an "ignore" region: a detection matched to it counts neither way, and its IoU is
  the intersection over the detection's area; several detections may match it;
- area ranges all / small (< 32²) / medium / large (> 96²), bounds inclusive as COCO's: a box
  outside the range is ignored (a ground truth), or, unmatched, not counted (a detection);
- a class without (non-ignored) ground truth has no AP and is left out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = {"all": (0.0, 1e5**2), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2),
               "large": (96.0**2, 1e5**2)}
MAX_DETECTIONS = 100
BLOCK_FLOATS = 32_768  # bootstrap rows accumulated at once: about 256 KB a working array


@dataclass(frozen=True)
class Boxes:
    """One image's boxes: (k, 4) x1, y1, x2, y2; classes (k,); scores (detections) or crowd flags
    and areas (ground truth)."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray | None = None
    crowd: np.ndarray | None = None
    areas: np.ndarray | None = None


@dataclass(frozen=True)
class ClassMatches:
    """One class in one area range, every image's kept detections in COCO's accumulation order
    (score descending, stable over images in order): the image each came from, and per IoU
    threshold whether it is a true positive or a false positive (ignored: neither); and the
    number of non-ignored ground truths per image."""

    image: np.ndarray  # (D,) int
    tp: np.ndarray  # (T, D) bool
    fp: np.ndarray  # (T, D) bool
    positives: np.ndarray  # (n_images,) int


def box_iou(detections: np.ndarray, truths: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """(D, G) IoU as pycocotools' bbox IoU: for a crowd truth, intersection over the detection's
    area."""
    if len(detections) == 0 or len(truths) == 0:
        return np.zeros((len(detections), len(truths)))
    d, g = detections[:, None, :], truths[None, :, :]
    w = np.minimum(d[..., 2], g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3], g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    area_d = (d[..., 2] - d[..., 0]) * (d[..., 3] - d[..., 1])
    area_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    union = np.where(crowd[None, :], area_d, area_d + area_g - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _greedy(ious: np.ndarray, truth_ignored: np.ndarray, crowd: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """COCO's greedy matching at every threshold: detections in score order, truths with the
    ignored ones last; each detection takes the available truth of highest IoU (the last of equal
    ones), a non-ignored one before any ignored one. Returns (matched, matched-to-ignored), (T, D)."""
    limits = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]
    n_thresholds, (n_det, n_truth) = len(limits), ious.shape
    matched = np.zeros((n_thresholds, n_det), bool)
    to_ignored = np.zeros((n_thresholds, n_det), bool)
    if n_truth == 0:
        return matched, to_ignored
    taken = np.zeros((n_thresholds, n_truth), bool)
    regular = int(np.count_nonzero(~truth_ignored))  # truths are sorted: regular ones first
    reusable = crowd[None, :]
    rows = np.arange(n_thresholds)
    for det in np.flatnonzero(ious.max(axis=1) >= limits[0, 0]):
        values = np.where((ious[det][None, :] >= limits) & ~(taken & ~reusable), ious[det], -1.0)
        for start, stop in ((0, regular), (regular, n_truth)):
            part = values[:, start:stop]
            if part.shape[1] == 0:
                continue
            free = ~matched[:, det] & (part.max(axis=1) >= 0)
            if not free.any():
                continue
            chosen = start + part.shape[1] - 1 - np.argmax(part[:, ::-1], axis=1)
            matched[free, det] = True
            to_ignored[free, det] = truth_ignored[chosen[free]]
            taken[rows[free], chosen[free]] = True
    return matched, to_ignored


def _match_one(truth: Boxes, keep_truth: np.ndarray, detections: Boxes, keep_det: np.ndarray,
               area_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One image, one class, one area range: the kept detections' scores and tp / fp flags, and
    the number of non-ignored truths (pycocotools' evaluateImg)."""
    low, high = area_range
    t_boxes, crowd, areas = truth.boxes[keep_truth], truth.crowd[keep_truth], truth.areas[keep_truth]
    ignored = crowd | (areas < low) | (areas > high)
    order = np.argsort(ignored, kind="mergesort")
    t_boxes, crowd, ignored = t_boxes[order], crowd[order], ignored[order]
    scores = detections.scores[keep_det]
    det_order = np.argsort(-scores, kind="mergesort")[:MAX_DETECTIONS]
    d_boxes, scores = detections.boxes[keep_det][det_order], scores[det_order]
    matched, to_ignored = _greedy(box_iou(d_boxes, t_boxes, crowd), ignored, crowd)
    d_areas = (d_boxes[:, 2] - d_boxes[:, 0]) * (d_boxes[:, 3] - d_boxes[:, 1])
    outside = (d_areas < low) | (d_areas > high)
    det_ignored = to_ignored | (~matched & outside[None, :])
    return scores, matched & ~det_ignored, ~matched & ~det_ignored, int(np.count_nonzero(~ignored))


def match(truths: list[Boxes], detections: list[Boxes], classes: np.ndarray,
          area: str = "all") -> list[ClassMatches]:
    """Every class's matches in one area range over all images (image order = list order)."""
    n_images, area_range = len(truths), AREA_RANGES[area]
    parts: dict[int, list[tuple[np.ndarray, ...]]] = {int(c): [] for c in classes}
    positives = {int(c): np.zeros(n_images, np.int64) for c in classes}
    for index, (truth, det) in enumerate(zip(truths, detections, strict=True)):
        for cls in np.intersect1d(np.union1d(truth.classes, det.classes), classes):
            keep_truth, keep_det = truth.classes == cls, det.classes == cls
            scores, tp, fp, count = _match_one(truth, keep_truth, det, keep_det, area_range)
            positives[int(cls)][index] = count
            if len(scores):
                parts[int(cls)].append((np.full(len(scores), index), scores, tp, fp))
    result = []
    for cls in classes:
        pieces = parts[int(cls)]
        if not pieces:
            empty = np.zeros((len(IOU_THRESHOLDS), 0), bool)
            result.append(ClassMatches(np.zeros(0, np.int64), empty, empty, positives[int(cls)]))
            continue
        image, scores, tp, fp = (np.concatenate([p[k] for p in pieces], axis=-1) for k in range(4))
        order = np.argsort(-scores, kind="mergesort")
        result.append(ClassMatches(image[order], tp[:, order], fp[:, order], positives[int(cls)]))
    return result


def class_ap(matches: ClassMatches, weights: np.ndarray, npig: np.ndarray | None = None
             ) -> np.ndarray:
    """(B, T) AP of one class for each row of ``weights`` (B, n_images) as COCO accumulates it;
    NaN where the weighted number of non-ignored truths is 0 (COCO's -1: no AP); ``npig``: that
    number per row, when the caller has it.

    Only the true positives' columns are visited: precision rises only at a true positive, so the
    interpolated precision at a recall point (the best precision at or after the first column
    reaching it) is the best at a true positive; each true positive then carries the recall points
    its count newly reaches. Equal to COCO's sums over all columns and 101 searches up to the
    order of the final sum (counts are integers; recall is compared as COCO's ``tp / npig``)."""
    weights = np.atleast_2d(weights).astype(np.float64, copy=False)
    n_rows, n_t = len(weights), matches.tp.shape[0]
    npig = weights @ matches.positives.astype(float) if npig is None else npig
    result = np.full((n_rows, n_t), np.nan)
    valid = npig > 0
    if not valid.any():
        return result
    result[valid] = 0.0
    rows = np.flatnonzero(valid)
    block = max(16, BLOCK_FLOATS // max(matches.tp.shape[1], 1))  # rows that stay in cache
    for start in range(0, len(rows), block):
        part = rows[start:start + block]
        result[part] = _class_ap_rows(matches, weights[part], npig[part])
    return result


def _class_ap_rows(matches: ClassMatches, weights: np.ndarray, npig: np.ndarray) -> np.ndarray:
    """``class_ap`` of rows that all have ground truth."""
    result = np.zeros((len(weights), matches.tp.shape[0]))
    w = weights[:, matches.image]  # (b, D)
    total = npig[:, None]
    for t in range(matches.tp.shape[0]):
        hits = np.flatnonzero(matches.tp[t])
        if len(hits) == 0:
            continue
        misses = np.flatnonzero(matches.fp[t])
        tp = np.cumsum(w[:, hits], axis=1)
        fp = np.zeros((len(w), len(misses) + 1))
        np.cumsum(w[:, misses], axis=1, out=fp[:, 1:])
        fp = fp[:, np.searchsorted(misses, hits)]  # false positives before each true positive
        precision = tp / (fp + tp + np.spacing(1))
        precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        reached = _points_reached(tp, total)
        reached[:, 1:] -= reached[:, :-1].copy()
        result[:, t] = np.einsum("ij,ij->i", precision, reached) / len(RECALL_THRESHOLDS)
    return result


def _points_reached(tp: np.ndarray, total: np.ndarray) -> np.ndarray:
    """How many recall thresholds r satisfy r <= tp / total (COCO's float division): the
    thresholds reached by a true-positive count, found by rounding and two exact corrections."""
    recall = tp / total
    last = len(RECALL_THRESHOLDS) - 1
    index = np.clip(np.floor(recall * last).astype(np.int64), 0, last)
    index -= RECALL_THRESHOLDS[index] > recall  # R[index] must be <= recall ...
    up = np.minimum(index + 1, last)
    index += (up > index) & (RECALL_THRESHOLDS[up] <= recall)  # ... and R[index + 1] above it
    return (index + 1).astype(np.float64)


def mean_ap(per_class: np.ndarray, threshold: slice | int = slice(None)) -> np.ndarray:
    """The mean over classes (axis -2) and thresholds of (B, K, T) APs, classes without AP left
    out (COCO's mean of precision > -1); NaN where no class has AP."""
    part = per_class[..., threshold]
    part = part if part.ndim == per_class.ndim else part[..., None]
    counted = ~np.isnan(part)
    total = np.where(counted, part, 0.0).sum(axis=(-2, -1))
    count = counted.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def per_class_ap(matches: list[ClassMatches], weights: np.ndarray) -> np.ndarray:
    """(B, K, T) AP of every class for each row of ``weights``."""
    weights = np.atleast_2d(weights).astype(np.float64)
    if not matches:
        return np.zeros((len(weights), 0, 0))
    npig = weights @ np.column_stack([m.positives for m in matches]).astype(np.float64)
    return np.stack([class_ap(m, weights, npig[:, k]) for k, m in enumerate(matches)], axis=1)
