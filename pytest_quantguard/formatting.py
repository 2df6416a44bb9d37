"""How numbers read, for the message and every report alike: drops in points, percent or the
metric's units, model sizes and inference times. The lowest floor of the pipe: it imports nothing
of the package, so the pipe and the reports share it without importing each other."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def drop_formatter(points: bool, margin: str) -> Callable[[float], str]:
    """A drop in the message: percent for relative and error-rate margins, points for absolute
    drops of scores in [0, 1] (``points``), else 4 significant digits in the metric's units."""
    if margin != "absolute":
        return lambda x: f"{100 * x:+.2f}%"
    if points:
        return lambda x: f"{x:.4f} ({100 * x:.2f} pt)"
    return lambda x: f"{x:.4g}"


def row_formatter(points: bool, margin: str) -> Callable[[float], str]:
    """Compact numbers for class and slice rows: signed points for 0/1 scores, percent for relative
    margins, else 4 significant digits."""
    if margin != "absolute":
        return lambda x: f"{100 * x:+.2f}%"
    if points:
        return lambda x: f"{100 * x:+.2f} pt"
    return lambda x: f"{x:+.4g}"


def score_texts(reference: float, candidate: float) -> tuple[str, str]:
    """Both scores to 4 decimals, or to 7 significant digits where 4 decimals would hide their
    difference (fidelity: a cosine of 0.99999 against 1)."""
    if f"{reference:.4f}" == f"{candidate:.4f}" and reference != candidate:
        return f"{reference:.7g}", f"{candidate:.7g}"
    return f"{reference:.4f}", f"{candidate:.4f}"


def human_bytes(count: int | None) -> str:
    if not count:
        return "?"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} B"


def size_text(cost: Mapping[str, Any], arrow: str = "->", times: str = "x",
              none: str = "-") -> str:
    """'154 KB -> 46.6 KB (3.31x)': both models' file sizes and the compression (the terminal's
    ASCII by default; the Markdown report passes its own arrow and sign)."""
    reference, candidate = cost.get("reference_bytes"), cost.get("candidate_bytes")
    if not reference and not candidate:
        return none
    text = f"{human_bytes(reference)} {arrow} {human_bytes(candidate)}"
    if cost.get("compression"):
        text += f" ({cost['compression']:.2f}{times})"
    return text


def time_text(runtime: Mapping[str, Any], arrow: str = "->", unit: str = "",
              none: str = "-") -> str:
    """Inference milliseconds per sample, reference -> candidate ('reused' when the reference's
    outputs were reused: from the cache, or from an earlier comparison in this run)."""
    candidate = runtime.get("candidate_ms_per_sample")
    if candidate is None:
        return none
    reference = runtime.get("reference_ms_per_sample")
    shown = "reused" if reference is None else f"{reference:.3g}{unit}"
    return f"{shown} {arrow} {candidate:.3g}{unit}"


def drop_text(value: float, relative: bool = False) -> str:
    """A drop: in metric units, or in percent for relative and error-rate margins; tiny values
    (fidelity drops such as 1.4e-05) keep their significant digits instead of reading +0.0000."""
    if relative:
        return f"{100 * value:+.2f}%" if value == 0 or abs(value) >= 1e-4 else f"{100 * value:+.2g}%"
    return f"{value:+.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:+.3g}"
