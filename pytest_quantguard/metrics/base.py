"""The metric protocol every family implements."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("binary", "continuous", "corpus", "grouped")


@dataclass(frozen=True)
class Metric:
    """A metric's identity and declarations; subclasses implement the three reductions."""

    name: str
    higher_is_better: bool
    kind: str  # one of KINDS: decides the interval family
    interval_method: str  # the method recorded on the Comparison when nothing degenerates
    default_relative: bool
    needs_labels: bool

    def reduce(self, output: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """A batch of one model's prediction output -> one small record per sample."""
        raise NotImplementedError

    def finalize(self, records: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """All records of one model -> per-sample scores."""
        raise NotImplementedError

    def aggregate(self, scores: np.ndarray) -> float:
        """Per-sample scores -> the model's score."""
        return float(np.mean(scores))
