"""User metrics: ``register_metric(name, per_sample=... | corpus=..., higher_is_better=...)``.

A per_sample metric's scores are a built-in family's (``BinaryScores`` or ``MeanScores``); a corpus
metric has its own, ``CorpusScores``: the user's function on the whole set, its interval a paired
``percentile`` bootstrap that calls the function twice per resample (docs/intervals.md, "Custom
metrics").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.base import (
    Context,
    Evaluation,
    Metric,
    Scores,
    absolute_change,
    relative_change,
    require_margin,
)
from pytest_quantguard.metrics.classification import BinaryScores
from pytest_quantguard.metrics.regression import REGRESSION_CAUTION, MeanScores
from pytest_quantguard.stats.bootstrap import percentile_limits
from pytest_quantguard.stats.result import IntervalResult
from pytest_quantguard.stats.sums import zero_discordance_halfwidth
from pytest_quantguard.vocabulary import TASKS

# Below this many samples a corpus metric's percentile interval under-covers: the simulation's
# false-ship rate is 0.064 at n = 500 and 0.040 at 2,000 (docs/intervals.md,
# "Known misses").
CORPUS_SAFE_FROM = 2000


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
class CustomMetric(Metric):
    """A registered user function: it may score any task's data, and carries its task's notes."""

    function: Callable[..., Any] = field(default=None, compare=False)

    def fits_task(self, task: str) -> bool:
        return True

    @property
    def notes(self) -> tuple[str, ...]:
        return (REGRESSION_CAUTION,) if self.task == "regression" else ()


@dataclass(frozen=True)
class PerSampleMetric(CustomMetric):
    """``per_sample(output_batch, labels_batch) -> one value per sample``; the model's score is
    the mean (``kind="binary"``: values 0/1, the 0/1 family's interval)."""

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
class CorpusMetric(CustomMetric):
    """``corpus(outputs, labels) -> float`` on the whole set (and on every resample)."""

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




@dataclass(frozen=True)
class CorpusScores(Scores):
    """A user's corpus metric ``function(outputs, labels) -> float`` on the whole set: paired
    percentile bootstrap over resampled samples (the function is called twice per resample)."""

    reference: np.ndarray  # the models' prediction rows
    candidate: np.ndarray
    labels: np.ndarray | None
    function: Callable[[np.ndarray, np.ndarray | None], float]
    name: str
    higher_is_better: bool

    @property
    def n(self) -> int:
        return len(self.reference)

    def subset(self, mask: np.ndarray) -> CorpusScores:
        return replace(self, reference=self.reference[mask], candidate=self.candidate[mask],
                       labels=None if self.labels is None else self.labels[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return self.reference, self.candidate

    def _value(self, outputs: np.ndarray, labels: np.ndarray | None) -> float:
        try:
            value = float(self.function(outputs, labels))
        except Exception as error:  # a user's function: name it, never a bare traceback
            raise QuantGuardError(f"custom metric {self.name!r}: its corpus function raised "
                                  f"{type(error).__name__}: {error}") from None
        if not math.isfinite(value):
            raise QuantGuardError(f"custom metric {self.name!r}: its corpus function returned "
                                  f"{value!r}; it must return a finite number")
        return value

    def _drop(self, reference: float, candidate: float, context: Context) -> float:
        if context.margin == "relative":
            return relative_change(reference, candidate, self.higher_is_better, self.name,
                                   context.where)
        return absolute_change(reference, candidate, self.higher_is_better)

    def _replicates(self, context: Context) -> np.ndarray:
        """The drop on ``context.resamples`` paired resamples of the samples."""
        replicates = np.empty(context.resamples)
        for b in range(context.resamples):
            index = context.rng.integers(0, self.n, self.n)
            labels = None if self.labels is None else self.labels[index]
            replicates[b] = self._drop(self._value(self.reference[index], labels),
                                       self._value(self.candidate[index], labels), context)
        return replicates

    def evaluate(self, context: Context) -> Evaluation:
        require_margin(self.name, context.margin, ("absolute", "relative"))
        if context.groups is not None:
            raise QuantGuardError(f"custom corpus metric {self.name!r}: grouped data is not "
                                  "supported; use a per_sample metric or drop the groups")
        reference = self._value(self.reference, self.labels)
        candidate = self._value(self.candidate, self.labels)
        drop = self._drop(reference, candidate, context)
        low, high = percentile_limits(self._replicates(context), context.confidence)
        if low == high:  # every resample gives the same drop: the score bound, never zero width
            half = zero_discordance_halfwidth(self.n, context.confidence) * (abs(reference) or 1.0)
            return Evaluation(reference, candidate, drop,
                              IntervalResult(drop - half, drop + half, "degenerate-fallback", {}))
        return Evaluation(reference, candidate, drop, IntervalResult(low, high, "percentile", {}),
                          notes=self._small_set_notes())

    def _small_set_notes(self) -> tuple[str, ...]:
        """The percentile interval's under-coverage on small sets, said while it applies."""
        if self.n >= CORPUS_SAFE_FROM:
            return ()
        return (f"a custom corpus metric's percentile interval under-covers on small sets (false "
                f"ship 0.064 at n = 500 in the simulation of docs/statistics.md, 0.040 at 2,000): "
                f"use at least {CORPUS_SAFE_FROM:,} samples, or a per_sample metric",)
