"""Detection mAP (``map50``, ``map50_95``, ``map75``): COCO's box mAP of post-NMS detections, its
drop, and a paired bootstrap over images (docs/intervals.md, "Detection mAP").

Each model's detections are matched to the ground truth once (``detection_coco.match``); each
resample draws images (or groups of images) with replacement and re-accumulates both models' AP
from the same image multiplicities, without re-matching. The class set is fixed from the full set;
a class whose ground truth is absent from a resample has no AP in it and is left out of both
models' means, as COCO leaves out a class without ground truth.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from pytest_quantguard.data.detection import DETECTION
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import (
    Context,
    Evaluation,
    Metric,
    Scores,
    absolute_change,
    relative_change,
    require_margin,
)
from pytest_quantguard.metrics.detection_breakdown import SIZES, drops, rows
from pytest_quantguard.metrics.detection_coco import (
    IOU_THRESHOLDS,
    ClassMatches,
    Flat,
    match_flat,
    mean_ap,
    per_class_ap,
)
from pytest_quantguard.stats.bootstrap import percentile_limits
from pytest_quantguard.stats.result import IntervalResult
from pytest_quantguard.stats.sums import zero_discordance_halfwidth

# Floats held at once by one chunk of resamples (rows x images, or x detections of a class).
CHUNK_FLOATS = 2_000_000
# The detection metrics' default resamples, used unless the user sets resamples (the interval is a
# percentile bootstrap; 10,000 would cost about 24 pycocotools evaluations at 5,000 images;
# docs/metrics.md, "Detection")
DETECTION_RESAMPLES = 2000


def detections_from_output(output: np.ndarray, where: str) -> np.ndarray:
    """Post-NMS detections (batch, max_det, 6): x1, y1, x2, y2, score, class; a row with score 0
    is padding (docs/data.md, "Detection outputs")."""
    output = np.asarray(output, dtype=np.float64)
    if output.ndim != 3 or output.shape[2] != 6:
        raise QuantGuardError(f"{where}: a detection output needs shape [batch, max_det, 6] "
                              f"(x1, y1, x2, y2, score, class; score 0 on padding rows), got "
                              f"{list(output.shape)}")
    real = output[..., 4] > 0
    if not np.isfinite(output).all() or np.any(output[..., 4] < 0):
        raise QuantGuardError(f"{where}: detections hold NaN/Inf or a negative score")
    if np.any(output[..., 5][real] % 1 != 0) or np.any(output[..., 5][real] < 0):
        raise QuantGuardError(f"{where}: a detection's class (column 5) is not an integer >= 0")
    return output


def flat_boxes(labels: np.ndarray, detections: np.ndarray) -> tuple[Flat, Flat]:
    """The ground truth (padded labels, class -1 on padding) and the detections (score 0 on
    padding) of every image as flat arrays."""
    image, slot = np.nonzero(labels[..., 4] >= 0)
    rows = labels[image, slot]
    truth = Flat(image, rows[:, :4], rows[:, 4].astype(np.int64), crowd=rows[:, 5] > 0,
                 areas=rows[:, 6])
    image, slot = np.nonzero(detections[..., 4] > 0)
    rows = detections[image, slot]
    return truth, Flat(image, rows[:, :4], rows[:, 5].astype(np.int64), scores=rows[:, 4])


@dataclass(frozen=True, eq=False)
class DetectionScores(Scores):
    """Both models' detections and the ground truth of the same images; the mAP over the IoU
    thresholds ``thresholds`` (indices into COCO's ten) in the area range ``area``."""

    reference: np.ndarray  # (n, max_det, 6)
    candidate: np.ndarray
    labels: np.ndarray  # (n, boxes, 7)
    thresholds: tuple[int, ...]
    name: str
    area: str = "all"
    breakdowns: bool = True  # per-class and per-size rows (not inside a manifest slice)
    class_names: tuple[str, ...] | None = None

    @property
    def n(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> DetectionScores:
        return replace(self, reference=self.reference[mask], candidate=self.candidate[mask],
                       labels=self.labels[mask], breakdowns=False)

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return self.reference, self.candidate

    @functools.cached_property
    def classes(self) -> np.ndarray:
        """The class set, fixed from the full set: every class with ground truth."""
        real = self.labels[..., 4] >= 0
        return np.unique(self.labels[..., 4][real]).astype(np.int64)

    @functools.cached_property
    def _by_area(self) -> dict[str, tuple[list[ClassMatches], list[ClassMatches]]]:
        return {}

    def area_matches(self, area: str) -> tuple[list[ClassMatches], list[ClassMatches]]:
        """Each model's matches in one area range, once (only the thresholds averaged); with the
        breakdowns, the size ranges are matched in the same pass (their IoU shared)."""
        if area not in self._by_area:
            areas = tuple(dict.fromkeys((area, self.area, *(SIZES if self.breakdowns else ()))))
            pick = list(self.thresholds)
            found = [match_flat(*flat_boxes(self.labels, detections), self.n, self.classes, areas)
                     for detections in (self.reference, self.candidate)]
            for name in areas:
                self._by_area[name] = tuple([replace(m, tp=m.tp[pick], fp=m.fp[pick])
                                             for m in model[name]] for model in found)
        return self._by_area[area]

    @property
    def matches(self) -> tuple[list[ClassMatches], list[ClassMatches]]:
        return self.area_matches(self.area)

    def map(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both models' mAP for each row of image ``weights`` (B, n)."""
        return tuple(mean_ap(per_class_ap(m, weights)) for m in self.matches)

    def per_class(self) -> tuple[np.ndarray, np.ndarray]:
        """Both models' AP per class (of ``classes``), averaged over the thresholds."""
        return tuple(v[0] for v in self._accumulated(np.ones((1, self.n)), False)["per_class"])

    def _accumulated(self, weights: np.ndarray, sizes: bool) -> dict[str, tuple]:
        """Both models' mAP, AP per class (area ``all``) and, with ``sizes``, mAP per size range,
        for each row of ``weights``."""
        aps = [per_class_ap(m, weights) for m in self.matches]  # (B, K, T) each
        out = {"map": tuple(mean_ap(ap) for ap in aps),
               "per_class": tuple(ap.mean(axis=-1) if ap.shape[1] else ap[..., 0] for ap in aps)}
        for size in SIZES if sizes else ():
            out[size] = tuple(mean_ap(per_class_ap(m, weights)) for m in self.area_matches(size))
        return out

    def _drop(self, reference, candidate, context: Context):
        if context.margin == "relative":
            return relative_change(reference, candidate, True, self.name, context.where)
        return absolute_change(reference, candidate, True)

    def _weights(self, rows: int, context: Context) -> np.ndarray:
        """Image multiplicities of ``rows`` resamples: images drawn with replacement, or groups
        drawn with replacement and each image weighted by its group's draws."""
        if context.groups is None:
            return context.rng.multinomial(self.n, np.full(self.n, 1.0 / self.n), size=rows)
        ids, group = np.unique(context.groups, return_inverse=True)
        counts = context.rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=rows)
        return counts[:, group]

    def resampled(self, context: Context, sizes: bool = False) -> dict[str, tuple]:
        """Both models' figures (``_accumulated``) on ``context.resamples`` paired resamples of
        images when the user set it, else ``DETECTION_RESAMPLES``; a resample without any ground
        truth has no mAP for either model and is drawn again."""
        wanted = context.resamples if context.resamples_given else DETECTION_RESAMPLES
        largest = max([m.tp.shape[1] for m in (*self.matches[0], *self.matches[1])] + [self.n])
        chunk = max(1, min(wanted, CHUNK_FLOATS // largest))
        parts: list[dict[str, tuple]] = []
        total = 0
        while total < wanted:
            found = self._accumulated(self._weights(min(chunk, wanted - total), context), sizes)
            keep = ~np.isnan(found["map"][0])
            parts.append({key: tuple(v[keep] for v in pair) for key, pair in found.items()})
            total += int(keep.sum())
        return {key: tuple(np.concatenate([p[key][i] for p in parts])[:wanted]
                           for i in range(2)) for key in parts[0]}

    def replicates(self, context: Context) -> np.ndarray:
        """The drop on ``context.resamples`` paired resamples."""
        return drops(*self.resampled(context)["map"], context.margin)

    def evaluate(self, context: Context) -> Evaluation:
        require_margin(self.name, context.margin, ("absolute", "relative"))
        reference, candidate = (float(v[0]) for v in self.map(np.ones((1, self.n))))
        if np.isnan(reference):
            raise QuantGuardError(f"{context.where}: no image has a (non-crowd) ground-truth box, "
                                  f"so {self.name} is undefined; give labelled boxes")
        drop = float(self._drop(reference, candidate, context))
        resampled = self.resampled(context, sizes=self.breakdowns)
        low, high = percentile_limits(drops(*resampled["map"], context.margin), context.confidence)
        details = self._breakdown_details(resampled, context) if self.breakdowns else {}
        if low == high:  # every resample gives the same drop: the score bound, never zero width
            half = zero_discordance_halfwidth(self.n, context.confidence) * (abs(reference) or 1.0)
            return Evaluation(reference, candidate, drop,
                              IntervalResult(drop - half, drop + half, "degenerate-fallback", {}),
                              details=details)
        return Evaluation(reference, candidate, drop,
                          IntervalResult(low, high, "percentile",
                                         {"images": self.n, "resamples": len(resampled["map"][0])}),
                          details=details)

    def _breakdown_details(self, resampled: dict[str, tuple], context: Context) -> dict:
        """Per-class AP rows (absolute, as every family's per-class rows) and per-size mAP rows
        (the comparison's margin), from the overall interval's resamples."""
        ones = np.ones((1, self.n))
        full = self._accumulated(ones, True)
        ref_ap, cand_ap = (v[0] for v in full["per_class"])
        labels = [int(c) for c in self.classes]
        names = [self.class_names[c] if self.class_names and c < len(self.class_names) else c
                 for c in labels]
        counts = np.array([np.count_nonzero(m.positives) for m in self.matches[0]])
        per_class = rows(labels, names, counts, (ref_ap, cand_ap), resampled["per_class"],
                         "absolute", context)
        size_counts = np.array([np.count_nonzero(sum(m.positives for m in self.area_matches(s)[0]))
                                for s in SIZES])
        per_size = rows(list(SIZES), list(SIZES), size_counts,
                        tuple(np.array([full[s][i][0] for s in SIZES]) for i in range(2)),
                        tuple(np.column_stack([resampled[s][i] for s in SIZES]) for i in range(2)),
                        context.margin, context)
        return {"classes": len(self.classes),
                "per_class_ap": {int(c): [float(r), float(k)]
                                 for c, r, k in zip(self.classes, ref_ap, cand_ap, strict=True)},
                "per_class": per_class, "per_class_metric": f"AP ({self.name})",
                "per_size": per_size}


@dataclass(frozen=True)
class DetectionMetric(Metric):
    """COCO box mAP over ``thresholds`` (indices into 0.50:0.05:0.95)."""

    thresholds: tuple[int, ...] = tuple(range(len(IOU_THRESHOLDS)))

    def fits_task(self, task: str) -> bool:
        return task == DETECTION

    def reduce(self, output, labels, batch):
        if labels is None or labels.ndim != 3:
            raise QuantGuardError(
                f"metric {self.name!r} needs detection labels (padded boxes per image), but "
                f"{getattr(batch, 'origin', 'the validation set')} has "
                f"{'no labels' if labels is None else f'labels of shape {list(labels.shape)}'}; "
                "build the set with ValidationSet(inputs, labels=detection_labels(offsets, boxes, "
                f"classes, crowd), task={DETECTION!r}) (docs/data.md, \"Detection ground truth\")")
        return detections_from_output(output, f"metric {self.name!r}")

    def scores(self, reference, candidate, labels, paired) -> Scores:
        if labels is None:
            raise QuantGuardError(f"metric {self.name!r} needs ground-truth boxes: build the "
                                  "set with ValidationSet(inputs, labels=detection_labels(...), "
                                  f"task={DETECTION!r})")
        return DetectionScores(reference, candidate, labels, self.thresholds, self.name)


def _metric(name: str, thresholds: tuple[int, ...], what: str) -> DetectionMetric:
    return DetectionMetric(name=name, higher_is_better=True, kind="corpus",
                           interval_method="percentile", default_relative=False, needs_labels=True,
                           task=DETECTION, unit_interval=True, thresholds=thresholds,
                           description=f"COCO box mAP {what} (pycocotools' definition)")


MAP50 = _metric("map50", (0,), "at IoU 0.50")
MAP75 = _metric("map75", (5,), "at IoU 0.75")
MAP50_95 = _metric("map50_95", tuple(range(len(IOU_THRESHOLDS))), "averaged over IoU 0.50:0.95")
