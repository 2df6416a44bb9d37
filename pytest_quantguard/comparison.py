"""The pipe, wired once: validation set -> runners -> outputs -> metrics -> per-sample records ->
each metric's scores, interval and verdict. The Python API (``compare``) and the pytest fixture
both call ``run``; its rooms are ``inference`` (the pass through both models), ``judging`` (plans,
intervals, verdicts, breakdowns), ``message`` (the text and remedy) and ``record`` (the result).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_quantguard.batching import Batch, choose_batch, first_sample_shapes, requested_batch
from pytest_quantguard.cache import ReferenceCache
from pytest_quantguard.data import ValidationSet, as_validation_set
from pytest_quantguard.diagnosis.layers import attach_diagnosis
from pytest_quantguard.diagnosis.risks import risk_notes
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.inference import Inferred, infer, stratified_subset
from pytest_quantguard.judging import DISCORDANT_CAP, Plan, Subject, judge, plans
from pytest_quantguard.message import SHOWN_SLICES, suspicious_gain_text, with_findings
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
from pytest_quantguard.verdict import Verdict

# Runner notes that the risk notes say instead (docs/risks.md, "The notes"): FP16 on the CPU and
# dynamic quantization (a torch runner still notes the latter itself).
__all__ = ["CORPUS_SAFE_FROM", "DISCORDANT_CAP", "SHOWN_SLICES", "Comparison", "Interval", "compare", "run",
           "stratified_subset", "suspicious_gain_text"]


def compare(reference: Any, candidate: Any, *, data: Any, metric: str | None = None,
            max_drop: float | None = None, qat_limit: float | None = None,
            relative: bool | None = None, confidence: float = default("confidence"),
            gate: str = default("gate"), resamples: int | None = None,
            seed: int = default("seed"), output: str | int | None = None,
            name: str | Sequence[str] | None = None, diagnose: str | None = None,
            **metric_options: Any) -> Comparison | tuple[Comparison, ...]:
    """Run both models on ``data``, measure the drop with a paired interval, and give the verdict.

    ``reference`` and ``candidate``: a path to a ``.onnx`` file, a torch module or file, or a
    callable ``f(batch)``. ``candidate`` a list of models: the reference runs once per batch for
    all, and a tuple of comparisons comes back, one per candidate, named by ``name`` (a list, one
    name each) or by each candidate's file stem (docs/usage.md, "Several candidates"). ``data``:
    a folder, a ``ValidationSet``, ``(inputs, labels)`` or ``inputs``. Nothing here raises on a
    bad verdict: read ``comparison.verdict`` (the fixture is what fails tests). Keywords beyond the signature:

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

    ``diagnose``: ``"on-failure"`` (the default), ``"always"`` or ``"never"``: when the per-layer
    diagnosis runs (docs/risks.md).

    Limits are fractions in the metric's units (0.01 = 1 point of accuracy; 1 % relative); one
    that cannot be meant (>= 1 on a [0, 1] score) is a QuantGuardError.
    """
    options = dict(metric_options)
    given = dict(metric=metric, max_drop=max_drop, qat_limit=qat_limit, relative=relative,
                 confidence=confidence, gate=gate, output=output)
    given.update({key: options.pop(key) for key in TOLERANCE_KEYS if key in options})
    tolerance = resolve_tolerance(None, ("call", check_layer(given)))
    execution = make_execution(resamples=resamples, seed=seed,
                               **({"diagnose": diagnose} if diagnose is not None else {}))
    comparison = run(reference, candidate, data, tolerance, execution, name=name,
                     metric_options=options)
    found = comparison if isinstance(comparison, tuple) else (comparison,)
    for each in (each for one in found for each in one.all()):
        if each.details.get("suspicious_gain"):
            warnings.warn(QuantGuardWarning(suspicious_gain_text(each)), stacklevel=2)
        for check in each.failed_checks:
            warnings.warn(QuantGuardWarning(f"{each.id or each.metric}: FAILED check: "
                                            f"{check['rule']}"), stacklevel=2)
    return comparison


def run(reference: Any, candidate: Any, data: Any, tolerance: Tolerance, execution: Execution, *,
        name: str | Sequence[str] | None = None, comparison_id: str | None = None,
        metric_options: Mapping[str, Any] | None = None,
        policy: Mapping[str, Any] | None = None) -> Comparison | tuple[Comparison, ...]:
    """The pipe for checked settings (``compare()`` and the fixture build them): load the set,
    plan each metric, run the models once, judge each metric; with several metrics the worst
    comparison is returned and ``metrics`` holds all. ``policy``: the project's floor
    (``policy.floor``: limits checked in their unit, a ``min_reference`` table).

    ``candidate`` a list (or tuple) of models: the reference runs once per batch for all of them,
    and a tuple holds one comparison per candidate, in order, each named by ``name`` (one name per
    candidate) or ``candidate_names`` and identified as ``<comparison_id>::<name>`` (docs/usage.md,
    "Several candidates")."""
    several = isinstance(candidate, (list, tuple))
    candidates = list(candidate) if several else [candidate]
    names = candidate_names(candidates, name) if several else [name]
    dataset = as_validation_set(data, base_dir=execution.base_dir)
    full_n = dataset.n
    if execution.max_samples is not None and execution.max_samples < dataset.n:
        dataset = dataset.subset(stratified_subset(dataset, execution.max_samples, execution.seed))
    planned = plans(tolerance, dataset, dict(metric_options or {}), policy)
    output = tolerance.output if tolerance.output is not None else dataset.manifest.get("output")
    base = execution.base_dir or Path.cwd()
    reference_runner = make_runner(reference, base_dir=base, role="reference",
                                   device=execution.device)
    runners = [make_runner(each, base_dir=base, role="candidate" if not several else
                           f"candidate {own!r}", device=execution.device)
               for each, own in zip(candidates, names, strict=True)]
    subjects = [_subject(dataset, full_n, reference_runner, runner) for runner in runners]
    roles = [f"candidate {own!r}" if several else "candidate" for own in names]
    batch = choose_batch(requested_batch(tolerance, execution), execution.memory, dataset.n,
                         first_sample_shapes(dataset),
                         [("reference", reference_runner), *zip(roles, runners, strict=True)])
    inferred = infer(dataset, [plan.metric for plan in planned], batch.runner(reference_runner),
                     [batch.runner(runner) for runner in runners], output, batch.pipe or batch.size,
                     execution.cache if execution.cache is not None else ReferenceCache(None),
                     execution.progress)
    inferred = [dataclasses.replace(each, batch=_own_batch(batch, role))
                for each, role in zip(inferred, roles, strict=True)]
    _warn_about_the_set(dataset)
    found = tuple(_findings(_judged(planned, subject, tolerance, execution, each, own, _own_id(
        comparison_id, own) if several else comparison_id), subject, execution, each.batch)
        for subject, each, own in zip(subjects, inferred, names, strict=True))
    return found if several else found[0]


def _findings(comparison: Comparison, subject: Subject, execution: Execution,
              batch: dict[str, Any]) -> Comparison:
    """The risk notes of both models, the per-layer diagnosis and its remedies (docs/risks.md,
    "Where the notes appear"): in every comparison's ``details``; in the message only when the
    comparison did not ship."""
    dataset = subject.dataset
    risks = risk_notes(subject.reference, subject.candidate, task=dataset.task or "",
                       metric_task=comparison.details.get("task", ""), batch=batch)
    comparison = _with_details(comparison, {"risks": risks})
    comparison = attach_diagnosis(comparison, subject.reference, subject.candidate, dataset,
                                  execution, risks)
    found = {key: comparison.details[key] for key in ("diagnosis", "remedies")
             if key in comparison.details}
    members = tuple(_told(_with_details(each, {"risks": risks, **found}))
                    for each in comparison.metrics)
    return dataclasses.replace(_told(comparison), metrics=members)


def _with_details(comparison: Comparison, extra: dict[str, Any]) -> Comparison:
    return dataclasses.replace(comparison, details={**comparison.details, **extra})


def _told(comparison: Comparison) -> Comparison:
    """A comparison that did not ship says its risks, diagnosis and remedies in its message."""
    if comparison.verdict == Verdict.SHIP:
        return comparison
    return dataclasses.replace(comparison, message=with_findings(comparison.message,
                                                                 comparison.details))


def _own_batch(batch: Batch, role: str) -> dict[str, Any]:
    """The batch as one candidate's record holds it: batch-dependent roles among its own two
    models only (docs/models.md, "Dynamic quantization and the batch")."""
    record = batch.record()
    own = ["candidate" if each == role else each for each in batch.batch_dependent
           if each in ("reference", role)]
    record.pop("batch_dependent", None)
    return {**record, **({"batch_dependent": own} if own else {})}


def candidate_names(candidates: Sequence[Any], name: str | Sequence[str] | None) -> list[str]:
    """One name per candidate of a list: ``name`` when it is a list of distinct names of the
    right length; else each candidate's file stem (a path, or a runner's ``path``) when all are
    distinct, otherwise ``candidate-1``, ``candidate-2``, ... (docs/usage.md, "Several
    candidates")."""
    if not candidates:
        raise QuantGuardError("candidate is an empty list: give at least one candidate model")
    if isinstance(name, str):
        raise QuantGuardError(f"name={name!r} names one comparison, but {len(candidates)} "
                              "candidates are compared: give one name per candidate (name=['int8', "
                              "'int4']) or none (each candidate's file stem)")
    if name is not None:
        names = list(name)
        if len(names) != len(candidates) or not all(isinstance(each, str) and each
                                                    for each in names):
            raise QuantGuardError(f"name={names!r}: give one non-empty string per candidate "
                                  f"({len(candidates)} candidates)")
        if len(set(names)) != len(names):
            raise QuantGuardError(f"name={names!r}: the names must be distinct")
        return names
    stems = []
    for each in candidates:
        path = each if isinstance(each, (str, Path)) else getattr(each, "path", None)
        stems.append(Path(path).stem if isinstance(path, (str, Path)) and str(path) else None)
    if None in stems or len(set(stems)) != len(stems):
        return [f"candidate-{index}" for index in range(1, len(candidates) + 1)]
    return stems


def _own_id(comparison_id: str | None, own: str) -> str:
    return f"{comparison_id}::{own}" if comparison_id else own


def _judged(planned: list[Plan], subject: Subject, tolerance: Tolerance, execution: Execution,
            inferred: Inferred, name: str | None, comparison_id: str | None) -> Comparison:
    """One candidate's comparison: each metric judged; with several metrics the worst, holding
    all in ``metrics``."""
    several = tolerance.metrics is not None
    comparisons = [judge(plan, subject, tolerance, execution, inferred,
                         **_identity(plan.metric.key, name, comparison_id, several))
                   for plan in planned]
    if not several:
        return comparisons[0]
    worst = max(comparisons, key=lambda item: item.verdict.severity)
    return dataclasses.replace(worst, metrics=tuple(comparisons))


def _subject(dataset: ValidationSet, full_n: int, reference: Runner, candidate: Runner) -> Subject:
    """Both models and the set, with what the verdict does not cover: a runner's own notes (a
    user's runner may carry some; the built-in cautions are risk notes, docs/risks.md), and a
    --quant-max-samples subset."""
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
