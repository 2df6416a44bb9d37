"""Object-detection ground truth: the flat layout users give (per-image offsets into flat box,
class and crowd arrays) and the padded per-image labels the pipe carries (docs/data.md,
"Detection ground truth")."""

from __future__ import annotations

import numpy as np

from pytest_quantguard.errors import QuantGuardError

DETECTION = "detection"
# columns of one ground-truth row in the padded labels; a padding row has class -1
LABEL_COLUMNS = ("x1", "y1", "x2", "y2", "class", "crowd", "area")

# the arrays of an .npz shard holding detection ground truth (docs/data.md, "Detection ground
# truth"): the flat layout's offsets, boxes and classes, and optionally crowd flags and areas
NPZ_BOX_ARRAYS = ("box_offsets", "boxes", "box_classes")
NPZ_OPTIONAL_BOX_ARRAYS = ("box_crowd", "box_areas")

__all__ = ["DETECTION", "LABEL_COLUMNS", "NPZ_BOX_ARRAYS", "NPZ_OPTIONAL_BOX_ARRAYS",
           "check_box_headers", "check_detection_labels", "detection_labels", "npz_labels"]


def detection_labels(offsets, boxes, classes, crowd=None, areas=None, *, width: int | None = None,
                     where: str = "detection ground truth") -> np.ndarray:
    """The padded labels (images, most boxes in an image, 7) from the flat layout: image i owns
    rows ``offsets[i]:offsets[i + 1]`` of ``boxes`` (x1, y1, x2, y2), ``classes`` (integers >= 0),
    ``crowd`` (0/1, default 0) and ``areas`` (default: the box area, as COCO's area would be
    with boxes only); ``width``: pad every image to this many rows instead."""
    offsets, boxes = np.asarray(offsets), np.asarray(boxes, dtype=np.float64)
    classes = np.asarray(classes)
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
    padded = np.zeros((len(counts), width or max(int(counts.max()), 1), len(LABEL_COLUMNS)))
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


def check_box_headers(headers: dict[str, tuple[tuple[int, ...], np.dtype]], n: int,
                      where: str) -> bool:
    """Whether an .npz shard of ``n`` images holds detection ground truth, its arrays' shapes
    checked from their headers: ``box_offsets`` [n + 1] integers, ``boxes`` [total, 4],
    ``box_classes`` [total], and optionally ``box_crowd`` and ``box_areas`` [total]."""
    present = [name for name in NPZ_BOX_ARRAYS if name in headers]
    if not present:
        return False
    howto = ("np.savez(path, inputs=x, box_offsets=offsets, boxes=boxes, box_classes=classes, "
             "box_crowd=crowd)")
    if len(present) != len(NPZ_BOX_ARRAYS):
        missing = [name for name in NPZ_BOX_ARRAYS if name not in headers]
        raise QuantGuardError(f"{where}: detection ground truth needs the arrays "
                              f"{', '.join(NPZ_BOX_ARRAYS)}; {', '.join(missing)} missing. Save "
                              f"them with {howto}")
    offsets, dtype = headers["box_offsets"]
    if offsets != (n + 1,) or not np.issubdtype(dtype, np.integer):
        raise QuantGuardError(f"{where}: box_offsets must be {n + 1} integers (one per image plus "
                              f"one: image i owns boxes offsets[i]:offsets[i+1]), got shape "
                              f"{list(offsets)} {dtype}")
    total = headers["boxes"][0][0] if headers["boxes"][0] else None
    expected = {"boxes": (total, 4), "box_classes": (total,), "box_crowd": (total,),
                "box_areas": (total,)}
    for name, shape in expected.items():
        if name in headers and headers[name][0] != shape:
            raise QuantGuardError(f"{where}: array {name!r} has shape {list(headers[name][0])}; "
                                  f"the boxes need boxes [total, 4] and one value per box in "
                                  "box_classes, box_crowd and box_areas")
    return True


def npz_labels(arrays: dict[str, np.ndarray], n: int, width: int, where: str) -> np.ndarray:
    """A shard's padded labels from its box arrays, ``width`` rows per image (the most boxes in
    one image over every shard, so the shards' labels stack)."""
    return detection_labels(arrays["box_offsets"], arrays["boxes"], arrays["box_classes"],
                            arrays.get("box_crowd"), arrays.get("box_areas"), width=width,
                            where=where)
