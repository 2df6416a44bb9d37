"""Judging: which metrics to gate and how (plans), then each metric's interval, verdict, class
and slice breakdowns and discordant samples (docs/verdict.md)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_quantguard.data import ValidationSet
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.formatting import drop_formatter
from pytest_quantguard.inference import Inferred, Records
from pytest_quantguard.message import Judgement, message, remedy
from pytest_quantguard.metrics import Context, Metric, Scores, get_metric
from pytest_quantguard.metrics.base import require_margin
from pytest_quantguard.metrics.detection import DetectionScores
from pytest_quantguard.metrics.scores import BinaryScores, PerClassScores, breakdown
from pytest_quantguard.record import Comparison, Interval
from pytest_quantguard.reference_check import misaligned_checks
from pytest_quantguard.runners import Runner
from pytest_quantguard.settings import Execution, Tolerance, describe_source
from pytest_quantguard.stats import derive_rng
from pytest_quantguard.stats.seeding import scores_digest
from pytest_quantguard.validators import did_you_mean
from pytest_quantguard.verdict import Verdict, decide, severity

DISCORDANT_CAP = 100  # discordant samples kept per comparison (the count is always complete)
SUGGESTED = {"regression": "mae, rmse or r2", "language-model": "perplexity",
             "detection": "map50_95, map50 or map75", "classification": "accuracy or macro_f1"}
WIDE = 0.10  # an absolute ship limit above this on a [0, 1] score warns (docs/verdict.md)


@dataclass(frozen=True)
class Plan:
    """One metric to gate: the configured metric, its limit, its try-qat boundary and margin."""

    metric: Metric
    max_drop: float
    qat_limit: float
    margin: str
    # the reference's least acceptable scores: (score, where it was set) (docs/verdict.md,
    # "Checks of the reference")
    min_reference: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True)
class Subject:
    """What is compared: the set (and the size of the set it may be a subset of), both models,
    and the notes every comparison of them carries."""

    dataset: ValidationSet
    full_n: int
    reference: Runner
    candidate: Runner
    notes: tuple[str, ...] = ()


def plans(tolerance: Tolerance, dataset: ValidationSet, options: Mapping[str, Any],
          policy: Mapping[str, Any] | None = None) -> list[Plan]:
    """Resolve each metric (the task's default for None), its options and margin, and check it
    suits the data, and its limits their unit, before any model runs. ``policy``: the project's
    floor (``max_drop``, ``max_error_increase``, ``min_reference``), whose limits are checked too
    and whose ``min_reference`` applies beside the test's own."""
    found, used = [], set()
    policy = policy or {}
    for key, limit in tolerance.limits().items():
        probe = get_metric(key, dataset.task)
        accepted = {option: value for option, value in options.items()
                    if option in probe.option_names}
        used.update(accepted)
        if "pooling" in probe.option_names and "pooling" not in accepted \
                and dataset.manifest.get("pooling") is not None:
            accepted["pooling"] = dataset.manifest["pooling"]
        chosen = probe.configure(accepted)
        _check_fit(chosen, dataset)
        margin = _margin(chosen, tolerance)
        require_margin(chosen.name, margin, chosen.margins)
        chosen.check_options()
        plan = Plan(chosen, limit, tolerance.qat_limit, margin,
                    _reference_floors(key, chosen, tolerance, policy))
        check_limits(plan, tolerance, policy)
        found.append(plan)
    unused = sorted(set(options) - used)
    if unused:
        raise QuantGuardError(_unknown_keywords(unused, found))
    return found


def _unknown_keywords(unused: list[str], found: list[Plan]) -> str:
    """A keyword neither a tolerance key nor an option of the metric: the closest of either."""
    from pytest_quantguard.settings import TOLERANCE_KEYS

    options = sorted({option for plan in found for option in plan.metric.option_names})
    valid = [*TOLERANCE_KEYS, *options]
    named = ", ".join(f"{key} ({did_you_mean(key, valid).strip()})" if did_you_mean(key, valid)
                      else key for key in unused)
    metrics = ", ".join(plan.metric.name for plan in found)
    takes = f"it takes {', '.join(options)}" if options else "it takes none"
    return (f"unknown keyword(s) {named}: not a tolerance key, and not an option of metric "
            f"{metrics} ({takes}; options: k for top_k, pooling for cosine and rel_error); the "
            f"tolerance keys are {', '.join(TOLERANCE_KEYS)}")


def check_limits(plan: Plan, tolerance: Tolerance, policy: Mapping[str, Any]) -> None:
    """Each limit in its unit (docs/verdict.md, "Limits and their units"): on a score in [0, 1] an
    absolute limit >= 1 is an error and one above 0.10 warns; any relative limit (relative=True,
    max_error_increase) >= 1 is an error; max_drop >= qat_limit warns that try-qat is empty."""
    metric, margin = plan.metric, plan.margin
    ship = "max_error_increase" if margin == "error-increase" else (
        "metrics" if (tolerance.metrics or {}).get(metric.name) is not None else "max_drop")
    limits = [(ship, tolerance.source(ship), plan.max_drop, True),
              ("slice_max_drop", tolerance.source("slice_max_drop"), tolerance.slice_max_drop, True),
              ("quant_policy_max_drop", "quant_policy_max_drop (ini file)",
               policy.get("max_drop") if margin != "error-increase" else None, True),
              ("quant_policy_max_error_increase", "quant_policy_max_error_increase (ini file)",
               policy.get("max_error_increase"), True)]
    if margin != "error-increase":  # the try-qat band of an error rate may exceed 100 %
        limits.append(("qat_limit", tolerance.source("qat_limit"), plan.qat_limit, False))
    relative = margin != "absolute" or None
    for key, where, value, gates in limits:
        if value is None:
            continue
        scale = "relative" if relative or key == "quant_policy_max_error_increase" else (
            "unit" if metric.bounded else None)
        if scale is not None and value >= 1:
            unit = ("a fraction of the reference's score (or error rate): 0.01 = 1 %" if
                    scale == "relative" else f"a fraction, as {metric.name} is scored in [0, 1]: "
                    "0.01 = 1 point")
            raise QuantGuardError(f"{where} = {value:g} is a limit of {100 * value:g} % on "
                                  f"{metric.name}: it would pass almost anything. A limit is "
                                  f"{unit}; did you mean {value / 100:g}?")
        if scale == "unit" and gates and value > WIDE:
            warnings.warn(QuantGuardWarning(
                f"{where} = {value:g} lets {metric.name} lose up to {100 * value:g} points before "
                "the gate fails: a limit is a fraction of the [0, 1] score (0.01 = 1 point); is "
                "so wide a limit meant?"), stacklevel=5)
    if plan.max_drop >= plan.qat_limit:
        warnings.warn(QuantGuardWarning(
            f"{metric.name}: {tolerance.source(ship)} = {plan.max_drop:g} >= "
            f"{tolerance.source('qat_limit')} = {plan.qat_limit:g}, so the try-qat band is empty: "
            "a candidate over the limit is stay-fp16 at once; set qat_limit above the limit (e.g. "
            f"{3 * plan.max_drop:g}) to keep the try-qat verdict"), stacklevel=5)


def _reference_floors(key: str | None, metric: Metric, tolerance: Tolerance,
                      policy: Mapping[str, Any]) -> tuple[tuple[float, str], ...]:
    """The reference's least acceptable scores for this metric: the test's ``min_reference`` (a
    number: the gated metric's; a table: by metric name) and the policy's table."""
    floors = []
    for given, layer in ((tolerance.min_reference, tolerance.sources.get("min_reference")),
                         (policy.get("min_reference"), "policy")):
        where = ("quant_policy_min_reference (ini file)" if layer == "policy" else
                 describe_source("min_reference", layer))
        if isinstance(given, Mapping):
            names = [name for name in (key, metric.name, metric.key) if name in given]
            if names:
                floors.append((float(given[names[0]]), where))
        elif given is not None:
            if tolerance.metrics is not None:
                raise QuantGuardError(f"{where} = {given:g} is one score, but metrics= gates "
                                      f"{', '.join(tolerance.metrics)}: give one per metric, e.g. "
                                      "{'accuracy': 0.9, 'macro_f1': 0.85}")
            floors.append((float(given), where))
    for value, where in floors:
        if metric.bounded and value > 1:
            raise QuantGuardError(f"{where} = {value:g}: {metric.name} is scored in [0, 1], so "
                                  f"the reference can never reach it; did you mean {value / 100:g}?")
    return tuple(floors)


def reference_checks(plan: Plan, evaluation) -> list[dict[str, Any]]:
    """The checks of the reference on this data, independent of the candidate (docs/verdict.md,
    "Checks of the reference"): each ``{"check", "passed", "rule", ...figures}``. A failed one
    fails the test with its own rule line; the verdict stays the candidate's."""
    checks = []
    metric, score = plan.metric, evaluation.reference_score
    for floor, where in plan.min_reference:
        passed = score >= floor if metric.higher_is_better else score <= floor
        sign, what = (">=", "<") if metric.higher_is_better else ("<=", ">")
        rule = (f"min_reference: the reference scores {score:.4g} {sign if passed else what} "
                f"{floor:g} ({where}) on this data" + ("" if passed else
                                                      ": the data or the reference is wrong, not "
                                                      "the quantization"))
        if not metric.higher_is_better and not passed:
            rule += f" ({metric.name} is lower-is-better: min_reference is its ceiling)"
        checks.append({"check": "min_reference", "passed": passed, "rule": rule,
                       "reference_score": float(score), "limit": floor, "source": where})
    return checks


def chance_checks(inferred: Inferred, confidence: float, dataset: ValidationSet,
                  notes: list[str]) -> list[dict[str, Any]]:
    """The check that the reference beats chance on these labels (docs/verdict.md, "Checks of the
    reference"), as a list of none or one; its notes (e.g. accuracy under the majority share) are
    added to ``notes``."""
    check = inferred.reference_check(confidence)
    if check is None or check.statistic == "skipped":
        return []
    notes.extend(check.notes)
    figures = {"statistic": check.statistic, "value": check.value, "lower": check.lower}
    if check.passed:
        bound = "" if check.lower is None else f", lower bound {check.lower:.4g}"
        rule = (f"chance: the reference beats chance on these labels ({check.statistic} "
                f"{check.value:.4g}{bound})")
    else:
        rule = f"chance: {dataset.description}: {check.message}"
    return [{"check": "chance", "passed": check.passed, "rule": rule, **figures}]


def _check_fit(metric: Metric, dataset: ValidationSet) -> None:
    detection = (metric.task == "detection", dataset.task == "detection")
    if not metric.fits_task(dataset.task) or detection[0] != detection[1]:
        what = {"detection": "boxes"}.get(metric.task, "class predictions")
        raise QuantGuardError(f"{dataset.description}: metric {metric.name!r} scores {what}, but "
                              f"this set's task is {dataset.task!r}; use "
                              f"{SUGGESTED.get(dataset.task, 'a metric of this task')} (or leave "
                              "metric unset for the task's default)")
    if metric.needs_labels and not dataset.has_labels:
        raise QuantGuardError(f"{dataset.first_file}: metric {metric.name!r} needs labels, and the "
                              "validation set has none; save them beside the inputs "
                              "(np.savez(path, inputs=x, labels=y)), name the array that holds "
                              "them in quantguard.toml (labels = \"y\"), or gate label-free with "
                              "metric='agreement', 'cosine' or 'rel_error'")


def _margin(metric: Metric, tolerance: Tolerance) -> str:
    """absolute, relative or error-increase: what the limit is stated on."""
    if tolerance.max_error_increase is not None:
        if metric.kind != "binary" or "error-increase" not in metric.margins:
            raise QuantGuardError(f"max_error_increase applies to metrics that score each sample "
                                  f"0/1 (accuracy, top-k): it limits the growth of the error rate. "
                                  f"{metric.name!r} is not one; use max_drop (relative=True for a "
                                  "relative limit)")
        return "error-increase"
    relative = metric.default_relative if tolerance.relative is None else tolerance.relative
    margin = "relative" if relative else "absolute"
    if tolerance.relative is None and margin not in metric.margins:
        margin = metric.margins[0]
    return margin


def judge(plan: Plan, subject: Subject, tolerance: Tolerance, execution: Execution,
          inferred: Inferred, *, name: str | None, comparison_id: str) -> Comparison:
    """One metric's scores, interval, verdict, breakdowns and message."""
    metric, dataset = plan.metric, subject.dataset
    records = inferred.records[metric.key]
    scores = metric.scores(records.reference, records.candidate, inferred.labels, records.paired)
    if isinstance(scores, (PerClassScores, DetectionScores)) and dataset.class_names:
        scores = dataclasses.replace(scores, class_names=tuple(dataset.class_names))
    rng = derive_rng(execution.seed, dataset.digest, metric.key,
                     scores_digest(*scores.digest_arrays()))
    context = Context(margin=plan.margin, confidence=tolerance.confidence,
                      resamples=execution.resamples, rng=rng, groups=dataset.groups,
                      resamples_given=execution.resamples_given,
                      where=dataset.description, max_drop=plan.max_drop,
                      qat_limit=plan.qat_limit, gate=tolerance.gate)
    evaluation = scores.evaluate(context)
    interval = Interval(evaluation.interval.low, evaluation.interval.high)
    fmt = drop_formatter(metric.points, plan.margin)
    decision = decide(evaluation.drop, interval.low, interval.high, max_drop=plan.max_drop,
                      qat_limit=plan.qat_limit, gate=tolerance.gate, fmt=fmt)
    details = {**evaluation.interval.details, **evaluation.details}
    slices = breakdowns(scores, inferred.labels, dataset, context, plan, tolerance,
                        own=evaluation.details)
    details.update(slices)
    verdict, rule, culprit = decision.verdict, decision.rule, None
    if tolerance.slice_max_drop is not None:
        verdict, rule, culprit = slice_verdict(verdict, rule, slices, fmt)
    notes = [*subject.notes, *metric.notes, *evaluation.notes]
    checks = [*chance_checks(inferred, tolerance.confidence, dataset, notes),
              *reference_checks(plan, evaluation),
              *misaligned_checks(subject.candidate, inferred.reference_summary, inferred.task,
                                 tolerance.output if tolerance.output is not None
                                 else dataset.manifest.get("output"), tolerance.confidence)]
    judgement = Judgement(
        plan=plan, subject=subject, tolerance=tolerance, execution=execution,
        evaluation=evaluation, details=details, verdict=verdict, rule=rule,
        established=decision.established, culprit=culprit, notes=notes, checks=checks)
    return Comparison(
        verdict=verdict, drop=evaluation.drop, interval=interval,
        reference_score=evaluation.reference_score, candidate_score=evaluation.candidate_score,
        n=dataset.n, n_groups=dataset.n_groups, metric=metric.key,
        method=evaluation.interval.method, confidence=tolerance.confidence,
        resamples=int(evaluation.interval.details.get("resamples", execution.resamples)),
        seed=execution.seed, max_drop=plan.max_drop,
        qat_limit=plan.qat_limit, gate=tolerance.gate, relative=plan.margin == "relative",
        max_error_increase=tolerance.max_error_increase,
        slice_max_drop=tolerance.slice_max_drop, min_reference=_strictest(plan),
        message=message(judgement), name=name,
        id=comparison_id, reference=_runner_info(subject.reference),
        candidate=_runner_info(subject.candidate),
        data={"path": None if dataset.path is None else str(dataset.path),
              "sha256": dataset.digest},
        details={**details, "margin": plan.margin, "established": decision.established,
                 "task": metric.task, **({"reference_checks": checks} if checks else {}),
                 **({"ignored_labels": inferred.ignored_labels} if inferred.ignored_labels else {}),
                 **({"suspicious_gain": True} if judgement.suspicious else {}),
                 **({"notes": notes} if notes else {}),
                 **({"advisory": True, "subset_of": subject.full_n}
                    if dataset.n < subject.full_n else {})},
        discordant=discordant(scores, records, inferred.labels),
        runtime={**inferred.runtime(metric.key, dataset.n),
                 "worker": os.environ.get("PYTEST_XDIST_WORKER", "main")},
        remedy=remedy(judgement), metric_kind=metric.kind, unit=_unit(metric, plan.margin),
    )


def _strictest(plan: Plan) -> float | None:
    """The recorded min_reference: the strictest floor in the metric's direction."""
    floors = [floor for floor, _ in plan.min_reference]
    if not floors:
        return None
    return max(floors) if plan.metric.higher_is_better else min(floors)


def _unit(metric: Metric, margin: str) -> str:
    """How the record's drops read in reports: percent for relative and error-rate margins,
    points for absolute drops of 0/1 scores, else the metric's own units."""
    if margin != "absolute":
        return "percent"
    return "points" if metric.kind == "binary" else "metric"


def _runner_info(runner: Runner) -> dict[str, Any]:
    return {"path": runner.path if runner.path is not None else runner.description,
            "sha256": runner.sha256, "bytes": runner.nbytes}


def discordant(scores: Scores, records: Records, labels: np.ndarray | None,
               cap: int = DISCORDANT_CAP) -> dict[str, Any] | None:
    """What a reviewer looks at: the samples whose verdict flipped (0/1 and class metrics, in
    sample order) or that changed most (continuous metrics, largest change first), capped."""
    found = scores.discordance()
    if found is None:
        return None
    values = found.values if found.values is not None else (records.reference, records.candidate)
    rows = []
    for i in found.index[:cap]:
        row: dict[str, Any] = {"index": int(i)}
        if labels is not None and labels.ndim == 1:
            row["label"] = labels[i].item()
        row["reference"] = _sample_value(values[0][i])
        row["candidate"] = _sample_value(values[1][i])
        rows.append(row)
    return {"count": len(found.index), "cap": cap, "order": found.order, "samples": rows}


def _sample_value(value: Any) -> Any:
    """One sample's prediction as builtins (a class, a value, or a short row of values)."""
    value = np.asarray(value)
    if value.size == 1:
        return value.item()
    return value.ravel().tolist() if value.size <= 16 else f"<{value.size} values>"


def breakdowns(scores: Scores, labels: np.ndarray | None, dataset: ValidationSet,
               context: Context, plan: Plan, tolerance: Tolerance,
               own: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Per-class drops (classification: each class's accuracy) and per-slice drops (manifest
    ``slices``: the gated metric on each slice), each with its interval; a family's ``own`` rows
    (detection: each class's AP, each object size's mAP) are judged alike."""
    found: dict[str, Any] = {key: own[key] for key in OWN_ROWS if own and key in own}
    correctness = scores.correctness()
    if correctness is not None and not isinstance(scores, PerClassScores) \
            and labels is not None and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        # a 0/1 metric's own per-class rows (accuracy, top-k); for others, each class's accuracy
        own = isinstance(scores, BinaryScores)
        per_class = BinaryScores(*correctness, name=plan.metric.key if own else "accuracy")
        margin = plan.margin if own else "absolute"
        names = tuple(dataset.class_names) if dataset.class_names else None
        found["per_class"] = breakdown(per_class, labels, dataclasses.replace(context,
                                       margin=margin), names)
        found["per_class_metric"] = per_class.name
    if dataset.slices is not None:
        found["slices"] = breakdown(scores, dataset.slices, context)
    if tolerance.slice_max_drop is not None:
        for key in ("per_class", "per_size", "slices"):
            for row in found.get(key, ()):
                if "error" in row:
                    row["verdict"] = str(Verdict.INCONCLUSIVE)
                    continue
                row["verdict"] = str(decide(row["drop"], row["low"], row["high"],
                                            max_drop=tolerance.slice_max_drop,
                                            qat_limit=plan.qat_limit, gate=tolerance.gate).verdict)
    return found


OWN_ROWS = ("per_class", "per_size")  # rows a family's evaluation gives in its details


def slice_verdict(verdict: Verdict, rule: str, slices: dict[str, Any], fmt):
    """With ``slice_max_drop``, the comparison's verdict is the worst of its own and every
    class's and slice's."""
    worst = None
    for key, what in (("per_class", "class"), ("per_size", "size"), ("slices", "slice")):
        for row in slices.get(key, ()):
            if severity(row["verdict"]) > verdict.severity and (
                    worst is None or severity(row["verdict"]) > severity(worst[1]["verdict"])):
                worst = (what, row)
    if worst is None:
        return verdict, rule, None
    what, row = worst
    shown = (f"drop {fmt(row['drop'])}, interval [{fmt(row['low'])}, {fmt(row['high'])}]"
             if "drop" in row else row.get("error", ""))
    return Verdict(row["verdict"]), (f"{rule}; but {what} {row['slice']!r} (n={row['n']}) is "
                                     f"{row['verdict']} against slice_max_drop: {shown}"), \
        {"what": what, **row}
