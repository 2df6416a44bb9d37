"""User metrics: ``register_metric(name, per_sample=... | corpus=..., higher_is_better=...)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import Metric, Scores
from pytest_quantguard.metrics.scores import BinaryScores, CorpusScores, MeanScores
from pytest_quantguard.vocabulary import TASKS


def _call(name: str, function: Callable, *args: Any) -> Any:
    try:
        return function(*args)
    except QuantGuardError:
        raise
    except Exception as error:  # a user's function: name it, never a bare traceback
        raise QuantGuardError(f"custom metric {name!r}: its function raised "
                              f"{type(error).__name__}: {error}") from None


def _sample(values: Any) -> str:
    try:
        return repr(list(values)[:3])
    except TypeError:
        return repr(values)[:60]


@dataclass(frozen=True)
class PerSampleMetric(Metric):
    """``per_sample(output_batch, labels_batch) -> one value per sample``; the model's score is
    the mean (``kind="binary"``: values 0/1, the 0/1 family's interval)."""

    function: Callable[..., Any] = field(default=None, compare=False)

    def reduce(self, output, labels, batch):
        returned = _call(self.name, self.function, output, labels)
        try:
            values = np.asarray(returned, dtype=np.float64)
        except (TypeError, ValueError):
            raise QuantGuardError(f"custom metric {self.name!r}: per_sample must return numbers, "
                                  f"one per sample; got {type(returned).__name__} values such as "
                                  f"{_sample(returned)}") from None
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape != (len(output),):
            raise QuantGuardError(f"custom metric {self.name!r}: per_sample must return one value "
                                  f"per sample ({len(output)} for this batch), got shape "
                                  f"{list(values.shape)}")
        if not np.isfinite(values).all():
            raise QuantGuardError(f"custom metric {self.name!r}: per_sample returned NaN or Inf")
        if self.kind == "binary" and not np.isin(values, (0.0, 1.0)).all():
            raise QuantGuardError(f"custom metric {self.name!r} is registered with kind='binary' "
                                  "but per_sample returned values other than 0 and 1; register "
                                  "it with kind='continuous'")
        return values

    def scores(self, reference, candidate, labels, paired) -> Scores:
        if self.kind == "binary":
            return BinaryScores(reference.astype(np.int8), candidate.astype(np.int8), self.name)
        return MeanScores(reference, candidate, self.name, self.higher_is_better)


@dataclass(frozen=True)
class CorpusMetric(Metric):
    """``corpus(outputs, labels) -> float`` on the whole set (and on every resample)."""

    function: Callable[..., Any] = field(default=None, compare=False)

    def reduce(self, output, labels, batch):
        return np.asarray(output)

    def scores(self, reference, candidate, labels, paired) -> Scores:
        return CorpusScores(reference, candidate, labels, self.function, self.name,
                            self.higher_is_better)


def make_metric(name: str, *, per_sample: Callable | None = None, corpus: Callable | None = None,
                higher_is_better: bool = True, kind: str | None = None, relative: bool = False,
                needs_labels: bool = True, task: str = "classification") -> Metric:
    if not isinstance(name, str) or not name.isidentifier():
        raise QuantGuardError(f"register_metric: name must be an identifier-like string, got "
                              f"{name!r}")
    if (per_sample is None) == (corpus is None):
        raise QuantGuardError(f"register_metric({name!r}): give exactly one of per_sample= (one "
                              "value per sample) or corpus= (one value for the whole set)")
    function = per_sample if per_sample is not None else corpus
    if not callable(function):
        raise QuantGuardError(f"register_metric({name!r}): {function!r} is not callable")
    if not all(isinstance(flag, bool) for flag in (higher_is_better, relative, needs_labels)):
        raise QuantGuardError(f"register_metric({name!r}): higher_is_better, relative and "
                              "needs_labels must be True or False")
    if task not in TASKS:
        raise QuantGuardError(f"register_metric({name!r}): task={task!r} is unknown; use one of "
                              f"{', '.join(map(repr, TASKS))}")
    common = dict(name=name, higher_is_better=higher_is_better, default_relative=relative,
                  needs_labels=needs_labels, task=task, description="custom metric")
    if per_sample is not None:
        kind = kind or "continuous"
        if kind not in ("binary", "continuous"):
            raise QuantGuardError(f"register_metric({name!r}): a per_sample metric's kind is "
                                  f"'binary' (0/1 values) or 'continuous', got {kind!r}")
        if kind == "binary" and not higher_is_better:
            raise QuantGuardError(f"register_metric({name!r}): a binary metric scores 1 for a "
                                  "right sample; return 1 for right, 0 for wrong, and register it "
                                  "with higher_is_better=True")
        method = "percentile+tango" if kind == "binary" else "bca"
        margins = ("absolute", "relative", "error-increase") if kind == "binary" else (
            "absolute", "relative")
        return PerSampleMetric(kind=kind, interval_method=method, margins=margins,
                               function=per_sample, **common)
    if kind not in (None, "corpus"):
        raise QuantGuardError(f"register_metric({name!r}): a corpus metric's kind is 'corpus', got "
                              f"{kind!r}")
    return CorpusMetric(kind="corpus", interval_method="percentile", function=corpus, **common)


