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

import itertools
from dataclasses import dataclass

import numpy as np

from pytest_quantguard.metrics.detection_match import (
    IOU_THRESHOLDS,
    MAX_DETECTIONS,
    Flat,
    match_area,
    prepare,
)

__all__ = ["AREA_RANGES", "IOU_THRESHOLDS", "MAX_DETECTIONS", "Boxes", "ClassMatches", "Flat",
           "class_ap", "match", "match_flat", "mean_ap", "per_class_ap"]

RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = {"all": (0.0, 1e5**2), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2),
               "large": (96.0**2, 1e5**2)}
BLOCK_FLOATS = 262_144  # bootstrap rows accumulated at once: about 2 MB a working array


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


def _flat(images: list[Boxes], truth: bool) -> Flat:
    """A list of per-image ``Boxes`` as one ``Flat``."""
    counts = [len(b.classes) for b in images]
    image = np.repeat(np.arange(len(images)), counts)
    boxes = np.concatenate([np.asarray(b.boxes, float).reshape(-1, 4) for b in images] or
                           [np.zeros((0, 4))])
    classes = np.concatenate([b.classes for b in images] or [np.zeros(0)]).astype(np.int64)
    if truth:
        crowd = np.concatenate([b.crowd for b in images] or [np.zeros(0)]).astype(bool)
        areas = np.concatenate([b.areas for b in images] or [np.zeros(0)]).astype(float)
        return Flat(image, boxes, classes, crowd=crowd, areas=areas)
    scores = np.concatenate([b.scores for b in images] or [np.zeros(0)]).astype(float)
    return Flat(image, boxes, classes, scores=scores)


def match(truths: list[Boxes], detections: list[Boxes], classes: np.ndarray,
          area: str = "all") -> list[ClassMatches]:
    """Every class's matches in one area range over all images (image order = list order)."""
    found = match_flat(_flat(truths, True), _flat(detections, False), len(truths),
                       np.asarray(classes), (area,))
    return found[area]


def match_flat(truth: Flat, det: Flat, n_images: int, classes: np.ndarray,
               areas: tuple[str, ...] = ("all",)) -> dict[str, list[ClassMatches]]:
    """Every class's matches in each area range of ``areas``; the pairs and their IoU are
    computed once for all of them (docs/metrics.md, "Detection")."""
    classes = np.asarray(classes, dtype=np.int64)
    prepared = prepare(truth, det, classes)
    kept, rank = prepared.det, prepared.rank
    k = len(classes)
    det_class = np.searchsorted(classes, kept.classes)
    # COCO's accumulate: per class, score descending, stable over images in order (and each
    # image's detections in its own score order)
    order = np.lexsort((rank, kept.image, -kept.scores, det_class))
    bounds = np.searchsorted(det_class[order], np.arange(k + 1))
    t_class = np.searchsorted(classes, prepared.truth.classes)
    result = {}
    for area in areas:
        found = match_area(prepared, AREA_RANGES[area])
        positives = np.bincount(t_class * n_images + prepared.truth.image,
                                weights=found.counted_truth, minlength=k * n_images)
        positives = positives.reshape(k, n_images).astype(np.int64)
        tp, fp = found.tp[:, order], found.fp[:, order]
        image = kept.image[order]
        result[area] = [ClassMatches(image[lo:hi], tp[:, lo:hi], fp[:, lo:hi], positives[c])
                        for c, (lo, hi) in enumerate(itertools.pairwise(bounds))]
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
    for group in _threshold_groups(matches.tp.sum(axis=1)):
        plan = _Plan.of(matches, group)
        if plan.hits.shape[1] == 0:
            continue  # no true positive at these thresholds: AP 0 wherever it is defined
        width = len(group) * (plan.hits.shape[1] + len(plan.extra)) + len(plan.always)
        block = max(8, BLOCK_FLOATS // max(width, 1))  # rows whose working arrays stay in cache
        for start in range(0, n_rows, block):  # contiguous rows: views, never copies
            rows = slice(start, start + block)
            with np.errstate(divide="ignore", invalid="ignore"):  # rows without truth: NaN below
                result[rows, group] = _class_ap_rows(plan, weights[rows], npig[rows])
    result[~valid] = np.nan
    return result


def _threshold_groups(hits: np.ndarray) -> list[np.ndarray]:
    """Thresholds accumulated together: those with a similar number of true positives (at least
    0.6 of the group's largest), so padding them to one length wastes little."""
    order = np.argsort(-hits, kind="stable")
    groups: list[list[int]] = []
    for t in order:
        if groups and hits[t] >= 0.6 * hits[groups[-1][0]]:
            groups[-1].append(int(t))
        else:
            groups.append([int(t)])
    return [np.array(group) for group in groups]


@dataclass(frozen=True)
class _Plan:
    """One class's columns for re-accumulation, all thresholds at once: each threshold's true
    positives (padded to the longest, the padding repeating the last), where each stands among
    the detections counted at every threshold (``always``) and among those counted at some only
    (``extra``: matched to a crowd region, or outside the area range when unmatched)."""

    image: np.ndarray  # (D,) image of each column
    hits: np.ndarray  # (T, H) column of each true positive, 0 on padding
    real: np.ndarray  # (T, H) 1.0 on a true positive, 0.0 on padding
    always: np.ndarray  # columns counted at every threshold
    before_always: np.ndarray  # (T, H) how many of ``always`` are at or before each hit
    extra: np.ndarray  # columns counted at some thresholds only
    extra_counted: np.ndarray  # (T, E) bool
    before_extra: np.ndarray  # (T, H)

    @classmethod
    def of(cls, matches: ClassMatches, thresholds: np.ndarray) -> _Plan:
        counted = (matches.tp | matches.fp)[thresholds]
        every = counted.all(axis=0)
        always = np.flatnonzero(every)
        extra = np.flatnonzero(counted.any(axis=0) & ~every)
        columns = [np.flatnonzero(row) for row in matches.tp[thresholds]]
        width = max(len(c) for c in columns)
        hits = np.zeros((len(columns), width), np.int64)
        last = np.full((len(columns), width), -1)
        for t, found in enumerate(columns):
            hits[t, :len(found)] = found
            last[t] = found[np.minimum(np.arange(width), len(found) - 1)] if len(found) else -1
        real = (np.arange(width)[None, :] < np.array([[len(c)] for c in columns])).astype(float)
        return cls(matches.image, hits, real, always,
                   np.searchsorted(always, last, side="right"), extra, counted[:, extra],
                   np.searchsorted(extra, last, side="right"))


def _class_ap_rows(plan: _Plan, weights: np.ndarray, npig: np.ndarray) -> np.ndarray:
    """``class_ap`` of the thresholds of ``plan``, every one at once (rows without ground truth
    give no number: the caller marks them NaN)."""
    tp = weights[:, plan.image[plan.hits]]  # (b, T, H)
    tp *= plan.real
    np.cumsum(tp, axis=2, out=tp)
    seen = _prefix(weights[:, plan.image[plan.always]])[:, plan.before_always]
    if len(plan.extra):
        counted = weights[:, None, plan.image[plan.extra]] * plan.extra_counted[None]
        seen += np.take_along_axis(_prefix(counted), plan.before_extra[None], axis=2)
    precision = tp / (seen + np.spacing(1))  # counted up to and including each true positive
    precision = np.maximum.accumulate(precision[..., ::-1], axis=2)[..., ::-1]
    # each true positive carries the recall points its count newly reaches (COCO's searchsorted)
    reached = _points_reached(tp, npig[:, None, None])
    reached[..., 1:] -= reached[..., :-1].copy()
    return np.einsum("itj,itj->it", precision, reached) / len(RECALL_THRESHOLDS)


def _prefix(values: np.ndarray) -> np.ndarray:
    """Cumulative sums along the last axis with a leading 0: ``out[..., j]`` sums the first j."""
    out = np.zeros((*values.shape[:-1], values.shape[-1] + 1))
    np.cumsum(values, axis=-1, out=out[..., 1:])
    return out


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
