"""Simulated detection sets for the coverage of the image bootstrap (docs/intervals.md,
"Detection mAP").

Images hold 0-20 objects (about one in seven empty; a negative binomial count of mean 6, cut
at 20) of 20 long-tailed classes (frequency
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
MAX_OBJECTS = 20
EMPTY = 0.1  # images made empty, besides the count's own zeros
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
class Scene:
    """The set's shape: classes, false positives per image (mean) and rows per output (the
    speed benchmark's 80 classes and up to 100 detections per image; docs/benchmarks.md,
    "Detection mAP")."""

    classes: int = CLASSES
    false_positives: float = FALSE_POSITIVES
    max_det: int = MAX_DET


@dataclass(frozen=True)
class DetectionSet:
    labels: np.ndarray  # (n, boxes, 7)
    reference: np.ndarray  # (n, MAX_DET, 6)
    candidate: np.ndarray


def _truth(rng: np.random.Generator, n: int, classes: int):
    counts = np.where(rng.random(n) < EMPTY, 0, np.minimum(rng.negative_binomial(2, 0.25, n), MAX_OBJECTS))
    total = int(counts.sum())
    side = np.exp(rng.uniform(np.log(8), np.log(300), total))
    wh = side[:, None] * rng.uniform(0.6, 1.4, (total, 2))
    xy = rng.uniform(0, 640, (total, 2))
    prior = 1.0 / np.arange(1, classes + 1)
    drawn = rng.choice(classes, total, p=prior / prior.sum())
    crowd = (rng.random(total) < 1 / 30).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return offsets, np.column_stack([xy, xy + wh]), drawn, crowd


def _hits(rng, boxes, classes, found, jitter, logit):
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[:, None]
    moved = boxes + rng.normal(0, 1, boxes.shape) * jitter * side
    moved[:, 2:] = np.maximum(moved[:, 2:], moved[:, :2] + 1)
    return np.column_stack([moved, logit, classes])[found]


def detection_set(rng: np.random.Generator, n: int, degradation: Degradation = Degradation(),
                  scene: Scene = Scene()) -> DetectionSet:
    """``n`` images: ground truth and both detectors' post-NMS outputs (padding: score 0)."""
    offsets, boxes, classes, crowd = _truth(rng, n, scene.classes)
    total = len(classes)
    image = np.repeat(np.arange(n), np.diff(offsets))
    real = crowd == 0
    # the reference: 88% of objects found, 6% side jitter, scores with a hit-logit of 1.5 +- 1
    found = real & (rng.random(total) < 0.88)
    logit = rng.normal(1.5, 1.0, total)
    ref_hits = _hits(rng, boxes, classes, found, 0.06, logit)
    hit_image = image[found]
    fp_count = rng.poisson(scene.false_positives, n)
    fp_image = np.repeat(np.arange(n), fp_count)
    k = len(fp_image)
    xy, side = rng.uniform(0, 640, (k, 2)), np.exp(rng.uniform(np.log(8), np.log(300), k))
    prior = 1.0 / np.arange(1, scene.classes + 1)
    fp_class = rng.choice(scene.classes, k, p=prior / prior.sum())
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
    return DetectionSet(labels, _padded(rows, owner, n, scene.max_det),
                        _padded(cand[kept], owner[kept], n, scene.max_det))


def _padded(rows: np.ndarray, owner: np.ndarray, n: int, max_det: int) -> np.ndarray:
    """[n, max_det, 6] with the logit turned into a score in (0, 1) (padding rows: score 0); an
    image's rows past ``max_det`` are dropped."""
    order = np.argsort(owner, kind="stable")
    rows, owner = rows[order], owner[order]
    counts = np.bincount(owner, minlength=n)
    slot = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = slot < max_det
    out = np.zeros((n, max_det, 6))
    scored = rows.copy()
    scored[:, 4] = 1.0 / (1.0 + np.exp(-rows[:, 4]))
    out[owner[keep], slot[keep]] = scored[keep]
    return out


MILD = Degradation(jitter=0.02, score_noise=0.3, miss=0.02)
# The MILD candidate's true drops and their Monte-Carlo SE: ``detection_true_drop()``, 50 chunks
# of 20,000 images (10^6 images, 49 s; docs/benchmarks.md, "Detection mAP")
TRUE_DROPS = {"map50": (0.020101, 0.000123), "map50_95": (0.028613, 0.000085)}


def _scores(drawn: DetectionSet, metric: str):
    from pytest_quantguard.metrics.detection import MAP50, MAP50_95, DetectionScores

    thresholds = (MAP50 if metric == "map50" else MAP50_95).thresholds
    return DetectionScores(drawn.reference, drawn.candidate, drawn.labels, thresholds, metric,
                           breakdowns=False)


def detection_true_drop(degradation: Degradation = MILD, *, images: int = 1_000_000,
                        chunk: int = 20_000, seed: int = 2024) -> dict[str, tuple[float, float]]:
    """The map50 and map50_95 drops' expected values: the mean over ``images // chunk``
    independent sets of ``chunk`` images (each matched once, both metrics from the same matches;
    memory stays that of one chunk), and their Monte-Carlo standard errors (the chunks' spread /
    sqrt(chunks))."""
    from pytest_quantguard.metrics.detection_coco import mean_ap, per_class_ap

    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {"map50": [], "map50_95": []}
    for _ in range(max(images // chunk, 2)):
        scores = _scores(detection_set(rng, chunk, degradation), "map50_95")
        ones = np.ones((1, chunk))
        reference, candidate = (per_class_ap(m, ones) for m in scores.matches)
        values["map50"].append(float(mean_ap(reference, 0)[0] - mean_ap(candidate, 0)[0]))
        values["map50_95"].append(float(mean_ap(reference)[0] - mean_ap(candidate)[0]))
    return {metric: (float(np.mean(v)), float(np.std(v, ddof=1) / np.sqrt(len(v))))
            for metric, v in values.items()}


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
