"""The pipe, wired once: validation set -> runners -> outputs -> metrics -> per-sample records ->
each metric's scores, interval and verdict. The Python API (``compare``) and the pytest fixture
both call ``run``."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pytest_quantguard import settings
from pytest_quantguard.cache import ReferenceCache
from pytest_quantguard.data import ValidationSet, as_validation_set
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.metrics import Context, Metric, get_metric
from pytest_quantguard.metrics.base import require_margin
from pytest_quantguard.metrics.regression import REGRESSION_CAUTION
from pytest_quantguard.metrics.scores import SEVERITY, BinaryScores, PerClassScores, breakdown
from pytest_quantguard.reports.terminal import drop_text
from pytest_quantguard.runners import Runner, make_runner
from pytest_quantguard.stats import derive_rng
from pytest_quantguard.stats.families import MIN_GROUPS
from pytest_quantguard.stats.seeding import scores_digest
from pytest_quantguard.verdict import REMEDIES, Verdict, decide, inconclusive_remedy

SHOWN_SLICES = 3  # rows of "which classes / slices lost most" in a message
CORPUS_SAFE_FROM = 2000  # custom corpus metrics: below this the simulation's false ship > 0.04
DISCORDANT_CAP = 100  # discordant samples kept per comparison (the count is always complete)


class Interval(NamedTuple):
    """The two-sided interval of the drop: exactly two floats."""

    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """One reference-vs-candidate result for one metric: the one record every report reads.

    ``to_dict()`` gives builtins only (its keys are the JSON report's schema); ``from_dict()``
    rebuilds the object. ``runtime`` holds everything that may differ between runs. With several
    metrics (``metrics=``), the returned comparison is the worst one, and ``metrics`` holds every
    metric's comparison in the order given.
    """

    verdict: Verdict
    drop: float
    interval: Interval
    reference_score: float
    candidate_score: float
    n: int
    metric: str
    method: str
    confidence: float
    resamples: int
    seed: int
    max_drop: float
    qat_limit: float
    gate: str
    message: str
    relative: bool = False
    max_error_increase: float | None = None  # set: drop is the error rate's relative growth
    n_groups: int | None = None
    name: str | None = None
    id: str = ""
    reference: dict[str, Any] = field(default_factory=dict)  # {path, sha256, bytes}
    candidate: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # {path, sha256}
    details: dict[str, Any] = field(default_factory=dict)  # method-specific figures (e.g. b, c)
    runtime: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[Comparison, ...] = ()  # every metric's comparison (several metrics only)
    slice_max_drop: float | None = None
    # the samples the two models disagree on (or that changed most), capped: {count, cap, order,
    # samples: [{index, label, reference, candidate}]}; None where the metric has no per-sample view
    discordant: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == Verdict.SHIP

    def to_dict(self) -> dict[str, Any]:
        record = {
            "id": self.id,
            "name": self.name,
            "metric": self.metric,
            "reference": {**_model_info(self.reference), "score": float(self.reference_score)},
            "candidate": {**_model_info(self.candidate), "score": float(self.candidate_score)},
            "data": {"path": self.data.get("path"), "n": int(self.n),
                     "n_groups": None if self.n_groups is None else int(self.n_groups),
                     "sha256": self.data.get("sha256")},
            "drop": float(self.drop),
            "interval": {"low": float(self.interval.low), "high": float(self.interval.high),
                         "confidence": float(self.confidence), "method": self.method,
                         "resamples": int(self.resamples), "seed": int(self.seed)},
            "verdict": str(self.verdict),
            "thresholds": {"max_drop": float(self.max_drop), "qat_limit": float(self.qat_limit),
                           "gate": self.gate, "relative": bool(self.relative),
                           "max_error_increase": (None if self.max_error_increase is None
                                                  else float(self.max_error_increase)),
                           "slice_max_drop": (None if self.slice_max_drop is None
                                              else float(self.slice_max_drop))},
            "cost": _cost(self.reference, self.candidate),
            "discordant": _builtins(self.discordant),
            "message": self.message,
            "details": _builtins(self.details),
            "runtime": _builtins(self.runtime),
        }
        if self.metrics:
            record["metrics"] = [comparison.to_dict() for comparison in self.metrics]
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Comparison:
        interval, thresholds = record["interval"], record["thresholds"]
        return cls(
            verdict=Verdict(record["verdict"]), drop=record["drop"],
            interval=Interval(interval["low"], interval["high"]),
            reference_score=record["reference"]["score"],
            candidate_score=record["candidate"]["score"],
            n=record["data"]["n"], n_groups=record["data"].get("n_groups"), metric=record["metric"],
            method=interval["method"], confidence=interval["confidence"],
            resamples=interval["resamples"], seed=interval["seed"],
            max_drop=thresholds["max_drop"], qat_limit=thresholds["qat_limit"],
            gate=thresholds["gate"], relative=thresholds["relative"],
            max_error_increase=thresholds.get("max_error_increase"),
            slice_max_drop=thresholds.get("slice_max_drop"), message=record["message"],
            name=record.get("name"), id=record.get("id", ""),
            reference=_model_info(record["reference"]), candidate=_model_info(record["candidate"]),
            data={"path": record["data"].get("path"), "sha256": record["data"].get("sha256")},
            details=dict(record.get("details", {})), runtime=dict(record.get("runtime", {})),
            metrics=tuple(cls.from_dict(item) for item in record.get("metrics", ())),
            discordant=record.get("discordant"),
        )

    def all(self) -> tuple[Comparison, ...]:
        """Every metric's comparison: ``metrics`` when several were gated, else this one."""
        return self.metrics or (self,)


def compare(reference: Any, candidate: Any, *, data: Any, metric: str | None = None,
            max_drop: float | None = None, qat_limit: float | None = None,
            relative: bool | None = None, confidence: float = 0.95, gate: str = "upper",
            resamples: int = 10000, seed: int = 0, output: str | int | None = None,
            name: str | None = None, **metric_options: Any) -> Comparison:
    """Run both models on ``data``, measure the drop with a paired interval, and give the verdict.

    ``reference`` and ``candidate``: a path to a ``.onnx`` file, a torch module or file, or a
    callable ``f(batch)``. ``data``: a folder, a ``ValidationSet``, ``(inputs, labels)`` or
    ``inputs``. Nothing here raises on a bad verdict: read ``comparison.verdict`` (the fixture is
    what fails tests). Keywords beyond the signature:

    - ``max_error_increase=0.2`` (0/1 metrics, instead of ``max_drop``): the candidate's error
      rate may grow by at most 20% of the reference's;
    - ``metrics={"accuracy": 0.01, "macro_f1": 0.02}``: several metrics on one run of each model,
      each with its own limit (None: ``max_drop``); the worst comparison is returned and
      ``comparison.metrics`` holds all;
    - ``slice_max_drop=0.05``: every class and every manifest slice must also ship under this
      limit (otherwise they are reported only);
    - metric options such as ``k=5`` (``metric="top_k"``) or ``pooling="mean"`` (cosine).
    """
    options = dict(metric_options)
    keywords = {key: options.pop(key) for key in ("max_error_increase", "metrics",
                                                  "slice_max_drop") if key in options}
    comparison = run(reference, candidate, data=data, metric=metric, max_drop=max_drop,
                     qat_limit=qat_limit, relative=relative, confidence=confidence, gate=gate,
                     resamples=resamples, seed=seed, output=output, name=name,
                     metric_options=options, **keywords)
    for each in comparison.all():
        if each.details.get("suspicious_gain"):
            warnings.warn(QuantGuardWarning(suspicious_gain_text(each)), stacklevel=2)
    return comparison


def suspicious_gain_text(comparison: Comparison) -> str:
    """The warning for a candidate better than its reference beyond the limit."""
    low, high = comparison.interval
    return (f"{comparison.id or comparison.metric}: the candidate scores better than the "
            f"reference beyond the limit ({comparison.metric} drop {comparison.drop:+.4g}, whole "
            f"interval [{low:+.4g}, {high:+.4g}] below -max_drop {-comparison.max_drop:+.4g}); a "
            "quantized model rarely beats its reference: this usually means mismatched "
            "preprocessing between the two models (input scaling, layout, tokenizer, label order)")


@dataclass(frozen=True)
class _Plan:
    """One metric to gate: the configured metric, its limit and its margin."""

    metric: Metric
    max_drop: float
    qat_limit: float
    margin: str


def run(reference: Any, candidate: Any, *, data: Any, metric: str | None, max_drop: float | None,
        qat_limit: float | None, relative: bool | None, confidence: float, gate: str,
        resamples: int, seed: int, output: str | int | None, name: str | None,
        metric_options: Mapping[str, Any], batch_size: int = 1024, base_dir: Path | None = None,
        comparison_id: str | None = None, max_error_increase: float | None = None,
        cache: ReferenceCache | None = None, device: str = "cpu",
        max_samples: int | None = None, metrics: Mapping[str, float | None] | None = None,
        slice_max_drop: float | None = None,
        progress: Callable[[int, int], None] | None = None) -> Comparison:
    """``compare()`` with the knobs the fixture also sets (batch size, base dir, test id, the
    reference cache)."""
    error_qat_limit = None
    if max_error_increase is not None:
        max_error_increase = _checked("max_error_increase", settings.positive_float,
                                      max_error_increase)
        if max_drop is not None:
            raise QuantGuardError(f"give max_drop={max_drop!r} or max_error_increase="
                                  f"{max_error_increase!r}, not both: they are two ways to state "
                                  "the same limit")
        if relative:
            raise QuantGuardError("relative=True and max_error_increase= are two different "
                                  "margins; give one")
        if metrics is not None:
            raise QuantGuardError("max_error_increase= applies to one metric; with metrics= give "
                                  "each metric's max_drop instead")
        relative = False
        max_drop = max_error_increase
        # the try-qat band, in the same unit: up to 3x the ship limit
        error_qat_limit = qat_limit if qat_limit is not None else round(3 * max_error_increase, 12)
    max_drop = _checked("max_drop", settings.positive_float, 0.01 if max_drop is None else max_drop)
    qat_limit = _checked("qat_limit", settings.positive_float, 0.03 if qat_limit is None else qat_limit)
    confidence = _checked("confidence", settings.open_fraction, confidence)
    gate = _checked("gate", settings.gate_name, gate)
    resamples = _checked("resamples", settings.positive_int, resamples)
    seed = _checked("seed", settings.seed_int, seed)
    batch_size = _checked("batch_size", settings.positive_int, batch_size)
    relative = _checked("relative", settings.optional_bool, relative)
    output = _checked("output", settings.name_or_index, output)
    metric = _checked("metric", settings.metric_name, metric)
    metrics = _checked("metrics", settings.metric_table, metrics)
    if slice_max_drop is not None:
        slice_max_drop = _checked("slice_max_drop", settings.positive_float, slice_max_drop)
    if metrics is not None and metric is not None:
        raise QuantGuardError(f"give metric={metric!r} or metrics={{...}}, not both")

    dataset = as_validation_set(data, base_dir=base_dir)
    full_n = dataset.n
    if max_samples is not None:
        max_samples = _checked("max_samples", settings.positive_int, max_samples)
        if max_samples < dataset.n:
            dataset = dataset.subset(stratified_subset(dataset, max_samples, seed))
    wanted = {metric: max_drop} if metrics is None else {
        key: max_drop if limit is None else limit for key, limit in metrics.items()}
    plans = _plans(wanted, dataset, dict(metric_options), relative=relative,
                   error_increase=max_error_increase is not None, qat_limit=qat_limit,
                   error_qat_limit=error_qat_limit)
    if output is None:
        output = dataset.manifest.get("output")
    base = base_dir or Path.cwd()
    device = _checked("device", settings.choice("cpu", "cuda"), device)
    reference_runner = make_runner(reference, base_dir=base, role="reference", device=device)
    candidate_runner = make_runner(candidate, base_dir=base, role="candidate", device=device)
    notes = _runner_notes(reference_runner, candidate_runner)
    if dataset.n < full_n:
        notes = [f"ADVISORY: a --quant-max-samples subset of {dataset.n:,} of the {full_n:,} "
                 "samples (stratified, seeded); not a release verdict", *notes]

    batch_size = min(batch_size, dataset.n)
    cache = cache if cache is not None else ReferenceCache(None)
    chosen = [plan.metric for plan in plans]
    scored = _score(dataset, chosen, reference_runner, candidate_runner, output, batch_size,
                    cache, progress)
    duplicates = dataset.duplicate_count()  # counted during the pass above: free
    if duplicates:
        warnings.warn(QuantGuardWarning(
            f"{dataset.description}: {duplicates} of {dataset.n} samples repeat an earlier sample's "
            "inputs exactly; repeats are not independent evidence and make the interval falsely "
            "narrow: remove them from the validation set"), stacklevel=3)
    if dataset.groups is not None and dataset.n_groups < MIN_GROUPS:
        warnings.warn(QuantGuardWarning(
            f"{dataset.description}: only {dataset.n_groups} groups; a clustered interval with fewer "
            f"than {MIN_GROUPS} groups is unreliable (it tends to be too narrow): collect more "
            "groups (documents, products, scenes)"), stacklevel=3)

    common = dict(dataset=dataset, full_n=full_n, confidence=confidence, gate=gate,
                  resamples=resamples, seed=seed, notes=notes, slice_max_drop=slice_max_drop,
                  reference_runner=reference_runner, candidate_runner=candidate_runner,
                  max_error_increase=max_error_increase, scored=scored)
    several = metrics is not None
    comparisons = []
    for plan in plans:
        key = plan.metric.key
        own_name, own_id = name, comparison_id if comparison_id is not None else (name or "")
        if several:  # each metric is a named comparison: "<name>.<metric>", or "<metric>"
            own_name = f"{name}.{key}" if name else key
            if comparison_id:
                own_id = f"{comparison_id}.{key}" if name else f"{comparison_id}::{key}"
            else:
                own_id = own_name
        comparisons.append(_judge(plan, name=own_name, comparison_id=own_id, **common))
    if not several:
        return comparisons[0]
    worst = max(comparisons, key=lambda item: SEVERITY[str(item.verdict)])
    return dataclasses.replace(worst, metrics=tuple(comparisons))


def _plans(wanted: dict[str | None, float], dataset: ValidationSet, options: dict[str, Any], *,
           relative: bool | None, error_increase: bool, qat_limit: float,
           error_qat_limit: float | None) -> list[_Plan]:
    """Resolve each metric (the task's default for None), its options and margin, and check it
    suits the data before any model runs."""
    plans, used = [], set()
    for key, limit in wanted.items():
        probe = get_metric(key, dataset.task)
        accepted = {option: value for option, value in options.items()
                    if option in probe.option_names}
        used.update(accepted)
        if "pooling" in probe.option_names and "pooling" not in accepted \
                and dataset.manifest.get("pooling") is not None:
            accepted["pooling"] = dataset.manifest["pooling"]
        chosen = probe.configure(accepted)
        if chosen.task == "classification" and dataset.task in ("regression", "language-model") \
                and probe.description != "custom metric":
            suggestion = {"regression": "mae, rmse or r2", "language-model": "perplexity"}
            raise QuantGuardError(f"{dataset.description}: metric {chosen.name!r} scores class "
                                  f"predictions, but this set's task is {dataset.task!r}; use "
                                  f"{suggestion[dataset.task]} (or leave metric unset for the "
                                  "task's default)")
        if chosen.needs_labels and not dataset.has_labels:
            raise QuantGuardError(f"{dataset.first_file}: metric {chosen.name!r} needs labels, and "
                                  "the validation set has none; save them beside the inputs "
                                  "(np.savez(path, inputs=x, labels=y)), or gate label-free with "
                                  "metric='agreement', 'cosine' or 'rel_error'")
        if error_increase:
            if chosen.kind != "binary" or "error-increase" not in chosen.margins:
                raise QuantGuardError(f"max_error_increase applies to metrics that score each "
                                      f"sample 0/1 (accuracy, top-k): it limits the growth of the "
                                      f"error rate. {chosen.name!r} is not one; use max_drop "
                                      "(relative=True for a relative limit)")
            margin = "error-increase"
        else:
            use_relative = chosen.default_relative if relative is None else relative
            margin = "relative" if use_relative else "absolute"
            if relative is None and margin not in chosen.margins:
                margin = chosen.margins[0]
        require_margin(chosen.name, margin, chosen.margins)
        if chosen.name == "top_k":
            _ = chosen.k  # k= is required: say so before any model runs
        plans.append(_Plan(chosen, limit, error_qat_limit if error_increase else qat_limit,
                           margin))
    unused = sorted(set(options) - used)
    if unused:
        names = ", ".join(plan.metric.name for plan in plans)
        raise QuantGuardError(f"unknown keyword(s) {', '.join(unused)}: not an option of metric "
                              f"{names} (options: k for top_k, pooling for cosine and rel_error)")
    return plans


def _judge(plan: _Plan, *, dataset: ValidationSet, full_n: int, confidence: float, gate: str,
           resamples: int, seed: int, notes: list[str], slice_max_drop: float | None,
           reference_runner: Runner, candidate_runner: Runner,
           max_error_increase: float | None, scored: dict, name: str | None,
           comparison_id: str) -> Comparison:
    """One metric's scores, interval, verdict, breakdowns and message."""
    metric = plan.metric
    records = scored["records"][metric.key]
    scores = metric.scores(records["reference"], records["candidate"], scored["labels"],
                           records.get("paired"))
    if isinstance(scores, PerClassScores) and dataset.class_names:
        scores = dataclasses.replace(scores, class_names=tuple(dataset.class_names))
    rng = derive_rng(seed, dataset.digest, metric.key, scores_digest(*scores.digest_arrays()))
    context = Context(margin=plan.margin, confidence=confidence, resamples=resamples, rng=rng,
                      groups=dataset.groups, where=dataset.description, max_drop=plan.max_drop,
                      qat_limit=plan.qat_limit, gate=gate)
    evaluation = scores.evaluate(context)
    interval = Interval(evaluation.interval.low, evaluation.interval.high)
    fmt = _formatter(metric, plan.margin)
    decision = decide(evaluation.drop, interval.low, interval.high, max_drop=plan.max_drop,
                      qat_limit=plan.qat_limit, gate=gate, fmt=fmt)
    details = {**evaluation.interval.details, **evaluation.details}
    slices = _breakdowns(scores, scored["labels"], dataset, context, plan, slice_max_drop, gate)
    details.update(slices)
    verdict, rule, culprit = decision.verdict, decision.rule, None
    if slice_max_drop is not None:
        verdict, rule, culprit = _slice_verdict(verdict, rule, slices, fmt)
    metric_notes = list(notes)
    if metric.task == "regression":
        metric_notes.append(REGRESSION_CAUTION)
    if evaluation.interval.method == "percentile" and dataset.n < CORPUS_SAFE_FROM:
        metric_notes.append(
            f"a custom corpus metric's percentile interval under-covers on small sets (false ship "
            f"0.064 at n = 500 in the README's simulation, 0.040 at 2,000): use at least "
            f"{CORPUS_SAFE_FROM:,} samples, or a per_sample metric")
    suspicious = verdict == Verdict.SHIP and interval.high < -plan.max_drop
    facts = dict(n=dataset.n, metric=metric, margin=plan.margin, confidence=confidence,
                 notes=metric_notes, resamples=resamples, method=evaluation.interval.method,
                 drop=evaluation.drop, interval=interval, evaluation=evaluation,
                 reference_score=evaluation.reference_score,
                 candidate_score=evaluation.candidate_score, details=details,
                 max_drop=plan.max_drop, data=dataset, reference=reference_runner,
                 candidate=candidate_runner, verdict=verdict, rule=rule,
                 established=decision.established, suspicious=suspicious, culprit=culprit,
                 slice_max_drop=slice_max_drop)
    return Comparison(
        verdict=verdict, drop=evaluation.drop, interval=interval,
        reference_score=evaluation.reference_score, candidate_score=evaluation.candidate_score,
        n=dataset.n, n_groups=dataset.n_groups, metric=metric.key,
        method=evaluation.interval.method, confidence=confidence, resamples=resamples, seed=seed,
        max_drop=plan.max_drop, qat_limit=plan.qat_limit, gate=gate,
        relative=plan.margin == "relative", max_error_increase=max_error_increase,
        slice_max_drop=slice_max_drop, message=_message(facts), name=name, id=comparison_id,
        reference=_runner_info(reference_runner), candidate=_runner_info(candidate_runner),
        data={"path": None if dataset.path is None else str(dataset.path),
              "sha256": dataset.digest},
        details={**details, "margin": plan.margin, "established": decision.established,
                 "task": metric.task,
                 **({"suspicious_gain": True} if suspicious else {}),
                 **({"notes": metric_notes} if metric_notes else {}),
                 **({"advisory": True, "subset_of": full_n} if dataset.n < full_n else {})},
        discordant=_discordant(scores, records, scored["labels"]),
        runtime={**scored["timings"], **_per_sample_times(scored, dataset.n),
                 "cache": scored["cache"][metric.key], "reference_ran": scored["reference_ran"],
                 "worker": os.environ.get("PYTEST_XDIST_WORKER", "main")},
    )


def _per_sample_times(scored: dict, n: int) -> dict[str, float | None]:
    """Inference milliseconds per sample of each model (None for a reference read from the
    cache), and the candidate's speed-up."""
    timings = scored["timings"]
    reference = (1000 * timings["reference_seconds"] / n) if scored["reference_ran"] else None
    candidate = 1000 * timings["candidate_seconds"] / n
    return {"reference_ms_per_sample": reference, "candidate_ms_per_sample": candidate,
            "speedup": (reference / candidate) if reference and candidate else None}


def _cost(reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict[str, Any]:
    """Model sizes and the compression ratio (reference bytes / candidate bytes)."""
    ref_bytes, cand_bytes = reference.get("bytes"), candidate.get("bytes")
    return {"reference_bytes": ref_bytes, "candidate_bytes": cand_bytes,
            "compression": (ref_bytes / cand_bytes) if ref_bytes and cand_bytes else None}


def _discordant(scores, records: dict[str, Any], labels: np.ndarray | None,
                cap: int = DISCORDANT_CAP) -> dict[str, Any] | None:
    """What a reviewer looks at: the samples whose verdict flipped (0/1 and class metrics, in
    sample order) or that changed most (continuous metrics, largest change first), capped."""
    from pytest_quantguard.metrics import scores as families

    reference, candidate = records["reference"], records["candidate"]
    values: tuple[np.ndarray, np.ndarray] | None = None
    right = scores.correctness()
    if isinstance(scores, families.AgreementScores):
        index, order = np.flatnonzero(scores.agree == 0), "index"
    elif right is not None:
        index, order = np.flatnonzero(right[0] != right[1]), "index"
    elif isinstance(scores, (families.MeanScores, families.R2Scores)):
        change = (np.abs(scores.candidate_errors) - np.abs(scores.reference_errors)
                  if isinstance(scores, families.R2Scores) else scores.candidate - scores.reference)
        changed = np.flatnonzero(change != 0)
        index, order = changed[np.argsort(-np.abs(change[changed]), kind="stable")], "largest change"
    elif isinstance(scores, families.PerplexityScores):
        with np.errstate(divide="ignore", invalid="ignore"):
            per_token = (scores.candidate[:, 0] - scores.reference[:, 0]) / scores.reference[:, 1]
            per_token = np.where(scores.reference[:, 1] > 0, per_token, 0.0)
        changed = np.flatnonzero(per_token != 0)
        index, order = changed[np.argsort(-per_token[changed], kind="stable")], "largest change"
        values = (scores.reference[:, 0] / np.maximum(scores.reference[:, 1], 1),
                  scores.candidate[:, 0] / np.maximum(scores.candidate[:, 1], 1))
    elif isinstance(scores, families.DistanceScores):
        badness = -scores.values if scores.higher_is_better else scores.values
        changed = np.flatnonzero(scores.values != scores.reference_value)
        index, order = changed[np.argsort(-badness[changed], kind="stable")], "largest change"
        values = (np.full(scores.n, scores.reference_value), scores.values)
    else:
        return None
    kept = index[:cap]
    if values is None:
        values = (reference, candidate)
    rows = []
    for i in kept:
        row: dict[str, Any] = {"index": int(i)}
        if labels is not None and labels.ndim == 1:
            row["label"] = labels[i].item()
        row["reference"] = _sample_value(values[0][i])
        row["candidate"] = _sample_value(values[1][i])
        rows.append(row)
    return {"count": len(index), "cap": cap, "order": order, "samples": rows}


def _sample_value(value: Any) -> Any:
    """One sample's prediction as builtins (a class, a value, or a short row of values)."""
    value = np.asarray(value)
    if value.size == 1:
        return value.item()
    return value.ravel().tolist() if value.size <= 16 else f"<{value.size} values>"


def _breakdowns(scores, labels, dataset: ValidationSet, context: Context, plan: _Plan,
                slice_max_drop: float | None, gate: str) -> dict[str, Any]:
    """Per-class drops (classification: each class's accuracy) and per-slice drops (manifest
    ``slices``: the gated metric on each slice), each with its interval."""
    found: dict[str, Any] = {}
    correctness = scores.correctness()
    if correctness is not None and not isinstance(scores, PerClassScores) \
            and labels is not None and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        # a 0/1 metric's own per-class rows (accuracy, top-k); for others, each class's accuracy
        own = isinstance(scores, BinaryScores)
        per_class = BinaryScores(*correctness, name=plan.metric.key if own else "accuracy")
        margin = plan.margin if own else "absolute"
        found["per_class"] = breakdown(per_class, labels, dataclasses.replace(context,
                                       margin=margin), _names(dataset))
        found["per_class_metric"] = per_class.name
    if dataset.slices is not None:
        found["slices"] = breakdown(scores, dataset.slices, context)
    if slice_max_drop is not None:
        for key in ("per_class", "slices"):
            for row in found.get(key, ()):
                if "error" in row:
                    row["verdict"] = str(Verdict.INCONCLUSIVE)
                    continue
                row["verdict"] = str(decide(row["drop"], row["low"], row["high"],
                                            max_drop=slice_max_drop, qat_limit=plan.qat_limit,
                                            gate=gate).verdict)
    return found


def _names(dataset: ValidationSet) -> tuple[str, ...] | None:
    return tuple(dataset.class_names) if dataset.class_names else None


def _slice_verdict(verdict: Verdict, rule: str, slices: dict[str, Any], fmt):
    """With ``slice_max_drop``, the comparison's verdict is the worst of its own and every
    class's and slice's."""
    worst = None
    for key, what in (("per_class", "class"), ("slices", "slice")):
        for row in slices.get(key, ()):
            if SEVERITY[row["verdict"]] > SEVERITY[str(verdict)] and (
                    worst is None or SEVERITY[row["verdict"]] > SEVERITY[worst[1]["verdict"]]):
                worst = (what, row)
    if worst is None:
        return verdict, rule, None
    what, row = worst
    shown = (f"drop {fmt(row['drop'])}, interval [{fmt(row['low'])}, {fmt(row['high'])}]"
             if "drop" in row else row.get("error", ""))
    return Verdict(row["verdict"]), (f"{rule}; but {what} {row['slice']!r} (n={row['n']}) is "
                                     f"{row['verdict']} against slice_max_drop: {shown}"), \
        {"what": what, **row}


def stratified_subset(dataset: ValidationSet, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a subset of ``size`` samples: each class keeps its share (largest
    remainders), chosen at random within the class from a stream seeded by (seed, data digest)."""
    rng = derive_rng(seed, dataset.digest, "max-samples", "")
    labels = dataset.labels
    if labels is None or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.number):
        return np.sort(rng.choice(dataset.n, size=size, replace=False))
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = counts * size / dataset.n
    take = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:size - int(take.sum())]] += 1
    chosen = [rng.choice(np.flatnonzero(inverse == k), size=int(take[k]), replace=False)
              for k in range(len(classes)) if take[k]]
    return np.sort(np.concatenate(chosen))


def _runner_notes(reference: Runner, candidate: Runner) -> list[str]:
    """What the verdict does not cover, per model (e.g. FP16 arithmetic run in FP32 on the CPU)."""
    notes = []
    for role, runner in (("reference", reference), ("candidate", candidate)):
        if getattr(runner, "fp16_on_cpu", False):
            from pytest_quantguard.runners.onnx import FP16_ON_CPU_NOTE

            notes.append(f"{role} {runner.description}: {FP16_ON_CPU_NOTE}")
    return notes


def _score(dataset: ValidationSet, metrics: list[Metric], reference: Runner, candidate: Runner,
           output: str | int | None, batch_size: int, cache: ReferenceCache,
           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Stream the set once through both models (the reference only when every metric's records
    are cached and none is paired); keep only each metric's per-sample records."""
    keys = {metric.key: cache.key(reference.sha256, {
        "data": dataset.digest, "metric": metric.key, "output": output, "batch_size": batch_size,
        "runner": getattr(reference, "settings", None)}) for metric in metrics}
    cached, status = {}, {}
    for metric in metrics:
        records, status[metric.key] = (None, "off") if metric.paired else cache.get(
            keys[metric.key], dataset.n)
        if records is not None:
            cached[metric.key] = records
    run_reference = len(cached) < len(metrics)
    parts: dict[str, dict[str, list[np.ndarray]]] = {
        metric.key: {"reference": [], "candidate": [], "paired": []} for metric in metrics}
    labels: list[np.ndarray] = []
    seconds = {"reference": 0.0, "candidate": 0.0}
    widths: dict[str, int] = {}  # class-score columns of each model's prediction output
    roles = [("reference", reference), ("candidate", candidate)] if run_reference else [
        ("candidate", candidate)]
    for batch in dataset.batches(batch_size):
        predictions = {}
        for role, runner in roles:
            start = time.perf_counter()
            outputs = runner(batch.inputs)
            seconds[role] += time.perf_counter() - start
            predictions[role] = _prediction(outputs, output, runner, role, len(batch), batch)
            if predictions[role].ndim == 2 and predictions[role].shape[1] > 1:
                widths[role] = predictions[role].shape[1]
        for metric in metrics:
            for role in predictions:
                parts[metric.key][role].append(
                    metric.reduce(predictions[role], batch.labels, batch))
            if metric.paired:
                parts[metric.key]["paired"].append(metric.reduce_pair(
                    predictions["reference"], predictions["candidate"], batch.labels, batch))
        if batch.labels is not None:
            labels.append(batch.labels)
        if progress is not None:
            progress(int(batch.ids[-1]) + 1, dataset.n)
    all_labels = np.concatenate(labels) if labels else None
    _warn_on_label_range(all_labels, widths, dataset)
    records = {}
    for metric in metrics:
        part = parts[metric.key]
        reference_records = (np.concatenate(part["reference"]) if part["reference"]
                             else cached[metric.key])
        if metric.key not in cached and not metric.paired:
            cache.put(keys[metric.key], reference_records)
        records[metric.key] = {
            "reference": reference_records, "candidate": np.concatenate(part["candidate"]),
            "paired": np.concatenate(part["paired"]) if part["paired"] else None}
    timings = {f"{role}_seconds": round(value, 6) for role, value in seconds.items()}
    return {"records": records, "labels": all_labels, "timings": timings, "cache": status,
            "reference_ran": run_reference}


def _warn_on_label_range(labels: np.ndarray | None, widths: dict[str, int],
                         dataset: ValidationSet) -> None:
    """Labels the models cannot predict (outside 0..K-1 for K class-score columns) are scored
    wrong for both models: almost always a label-encoding mistake, so say so."""
    if labels is None or labels.ndim != 1 or not widths or not np.issubdtype(labels.dtype,
                                                                             np.number):
        return
    classes = min(widths.values())
    outside = int(np.count_nonzero((labels < 0) | (labels >= classes)))
    if outside:
        warnings.warn(QuantGuardWarning(
            f"{dataset.description}: {outside} of {len(labels)} labels lie outside the models' "
            f"{classes} output classes (0..{classes - 1}); both models score them wrong. Check the "
            "label encoding (e.g. 1-based labels) and the chosen output"), stacklevel=4)


def _prediction(outputs: dict[str, np.ndarray], output: str | int | None, runner: Runner,
                role: str, n: int, batch) -> np.ndarray:
    names = list(outputs)
    if output is None:
        chosen = names[0]
    elif isinstance(output, int):
        if output >= len(names):
            raise QuantGuardError(f"{role} {runner.description}: output={output} is out of range; "
                                  f"the model has {len(names)} output(s): {names}")
        chosen = names[output]
    elif output in outputs:
        chosen = output
    else:
        raise QuantGuardError(f"{role} {runner.description}: no output named {output!r}; its "
                              f"outputs are {names} (choose with output=)")
    value = np.asarray(outputs[chosen])
    if value.ndim == 0 or len(value) != n:
        raise QuantGuardError(f"{role} {runner.description}: output {chosen!r} has shape "
                              f"{list(value.shape)} for a batch of {n} samples; it must have one row "
                              "per sample")
    if np.issubdtype(value.dtype, np.floating):
        finite = np.isfinite(value.reshape(n, -1)).all(axis=1)
        if not finite.all():
            bad = batch.ids[~finite]
            raise QuantGuardError(
                f"{role} {runner.description}: NaN or Inf in output {chosen!r} for "
                f"{len(bad)} of {n} samples in this batch (first: sample {int(bad[0])} of "
                f"{batch.origin}); the model is broken on this data (overflow, a bad quantization "
                "scale, or unnormalised inputs): fix the model, no verdict is possible")
    return value


def _formatter(metric: Metric, margin: str):
    if margin != "absolute":
        return lambda x: f"{100 * x:+.2f}%"
    if metric.kind == "binary" or metric.name == "macro_f1":  # scores in [0, 1]: points
        return lambda x: f"{x:.4f} ({100 * x:.2f} pt)"
    return lambda x: f"{x:.4g}"


def _short_formatter(metric: Metric | None, margin: str):
    """Compact numbers for slice rows: points for 0/1 metrics (``metric`` None: per-class
    accuracy), percent for relative margins."""
    if margin != "absolute":
        return lambda x: f"{100 * x:+.2f}%"
    if metric is None or metric.kind == "binary":
        return lambda x: f"{100 * x:+.2f} pt"
    return lambda x: f"{x:+.4g}"


def _message(facts: dict[str, Any]) -> str:
    metric: Metric = facts["metric"]
    margin = facts["margin"]
    fmt = _formatter(metric, margin)
    low, high = facts["interval"]
    level = f"{100 * facts['confidence']:g}%"
    details = facts["details"]
    what = {"absolute": "drop", "relative": "relative drop",
            "error-increase": "error-rate increase"}[margin]
    lines = [
        f"quantguard verdict: {facts['verdict']} (candidate {facts['candidate'].description} vs "
        f"reference {facts['reference'].description} on {facts['data'].description}, "
        f"n={facts['n']}" + (f", {facts['data'].n_groups} groups" if facts["data"].n_groups
                             else "")
        + ")",
        "  {}: reference {}, candidate {}".format(
            metric.key, *_score_texts(facts["reference_score"], facts["candidate_score"])),
    ]
    if margin == "error-increase":
        lines.append(f"  error rate: reference {1 - facts['reference_score']:.4f}, candidate "
                     f"{1 - facts['candidate_score']:.4f} (max_error_increase: the candidate's "
                     f"error rate may be at most {1 + facts['max_drop']:g}x the reference's)")
    shown = f"[{drop_text(low)}, {drop_text(high)}]" if margin == "absolute" else \
        f"[{fmt(low)}, {fmt(high)}]"
    analytic = facts["method"] in ("linearized", "linearized-cluster", "wilson")
    lines.append(f"  {what} {fmt(facts['drop'])}, {level} interval {shown} ({facts['method']}"
                 + (", analytic: no resamples)" if analytic else
                    f", {facts['resamples']} resamples)"))
    if "reference_only" in details:
        where = f"in class {details['worst_class']!r}, " if "worst_class" in details else ""
        line = (f"  {where}samples only the reference gets right: {details['reference_only']}; "
                f"only the candidate: {details['candidate_only']}")
        if "mcnemar_p" in details:
            p = details["mcnemar_p"]
            shown_p = f"= {p:.3g}" if p >= 1e-300 else "< 1e-300"
            line += f"; McNemar exact p {shown_p} (tests for any difference; not used by the gate)"
        lines.append(line)
    if "disagreements" in details:
        lines.append(f"  the models' top-1 classes differ on {details['disagreements']} of "
                     f"{facts['n']} samples (no labels needed)")
    if "worst_class" in details:
        lines.append(f"  worst class: {details['worst_class']!r} (n={details['worst_class_n']}); "
                     "every class's accuracy is gated")
    if "top_token_agreement" in details:
        lines.append(f"  beside it: top-token agreement {100 * details['top_token_agreement']:.2f}%, "
                     f"mean KL(reference || candidate) {details['mean_kl']:.4g} nats per token "
                     f"({details['tokens']:,} tokens)")
    for key, what_rows in (("per_class", "classes"), ("slices", "slices")):
        rows = [row for row in details.get(key, ()) if "drop" in row]
        if rows and any(row["drop"] > 0 for row in rows):
            label = details.get("per_class_metric", metric.key) if key == "per_class" else metric.key
            short = _short_formatter(metric if key == "slices" else None, margin)
            shown_rows = "; ".join(
                f"{row['slice']!r} (n={row['n']}) {short(row['drop'])} "
                f"[{short(row['low'])}, {short(row['high'])}]"
                + (f" {row['verdict']}" if "verdict" in row else "")
                for row in rows[:SHOWN_SLICES])
            lines.append(f"  {what_rows} that lost most ({label}, by upper bound): {shown_rows}")
    if facts["method"] == "degenerate-fallback":
        lines.append("  (degenerate-fallback: the two models never differ here, so every bootstrap "
                     "resample is identical; the interval is the score bound for zero differences)")
    if facts["method"] == "cluster-bca":
        lines.append(f"  (cluster-bca: the {details['groups']} groups are resampled as units, "
                     "because samples within a group are correlated)")
    lines.extend(f"  note: {note}" for note in facts["notes"])
    if facts["suspicious"]:
        lines.append("  warning: the candidate is better beyond the limit; check that both models "
                     "get the same preprocessing")
    rule = facts["rule"]
    if facts["established"]:
        rule += f"; degradation established (lower bound {fmt(low)} >= max_drop)"
    lines.append(f"  rule: {rule}")
    culprit = facts.get("culprit")
    if facts["verdict"] == Verdict.INCONCLUSIVE and culprit is not None:
        lines.append(f"  remedy: the {culprit['what']} {culprit['slice']!r} has {culprit['n']} "
                     f"samples, too few to resolve slice_max_drop {fmt(facts['slice_max_drop'])} "
                     "on its own: collect more samples of it (size it with `quantguard plan` "
                     "and that slice's discordance), or raise slice_max_drop")
    elif facts["verdict"] == Verdict.INCONCLUSIVE:
        lines.append(f"  remedy: {_remedy(facts)}")
    else:
        lines.append(f"  remedy: {REMEDIES[facts['verdict']]}")
    return "\n".join(lines)


def _score_texts(reference: float, candidate: float) -> tuple[str, str]:
    """Both scores to 4 decimals, or to 7 significant digits where 4 decimals would hide their
    difference (fidelity: a cosine of 0.99999 against 1)."""
    if f"{reference:.4f}" == f"{candidate:.4f}" and reference != candidate:
        return f"{reference:.7g}", f"{candidate:.7g}"
    return f"{reference:.4f}", f"{candidate:.4f}"


def _remedy(facts: dict[str, Any]) -> str:
    details = facts["details"]
    common = dict(confidence=facts["confidence"])
    if "reference_only" in details and facts["margin"] == "absolute" and "groups" not in details \
            and "worst_class_n" not in details:
        discordance = (details["reference_only"] + details["candidate_only"]) / facts["n"]
        return inconclusive_remedy(facts["drop"], facts["max_drop"], facts["n"],
                                   discordance=discordance, **common)
    if "worst_class_n" in details and "reference_only" in details:
        n = details["worst_class_n"]
        discordance = (details["reference_only"] + details["candidate_only"]) / n
        return inconclusive_remedy(facts["drop"], facts["max_drop"], n, discordance=discordance,
                                   unit=f"samples of class {details['worst_class']!r}", **common)
    if "unit_variance" not in details:
        if "disagreements" in details:  # Wilson: the disagreement rate's own variance
            rate = max(details["disagreements"] / facts["n"], 3.0 / facts["n"])
            return inconclusive_remedy(facts["drop"], facts["max_drop"], facts["n"],
                                       variance=rate * (1 - rate), **common)
        return "more samples would narrow the interval"
    if "groups" in details:
        return inconclusive_remedy(facts["drop"], facts["max_drop"], details["groups"],
                                   variance=details["unit_variance"], unit="groups", **common)
    return inconclusive_remedy(facts["drop"], facts["max_drop"], facts["n"],
                               variance=details["unit_variance"], **common)


def _checked(key: str, validate, value):
    try:
        return validate(value)
    except ValueError as error:
        raise QuantGuardError(f"{key}: {error}") from None


def _runner_info(runner: Runner) -> dict[str, Any]:
    return {"path": runner.path if runner.path is not None else runner.description,
            "sha256": runner.sha256, "bytes": runner.nbytes}


def _model_info(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"path": record.get("path"), "sha256": record.get("sha256"), "bytes": record.get("bytes")}


def _builtins(value: Any) -> Any:
    """Recursively convert numpy scalars and arrays to builtins (execnet cannot ship numpy)."""
    if isinstance(value, Mapping):
        return {str(key): _builtins(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_builtins(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
