"""Detection outputs given as separate arrays: boxes [batch, max_det, 4], scores [batch, max_det],
classes [batch, max_det] and optionally a count [batch] (or [batch, 1]), merged into the
[batch, max_det, 6] rows the detection metrics read (docs/data.md, "Detection outputs").

The arrays are recognised by name (case-insensitive: "box", "score", "class" or "label", "num"
or "count" in the name, as torchvision's boxes / scores / labels or TensorFlow's
detection_boxes / detection_scores / detection_classes / num_detections), else by position in
the order boxes, scores, classes[, count] (a torch module returning a tuple). Padding: a row is
padding when its score is 0, and with a count output also when its index is at or past the
image's count (its score is then set to 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pytest_quantguard.errors import QuantGuardError

ROLES = {"boxes": ("box",), "scores": ("score",), "classes": ("class", "label"),
         "count": ("num", "count")}


def _by_name(outputs: Mapping[str, np.ndarray]) -> dict[str, str] | None:
    """Role -> output name when every name says its role (each role at most once)."""
    found: dict[str, str] = {}
    for name in outputs:
        roles = [role for role, words in ROLES.items() if any(w in name.lower() for w in words)]
        if len(roles) != 1 or roles[0] in found:
            return None
        found[roles[0]] = name
    return found if {"boxes", "scores", "classes"} <= set(found) else None


def _roles(outputs: Mapping[str, np.ndarray]) -> dict[str, str] | None:
    named = _by_name(outputs)
    if named is not None:
        return named
    names = list(outputs)
    if len(names) not in (3, 4):
        return None
    return dict(zip(("boxes", "scores", "classes", "count"), names, strict=False))


def merged_detections(outputs: Mapping[str, np.ndarray], where: str) -> np.ndarray:
    """The [batch, max_det, 6] rows (x1, y1, x2, y2, score, class) of separate outputs."""
    roles = _roles(outputs)
    shapes = {name: list(np.shape(value)) for name, value in outputs.items()}
    if roles is None:
        raise QuantGuardError(
            f"{where}: a detection model returns one [batch, max_det, 6] output, or boxes, scores "
            f"and classes (and optionally a count) as separate outputs; got {shapes}. Name them "
            "with 'box', 'score', 'class' (or 'label') and 'num' (or 'count'), return them in "
            "that order, or pick the [batch, max_det, 6] output with output= "
            '(docs/data.md, "Detection outputs")')
    boxes = np.asarray(outputs[roles["boxes"]], dtype=np.float64)
    scores = np.asarray(outputs[roles["scores"]], dtype=np.float64)
    classes = np.asarray(outputs[roles["classes"]], dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.shape != boxes.shape[:2] \
            or classes.shape != boxes.shape[:2]:
        raise QuantGuardError(
            f"{where}: separate detection outputs need boxes [batch, max_det, 4] and scores and "
            f"classes [batch, max_det] (roles {roles}); got {shapes} "
            '(docs/data.md, "Detection outputs")')
    scores = scores.copy()
    if "count" in roles:
        count = np.asarray(outputs[roles["count"]]).reshape(-1)
        if count.shape != (len(boxes),) or np.any(count % 1 != 0) or np.any(count < 0):
            raise QuantGuardError(f"{where}: the count output {roles['count']!r} needs one "
                                  f"integer >= 0 per image ([batch] or [batch, 1]); got "
                                  f"{shapes[roles['count']]}")
        scores[np.arange(scores.shape[1])[None, :] >= count[:, None]] = 0.0  # past the count
    return np.concatenate([boxes, scores[..., None], classes[..., None]], axis=2)
