"""Classification metrics on class scores (logits or probabilities) and integer labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Metric


@dataclass(frozen=True)
class Accuracy(Metric):
    """Top-1 accuracy. Scores per sample are 0/1; a one-column score is thresholded, not argmaxed.

    Records: the predicted class (integer) for a multi-column output; the raw score (float) for a
    one-column output, so the threshold (0.5 for probabilities in [0, 1], else 0 for logits) is
    chosen from the whole set, never from one batch.
    """

    def reduce(self, output: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        output = squeeze_trailing(output)
        if output.ndim == 1:
            return output if np.issubdtype(output.dtype, np.floating) else output.astype(np.int64)
        if output.ndim != 2:
            raise QuantGuardError(f"accuracy needs one row of class scores per sample, got an output "
                                  f"of shape {list(output.shape)}; choose the class-score output "
                                  "with output=")
        return np.argmax(output, axis=1)

    def finalize(self, records: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        if labels is None:
            raise QuantGuardError("accuracy needs labels")
        if np.issubdtype(records.dtype, np.floating):
            threshold = 0.5 if records.min() >= 0.0 and records.max() <= 1.0 else 0.0
            records = (records > threshold).astype(np.int64)
        return (records == integer_labels(labels)).astype(np.int8)


def squeeze_trailing(output: np.ndarray) -> np.ndarray:
    """A trailing output axis of size 1 is squeezed (SPEC §2 Metrics)."""
    return output[..., 0] if output.ndim >= 2 and output.shape[-1] == 1 else output


def integer_labels(labels: np.ndarray) -> np.ndarray:
    if np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
        return labels.astype(np.int64)
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
        return labels.astype(np.int64)
    raise QuantGuardError(f"class labels must be integers, got {labels.dtype} values such as "
                          f"{labels[:3].tolist()}; store class indices")


ACCURACY = Accuracy(name="accuracy", higher_is_better=True, kind="binary",
                    interval_method="percentile+tango", default_relative=False, needs_labels=True)
