"""The outlier-weight statistic on real trained weights: how it is distributed per architecture,
and how many tensors each threshold would note (docs/risks.md, "Outlier weights").

    python benchmarks/outlier_weights.py FOLDER [FOLDER ...]

A FOLDER holds wheels (``pip download --no-deps -d FOLDER nudenet rapidocr-onnxruntime
silero-vad facenet-pytorch``), ``.onnx`` files or ``.pt`` state dicts; the ``.onnx`` and ``.pt``
files inside the wheels are read from the zip. Nothing is downloaded here. For each model it
prints the weight tensors the note considers (float, 2 or more dimensions, at least
OUTLIER_MIN_SIZE values), the statistic's quantiles at the 99th and 99.9th percentile, how many
tensors exceed each candidate threshold, and the worst tensors.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _machine import machine_line

from pytest_quantguard.diagnosis.risks import (
    OUTLIER_MIN_SIZE,
    OUTLIER_PERCENTILE,
    OUTLIER_RATIO,
)

THRESHOLDS = (4.0, 6.0, 8.0, 12.0, 16.0)
PERCENTILES = (99.0, 99.9)


def onnx_tensors(data: bytes) -> list[tuple[str, np.ndarray]]:
    """Every float initializer or Constant of 2+ dimensions, subgraphs (If, Loop) included."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    found = []

    def walk(graph) -> None:
        constants = [attribute.t for node in graph.node if node.op_type == "Constant"
                     for attribute in node.attribute if attribute.name == "value"]
        for tensor in [*graph.initializer, *constants]:  # paddle2onnx keeps weights in Constants
            if tensor.data_type in (1, 10, 11, 16) and len(tensor.dims) >= 2:
                found.append((tensor.name, numpy_helper.to_array(tensor).astype(np.float64)))
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.g.node or attribute.g.initializer:
                    walk(attribute.g)
    walk(model.graph)
    return found


def torch_tensors(data: bytes) -> list[tuple[str, np.ndarray]]:
    import torch

    state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    return [(name, value.detach().double().numpy()) for name, value in state.items()
            if hasattr(value, "dim") and value.dim() >= 2 and value.is_floating_point()]


def models(folder: Path):
    """(model name, tensors) for every .onnx / .pt in the folder and inside its wheels."""
    for path in sorted(folder.iterdir()):
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                for member in sorted(wheel.namelist()):
                    if member.endswith(".onnx"):
                        yield f"{path.name.split('-')[0]}:{Path(member).name}", \
                            onnx_tensors(wheel.read(member))
                    elif member.endswith((".pt", ".pth")):
                        yield f"{path.name.split('-')[0]}:{Path(member).name}", \
                            torch_tensors(wheel.read(member))
        elif path.suffix == ".onnx":
            yield path.name, onnx_tensors(path.read_bytes())
        elif path.suffix in (".pt", ".pth"):
            yield path.name, torch_tensors(path.read_bytes())


def ratio(values: np.ndarray, percentile: float) -> float:
    flat = np.abs(values.ravel())
    spread = np.percentile(flat, percentile)
    return float(flat.max() / spread) if spread > 0 else float("inf")


def main(folders: list[str]) -> None:
    print(machine_line())
    print(f"- tensors: float, >= 2 dims, >= {OUTLIER_MIN_SIZE} values; the note: ratio at "
          f"p{OUTLIER_PERCENTILE:g} > {OUTLIER_RATIO:g}")
    header = "| model | tensors | " + " | ".join(
        f"p{p:g}: median / p90 / max" for p in PERCENTILES) + " | " + " | ".join(
        f"> {t:g}" for t in THRESHOLDS) + " | worst (p99.9 ratio) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for folder in folders:
        for name, tensors in models(Path(folder)):
            kept = [(tensor, values) for tensor, values in tensors if values.size >= OUTLIER_MIN_SIZE]
            if not kept:
                print(f"| {name} | 0 | " + " | ".join("-" for _ in PERCENTILES) + " | "
                      + " | ".join("-" for _ in THRESHOLDS) + " | - |")
                continue
            ratios = {p: np.array([ratio(values, p) for _, values in kept]) for p in PERCENTILES}
            main_ratios = ratios[OUTLIER_PERCENTILE]
            quantiles = " | ".join(
                "{:.1f} / {:.1f} / {:.1f}".format(*np.quantile(ratios[p], [0.5, 0.9, 1.0]))
                for p in PERCENTILES)
            over = " | ".join(str(int((main_ratios > t).sum())) for t in THRESHOLDS)
            worst = sorted(zip(main_ratios, (tensor for tensor, _ in kept), strict=True),
                           reverse=True)[:2]
            shown = "; ".join(f"{tensor} {value:.1f}" for value, tensor in worst)
            print(f"| {name} | {len(kept)} | {quantiles} | {over} | {shown} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["/work/wheels"])
