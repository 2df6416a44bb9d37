"""Simulated detection sets for the coverage of the image bootstrap (docs/intervals.md,
"Detection mAP").

Images hold 0-10 objects (about one in six empty) of 20 long-tailed classes (frequency
proportional to 1 / rank), sides log-uniform over 8-300 pixels (all three COCO area ranges), and
about one crowd region in 30 boxes. The reference detector finds most objects with jittered boxes
(so AP@0.75 < AP@0.5) and scores that rank hits above its false positives only on average; the
candidate is the reference's own detections degraded further — extra box jitter, score noise and
extra misses — so the two are paired as a quantized model and its reference are. The true drop is
the mAP difference on a very large set of images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pytest_quantguard.data.detection import detection_labels

CLASSES = 20
MAX_OBJECTS = 10
FALSE_POSITIVES = 1.5  # mean per image
MAX_DET = MAX_OBJECTS + 12


@dataclass(frozen=True)
class Degradation:
    """The candidate's extra degradation: box jitter (fraction of the side), score noise (on the
    logit) and the probability of losing a detection."""

    jitter: float = 0.04
    score_noise: float = 0.5
    miss: float = 0.03


@dataclass(frozen=True)
class DetectionSet:
    labels: np.ndarray  # (n, boxes, 7)
    reference: np.ndarray  # (n, MAX_DET, 6)
    candidate: np.ndarray


def _truth(rng: np.random.Generator, n: int):
    counts = np.minimum(rng.poisson(3.0, n), MAX_OBJECTS)
    total = int(counts.sum())
    side = np.exp(rng.uniform(np.log(8), np.log(300), total))
    wh = side[:, None] * rng.uniform(0.6, 1.4, (total, 2))
    xy = rng.uniform(0, 640, (total, 2))
    prior = 1.0 / np.arange(1, CLASSES + 1)
    classes = rng.choice(CLASSES, total, p=prior / prior.sum())
    crowd = (rng.random(total) < 1 / 30).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return offsets, np.column_stack([xy, xy + wh]), classes, crowd


def _hits(rng, boxes, classes, found, jitter, logit):
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[:, None]
    moved = boxes + rng.normal(0, 1, boxes.shape) * jitter * side
    moved[:, 2:] = np.maximum(moved[:, 2:], moved[:, :2] + 1)
    return np.column_stack([moved, logit, classes])[found]


def detection_set(rng: np.random.Generator, n: int,
                  degradation: Degradation = Degradation()) -> DetectionSet:
    """``n`` images: ground truth and both detectors' post-NMS outputs (padding: score 0)."""
    offsets, boxes, classes, crowd = _truth(rng, n)
    total = len(classes)
    image = np.repeat(np.arange(n), np.diff(offsets))
    real = crowd == 0
    # the reference: 88% of objects found, 6% side jitter, scores with a hit-logit of 1.5 +- 1
    found = real & (rng.random(total) < 0.88)
    logit = rng.normal(1.5, 1.0, total)
    ref_hits = _hits(rng, boxes, classes, found, 0.06, logit)
    hit_image = image[found]
    fp_count = rng.poisson(FALSE_POSITIVES, n)
    fp_image = np.repeat(np.arange(n), fp_count)
    k = len(fp_image)
    xy, side = rng.uniform(0, 640, (k, 2)), np.exp(rng.uniform(np.log(8), np.log(300), k))
    fp_class = rng.choice(CLASSES, k, p=(p := 1.0 / np.arange(1, CLASSES + 1)) / p.sum())
    fps = np.column_stack([xy, xy + side[:, None], rng.normal(-0.5, 1.0, k), fp_class])
    rows = np.concatenate([ref_hits, fps])
    owner = np.concatenate([hit_image, fp_image])
    # the candidate: the same detections, jittered again, scores perturbed, some lost
    cand = rows.copy()
    side = np.sqrt((rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1]))[:, None]
    cand[:, :4] += rng.normal(0, 1, (len(rows), 4)) * degradation.jitter * side
    cand[:, 2:4] = np.maximum(cand[:, 2:4], cand[:, :2] + 1)
    cand[:, 4] += rng.normal(0, degradation.score_noise, len(rows))
    kept = rng.random(len(rows)) >= degradation.miss
    labels = detection_labels(offsets, boxes, classes, crowd)
    return DetectionSet(labels, _padded(rows, owner, n), _padded(cand[kept], owner[kept], n))


def _padded(rows: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """[n, MAX_DET, 6] with the logit turned into a score in (0, 1) (padding rows: score 0)."""
    order = np.argsort(owner, kind="stable")
    rows, owner = rows[order], owner[order]
    counts = np.bincount(owner, minlength=n)
    slot = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = slot < MAX_DET
    out = np.zeros((n, MAX_DET, 6))
    scored = rows.copy()
    scored[:, 4] = 1.0 / (1.0 + np.exp(-rows[:, 4]))
    out[owner[keep], slot[keep]] = scored[keep]
    return out


MILD = Degradation(jitter=0.02, score_noise=0.3, miss=0.02)


def _scores(drawn: DetectionSet, metric: str):
    from pytest_quantguard.metrics.detection import MAP50, MAP50_95, DetectionScores

    thresholds = (MAP50 if metric == "map50" else MAP50_95).thresholds
    return DetectionScores(drawn.reference, drawn.candidate, drawn.labels, thresholds, metric,
                           breakdowns=False)


def detection_true_drop(metric: str = "map50", degradation: Degradation = MILD, *,
                        images: int = 10_000, sets: int = 4,
                        seed: int = 2024) -> tuple[float, float]:
    """The drop's expected value over ``sets`` independent sets of ``images`` images, and its
    Monte-Carlo standard error (the sets' spread / sqrt(sets))."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(sets):
        reference, candidate = _scores(detection_set(rng, images, degradation), metric).map(
            np.ones((1, images)))
        values.append(reference[0] - candidate[0])
    return float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(sets))


def detection_cell(n: int, true_drop: float, metric: str = "map50", *, resamples: int,
                   degradation: Degradation = MILD):
    """A coverage cell: ``n`` images a set, the paired image bootstrap at ``resamples``."""
    from pytest_quantguard.metrics.base import Context
    from pytest_quantguard.simulation.harness import CONFIDENCE, Cell

    def interval(drawn: DetectionSet, rng: np.random.Generator):
        context = Context(margin="absolute", confidence=CONFIDENCE, resamples=resamples, rng=rng)
        return _scores(drawn, metric).evaluate(context).interval

    params = (("n", n), ("metric", metric), ("jitter", degradation.jitter),
              ("score_noise", degradation.score_noise), ("miss", degradation.miss))
    return Cell("detection", params, "percentile", true_drop,
                lambda rng: detection_set(rng, n, degradation), interval)
