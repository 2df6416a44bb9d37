"""Inference: one streaming pass of the validation set through both models, keeping only each
metric's per-sample records (the pipe never holds all outputs), with the reference's records
taken from the cache when they are there (docs/models.md, "Reference-output cache")."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_quantguard.cache import ReferenceCache
from pytest_quantguard.data import ValidationSet
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics import Metric
from pytest_quantguard.metrics.classification import predicted_records
from pytest_quantguard.metrics.detection_outputs import merged_detections
from pytest_quantguard.metrics.language import REDUCTION_BYTES
from pytest_quantguard.reference_check import (
    ClassSpace,
    ReferenceCheck,
    check_label_space,
    check_reference,
    class_space,
)
from pytest_quantguard.runners import Runner
from pytest_quantguard.runners.selection import choose_output
from pytest_quantguard.stats import derive_rng


@dataclass(frozen=True)
class Records:
    """One metric's per-sample records of both models (and the paired ones of paired metrics)."""

    reference: np.ndarray
    candidate: np.ndarray
    paired: np.ndarray | None


@dataclass(frozen=True)
class Inferred:
    """What the pass produced: every metric's records, the labels, and how it ran; the reference's
    per-sample summary (its predicted class or regression values: what the chance check reads) and
    how many samples the set left out for the ignore label."""

    records: dict[str, Records]  # by metric key
    labels: np.ndarray | None
    seconds: dict[str, float]  # inference seconds: reference, candidate
    cache: dict[str, str]  # by metric key: hit, miss, off
    reference_ran: bool
    reference_summary: np.ndarray | None = None
    task: str | None = None
    ignored_labels: int = 0
    batch: dict[str, Any] = field(default_factory=dict)  # batching.Batch.record(): runtime keys

    def runtime(self, metric_key: str, n: int) -> dict[str, Any]:
        """The comparison's ``runtime`` figures for one metric: seconds, milliseconds per sample
        (None for a reference read from the cache) and the candidate's speed-up."""
        reference = (1000 * self.seconds["reference"] / n) if self.reference_ran else None
        candidate = 1000 * self.seconds["candidate"] / n
        return {**{f"{role}_seconds": round(value, 6) for role, value in self.seconds.items()},
                "reference_ms_per_sample": reference, "candidate_ms_per_sample": candidate,
                "speedup": (reference / candidate) if reference and candidate else None,
                "cache": self.cache[metric_key], "reference_ran": self.reference_ran, **self.batch}

    def reference_check(self, confidence: float) -> ReferenceCheck | None:
        """Is the reference demonstrably better than chance on these labels (docs/intervals.md,
        "A reference at chance")? None where the check does not apply."""
        return check_reference(self.reference_summary, self.labels, self.task or "", confidence)


# The tasks whose reference is summarised per sample for the chance check.
SUMMARISED = ("classification", "regression")


def infer(dataset: ValidationSet, metrics: list[Metric], reference: Runner,
          candidate: Runner | list[Runner], output: str | int | None, batch_size: int,
          cache: ReferenceCache, progress: Callable[[int, int], None] | None = None
          ) -> Inferred | list[Inferred]:
    """Stream the set once through the reference and the candidate, or a list of candidates (the
    reference unless every metric's records and its summary are cached and no metric is paired;
    once per batch for all candidates); keep only each metric's per-sample records and the
    reference's summary. A list gives one ``Inferred`` per candidate, in order."""
    candidates = candidate if isinstance(candidate, list) else [candidate]
    for runner in [reference, *candidates]:  # results read back (docs/results.md, "What is checked")
        if hasattr(runner, "check_data"):
            runner.check_data(dataset)
    parts_of_key = {"data": dataset.digest, "output": output, "batch_size": batch_size,
                    "runner": getattr(reference, "settings", None)}
    keys = {metric.key: cache.key(reference.sha256, {**parts_of_key, "metric": metric.key})
            for metric in metrics}
    cached, status = {}, {}
    for metric in metrics:
        records, status[metric.key] = (None, "off") if metric.paired else cache.get(
            keys[metric.key], dataset.n)
        if records is not None:
            cached[metric.key] = records
    task = judged_task(dataset, metrics)
    summarised = task in SUMMARISED
    summary_key = cache.key(reference.sha256, {**parts_of_key, "metric": "reference-summary"})
    summary = cache.get(summary_key, dataset.n)[0] if summarised else None
    run_reference = len(cached) < len(metrics) or (summarised and summary is None)
    roles = [*([("reference", reference)] if run_reference else []), *enumerate(candidates)]
    parts, labels, seconds, streamed = _stream(dataset, metrics, roles, output, batch_size,
                                               progress, task)
    if summarised and summary is None and streamed is not None:
        summary = streamed
        cache.put(summary_key, summary)
    for metric in metrics:
        part = parts[metric.key]
        part["reference"] = (np.concatenate(part["reference"]) if part["reference"]
                             else cached[metric.key])
        if metric.key not in cached and not metric.paired:
            cache.put(keys[metric.key], part["reference"])
    found = [Inferred({metric.key: Records(
        parts[metric.key]["reference"], np.concatenate(parts[metric.key][index]),
        np.concatenate(parts[metric.key][("paired", index)]) if metric.paired else None)
        for metric in metrics}, labels, {"reference": seconds["reference"],
                                         "candidate": seconds[index]},
        status, run_reference, summary, task, getattr(dataset, "ignored_labels", 0))
        for index in range(len(candidates))]
    return found if isinstance(candidate, list) else found[0]


def judged_task(dataset: ValidationSet, metrics: list[Metric]) -> str | None:
    """The task the labels are checked as (None: not checked): the set's, unless no metric scores
    it that way (e.g. ``metric="rmse"`` on a set that defaulted to classification, or only
    label-free metrics)."""
    if not dataset.has_labels:
        return None
    tasks = {metric.task for metric in metrics}
    if dataset.task in tasks:
        return dataset.task
    return "regression" if dataset.task == "classification" and "regression" in tasks else None


def _stream(dataset: ValidationSet, metrics: list[Metric], roles: list[tuple[Any, Runner]],
            output: str | int | None, batch_size: int,
            progress: Callable[[int, int], None] | None, task: str | None):
    """The batch loop: run each model (``roles``: "reference" and each candidate's index), reduce
    each metric's records (a paired metric's against the reference's output of the same batch),
    time the models; note the classes each model's output can name and summarise the reference
    per sample."""
    candidates = [role for role, _ in roles if role != "reference"]
    parts: dict[str, dict[Any, list[np.ndarray]]] = {metric.key: {
        role: [] for role in ["reference", *candidates, *(("paired", index) for index in candidates)]}
        for metric in metrics}
    labels: list[np.ndarray] = []
    seconds = {role: 0.0 for role in ["reference", *candidates]}
    spaces: dict[Any, ClassSpace | None] = {}  # the classes each model's prediction can name
    summaries: list[np.ndarray] | None = [] if task in SUMMARISED else None
    for batch in dataset.batches(batch_size):
        predictions = {}
        for role, runner in roles:
            start = time.perf_counter()
            replay = getattr(runner, "outputs_for", None)  # results: rows by sample id
            outputs = runner(batch.inputs) if replay is None else replay(batch)
            seconds[role] += time.perf_counter() - start
            if task == "detection" and output is None and len(outputs) > 1:
                # separate boxes / scores / classes (docs/data.md, "Detection outputs")
                outputs = {"detections": merged_detections(
                    outputs, f"{_role_name(role)} {runner.description}")}
            predictions[role] = _prediction(outputs, output, runner, _role_name(role),
                                            len(batch), batch)
            if task == "classification":
                spaces[role] = _merged(spaces.get(role), class_space(predictions[role]))
        if summaries is not None and "reference" in predictions:
            summarised = _summarise(predictions["reference"], task)
            if summarised is None:
                summaries = None
            else:
                summaries.append(summarised)
        for metric in metrics:
            for role in predictions:
                parts[metric.key][role].append(
                    metric.reduce(predictions[role], batch.labels, batch))
            for index in candidates if metric.paired else ():
                parts[metric.key][("paired", index)].append(metric.reduce_pair(
                    predictions["reference"], predictions[index], batch.labels, batch))
        if batch.labels is not None:
            labels.append(batch.labels)
        if progress is not None:
            progress(int(batch.ids[-1]) + 1, dataset.n)
    all_labels = np.concatenate(labels) if labels else None
    for index in candidates if task == "classification" else ():
        check_label_space(all_labels, _merged(spaces.get("reference"), spaces[index]),
                          dataset.description)
    summary = np.concatenate(summaries) if summaries else None
    return parts, all_labels, seconds, summary


def _role_name(role: Any) -> str:
    return "reference" if role == "reference" else "candidate"


def _merged(space: ClassSpace | None, found: ClassSpace | None) -> ClassSpace | None:
    return found if space is None else space.merge(found)


def _summarise(prediction: np.ndarray, task: str) -> np.ndarray | None:
    """One batch of the reference's summary: its predicted class (a one-column score kept raw,
    thresholded over the whole set) or its regression values; None when the output cannot be
    summarised (the chance check then does not apply)."""
    if task == "regression":
        if not np.issubdtype(prediction.dtype, np.number) or prediction.ndim > 2:
            return None
        return np.asarray(prediction, np.float64).reshape(len(prediction), -1)
    try:
        return predicted_records("reference", prediction)
    except QuantGuardError:
        return None


def _prediction(outputs: dict[str, np.ndarray], output: str | int | None, runner: Runner,
                role: str, n: int, batch) -> np.ndarray:
    """The chosen output of one batch, checked: one row per sample, finite."""
    chosen = choose_output(outputs, output, f"{role} {runner.description}",
                           hint=" (choose with output=)")
    value = np.asarray(outputs[chosen])
    if value.ndim == 0 or len(value) != n:
        raise QuantGuardError(f"{role} {runner.description}: output {chosen!r} has shape "
                              f"{list(value.shape)} for a batch of {n} samples; it must have one row "
                              "per sample")
    if np.issubdtype(value.dtype, np.floating):
        # a chunk of rows at a time (docs/metrics.md, "Memory of the reductions")
        rows = value.reshape(n, -1)
        step = max(1, REDUCTION_BYTES // max(rows.shape[1], 1))
        finite = np.concatenate([np.isfinite(rows[start:start + step]).all(axis=1)
                                 for start in range(0, n, step)])
        if not finite.all():
            bad = batch.ids[~finite]
            raise QuantGuardError(
                f"{role} {runner.description}: NaN or Inf in output {chosen!r} for "
                f"{len(bad)} of {n} samples in this batch (first: sample {int(bad[0])} of "
                f"{batch.origin}); the model is broken on this data (overflow, a bad quantization "
                "scale, or unnormalised inputs): fix the model, no verdict is possible")
    return value


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
