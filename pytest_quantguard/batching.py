"""Batches sized by memory, deterministically (docs/models.md, "Batch size").

``--quant-batch-size auto`` (the default) runs the largest power of two of samples whose
*estimated* memory fits ``--quant-memory``: the batch's inputs, both models' outputs and the larger
of the two models' activations, each estimated per sample from the model (its graph, or one
probe sample) and the data's shapes, never from the process's measured memory. The same model,
data and budget therefore give the same batch in every process (serial, pytest-xdist workers), so
the reference cache and a dynamically quantized model's results are reproducible. Pure: sizes in,
a batch out; the runners' ``memory_per_sample`` hooks give the sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

AUTO = "auto"
# A model without an estimate (a plain callable, a user's runner): outputs as large as the inputs
# and activations of CALLABLE_ACTIVATIONS times them (docs/models.md, "Batch size").
CALLABLE_ACTIVATIONS = 16
# The inputs are held twice: the batch as read, and the copy a runner casts it to.
INPUT_COPIES = 2

# What a comparison with a dynamically quantized model must say (docs/models.md, "Dynamic
# quantization and the batch").
DYNAMIC_NOTE = ("dynamically quantized ({ops}): its activation ranges are computed on each batch, "
                "padding included, so its outputs depend on the batch size and on which samples "
                "share a batch; the verdict holds for this run's batch (runtime.batch_size in the "
                "JSON report, shown with -v): pin the deployment's batch with --quant-batch-size "
                "(often 1)")

SampleShapes = Mapping[str, tuple[tuple[int, ...], np.dtype]]  # input name -> (per-sample shape, dtype)


@dataclass(frozen=True)
class Footprint:
    """One model's estimated memory per sample, in bytes: its outputs, and the peak of its
    intermediate tensors alive at once (its activations)."""

    outputs: int
    activations: int


@dataclass(frozen=True)
class Batch:
    """The batch a comparison runs with, and why: ``auto`` (sized by ``memory``) or pinned."""

    size: int  # the batch the models run with
    auto: bool
    bytes_per_sample: int
    memory: int
    batch_dependent: tuple[str, ...] = ()  # roles of dynamically quantized models
    pipe: int = 0  # samples per pass of the pipe: a multiple of ``size`` (0: ``size``)

    def runner(self, runner: Any) -> Any:
        """``runner`` as the pipe calls it: on ``pipe`` samples, each run ``size`` at a time."""
        return runner if self.pipe in (0, self.size) else ChunkedRunner(runner, self.size)

    def record(self) -> dict[str, Any]:
        """The comparison record's ``runtime`` keys (docs/reports.md, "runtime")."""
        record: dict[str, Any] = {"batch_size": self.size, "batch": AUTO if self.auto else "pinned",
                                  "batch_bytes_per_sample": self.bytes_per_sample,
                                  "batch_memory": self.memory}
        if self.batch_dependent:
            record["batch_dependent"] = list(self.batch_dependent)
        return record


def batch_text(runtime: Mapping[str, Any]) -> str:
    """A record's batch as -v shows it: "batch 256 (auto: ~1.9 MiB per sample, budget 512 MiB)";
    with a dynamically quantized model, which one's results depend on it."""
    size = runtime.get("batch_size")
    if size is None:
        return "batch unknown"
    text = (f"batch {size} ({runtime.get('batch') or 'pinned'}: "
            f"~{mebibytes(runtime.get('batch_bytes_per_sample') or 0)} per sample, budget "
            f"{mebibytes(runtime.get('batch_memory') or 0)})")
    dependent = runtime.get("batch_dependent")
    return text + (f"; dynamically quantized, results depend on the batch: {', '.join(dependent)}"
                   if dependent else "")


def mebibytes(size: int) -> str:
    return f"{size / 2**20:.3g} MiB"


def sample_shapes(inputs: Mapping[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-sample shapes and dtypes of one batch's inputs."""
    return {name: (tuple(int(d) for d in np.shape(array)[1:]), np.asarray(array).dtype)
            for name, array in inputs.items()}


def first_sample_shapes(dataset: Any) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The shapes of a validation set's first sample, as the models get it (preprocessed)."""
    batches = dataset.batches(1)
    try:
        return sample_shapes(next(batches).inputs)
    finally:
        batches.close()


def input_bytes(shapes: SampleShapes) -> int:
    """Bytes of one sample of the inputs, as the data holds them."""
    return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
               for shape, dtype in shapes.values())


def bytes_per_sample(inputs: int, footprints: Iterable[Footprint | None]) -> int:
    """A batch's memory per sample: the inputs (``INPUT_COPIES``), every model's outputs (the
    reference's are held while the candidate runs) and the larger peak of activations (the models
    run one after the other). A model without an estimate gets the callables' rule."""
    known = [footprint or Footprint(inputs, CALLABLE_ACTIVATIONS * inputs)
             for footprint in footprints]
    return max(1, INPUT_COPIES * inputs + sum(f.outputs for f in known)
               + max((f.activations for f in known), default=0))


def auto_batch(per_sample: int, memory: int, n: int, fixed: Sequence[int | None] = ()) -> int:
    """The largest power of two whose batch fits ``memory`` (at least 1), capped by the set's size
    ``n`` and the smallest fixed batch dimension of the models."""
    size = 1
    while size < n and size * 2 * per_sample <= memory:
        size *= 2
    return max(1, min(size, n, *(value for value in fixed if value)))


def requested_batch(tolerance: Any, execution: Any) -> int | str:
    """The batch asked for: a ``quant_tolerance`` marker's or call's ``batch_size`` (a test's
    deployment batch), else the run's (``--quant-batch-size``)."""
    if tolerance.sources.get("batch_size") in ("marker", "call"):
        return tolerance.batch_size
    return execution.batch_size


def choose_batch(requested: int | str, memory: int, n: int, shapes: SampleShapes,
                 runners: Sequence[tuple[str, Any]]) -> Batch:
    """The batch for a comparison of ``runners`` (role, runner) on ``n`` samples of ``shapes``:
    a pinned size (never larger than the set), or ``auto`` (``auto_batch`` of the estimate)."""
    dependent = tuple(role for role, runner in runners
                      if getattr(runner, "dynamic_quantization", False))
    footprints = [_footprint(runner, shapes) for _, runner in runners]
    per_sample = bytes_per_sample(input_bytes(shapes), footprints)
    fixed = [getattr(runner, "fixed_batch", None) for _, runner in runners]
    auto = auto_batch(per_sample, memory, n, fixed)
    if requested == AUTO:
        return Batch(auto, True, per_sample, memory, dependent)
    size = min(int(requested), n)
    # A pinned batch is what the models see; the pipe still passes the largest multiple of it
    # that fits the budget, so that a small batch (a deployment's batch 1) costs model calls only.
    return Batch(size, False, per_sample, memory, dependent, size * max(1, auto // size))


class ChunkedRunner:
    """A runner called on a pipe batch that runs its model on consecutive chunks of ``size`` rows,
    the last one shorter (never padded): the model sees exactly the batches that a pipe batch of
    ``size`` would give it. Every other attribute is the wrapped runner's."""

    def __init__(self, runner: Any, size: int):
        self.runner, self.size = runner, size

    def __getattr__(self, name: str) -> Any:
        if name == "runner":
            raise AttributeError(name)
        return getattr(self.runner, name)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        if n <= self.size:
            return self.runner(inputs)
        run_chunks = getattr(self.runner, "run_chunks", None)  # the ONNX runner feeds once
        if run_chunks is not None:
            return run_chunks(inputs, self.size)
        parts = [self.runner({name: array[start:start + self.size] for name, array in inputs.items()})
                 for start in range(0, n, self.size)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _footprint(runner: Any, shapes: SampleShapes) -> Footprint | None:
    estimate = getattr(runner, "memory_per_sample", None)
    return None if estimate is None else estimate(shapes)


def peak_live_bytes(nodes: Sequence[tuple[Sequence[str], Sequence[str]]], sizes: Mapping[str, int],
                    graph_inputs: Sequence[str], graph_outputs: Sequence[str]) -> int:
    """The peak of the bytes alive at once while ``nodes`` (inputs, outputs) run in order: a value
    lives from the node that makes it (the start, for a graph input) to its last reader (the end,
    for a graph output); values missing from ``sizes`` (weights, constants) count as 0."""
    last: dict[str, int] = {name: len(nodes) for name in graph_outputs}
    for index, (inputs, _) in enumerate(nodes):
        for name in inputs:
            if name not in graph_outputs:
                last[name] = index
    alive = {name: sizes.get(name, 0) for name in graph_inputs}
    total = peak = sum(alive.values())
    for index, (inputs, outputs) in enumerate(nodes):
        for name in outputs:
            if name and name not in alive:
                alive[name] = sizes.get(name, 0)
                total += alive[name]
        peak = max(peak, total)
        for name in {*inputs, *outputs}:
            if name in alive and last.get(name, -1) <= index:
                total -= alive.pop(name)
    return peak
