"""The pipe, wired once: validation set -> runners -> outputs -> metric -> per-sample scores ->
interval -> verdict. The Python API (``compare``) and the pytest fixture both call ``run``."""

from __future__ import annotations

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
from pytest_quantguard.metrics import Metric, get_metric
from pytest_quantguard.runners import Runner, make_runner
from pytest_quantguard.stats import IntervalResult, derive_rng, paired_binary_interval
from pytest_quantguard.stats.families import MIN_GROUPS, difference_interval, ratio_interval
from pytest_quantguard.stats.paired_binary import mcnemar_exact_p, paired_ratio_interval
from pytest_quantguard.stats.seeding import scores_digest
from pytest_quantguard.verdict import REMEDIES, Verdict, decide, inconclusive_remedy


class Interval(NamedTuple):
    """The two-sided interval of the drop: exactly two floats."""

    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """One reference-vs-candidate result: the one record every report reads.

    ``to_dict()`` gives builtins only (its keys are the JSON report's schema); ``from_dict()``
    rebuilds the object. ``runtime`` holds everything that may differ between runs.
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

    @property
    def passed(self) -> bool:
        return self.verdict == Verdict.SHIP

    def to_dict(self) -> dict[str, Any]:
        return {
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
                                                  else float(self.max_error_increase))},
            "message": self.message,
            "details": _builtins(self.details),
            "runtime": _builtins(self.runtime),
        }

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
            max_error_increase=thresholds.get("max_error_increase"), message=record["message"],
            name=record.get("name"), id=record.get("id", ""),
            reference=_model_info(record["reference"]), candidate=_model_info(record["candidate"]),
            data={"path": record["data"].get("path"), "sha256": record["data"].get("sha256")},
            details=dict(record.get("details", {})), runtime=dict(record.get("runtime", {})),
        )


def compare(reference: Any, candidate: Any, *, data: Any, metric: str | None = None,
            max_drop: float | None = None, qat_limit: float | None = None,
            relative: bool | None = None, confidence: float = 0.95, gate: str = "upper",
            resamples: int = 10000, seed: int = 0, output: str | int | None = None,
            name: str | None = None, **metric_options: Any) -> Comparison:
    """Run both models on ``data``, measure the drop with a paired interval, and give the verdict.

    ``reference`` and ``candidate``: a path to a ``.onnx`` file or a callable ``f(batch)``.
    ``data``: a folder, a ``ValidationSet``, ``(inputs, labels)`` or ``inputs``. Nothing here
    raises on a bad verdict: read ``comparison.verdict`` (the fixture is what fails tests).
    ``max_error_increase=0.2`` (0/1 metrics, instead of ``max_drop``): the candidate's error rate
    may grow by at most 20% of the reference's.
    """
    options = dict(metric_options)
    max_error_increase = options.pop("max_error_increase", None)
    return run(reference, candidate, data=data, metric=metric, max_drop=max_drop,
               qat_limit=qat_limit, relative=relative, confidence=confidence, gate=gate,
               resamples=resamples, seed=seed, output=output, name=name,
               metric_options=options, max_error_increase=max_error_increase)


def run(reference: Any, candidate: Any, *, data: Any, metric: str | None, max_drop: float | None,
        qat_limit: float | None, relative: bool | None, confidence: float, gate: str,
        resamples: int, seed: int, output: str | int | None, name: str | None,
        metric_options: Mapping[str, Any], batch_size: int = 1024, base_dir: Path | None = None,
        comparison_id: str | None = None, max_error_increase: float | None = None,
        cache: ReferenceCache | None = None, device: str = "cpu",
        max_samples: int | None = None,
        progress: Callable[[int, int], None] | None = None) -> Comparison:
    """``compare()`` with the knobs the fixture also sets (batch size, base dir, test id, the
    reference cache)."""
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
        relative = False
        max_drop = max_error_increase
        if qat_limit is None:  # the try-qat band, in the same unit: up to 3x the ship limit
            qat_limit = 3 * max_error_increase
    max_drop = _checked("max_drop", settings.positive_float, 0.01 if max_drop is None else max_drop)
    qat_limit = _checked("qat_limit", settings.positive_float, 0.03 if qat_limit is None else qat_limit)
    confidence = _checked("confidence", settings.open_fraction, confidence)
    gate = _checked("gate", settings.gate_name, gate)
    resamples = _checked("resamples", settings.positive_int, resamples)
    seed = _checked("seed", settings.seed_int, seed)
    batch_size = _checked("batch_size", settings.positive_int, batch_size)
    relative = _checked("relative", settings.optional_bool, relative)
    output = _checked("output", settings.name_or_index, output)

    dataset = as_validation_set(data, base_dir=base_dir)
    full_n = dataset.n
    if max_samples is not None:
        max_samples = _checked("max_samples", settings.positive_int, max_samples)
        if max_samples < dataset.n:
            dataset = dataset.subset(stratified_subset(dataset, max_samples, seed))
    metric = _checked("metric", settings.metric_name, metric)
    if metric is None and not dataset.has_labels and "task" not in dataset.manifest:
        raise QuantGuardError(f"{dataset.first_file}: the validation set has no labels, so only a "
                              "label-free fidelity gate could run, which this version does not "
                              "implement yet; save labels beside the inputs "
                              "(np.savez(path, inputs=x, labels=y))")
    chosen = get_metric(metric, dataset.task)
    if metric_options:
        raise QuantGuardError(f"metric {chosen.name!r} takes no options; got "
                              f"{', '.join(sorted(metric_options))}")
    if relative is None:
        relative = chosen.default_relative
    if max_error_increase is not None and chosen.kind != "binary":
        raise QuantGuardError(f"max_error_increase applies to metrics that score each sample 0/1 "
                              f"(accuracy, top-k): it limits the growth of the error rate. "
                              f"{chosen.name!r} is not one; use max_drop (relative=True for a "
                              "relative limit)")
    margin = "error-increase" if max_error_increase is not None else (
        "relative" if relative else "absolute")
    if chosen.needs_labels and not dataset.has_labels:
        raise QuantGuardError(f"{dataset.first_file}: metric {chosen.name!r} needs labels, and the "
                              "validation set has none; save them beside the inputs "
                              "(np.savez(path, inputs=x, labels=y))")
    if output is None:
        output = dataset.manifest.get("output")
    base = base_dir or Path.cwd()
    device = _checked("device", settings.choice("cpu", "cuda"), device)
    reference_runner = make_runner(reference, base_dir=base, role="reference", device=device)
    candidate_runner = make_runner(candidate, base_dir=base, role="candidate", device=device)
    notes = _runner_notes(reference_runner, candidate_runner)

    batch_size = min(batch_size, dataset.n)
    cache = cache if cache is not None else ReferenceCache(None)
    key = cache.key(reference_runner.sha256, {
        "data": dataset.digest, "metric": chosen.name, "output": output, "batch_size": batch_size,
        "runner": getattr(reference_runner, "settings", None)})
    cached, cache_status = cache.get(key, dataset.n)
    reference_scores, candidate_scores, timings, reference_records = _score(
        dataset, chosen, reference_runner, candidate_runner, output, batch_size, cached, progress)
    if cached is None:
        cache.put(key, reference_records)
    duplicates = dataset.duplicate_count()  # counted during the pass above: free
    if duplicates:
        warnings.warn(QuantGuardWarning(
            f"{dataset.description}: {duplicates} of {dataset.n} samples repeat an earlier sample's "
            "inputs exactly; repeats are not independent evidence and make the interval falsely "
            "narrow: remove them from the validation set"), stacklevel=3)
    reference_score = chosen.aggregate(reference_scores)
    candidate_score = chosen.aggregate(candidate_scores)
    drop = _drop(chosen, margin, reference_score, candidate_score, dataset)
    groups = dataset.groups
    if groups is not None and dataset.n_groups < MIN_GROUPS:
        warnings.warn(QuantGuardWarning(
            f"{dataset.description}: only {dataset.n_groups} groups; a clustered interval with fewer "
            f"than {MIN_GROUPS} groups is unreliable (it tends to be too narrow): collect more "
            "groups (documents, products, scenes)"), stacklevel=3)

    rng = derive_rng(seed, dataset.digest, chosen.name, scores_digest(reference_scores,
                                                                       candidate_scores))
    result = _interval(chosen, reference_scores, candidate_scores, groups=groups, margin=margin,
                       confidence=confidence, resamples=resamples, rng=rng)
    interval = Interval(result.low, result.high)
    decision = decide(drop, interval.low, interval.high, max_drop=max_drop, qat_limit=qat_limit,
                      gate=gate, fmt=_formatter(chosen, margin))
    if dataset.n < full_n:
        notes = [f"ADVISORY: a --quant-max-samples subset of {dataset.n:,} of the {full_n:,} "
                 "samples (stratified, seeded); not a release verdict", *notes]
    facts = dict(n=dataset.n, metric=chosen, margin=margin, confidence=confidence, notes=notes,
                 resamples=resamples, method=result.method, drop=drop, interval=interval,
                 reference_score=reference_score, candidate_score=candidate_score,
                 details=result.details, max_drop=max_drop, data=dataset, reference=reference_runner,
                 candidate=candidate_runner)
    message = _message(decision, facts)
    return Comparison(
        verdict=decision.verdict, drop=drop, interval=interval, reference_score=reference_score,
        candidate_score=candidate_score, n=dataset.n, n_groups=dataset.n_groups,
        metric=chosen.name, method=result.method, confidence=confidence, resamples=resamples,
        seed=seed, max_drop=max_drop, qat_limit=qat_limit, gate=gate, relative=relative,
        max_error_increase=max_error_increase,
        message=message, name=name, id=comparison_id if comparison_id is not None else (name or ""),
        reference=_runner_info(reference_runner), candidate=_runner_info(candidate_runner),
        data={"path": None if dataset.path is None else str(dataset.path),
              "sha256": dataset.digest},
        details={**result.details, "margin": margin, "established": decision.established,
                 **({"notes": notes} if notes else {}),
                 **({"advisory": True, "subset_of": full_n} if dataset.n < full_n else {})},
        runtime={**timings, "cache": cache_status, "reference_ran": cached is None,
                 "worker": os.environ.get("PYTEST_XDIST_WORKER", "main")},
    )


def stratified_subset(dataset: ValidationSet, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a subset of ``size`` samples: each class keeps its share (largest
    remainders), chosen at random within the class from a stream seeded by (seed, data digest)."""
    rng = derive_rng(seed, dataset.digest, "max-samples", "")
    labels = dataset.labels
    if labels is None or not np.issubdtype(labels.dtype, np.number):
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


def _drop(metric: Metric, margin: str, reference: float, candidate: float,
          dataset: ValidationSet) -> float:
    """The point estimate on the margin's scale (SPEC §1: positive = the candidate is worse)."""
    if margin == "absolute":
        return reference - candidate if metric.higher_is_better else candidate - reference
    if margin == "error-increase":
        if reference >= 1.0:
            raise QuantGuardError(f"{dataset.description}: the reference makes no error on these "
                                  f"{dataset.n} samples, so an error-rate increase relative to it "
                                  "is undefined; use max_drop (an absolute limit) or more data")
        return ((1.0 - candidate) - (1.0 - reference)) / (1.0 - reference)
    if reference == 0.0:
        raise QuantGuardError(f"{dataset.description}: the reference's {metric.name} is 0, so a "
                              "relative drop is undefined; use relative=False")
    ratio = candidate / reference
    return 1.0 - ratio if metric.higher_is_better else ratio - 1.0


def _interval(metric: Metric, reference_scores: np.ndarray, candidate_scores: np.ndarray, *,
              groups: np.ndarray | None, margin: str, confidence: float, resamples: int,
              rng: np.random.Generator) -> IntervalResult:
    """The interval family the metric's kind declares (statistics.md §0); grouped samples are
    resampled as groups (``cluster-bca``)."""
    if metric.kind != "binary":
        raise QuantGuardError(f"metric {metric.name!r}: no interval for metric kind {metric.kind!r} "
                              "in this version")
    reference_right = reference_scores == 1
    candidate_right = candidate_scores == 1
    cells = tuple(int(np.count_nonzero(mask)) for mask in (
        reference_right & candidate_right, reference_right & ~candidate_right,
        ~reference_right & candidate_right, ~reference_right & ~candidate_right))
    b, c = cells[1], cells[2]
    counts = {"reference_only": b, "candidate_only": c}
    options = dict(confidence=confidence, resamples=resamples, rng=rng)
    if groups is None:
        if margin == "absolute":
            result = paired_binary_interval(b, c, len(reference_scores), **options)
        else:
            result = paired_ratio_interval(cells, margin, **options)
        result.details["mcnemar_p"] = mcnemar_exact_p(b, c)
        return result
    reference = reference_scores.astype(np.float64)
    candidate = candidate_scores.astype(np.float64)
    if margin == "absolute":
        result = difference_interval(reference, candidate, higher_is_better=True, groups=groups,
                                     **options)
    elif margin == "relative":
        result = ratio_interval(reference, candidate, higher_is_better=True, groups=groups, **options)
    else:  # error-increase: the ratio of the error rates' sums
        result = ratio_interval(1.0 - reference, 1.0 - candidate, higher_is_better=False,
                                groups=groups, **options)
    return IntervalResult(result.low, result.high, result.method, {**result.details, **counts})


def _score(dataset: ValidationSet, metric: Metric, reference: Runner, candidate: Runner,
           output: str | int | None, batch_size: int, cached_reference: np.ndarray | None,
           progress: Callable[[int, int], None] | None = None,
           ) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """Stream the set once through both models (the reference only when its records are not
    cached); keep only the metric's per-sample records."""
    records: dict[str, list[np.ndarray]] = {"reference": [], "candidate": []}
    labels: list[np.ndarray] = []
    seconds = {"reference": 0.0, "candidate": 0.0}
    widths: dict[str, int] = {}  # class-score columns of each model's prediction output
    roles = [("candidate", candidate)] if cached_reference is not None else [
        ("reference", reference), ("candidate", candidate)]
    for batch in dataset.batches(batch_size):
        for role, runner in roles:
            start = time.perf_counter()
            outputs = runner(batch.inputs)
            seconds[role] += time.perf_counter() - start
            prediction = _prediction(outputs, output, runner, role, len(batch), batch)
            if prediction.ndim == 2 and prediction.shape[1] > 1:
                widths[role] = prediction.shape[1]
            records[role].append(metric.reduce(prediction, batch.labels))
        if batch.labels is not None:
            labels.append(batch.labels)
        if progress is not None:
            progress(int(batch.ids[-1]) + 1, dataset.n)
    all_labels = np.concatenate(labels) if labels else None
    _warn_on_label_range(all_labels, widths, dataset)
    reference_records = (cached_reference if cached_reference is not None
                         else np.concatenate(records["reference"]))
    scores = [metric.finalize(role_records, all_labels)
              for role_records in (reference_records, np.concatenate(records["candidate"]))]
    timings = {f"{role}_seconds": round(value, 6) for role, value in seconds.items()}
    return scores[0], scores[1], timings, reference_records


def _warn_on_label_range(labels: np.ndarray | None, widths: dict[str, int],
                         dataset: ValidationSet) -> None:
    """Labels the models cannot predict (outside 0..K-1 for K class-score columns) are scored
    wrong for both models: almost always a label-encoding mistake, so say so."""
    if labels is None or not widths or not np.issubdtype(labels.dtype, np.number):
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
    if metric.kind == "binary":
        return lambda x: f"{x:.4f} ({100 * x:.2f} pt)"
    return lambda x: f"{x:.4g}"


def _message(decision, facts: dict[str, Any]) -> str:
    metric: Metric = facts["metric"]
    margin = facts["margin"]
    fmt = _formatter(metric, margin)
    low, high = facts["interval"]
    level = f"{100 * facts['confidence']:g}%"
    details = facts["details"]
    what = {"absolute": "drop", "relative": "relative drop",
            "error-increase": "error-rate increase"}[margin]
    lines = [
        f"quantguard verdict: {decision.verdict} (candidate {facts['candidate'].description} vs "
        f"reference {facts['reference'].description} on {facts['data'].description}, "
        f"n={facts['n']}" + (f", {facts['data'].n_groups} groups" if "groups" in details else "")
        + ")",
        f"  {metric.name}: reference {facts['reference_score']:.4f}, "
        f"candidate {facts['candidate_score']:.4f}",
    ]
    if margin == "error-increase":
        lines.append(f"  error rate: reference {1 - facts['reference_score']:.4f}, candidate "
                     f"{1 - facts['candidate_score']:.4f} (max_error_increase: the candidate's "
                     f"error rate may be at most {1 + facts['max_drop']:g}x the reference's)")
    shown = f"[{low:+.4f}, {high:+.4f}]" if margin == "absolute" else f"[{fmt(low)}, {fmt(high)}]"
    lines.append(f"  {what} {fmt(facts['drop'])}, {level} interval {shown} "
                 f"({facts['method']}, {facts['resamples']} resamples)")
    if metric.kind == "binary":
        line = (f"  samples only the reference gets right: {details['reference_only']}; only "
                f"the candidate: {details['candidate_only']}")
        if "mcnemar_p" in details:
            p = details["mcnemar_p"]
            shown_p = f"= {p:.3g}" if p >= 1e-300 else "< 1e-300"
            line += f"; McNemar exact p {shown_p} (tests for any difference; not used by the gate)"
        lines.append(line)
    if facts["method"] == "degenerate-fallback":
        lines.append("  (degenerate-fallback: the two models never disagree here, so every bootstrap "
                     "resample is identical; the interval is the score bound for zero disagreements)")
    if facts["method"] == "cluster-bca":
        lines.append(f"  (cluster-bca: the {details['groups']} groups are resampled as units, "
                     "because samples within a group are correlated)")
    lines.extend(f"  note: {note}" for note in facts["notes"])
    rule = decision.rule
    if decision.established:
        rule += f"; degradation established (lower bound {fmt(low)} >= max_drop)"
    lines.append(f"  rule: {rule}")
    if decision.verdict == Verdict.INCONCLUSIVE:
        lines.append(f"  remedy: {_remedy(facts)}")
    else:
        lines.append(f"  remedy: {REMEDIES[decision.verdict]}")
    return "\n".join(lines)


def _remedy(facts: dict[str, Any]) -> str:
    details = facts["details"]
    common = dict(confidence=facts["confidence"])
    if facts["margin"] == "absolute" and facts["method"] != "cluster-bca":
        discordance = (details["reference_only"] + details["candidate_only"]) / facts["n"]
        return inconclusive_remedy(facts["drop"], facts["max_drop"], facts["n"],
                                   discordance=discordance, **common)
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
