"""Inference: one streaming pass of the validation set through both models, keeping only each
metric's per-sample records (the pipe never holds all outputs), with the reference's records
taken from the cache when they are there (docs/models.md, "Reference-output cache")."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_quantguard.cache import ReferenceCache
from pytest_quantguard.data import ValidationSet
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.metrics import Metric
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
    """What the pass produced: every metric's records, the labels, and how it ran."""

    records: dict[str, Records]  # by metric key
    labels: np.ndarray | None
    seconds: dict[str, float]  # inference seconds: reference, candidate
    cache: dict[str, str]  # by metric key: hit, miss, off
    reference_ran: bool

    def runtime(self, metric_key: str, n: int) -> dict[str, Any]:
        """The comparison's ``runtime`` figures for one metric: seconds, milliseconds per sample
        (None for a reference read from the cache) and the candidate's speed-up."""
        reference = (1000 * self.seconds["reference"] / n) if self.reference_ran else None
        candidate = 1000 * self.seconds["candidate"] / n
        return {**{f"{role}_seconds": round(value, 6) for role, value in self.seconds.items()},
                "reference_ms_per_sample": reference, "candidate_ms_per_sample": candidate,
                "speedup": (reference / candidate) if reference and candidate else None,
                "cache": self.cache[metric_key], "reference_ran": self.reference_ran}


def infer(dataset: ValidationSet, metrics: list[Metric], reference: Runner, candidate: Runner,
          output: str | int | None, batch_size: int, cache: ReferenceCache,
          progress: Callable[[int, int], None] | None = None) -> Inferred:
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
    roles = [("reference", reference), ("candidate", candidate)] if run_reference else [
        ("candidate", candidate)]
    parts, labels, seconds = _stream(dataset, metrics, roles, output, batch_size, progress)
    records = {}
    for metric in metrics:
        part = parts[metric.key]
        reference_records = (np.concatenate(part["reference"]) if part["reference"]
                             else cached[metric.key])
        if metric.key not in cached and not metric.paired:
            cache.put(keys[metric.key], reference_records)
        records[metric.key] = Records(reference_records, np.concatenate(part["candidate"]),
                                      np.concatenate(part["paired"]) if part["paired"] else None)
    return Inferred(records, labels, seconds, status, run_reference)


def _stream(dataset: ValidationSet, metrics: list[Metric], roles: list[tuple[str, Runner]],
            output: str | int | None, batch_size: int,
            progress: Callable[[int, int], None] | None):
    """The batch loop: run each model, reduce each metric's records, time the models."""
    parts: dict[str, dict[str, list[np.ndarray]]] = {
        metric.key: {"reference": [], "candidate": [], "paired": []} for metric in metrics}
    labels: list[np.ndarray] = []
    seconds = {"reference": 0.0, "candidate": 0.0}
    widths: dict[str, int] = {}  # class-score columns of each model's prediction output
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
    return parts, all_labels, seconds


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
            "label encoding (e.g. 1-based labels) and the chosen output"), stacklevel=5)


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
        finite = np.isfinite(value.reshape(n, -1)).all(axis=1)
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
