"""User metrics: ``register_metric(name, per_sample=... | corpus=... | corpus_of_classes=...,
higher_is_better=...)``.

A per_sample metric's scores are a built-in family's (``BinaryScores`` or ``MeanScores``). A corpus
metric has its own, ``CorpusScores``: the user's function on the whole set, its interval a paired
``percentile`` bootstrap that calls the function twice per resample (docs/intervals.md, "Custom
metrics"). A corpus metric of class predictions (``corpus_of_classes=f(labels, predicted)``) sees
only labels and predicted classes, so its set is resampled as prediction patterns, as macro-F1's
(``ClassCorpusScores``; docs/intervals.md, "Corpus metrics of class predictions").
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
    integer_labels,
    relative_change,
    require_margin,
    squeeze_trailing,
    variance_sizing,
)
from pytest_quantguard.metrics.classification import (
    BinaryScores,
    predicted_classes,
    predicted_records,
)
from pytest_quantguard.metrics.regression import MeanScores
from pytest_quantguard.stats.bootstrap import percentile_limits
from pytest_quantguard.stats.families import STUDENTIZE_BELOW
from pytest_quantguard.stats.patterns import CellScore, class_corpus_interval
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
    """A registered user function: it may score any task's data (its task's risk notes, e.g. the
    regression caution, come with the comparison: docs/risks.md)."""

    function: Callable[..., Any] = field(default=None, compare=False)

    def fits_task(self, task: str) -> bool:
        return True


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


@dataclass(frozen=True)
class ClassCorpusMetric(CustomMetric):
    """``corpus_of_classes(labels, predicted) -> float``: a whole-set score of one model's predicted
    classes (argmax of its class scores, as accuracy's), resampled as prediction patterns."""

    def reduce(self, output, labels, batch):
        return predicted_records(self.name, output)

    def scores(self, reference, candidate, labels, paired) -> Scores:
        if labels is None:
            raise QuantGuardError(f"custom metric {self.name!r} (corpus_of_classes) needs labels")
        labels = squeeze_trailing(np.asarray(labels))
        if labels.ndim != 1:
            raise QuantGuardError(f"custom metric {self.name!r} (corpus_of_classes) needs one class "
                                  f"label per sample, got labels of shape {list(labels.shape)}")
        return ClassCorpusScores(integer_labels(labels), predicted_classes(reference),
                                 predicted_classes(candidate), self.function, self.name,
                                 self.higher_is_better)


def _one_function(name: str, per_sample, corpus, corpus_of_classes) -> Callable:
    given = [function for function in (per_sample, corpus, corpus_of_classes) if function is not None]
    if len(given) != 1:
        raise QuantGuardError(f"register_metric({name!r}): give exactly one of per_sample= (one "
                              "value per sample), corpus= (one value for the whole set) or "
                              "corpus_of_classes= (one value from the labels and predicted classes)")
    if not callable(given[0]):
        raise QuantGuardError(f"register_metric({name!r}): {given[0]!r} is not callable")
    return given[0]


def make_metric(name: str, *, per_sample: Callable | None = None, corpus: Callable | None = None,
                corpus_of_classes: Callable | None = None, higher_is_better: bool = True,
                kind: str | None = None, relative: bool = False, needs_labels: bool = True,
                task: str = "classification") -> Metric:
    if not isinstance(name, str) or not name.isidentifier():
        raise QuantGuardError(f"register_metric: name must be an identifier-like string, got "
                              f"{name!r}")
    function = _one_function(name, per_sample, corpus, corpus_of_classes)
    if not all(isinstance(flag, bool) for flag in (higher_is_better, relative, needs_labels)):
        raise QuantGuardError(f"register_metric({name!r}): higher_is_better, relative and "
                              "needs_labels must be True or False")
    if task not in TASKS:
        raise QuantGuardError(f"register_metric({name!r}): task={task!r} is unknown; use one of "
                              f"{', '.join(map(repr, TASKS))}")
    common = dict(name=name, higher_is_better=higher_is_better, default_relative=relative,
                  needs_labels=needs_labels, task=task, description="custom metric",
                  function=function)
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
        return PerSampleMetric(kind=kind, interval_method=method, margins=margins, **common)
    if kind not in (None, "corpus"):
        raise QuantGuardError(f"register_metric({name!r}): a corpus metric's kind is 'corpus', got "
                              f"{kind!r}")
    if corpus is not None:
        return CorpusMetric(kind="corpus", interval_method="percentile", **common)
    if not needs_labels or task != "classification":
        raise QuantGuardError(f"register_metric({name!r}): a corpus_of_classes metric scores "
                              "predicted classes against labels: register it with "
                              "needs_labels=True and task='classification'")
    return ClassCorpusMetric(kind="corpus", interval_method="bca", **common)


def _whole_set_value(name: str, function: Callable, *args: Any, finite: bool = True) -> float:
    """A corpus function's value as a float; not finite: an error (``finite``), else NaN (a
    resample: the engine counts those)."""
    try:
        returned = function(*args)
    except QuantGuardError:
        raise
    except Exception as error:  # a user's function: name it, never a bare traceback
        raise QuantGuardError(f"custom metric {name!r}: its corpus function raised "
                              f"{type(error).__name__}: {error}") from None
    try:
        value = float(returned)
    except (TypeError, ValueError):
        raise QuantGuardError(f"custom metric {name!r}: its corpus function must return one "
                              f"number, got {type(returned).__name__} {_sample(returned)}") from None
    if finite and not math.isfinite(value):
        raise QuantGuardError(f"custom metric {name!r}: its corpus function returned "
                              f"{value!r}; it must return a finite number")
    return value if math.isfinite(value) else math.nan


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
        return _whole_set_value(self.name, self.function, outputs, labels)

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
        return (f"a custom corpus metric's percentile interval under-covers below "
                f"{CORPUS_SAFE_FROM:,} samples (simulated false ship 0.064 at n = 500, 0.040 at "
                f"2,000; docs/intervals.md, \"Known misses\"): use at least {CORPUS_SAFE_FROM:,} "
                "samples, a per_sample metric, or corpus_of_classes= when the function needs only "
                "the labels and the predicted classes",)


# Resamples of the studentized widening of a class-corpus interval: each costs one call of the
# user's function per (label, predicted class) cell of each model (1,000 resamples put about 25
# in each 2.5% tail) (docs/intervals.md,
# "Corpus metrics of class predictions").
STUDENTIZED_RESAMPLES = 1000


@dataclass(frozen=True)
class ClassCorpusScores(Scores):
    """``function(labels, predicted) -> float`` of each model's predicted classes: BCa over
    resampled prediction patterns, as macro-F1's; while the rarest class has fewer than 100
    samples, widened to contain the BCa+studentized interval of the table with one pseudo
    discordant pair per class (``bca+adjusted``). ``cell_score`` evaluates the same
    function on rows of cell counts at once (the simulation's vectorized metrics); without it
    each row is one call of ``function``."""

    labels: np.ndarray
    reference: np.ndarray  # predicted classes
    candidate: np.ndarray
    function: Callable[[np.ndarray, np.ndarray], float]
    name: str
    higher_is_better: bool
    cell_score: CellScore | None = field(default=None, compare=False)

    @property
    def n(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> ClassCorpusScores:
        return replace(self, labels=self.labels[mask], reference=self.reference[mask],
                       candidate=self.candidate[mask])

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        return self.labels, self.reference, self.candidate

    def correctness(self):
        return ((self.reference == self.labels).astype(np.int8),
                (self.candidate == self.labels).astype(np.int8))

    def _per_call(self, cell_labels: np.ndarray, cell_predicted: np.ndarray,
                  counts: np.ndarray) -> np.ndarray:
        """The user's function on each row of cell counts, the pairs expanded in cell order."""
        whole = np.rint(counts).astype(np.int64)
        return np.array([_whole_set_value(self.name, self.function, np.repeat(cell_labels, row),
                                          np.repeat(cell_predicted, row), finite=False)
                         for row in whole])

    def _check_order_free(self, reference: float) -> None:
        """The pattern resampling assumes the function sees pairs, not their order: check it."""
        order = np.lexsort((self.reference, self.labels))
        sorted_value = _whole_set_value(self.name, self.function, self.labels[order],
                                        self.reference[order])
        if abs(sorted_value - reference) > 1e-9 * max(1.0, abs(reference)):
            raise QuantGuardError(
                f"custom metric {self.name!r}: a corpus_of_classes function must depend only on "
                f"the (label, predicted class) pairs, not on their order; it gave {reference!r} "
                f"on the samples in order and {sorted_value!r} on the same pairs sorted; register "
                "it with corpus= instead")

    def evaluate(self, context: Context) -> Evaluation:
        require_margin(self.name, context.margin, ("absolute", "relative"))
        if min(self.labels.min(), self.reference.min(), self.candidate.min()) < 0:
            raise QuantGuardError(f"{context.where}: custom metric {self.name!r} needs class "
                                  "indices >= 0 (labels and predictions)")
        reference = _whole_set_value(self.name, self.function, self.labels, self.reference)
        candidate = _whole_set_value(self.name, self.function, self.labels, self.candidate)
        self._check_order_free(reference)
        relative = context.margin == "relative"
        if relative:
            drop = relative_change(reference, candidate, self.higher_is_better, self.name,
                                   context.where)
        else:
            drop = absolute_change(reference, candidate, self.higher_is_better)
        result = class_corpus_interval(
            self.labels, self.reference, self.candidate, self.cell_score or self._per_call,
            higher_is_better=self.higher_is_better, relative=relative, groups=context.groups,
            adjust_below=STUDENTIZE_BELOW,
            studentized_resamples=min(context.resamples, STUDENTIZED_RESAMPLES),
            fallback_scale=1.0 if relative else (abs(reference) or 1.0), **context.resampling)
        return Evaluation(reference, candidate, drop, result,
                          sizing=variance_sizing(result.details, self.n))
