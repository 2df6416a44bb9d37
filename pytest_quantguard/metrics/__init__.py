"""Metrics: what one sample's score is, which direction is worse, and how its interval is made.

A metric reduces each batch of one model's prediction output at once to a small per-sample record
(``reduce``), so the pipe never holds all outputs; ``finalize`` turns the records of the whole set
into per-sample scores (needed where a decision depends on the whole set, e.g. the threshold of a
one-column score); ``aggregate`` gives the model's score.
"""

from __future__ import annotations

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Metric
from pytest_quantguard.metrics.classification import ACCURACY

# name -> metric; aliases point at the same object. Later issues add entries, never rewrite.
_REGISTRY: dict[str, Metric] = {"accuracy": ACCURACY, "top1": ACCURACY}
# What SPEC §2 names but this version does not compute yet: named in the error, never ignored.
PLANNED = ("top_k", "top5", "macro_f1", "per_class_accuracy", "mae", "rmse", "r2", "perplexity",
           "agreement", "cosine", "rel_error")
TASK_DEFAULTS = {"classification": "accuracy", "regression": "rmse", "fidelity": "agreement",
                 "language-model": "perplexity"}


def get_metric(name: str | None, task: str) -> Metric:
    """The metric called ``name``, or the task's default when ``name`` is None."""
    if name is None:
        name = TASK_DEFAULTS[task]
    if not isinstance(name, str):
        raise QuantGuardError(f"metric must be a metric name (a string), got {name!r}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in PLANNED or (name.startswith("top") and name[3:].isdigit()):
        raise QuantGuardError(f"metric {name!r} is part of the contract but not implemented in this "
                              f"version yet; available: {', '.join(sorted(_REGISTRY))}")
    raise QuantGuardError(f"unknown metric {name!r}; available: {', '.join(sorted(_REGISTRY))}")


__all__ = ["Metric", "get_metric"]
