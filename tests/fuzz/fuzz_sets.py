"""Valid validation sets written in every folder format, the corruptions docs/data.md ("What is
refused") names for each, and reading a folder back to plain arrays."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from pytest_quantguard import ValidationSet
from pytest_quantguard.errors import QuantGuardWarning

FORMATS = ("npz", "npy", "csv", "images")

# The Hypothesis profiles (docs/development.md, "Fuzzing and faults"): ``quantguard-suite`` (the
# default) is bounded and derandomized so the suite stays fast and repeatable; ``quantguard-long``
# is what benchmarks/fuzz_long.py runs (QUANTGUARD_FUZZ_PROFILE=quantguard-long). Registered here,
# not in a conftest.py: a second conftest module would shadow tests/conftest.py's names.
_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile("quantguard-suite", max_examples=12, deadline=None, derandomize=True,
                          database=None, suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("quantguard-long", max_examples=400, deadline=None, database=None,
                          suppress_health_check=_QUIET, print_blob=True)
settings.load_profile(os.environ.get("QUANTGUARD_FUZZ_PROFILE", "quantguard-suite"))



@dataclass
class Set:
    """Inputs (samples × features, or N×H×W×3 pixels for images) and integer class labels."""

    inputs: np.ndarray
    labels: np.ndarray


@st.composite
def valid_sets(draw, fmt: str) -> Set:
    n = draw(st.integers(2, 24))
    labels = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64)
    labels[:2] = [0, 1]  # two classes at least
    if fmt == "images":
        side = draw(st.integers(1, 4))
        pixels = draw(st.binary(min_size=n * side * side * 3, max_size=n * side * side * 3))
        inputs = np.frombuffer(pixels, np.uint8).reshape(n, side, side, 3).astype(np.float32)
        return Set(inputs, labels)
    width = draw(st.integers(1, 4))
    dtype = np.float32 if fmt == "csv" else draw(st.sampled_from([np.float32, np.float64]))
    values = draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=n * width, max_size=n * width))
    return Set(np.array(values, dtype=dtype).reshape(n, width), labels)


def write(folder: Path, fmt: str, data: Set) -> list[Path]:
    """Write ``data`` as ``fmt`` into ``folder``; the data files, in load order."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        half = len(data.labels) // 2
        files = [folder / "shard_2.npz", folder / "shard_10.npz"]
        np.savez(files[0], inputs=data.inputs[:half], labels=data.labels[:half])
        np.savez(files[1], inputs=data.inputs[half:], labels=data.labels[half:])
        return files
    if fmt == "npy":
        np.save(folder / "inputs.npy", data.inputs)
        np.save(folder / "labels.npy", data.labels)
        return [folder / "inputs.npy", folder / "labels.npy"]
    if fmt == "csv":
        lines = [",".join([*(f"f{i}" for i in range(data.inputs.shape[1])), "label"])]
        lines += [",".join(repr(float(v)) for v in row) + f",{label}"
                  for row, label in zip(data.inputs, data.labels, strict=True)]
        (folder / "part.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [folder / "part.csv"]
    from PIL import Image

    files = []
    for index, (pixels, label) in enumerate(zip(data.inputs, data.labels, strict=True)):
        file = folder / f"c{label}" / f"{index:03d}.png"
        file.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(file)
        files.append(file)
    return files


def expected(fmt: str, data: Set) -> Set:
    """What loading gives back: images come class folder by class folder."""
    if fmt != "images":
        return data
    order = np.argsort(data.labels, kind="stable")
    return Set(data.inputs[order], data.labels[order])


def read_back(folder: Path, batch_size: int = 5) -> tuple[Set, list[warnings.WarningMessage]]:
    """Load the folder as the plugin does and stream every batch; the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QuantGuardWarning)
        dataset = ValidationSet.from_folder(folder)
        batches = list(dataset.batches(batch_size))
    inputs = np.concatenate([next(iter(batch.inputs.values())) for batch in batches])
    labels = np.concatenate([batch.labels for batch in batches])
    return Set(inputs, labels), list(caught)


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per Hypothesis example (tmp_path is shared by all examples of a test)."""
    with tempfile.TemporaryDirectory(prefix="quantguard-fuzz-") as name:
        yield Path(name)


Corruption = Callable[[Path, list[Path], st.DrawFn], str]
