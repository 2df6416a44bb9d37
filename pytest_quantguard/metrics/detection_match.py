"""COCO's greedy matching of every image and class at once (docs/metrics.md, "Detection").

pycocotools matches one image and class at a time in Python; here the detections of every
(image, class) group advance together, one score rank per step (at most 100 steps): at rank r
each group's r-th detection takes, at every IoU threshold, the available truth COCO's loop would
take. Groups never share a truth, so a step is a handful of array operations over all groups.

- The (detection, truth) pairs of each group and their IoU are computed once and shared by the
  four area ranges; only pairs with IoU >= 0.5 (the lowest threshold) can match.
- Per area range, a detection's candidate pairs are ordered by COCO's preference (a non-ignored
  truth before an ignored one, then the higher IoU, then the later truth in COCO's order, which
  puts ignored truths last, stably), so the taken truth is the last eligible pair of its run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
IOU_LIMITS = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)  # as pycocotools compares them
MAX_DETECTIONS = 100


@dataclass(frozen=True)
class Flat:
    """Boxes of many images as flat arrays: ``image`` (index), ``boxes`` (k, 4) x1 y1 x2 y2,
    ``classes``; ``scores`` (detections) or ``crowd`` and ``areas`` (ground truth)."""

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray | None = None
    crowd: np.ndarray | None = None
    areas: np.ndarray | None = None

    def take(self, index: np.ndarray) -> Flat:
        pick = [None if v is None else v[index] for v in (self.scores, self.crowd, self.areas)]
        return Flat(self.image[index], self.boxes[index], self.classes[index], *pick)


@dataclass(frozen=True)
class Matched:
    """One area range's result: per kept detection (in ``Prepared.det`` order) tp / fp flags
    (T, D), and the non-ignored truths per truth row."""

    tp: np.ndarray
    fp: np.ndarray
    counted_truth: np.ndarray


@dataclass(frozen=True)
class Prepared:
    """Detections grouped by (image, class), sorted by score (stable) and cut to 100 per group,
    with their ``rank`` in the group; truths grouped likewise; the pairs with IoU >= 0.5."""

    det: Flat
    rank: np.ndarray
    truth: Flat
    pair_det: np.ndarray
    pair_truth: np.ndarray
    pair_iou: np.ndarray


def _group_key(flat: Flat, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image, class index) as one int64 key, and whether the class is in ``classes``."""
    position = np.clip(np.searchsorted(classes, flat.classes), 0, max(len(classes) - 1, 0))
    known = (classes[position] == flat.classes) if len(classes) else np.zeros(len(flat.image), bool)
    return flat.image.astype(np.int64) * max(len(classes), 1) + position, known


def prepare(truth: Flat, det: Flat, classes: np.ndarray) -> Prepared:
    """Sort, cut and pair once (pycocotools' per-image sort by score, mergesort, then maxDets)."""
    t_key, t_known = _group_key(truth, classes)
    truth, t_key = truth.take(np.flatnonzero(t_known)), t_key[t_known]
    t_order = np.argsort(t_key, kind="stable")
    truth, t_key = truth.take(t_order), t_key[t_order]
    d_key, d_known = _group_key(det, classes)
    keep = np.flatnonzero(d_known)
    d_order = keep[np.lexsort((-det.scores[keep], d_key[keep]))]
    d_key = d_key[d_order]
    starts = np.flatnonzero(np.r_[True, d_key[1:] != d_key[:-1]]) if len(d_key) else d_key
    rank = np.arange(len(d_key)) - np.repeat(starts, np.diff(np.r_[starts, len(d_key)]))
    cut = rank < MAX_DETECTIONS
    det, d_key, rank = det.take(d_order[cut]), d_key[cut], rank[cut]
    low = np.searchsorted(t_key, d_key, side="left")
    count = np.searchsorted(t_key, d_key, side="right") - low
    pair_det = np.repeat(np.arange(len(d_key)), count)
    pair_truth = np.repeat(low - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
    iou = pair_iou(det.boxes[pair_det], truth.boxes[pair_truth], truth.crowd[pair_truth])
    good = iou >= IOU_LIMITS[0]
    return Prepared(det, rank, truth, pair_det[good], pair_truth[good], iou[good])


def pair_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of paired rows as pycocotools' bbox IoU: for a crowd truth, over the detection's area."""
    w = np.minimum(d[:, 2], g[:, 2]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3], g[:, 3]) - np.maximum(d[:, 1], g[:, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    area_d = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    union = np.where(crowd > 0, area_d, area_d + area_g - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_area(prepared: Prepared, area_range: tuple[float, float],
               thresholds: np.ndarray = IOU_LIMITS) -> Matched:
    """COCO's evaluateImg for every group in one area range (pycocotools' greedy loop)."""
    low, high = area_range
    truth, det = prepared.truth, prepared.det
    crowd = truth.crowd > 0
    ignored = crowd | (truth.areas < low) | (truth.areas > high)
    # COCO's truth order within a group: ignored last, stably (rows are already grouped)
    position = np.lexsort((np.arange(len(ignored)), ignored))
    later = np.empty(len(ignored), np.int64)
    later[position] = np.arange(len(ignored))
    pd, pt = prepared.pair_det, prepared.pair_truth
    order = np.lexsort((later[pt], prepared.pair_iou, ~ignored[pt], pd, prepared.rank[pd]))
    pd, pt, iou = pd[order], pt[order], prepared.pair_iou[order]
    n_t, n_det = len(thresholds), len(det.image)
    matched = np.zeros((n_t, n_det), bool)
    to_ignored = np.zeros((n_t, n_det), bool)
    taken = np.zeros((n_t, len(ignored)), bool)
    rank_edges = np.searchsorted(prepared.rank[pd], np.arange(MAX_DETECTIONS + 1))
    eligible_iou = iou[None, :] >= thresholds[:, None]
    for start, stop in itertools.pairwise(rank_edges):
        if start == stop:
            continue
        dets, truths = pd[start:stop], pt[start:stop]
        free = eligible_iou[:, start:stop] & ~(taken[:, truths] & ~crowd[truths][None, :])
        runs = np.flatnonzero(np.r_[True, dets[1:] != dets[:-1]])
        best = np.maximum.reduceat(np.where(free, np.arange(stop - start), -1), runs, axis=1)
        rows, run = np.nonzero(best >= 0)
        chosen = truths[best[rows, run]]
        matched[rows, dets[runs[run]]] = True
        to_ignored[rows, dets[runs[run]]] = ignored[chosen]
        taken[rows, chosen] = True
    d_area = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
    outside = (d_area < low) | (d_area > high)
    det_ignored = to_ignored | (~matched & outside[None, :])
    return Matched(matched & ~det_ignored, ~matched & ~det_ignored, ~ignored)
