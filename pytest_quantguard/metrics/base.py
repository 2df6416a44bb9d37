"""The metric protocol every family implements, and what an evaluation returns.

A metric reduces each batch of one model's prediction output to a small per-sample record
(``reduce``), so the pipe never holds all outputs; a *paired* metric also reduces both models'
outputs of the same batch together (``reduce_pair``: top-token agreement, KL divergence, cosine
of embeddings). ``scores`` turns the records of the whole set into a ``Scores`` object of the
metric's family, which knows how to give both models' scores, the drop and its interval
(``evaluate``), and how to restrict itself to a slice of the samples (``subset``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.stats.result import IntervalResult

KINDS = ("binary", "continuous", "corpus", "grouped")
MARGINS = ("absolute", "relative", "error-increase")
# tasks whose labels are not classes (targets, tokens): a metric of class predictions cannot score them
_CLASS_FREE_TASKS = ("regression", "language-model")


@dataclass(frozen=True)
class Sizing:
    """What an "inconclusive" verdict's remedy is sized from (docs/verdict.md, "Remedies"): the
    ``units`` the drop was measured on (``unit`` names them), and either the discordance (0/1
    metrics: the share of units the two models disagree on) or the per-unit variance of the
    linearized drop."""

    units: int
    unit: str = "samples"
    discordance: float | None = None
    variance: float | None = None


def variance_sizing(details: Mapping[str, Any], n: int) -> Sizing:
    """The sizing of a sums-engine interval (its details hold ``unit_variance``): in groups when
    the groups were resampled, else in the ``n`` samples."""
    if "groups" in details:
        return Sizing(details["groups"], unit="groups", variance=details["unit_variance"])
    return Sizing(n, variance=details["unit_variance"])


def discordance_sizing(reference_only: int, candidate_only: int, n: int,
                       unit: str = "samples") -> Sizing:
    """The sizing of a 0/1 comparison of ``n`` samples: the share where the models disagree."""
    return Sizing(n, unit=unit, discordance=(reference_only + candidate_only) / n)


@dataclass(frozen=True, eq=False)
class Discordance:
    """The samples a reviewer looks at: ``index`` (sample indices, in report order), how they are
    ordered (``"index"`` or ``"largest change"``), and the per-sample values to show for the
    reference and the candidate (None: the models' raw records)."""

    index: np.ndarray
    order: str
    values: tuple[np.ndarray, np.ndarray] | None = None


def largest_change(changed: np.ndarray, badness: np.ndarray,
                   values: tuple[np.ndarray, np.ndarray] | None = None) -> Discordance:
    """The samples where ``changed`` (a mask) holds, worst ``badness`` first (ties in sample
    order)."""
    index = np.flatnonzero(changed)
    return Discordance(index[np.argsort(-badness[index], kind="stable")], "largest change", values)


@dataclass(frozen=True)
class Evaluation:
    """Both models' scores, the drop on the margin's scale and its interval; the notes every
    comparison of it carries, and what an inconclusive verdict's remedy is sized from (None: the
    family cannot size it)."""

    reference_score: float
    candidate_score: float
    drop: float
    interval: IntervalResult
    details: dict[str, Any] = field(default_factory=dict)  # family figures (b, c, per class...)
    notes: tuple[str, ...] = ()
    sizing: Sizing | None = None


@dataclass(frozen=True)
class Context:
    """What an evaluation needs besides the scores."""

    margin: str  # one of MARGINS
    confidence: float
    resamples: int
    rng: np.random.Generator
    resamples_given: bool = False  # set by the user, not the default (Execution.resamples_given)
    groups: np.ndarray | None = None
    where: str = "the validation set"  # names the data in error messages
    # the limits, for families that judge parts of themselves (per-class accuracy)
    max_drop: float = 0.01
    qat_limit: float = 0.03
    gate: str = "upper"

    @property
    def resampling(self) -> dict[str, Any]:
        """The keywords every interval builder takes: confidence, resamples and the stream."""
        return dict(confidence=self.confidence, resamples=self.resamples, rng=self.rng)


class Scores:
    """Per-sample (or per-document) figures of both models for one metric family."""

    n: int

    def evaluate(self, context: Context) -> Evaluation:
        raise NotImplementedError

    def subset(self, mask: np.ndarray) -> Scores:
        """The same family restricted to the samples where ``mask`` is true."""
        raise NotImplementedError

    def digest_arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays the random stream is seeded from: both models' per-sample scores."""
        raise NotImplementedError

    def correctness(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-sample 0/1 correctness of both models, where the family has it (per-class view)."""
        return None

    def discordance(self) -> Discordance | None:
        """The samples whose outcome differs between the models; by default those where exactly
        one model is right (families with ``correctness``), in sample order; None without it."""
        right = self.correctness()
        if right is None:
            return None
        return Discordance(np.flatnonzero(right[0] != right[1]), "index")


@dataclass(frozen=True)
class Metric:
    """A metric's identity and declarations; families implement ``reduce`` and ``scores``."""

    name: str
    higher_is_better: bool
    kind: str  # one of KINDS: decides the interval family
    interval_method: str  # the method recorded on the Comparison when nothing degenerates
    default_relative: bool
    needs_labels: bool
    task: str = "classification"  # the task it belongs to (regression adds the PTQ caution)
    margins: tuple[str, ...] = ("absolute", "relative")  # the margins it offers
    option_names: tuple[str, ...] = ()  # metric options accepted as keywords (e.g. k for top_k)
    options: Mapping[str, Any] = field(default_factory=dict)
    paired: bool = False  # reduce_pair is needed: both outputs in the same batch (no reference cache)
    description: str = ""
    # scores lie in [0, 1], so an absolute limit is a fraction (None: as ``points``)
    # (docs/verdict.md, "Limits and their units")
    unit_interval: bool | None = None

    def configure(self, options: Mapping[str, Any]) -> Metric:
        """A copy with ``options`` set; unknown options are an error naming the accepted ones."""
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            accepted = (f"it accepts {', '.join(self.option_names)}" if self.option_names
                        else "it takes no options")
            raise QuantGuardError(f"metric {self.name!r}: unknown option(s) {', '.join(unknown)}; "
                                  f"{accepted}")
        return dataclasses.replace(self, options={**self.options, **options}) if options else self

    @property
    def key(self) -> str:
        """The name plus options: what identifies the metric's records (seed, cache)."""
        if not self.options:
            return self.name
        return self.name + "(" + ",".join(f"{k}={v!r}" for k, v in sorted(self.options.items())) + ")"

    @property
    def points(self) -> bool:
        """Whether an absolute drop is shown in points: scores in [0, 1] (0/1 metrics)."""
        return self.kind == "binary"

    @property
    def bounded(self) -> bool:
        """Whether scores lie in [0, 1] (accuracy-type, agreement, F1, cosine): an absolute limit
        >= 1 on them is an error, one above 0.10 a warning."""
        return self.points if self.unit_interval is None else self.unit_interval

    def fits_task(self, task: str) -> bool:
        """Whether the metric can score a validation set of ``task``: a metric of class predictions
        cannot score regression targets or language-model tokens."""
        return not (self.task == "classification" and task in _CLASS_FREE_TASKS)

    def check_options(self) -> None:
        """Raise now what would be raised later about a missing or bad required option."""

    @property
    def notes(self) -> tuple[str, ...]:
        """Notes every comparison of this metric carries (e.g. a caution about its task)."""
        return ()

    def reduce(self, output: np.ndarray, labels: np.ndarray | None, batch: Any) -> np.ndarray:
        """A batch of one model's prediction output -> one record (row) per sample."""
        raise NotImplementedError

    def reduce_pair(self, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None,
                    batch: Any) -> np.ndarray:
        """Both models' outputs of one batch -> one paired record per sample (paired metrics)."""
        raise NotImplementedError

    def scores(self, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None,
               paired: np.ndarray | None) -> Scores:
        """All records of both models -> the family's ``Scores``."""
        raise NotImplementedError


def squeeze_trailing(output: np.ndarray) -> np.ndarray:
    """A trailing output axis of size 1 is squeezed."""
    return output[..., 0] if output.ndim >= 2 and output.shape[-1] == 1 else output


def integer_labels(labels: np.ndarray) -> np.ndarray:
    if np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
        return labels.astype(np.int64)
    if np.issubdtype(labels.dtype, np.floating):
        whole = np.isfinite(labels) & (np.mod(labels, 1) == 0) & (np.abs(labels) < 2**53)
        if whole.all():
            return labels.astype(np.int64)
        shown = labels[~whole][:3].tolist()
    else:
        shown = labels[:3].tolist()
    raise QuantGuardError(f"class labels must be integers, got {labels.dtype} values such as "
                          f"{shown}; store class indices")


def relative_change(reference: float, candidate: float, higher_is_better: bool, name: str,
                    where: str) -> float:
    """cand/ref - 1 in the worse direction (docs/verdict.md, "Margins")."""
    if reference == 0.0:
        raise QuantGuardError(f"{where}: the reference's {name} is 0, so a relative drop is "
                              "undefined; use relative=False")
    ratio = candidate / reference
    return 1.0 - ratio if higher_is_better else ratio - 1.0


def absolute_change(reference: float, candidate: float, higher_is_better: bool) -> float:
    return reference - candidate if higher_is_better else candidate - reference


def require_margin(metric_name: str, margin: str, offered: tuple[str, ...]) -> None:
    if margin not in offered:
        names = {"absolute": "an absolute drop (relative=False)",
                 "relative": "a relative drop (relative=True)",
                 "error-increase": "max_error_increase"}
        raise QuantGuardError(f"metric {metric_name!r} does not offer {names[margin]}; it offers "
                              f"{', '.join(names[m] for m in offered)}")
