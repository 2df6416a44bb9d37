"""Object-detection ground truth: the flat layout users give (per-image offsets into flat box,
class and crowd arrays) and the padded per-image labels the pipe carries (docs/data.md,
"Detection ground truth")."""

from __future__ import annotations

import numpy as np

from pytest_quantguard.errors import QuantGuardError

DETECTION = "detection"
# columns of one ground-truth row in the padded labels; a padding row has class -1
LABEL_COLUMNS = ("x1", "y1", "x2", "y2", "class", "crowd", "area")

__all__ = ["DETECTION", "LABEL_COLUMNS", "check_detection_labels", "detection_labels"]


def detection_labels(offsets, boxes, classes, crowd=None, areas=None) -> np.ndarray:
    """The padded labels (images, most boxes in an image, 7) from the flat layout: image i owns
    rows ``offsets[i]:offsets[i + 1]`` of ``boxes`` (x1, y1, x2, y2), ``classes`` (integers >= 0),
    ``crowd`` (0/1, default 0) and ``areas`` (default: the box area, as COCO's area would be
    with boxes only)."""
    offsets, boxes = np.asarray(offsets), np.asarray(boxes, dtype=np.float64)
    classes = np.asarray(classes)
    where = "detection ground truth"
    if offsets.ndim != 1 or len(offsets) < 2 or not np.issubdtype(offsets.dtype, np.integer):
        raise QuantGuardError(f"{where}: offsets must be integers, one per image plus one "
                              f"(image i owns rows offsets[i]:offsets[i+1]), got shape "
                              f"{list(offsets.shape)} {offsets.dtype}")
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise QuantGuardError(f"{where}: offsets must start at 0 and never decrease, got "
                              f"{offsets[:5].tolist()}...")
    total = int(offsets[-1])
    if boxes.shape != (total, 4) or classes.shape != (total,):
        raise QuantGuardError(f"{where}: offsets end at {total}, so boxes need shape [{total}, 4] "
                              f"and classes [{total}]; got {list(boxes.shape)} and "
                              f"{list(classes.shape)}")
    crowd = np.zeros(total) if crowd is None else np.asarray(crowd)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    areas = widths * heights if areas is None else np.asarray(areas, dtype=np.float64)
    if crowd.shape != (total,) or areas.shape != (total,):
        raise QuantGuardError(f"{where}: crowd and areas need one value per box ({total})")
    counts = np.diff(offsets)
    padded = np.zeros((len(counts), max(int(counts.max()), 1), len(LABEL_COLUMNS)))
    padded[..., 4] = -1
    image = np.repeat(np.arange(len(counts)), counts)
    slot = np.arange(total) - np.repeat(offsets[:-1], counts)
    padded[image, slot] = np.column_stack([boxes, classes, crowd, areas])
    return check_detection_labels(padded, len(counts), where)


def check_detection_labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
    """Padded labels: shape (n, boxes, 7), classes integers >= 0 (-1 on padding rows), crowd 0/1,
    x2 >= x1 and y2 >= y1, finite."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 3 or labels.shape[0] != n or labels.shape[2] != len(LABEL_COLUMNS):
        raise QuantGuardError(f"{where}: detection labels need shape [{n}, boxes, "
                              f"{len(LABEL_COLUMNS)}] ({', '.join(LABEL_COLUMNS)}), got "
                              f"{list(labels.shape)}; build them with "
                              "pytest_quantguard.data.detection.detection_labels(offsets, boxes, "
                              "classes, crowd)")
    real = labels[..., 4] >= 0
    rows = labels[real]
    if not np.isfinite(labels).all() or np.any(labels[..., 4] % 1 != 0) or np.any(labels[..., 4] < -1):
        raise QuantGuardError(f"{where}: detection labels hold a NaN/Inf or a class that is not an "
                              "integer >= 0 (-1 marks a padding row)")
    if np.any((rows[:, 2] < rows[:, 0]) | (rows[:, 3] < rows[:, 1])):
        raise QuantGuardError(f"{where}: a ground-truth box has x2 < x1 or y2 < y1; boxes are "
                              "(x1, y1, x2, y2) corners")
    if not np.isin(rows[:, 5], (0, 1)).all():
        raise QuantGuardError(f"{where}: crowd flags must be 0 or 1")
    return labels
