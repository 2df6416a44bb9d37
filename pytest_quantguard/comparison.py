"""The pipe, wired once: validation set -> runners -> outputs -> metrics -> per-sample records ->
each metric's scores, interval and verdict. The Python API (``compare``) and the pytest fixture
both call ``run``; its rooms are ``inference`` (the pass through both models), ``judging`` (plans,
intervals, verdicts, breakdowns), ``message`` (the text and remedy) and ``record`` (the result).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_quantguard.batching import choose_batch, first_sample_shapes, requested_batch
from pytest_quantguard.cache import ReferenceCache
from pytest_quantguard.data import ValidationSet, as_validation_set
from pytest_quantguard.errors import QuantGuardWarning
from pytest_quantguard.inference import infer, stratified_subset
from pytest_quantguard.judging import DISCORDANT_CAP, Subject, judge, plans
from pytest_quantguard.message import SHOWN_SLICES, suspicious_gain_text
from pytest_quantguard.metrics.custom import CORPUS_SAFE_FROM
from pytest_quantguard.record import Comparison, Interval
from pytest_quantguard.runners import Runner, make_runner
from pytest_quantguard.settings import (
    TOLERANCE_KEYS,
    Execution,
    Tolerance,
    check_layer,
    default,
    make_execution,
    resolve_tolerance,
)
from pytest_quantguard.stats.families import MIN_GROUPS

__all__ = ["CORPUS_SAFE_FROM", "DISCORDANT_CAP", "SHOWN_SLICES", "Comparison", "Interval", "compare", "run",
           "stratified_subset", "suspicious_gain_text"]


def compare(reference: Any, candidate: Any, *, data: Any, metric: str | None = None,
            max_drop: float | None = None, qat_limit: float | None = None,
            relative: bool | None = None, confidence: float = default("confidence"),
            gate: str = default("gate"), resamples: int = default("bootstrap"),
            seed: int = default("seed"), output: str | int | None = None,
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
    - ``min_reference=0.9`` (or ``{"accuracy": 0.9, "rmse": 55}``): the reference must score at
      least this well on ``data`` (at most, for lower-is-better metrics); a miss does not change
      the verdict but fails ``comparison.passed``, lists the check in
      ``comparison.failed_checks``, puts a ``FAILED check:`` line in ``comparison.message`` and
      warns (QuantGuardWarning);
    - metric options such as ``k=5`` (``metric="top_k"``) or ``pooling="mean"`` (cosine).

    Limits are fractions in the metric's units (0.01 = 1 point of accuracy; 1 % relative); one
    that cannot be meant (>= 1 on a [0, 1] score) is a QuantGuardError.
    """
    options = dict(metric_options)
    given = dict(metric=metric, max_drop=max_drop, qat_limit=qat_limit, relative=relative,
                 confidence=confidence, gate=gate, output=output)
    given.update({key: options.pop(key) for key in TOLERANCE_KEYS if key in options})
    tolerance = resolve_tolerance(None, ("call", check_layer(given)))
    comparison = run(reference, candidate, data, tolerance,
                     make_execution(resamples=resamples, seed=seed), name=name,
                     metric_options=options)
    for each in comparison.all():
        if each.details.get("suspicious_gain"):
            warnings.warn(QuantGuardWarning(suspicious_gain_text(each)), stacklevel=2)
        for check in each.failed_checks:
            warnings.warn(QuantGuardWarning(f"{each.id or each.metric}: FAILED check: "
                                            f"{check['rule']}"), stacklevel=2)
    return comparison


def run(reference: Any, candidate: Any, data: Any, tolerance: Tolerance, execution: Execution, *,
        name: str | None = None, comparison_id: str | None = None,
        metric_options: Mapping[str, Any] | None = None,
        policy: Mapping[str, Any] | None = None) -> Comparison:
    """The pipe for checked settings (``compare()`` and the fixture build them): load the set,
    plan each metric, run both models once, judge each metric; with several metrics the worst
    comparison is returned and ``metrics`` holds all. ``policy``: the project's floor
    (``policy.floor``: limits checked in their unit, a ``min_reference`` table)."""
    dataset = as_validation_set(data, base_dir=execution.base_dir)
    full_n = dataset.n
    if execution.max_samples is not None and execution.max_samples < dataset.n:
        dataset = dataset.subset(stratified_subset(dataset, execution.max_samples, execution.seed))
    planned = plans(tolerance, dataset, dict(metric_options or {}), policy)
    output = tolerance.output if tolerance.output is not None else dataset.manifest.get("output")
    base = execution.base_dir or Path.cwd()
    subject = _subject(dataset, full_n, make_runner(reference, base_dir=base, role="reference",
                                                    device=execution.device),
                       make_runner(candidate, base_dir=base, role="candidate",
                                   device=execution.device))
    batch = choose_batch(requested_batch(tolerance, execution), execution.memory, dataset.n,
                         first_sample_shapes(dataset),
                         [("reference", subject.reference), ("candidate", subject.candidate)])
    inferred = infer(dataset, [plan.metric for plan in planned], batch.runner(subject.reference),
                     batch.runner(subject.candidate), output, batch.pipe or batch.size,
                     execution.cache if execution.cache is not None else ReferenceCache(None),
                     execution.progress)
    inferred = dataclasses.replace(inferred, batch=batch.record())
    _warn_about_the_set(dataset)
    several = tolerance.metrics is not None
    comparisons = [judge(plan, subject, tolerance, execution, inferred,
                         **_identity(plan.metric.key, name, comparison_id, several))
                   for plan in planned]
    if not several:
        return comparisons[0]
    worst = max(comparisons, key=lambda item: item.verdict.severity)
    return dataclasses.replace(worst, metrics=tuple(comparisons))


def _subject(dataset: ValidationSet, full_n: int, reference: Runner, candidate: Runner) -> Subject:
    """Both models and the set, with what the verdict does not cover: per model (e.g. FP16
    arithmetic run in FP32 on the CPU), and a --quant-max-samples subset."""
    notes = [f"{role} {runner.description}: {note}"
             for role, runner in (("reference", reference), ("candidate", candidate))
             for note in getattr(runner, "notes", ())]
    if dataset.n < full_n:
        notes.insert(0, f"ADVISORY: a --quant-max-samples subset of {dataset.n:,} of the "
                        f"{full_n:,} samples (stratified, seeded); not a release verdict")
    return Subject(dataset, full_n, reference, candidate, tuple(notes))


def _identity(key: str, name: str | None, comparison_id: str | None,
              several: bool) -> dict[str, Any]:
    """A comparison's name and id; with several metrics each is a named comparison:
    "<name>.<metric>", or "<metric>"."""
    own_name, own_id = name, comparison_id if comparison_id is not None else (name or "")
    if several:
        own_name = f"{name}.{key}" if name else key
        if comparison_id:
            own_id = f"{comparison_id}.{key}" if name else f"{comparison_id}::{key}"
        else:
            own_id = own_name
    return {"name": own_name, "comparison_id": own_id}


def _warn_about_the_set(dataset: ValidationSet) -> None:
    """Evidence that is weaker than it looks: repeated samples, too few groups."""
    duplicates = dataset.duplicate_count()  # counted during the pass through the models: free
    if duplicates:
        warnings.warn(QuantGuardWarning(
            f"{dataset.description}: {duplicates} of {dataset.n} samples repeat an earlier sample's "
            "inputs exactly; repeats are not independent evidence and make the interval falsely "
            "narrow: remove them from the validation set"), stacklevel=4)
    if dataset.groups is not None and dataset.n_groups < MIN_GROUPS:
        warnings.warn(QuantGuardWarning(
            f"{dataset.description}: only {dataset.n_groups} groups; a clustered interval with fewer "
            f"than {MIN_GROUPS} groups is unreliable (it tends to be too narrow): collect more "
            "groups (documents, products, scenes)"), stacklevel=4)
