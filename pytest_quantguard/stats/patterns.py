"""Whole-set scores of class predictions, resampled as prediction patterns (docs/intervals.md,
"Macro-F1" and "Corpus metrics of class predictions").

Each sample is one pattern ``(label, reference prediction, candidate prediction)``; a resample is a
draw of the pattern counts, and each model's confusion counts are sums of them. ``ClassPatterns``
is that table; ``pattern_interval`` is the shared interval: BCa over the pattern counts, widened to
contain the studentized bootstrap's (``bca+studentized``) when the caller asks (a rare class), the
group's pattern counts as the unit with groups (``cluster-bca``).

``class_corpus_statistic`` is the drop of any score of one model's (label, predicted class) pairs:
``score(cell_labels, cell_predicted, counts) -> values`` evaluates it on rows of cell counts
(a cell is one observed (label, predicted class) pair of that model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pytest_quantguard.stats.result import IntervalResult
from pytest_quantguard.stats.sums import SumsData, SumStatistic, studentized_limits, sums_interval

# A model's score on rows of its cell counts: (cell labels (C,), cell predictions (C,),
# counts (R, C)) -> (R,) values.
CellScore = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ClassPatterns:
    """The distinct patterns ``(label, reference, candidate)`` of a set and their counts."""

    classes: int
    patterns: np.ndarray  # (P, 3)
    counts: np.ndarray  # (P,)
    observed: np.ndarray  # each pattern's code, label·K² + reference·K + candidate
    codes: np.ndarray  # each sample's code
    inverse: np.ndarray | None  # each sample's pattern (None: found by search when needed)

    @property
    def support(self) -> np.ndarray:
        """Samples per class among the labels."""
        return np.bincount(self.patterns[:, 0], weights=self.counts,
                           minlength=self.classes).astype(np.int64)

    def predicted(self, column: int) -> np.ndarray:
        """Samples predicted as each class by the reference (column 1) or the candidate (2)."""
        return np.bincount(self.patterns[:, column], weights=self.counts,
                           minlength=self.classes).astype(np.int64)

    def grouped(self, groups: np.ndarray, details: dict) -> SumsData:
        """Each group's pattern counts as the resampled unit (no (n, patterns) one-hot matrix)."""
        inverse = self.inverse if self.inverse is not None else np.searchsorted(self.observed,
                                                                                self.codes)
        _, group_index = np.unique(np.asarray(groups), return_inverse=True)
        n_groups = int(group_index.max()) + 1
        size = len(self.observed)
        table = np.bincount(group_index * size + inverse,
                            minlength=n_groups * size).reshape(n_groups, size)
        return SumsData(table.astype(np.float64), unit="group",
                        details={**details, "groups": n_groups})


def class_patterns(labels: np.ndarray, reference: np.ndarray,
                   candidate: np.ndarray) -> ClassPatterns:
    """The pattern table of three aligned arrays of class indices (integers >= 0)."""
    labels, reference, candidate = (np.asarray(values) for values in (labels, reference, candidate))
    for values in (labels, reference, candidate):
        if not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_):
            raise ValueError(f"class indices must be integers, got {values.dtype}")
    classes = int(max(labels.max(), reference.max(), candidate.max())) + 1
    if min(labels.min(), reference.min(), candidate.min()) < 0:
        raise ValueError("class indices must be >= 0")
    # pattern codes in the narrowest integer type that holds classes**3 (memory traffic is the cost)
    code_type = np.int32 if classes ** 3 < 2**31 else np.int64
    codes = labels.astype(code_type)
    codes *= classes
    codes += reference
    codes *= classes
    codes += candidate
    if classes ** 3 <= 4 * len(codes):  # a dense count table: O(n), no sort
        table = np.bincount(codes, minlength=classes ** 3)
        observed = np.flatnonzero(table)
        counts = table[observed]
        inverse = None
    else:
        observed, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    patterns = np.stack([observed // (classes * classes), (observed // classes) % classes,
                         observed % classes], axis=1)
    return ClassPatterns(classes, patterns, counts, observed, codes, inverse)


def pattern_interval(table: ClassPatterns, statistic: SumStatistic, details: dict, *,
                     groups: np.ndarray | None, studentize: bool, confidence: float,
                     resamples: int, rng: np.random.Generator, fallback_scale: float = 1.0,
                     studentized_resamples: int | None = None) -> IntervalResult:
    """BCa over resampled pattern counts (per-pattern jackknife); with ``studentize`` (and no
    groups) widened to contain the studentized bootstrap's limits (``bca+studentized``)."""
    data = (SumsData(None, counts=table.counts, details=details) if groups is None
            else table.grouped(groups, details))
    result = sums_interval(data, statistic, confidence=confidence, resamples=resamples, rng=rng,
                           fallback_scale=fallback_scale, analytic_above=None)
    if groups is None and result.method == "bca" and studentize:
        limits = studentized_limits(data, statistic, confidence=confidence,
                                    resamples=studentized_resamples or resamples, rng=rng)
        if limits is not None:
            low, high = (statistic.drop(limit) for limit in limits)
            result.details.update(bca_low=result.low, bca_high=result.high, studentized_low=low,
                                  studentized_high=high)
            return IntervalResult(min(result.low, low), max(result.high, high), "bca+studentized",
                                  result.details)
    return result


@dataclass(frozen=True)
class _Cells:
    """One model's cells (its observed (label, predicted) pairs) and each pattern's cell."""

    labels: np.ndarray
    predicted: np.ndarray
    order: np.ndarray  # patterns sorted by cell
    starts: np.ndarray  # where each cell's patterns start in ``order``
    of_pattern: np.ndarray

    @classmethod
    def of(cls, table: ClassPatterns, column: int) -> _Cells:
        pair = table.patterns[:, 0].astype(np.int64) * table.classes + table.patterns[:, column]
        cells, of_pattern = np.unique(pair, return_inverse=True)
        order = np.argsort(of_pattern, kind="stable")
        starts = np.searchsorted(of_pattern[order], np.arange(len(cells)))
        return cls(cells // table.classes, cells % table.classes, order, starts, of_pattern)

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """(R, P) pattern counts -> (R, C) cell counts."""
        return np.add.reduceat(rows[:, self.order], self.starts, axis=1)

    def leave_one_out(self, score: CellScore, rows: np.ndarray) -> np.ndarray:
        """(R, P) pattern counts -> (R, C): the score with one sample of each cell left out (the
        full score where the cell is empty: such a pattern's jackknife weight is 0)."""
        counts = self.counts(rows)
        size = counts.shape[1]
        values = np.repeat(score(self.labels, self.predicted, counts)[:, None], size, axis=1)
        row, cell = np.nonzero(counts > 0)
        if len(row):
            reduced = counts[row].copy()
            reduced[np.arange(len(row)), cell] -= 1.0
            values[row, cell] = score(self.labels, self.predicted, reduced)
        return values


def _combine(higher_is_better: bool, relative: bool) -> Callable:
    """The drop from both models' scores (docs/verdict.md, "Margins")."""
    def combine(reference, candidate):
        with np.errstate(divide="ignore", invalid="ignore"):
            if relative:
                ratio = candidate / reference
                return 1.0 - ratio if higher_is_better else ratio - 1.0
            return reference - candidate if higher_is_better else candidate - reference
    return combine


def class_corpus_statistic(table: ClassPatterns, score: CellScore, *, higher_is_better: bool,
                           relative: bool = False) -> SumStatistic:
    """The drop of a score of each model's (label, predicted class) pairs, from pattern counts;
    ``discrete``: the score is only defined on whole counts."""
    reference, candidate = _Cells.of(table, 1), _Cells.of(table, 2)
    combine = _combine(higher_is_better, relative)

    def phi(rows):
        rows = np.asarray(rows, dtype=np.float64)
        return combine(score(reference.labels, reference.predicted, reference.counts(rows)),
                       score(candidate.labels, candidate.predicted, candidate.counts(rows)))

    def leave_one_out(rows):
        rows = np.asarray(rows, dtype=np.float64)
        return combine(reference.leave_one_out(score, rows)[:, reference.of_pattern],
                       candidate.leave_one_out(score, rows)[:, candidate.of_pattern])

    return SumStatistic("class-corpus drop", phi, leave_one_out=leave_one_out, discrete=True)


def pseudo_pairs(labels: np.ndarray, reference: np.ndarray,
                 candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pseudo-sample per class that only the reference gets right and one that only the
    candidate gets right (the wrong prediction: the class's most frequent wrong one), as the
    adjusted paired interval adds one to each discordant cell (docs/intervals.md, "Corpus metrics
    of class predictions")."""
    labels, reference, candidate = (np.asarray(values, dtype=np.int64)
                                    for values in (labels, reference, candidate))
    classes = int(max(labels.max(), reference.max(), candidate.max())) + 1
    present = np.flatnonzero(np.bincount(labels, minlength=classes))
    if classes < 2:
        return labels, reference, candidate
    wrong = np.zeros((classes, classes))
    for predicted in (reference, candidate):
        np.add.at(wrong, (labels, predicted), 1.0)
    np.fill_diagonal(wrong, -1.0)
    other = np.argmax(wrong[present], axis=1)
    return (np.concatenate([labels, present, present]),
            np.concatenate([reference, present, other]),
            np.concatenate([candidate, other, present]))


def class_corpus_interval(labels: np.ndarray, reference: np.ndarray, candidate: np.ndarray,
                          score: CellScore, *, higher_is_better: bool, relative: bool = False,
                          groups: np.ndarray | None = None, adjust_below: int,
                          studentized_resamples: int | None = None, fallback_scale: float = 1.0,
                          confidence: float, resamples: int,
                          rng: np.random.Generator) -> IntervalResult:
    """The drop of a whole-set score of class predictions: BCa over pattern counts; while the
    rarest class has fewer than ``adjust_below`` samples, widened to contain the BCa+studentized
    interval of the table with one pseudo discordant pair per class (``bca+adjusted``;
    docs/intervals.md, "Corpus metrics of class predictions")."""
    table = class_patterns(labels, reference, candidate)
    statistic = class_corpus_statistic(table, score, higher_is_better=higher_is_better,
                                       relative=relative)
    support = table.support
    rarest = int(support[support > 0].min())
    details = {"rarest_class_count": rarest, "patterns": len(table.observed)}
    options = dict(confidence=confidence, resamples=resamples, rng=rng)
    result = pattern_interval(table, statistic, details, groups=groups, studentize=False,
                              fallback_scale=fallback_scale, **options)
    if groups is not None or result.method != "bca" or rarest >= adjust_below:
        return result
    adjusted_table = class_patterns(*pseudo_pairs(labels, reference, candidate))
    adjusted = pattern_interval(
        adjusted_table, class_corpus_statistic(adjusted_table, score,
                                               higher_is_better=higher_is_better,
                                               relative=relative),
        {}, groups=None, studentize=True, studentized_resamples=studentized_resamples,
        fallback_scale=fallback_scale, **options)
    if adjusted.method not in ("bca", "bca+studentized"):
        return result
    result.details.update(bca_low=result.low, bca_high=result.high, adjusted_low=adjusted.low,
                          adjusted_high=adjusted.high, adjusted_method=adjusted.method)
    return IntervalResult(min(result.low, adjusted.low), max(result.high, adjusted.high),
                          "bca+adjusted", result.details)
