"""Metrics: what one sample's score is, which direction is worse, and how its interval is made.

The registry maps the built-in metric names (and user metrics from ``register_metric`` or the
``pytest_quantguard_register_metrics`` hook) to ``Metric`` objects. A metric declares its
direction, kind, interval method, default ``relative`` and the margins it offers; its family's
``Scores`` (beside it in its module; all of them by name in ``metrics.scores``) computes the
scores, the drop and the interval. New families (e.g. detection mAP) add a ``Metric`` subclass
and a ``Scores`` class (docs/contributing.md): nothing here changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Context, Discordance, Evaluation, Metric, Scores, Sizing
from pytest_quantguard.metrics.classification import ACCURACY, MACRO_F1, PER_CLASS_ACCURACY, top_k
from pytest_quantguard.metrics.custom import make_metric
from pytest_quantguard.metrics.detection import MAP50, MAP50_95, MAP75
from pytest_quantguard.metrics.fidelity import AGREEMENT, COSINE, REL_ERROR
from pytest_quantguard.metrics.language import PERPLEXITY
from pytest_quantguard.metrics.regression import MAE, R2, RMSE

BUILT_IN: dict[str, Metric] = {
    "accuracy": ACCURACY, "top1": ACCURACY, "top_k": top_k(None, "top_k"), "macro_f1": MACRO_F1,
    "per_class_accuracy": PER_CLASS_ACCURACY, "mae": MAE, "rmse": RMSE, "r2": R2,
    "perplexity": PERPLEXITY, "agreement": AGREEMENT, "cosine": COSINE, "rel_error": REL_ERROR,
    "map50": MAP50, "map50_95": MAP50_95, "map75": MAP75,
}
_CUSTOM: dict[str, Metric] = {}
TASK_DEFAULTS = {"classification": "accuracy", "regression": "rmse", "fidelity": "agreement",
                 "language-model": "perplexity", "detection": "map50_95"}
_TOP_K = re.compile(r"top([1-9][0-9]*)")


def register_metric(name: str, *, per_sample: Callable | None = None,
                    corpus: Callable | None = None, corpus_of_classes: Callable | None = None,
                    higher_is_better: bool = True,
                    kind: str | None = None, relative: bool = False, needs_labels: bool = True,
                    task: str = "classification") -> Metric:
    """Make a metric usable by name (``metric="name"`` in the marker, ``compare()``, ``metrics=``).

    ``per_sample(output_batch, labels_batch) -> values``: one value per sample, the model's score
    is their mean; ``kind="binary"`` for 0/1 values (1 = right; the 0/1 interval), else
    ``"continuous"`` (BCa). ``corpus(outputs, labels) -> float``: one value for the whole set
    (macro averages, ranking metrics); its interval is a paired percentile bootstrap that calls
    it twice per resample. ``corpus_of_classes(labels, predicted) -> float``: a whole-set score of
    the predicted classes (balanced accuracy, MCC, κ; scikit-learn's argument order), resampled as
    prediction patterns (docs/intervals.md, "Corpus metrics of class predictions"). ``relative``:
    the default margin. Registering a name again replaces
    the earlier custom metric; built-in names cannot be replaced.
    """
    if name in BUILT_IN or _TOP_K.fullmatch(str(name)):
        raise QuantGuardError(f"register_metric: {name!r} is a built-in metric; choose another name")
    metric = make_metric(name, per_sample=per_sample, corpus=corpus,
                         corpus_of_classes=corpus_of_classes, higher_is_better=higher_is_better,
                         kind=kind, relative=relative, needs_labels=needs_labels, task=task)
    _CUSTOM[name] = metric
    return metric


def available() -> list[str]:
    return sorted({*BUILT_IN, *_CUSTOM, "top{k}"})


def get_metric(name: str | None, task: str, options: dict[str, Any] | None = None) -> Metric:
    """The metric called ``name`` (the task's default when None), configured with ``options``."""
    if name is None:
        name = TASK_DEFAULTS[task]
    if not isinstance(name, str):
        raise QuantGuardError(f"metric must be a metric name (a string), got {name!r}")
    match = _TOP_K.fullmatch(name)
    if name in BUILT_IN:
        metric = BUILT_IN[name]
    elif name in _CUSTOM:
        metric = _CUSTOM[name]
    elif match:
        metric = top_k(int(match.group(1)))
    else:
        raise QuantGuardError(f"unknown metric {name!r}; available: {', '.join(available())} "
                              "(register your own with pytest_quantguard.register_metric)")
    return metric.configure(options or {})


__all__ = ["Context", "Discordance", "Evaluation", "Metric", "Scores", "Sizing", "available",
           "get_metric", "register_metric"]
