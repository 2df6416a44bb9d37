"""The forest plot of ``--quant-plot``: each comparison's drop and interval against its own ship /
try-QAT / stay-FP16 bands. ``forest_plot`` returns the figure (testable); ``save_plot`` writes it.

matplotlib (the ``plot`` extra) is imported inside the functions, and the figure is built without
pyplot, so no GUI backend is chosen and nothing global changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_quantguard._files import write_atomically
from pytest_quantguard.errors import MissingBackendError, QuantGuardError
from pytest_quantguard.reports.markdown import by_severity

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# band colours (light, so the interval drawn over them stays readable) and verdict text colours
BANDS = {"ship": "#c8e6c9", "try-qat": "#ffe0b2", "stay-fp16": "#ffcdd2"}
BAND_LABELS = {"ship": "ship (drop < max_drop)", "try-qat": "try-qat (max_drop … qat_limit)",
               "stay-fp16": "stay-fp16 (drop ≥ qat_limit)"}
VERDICT_COLOURS = {"ship": "#1b5e20", "try-qat": "#e65100", "stay-fp16": "#b71c1c",
                   "inconclusive": "#5d4037"}
ROW_HEIGHT_IN = 0.42
WIDTH_IN = 9.0


def row_label(record: Mapping[str, Any]) -> str:
    """The y tick of one comparison: its id and metric (the id alone where it already ends with
    the metric, as a ``metrics=`` comparison's does)."""
    identifier, metric = record["id"], record["metric"]
    if identifier.endswith((f".{metric}", f"::{metric}")):
        return identifier
    return f"{identifier} · {metric}"


def forest_plot(records: Sequence[Mapping[str, Any]]) -> Figure:
    """One row per comparison (worst verdict at the top, like the Markdown table): the drop
    (point) and its interval (line) over that row's bands, drawn from its own thresholds."""
    try:
        import matplotlib  # noqa: F401  (a clear error if the plot extra is missing)
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch, Rectangle
        from matplotlib.transforms import blended_transform_factory
    except ImportError:
        raise MissingBackendError("matplotlib", "plot", "the forest plot (--quant-plot)") from None
    if not records:
        raise QuantGuardError("no comparison ran: there is nothing to plot")
    ordered = by_severity(records)
    rows = len(ordered)
    low, high = _x_range(ordered)
    figure = Figure(figsize=(WIDTH_IN, 1.5 + ROW_HEIGHT_IN * rows), layout="constrained")
    axes = figure.add_subplot()
    axes.set_xlim(low, high)
    axes.set_ylim(-0.5, rows - 0.5)
    # row 0 (the worst) at the top
    positions = [rows - 1 - i for i in range(rows)]
    for y, record in zip(positions, ordered, strict=True):
        for verdict, start, end in bands(record, low, high):
            axes.add_patch(Rectangle((start, y - 0.5), end - start, 1.0, facecolor=BANDS[verdict],
                                     edgecolor="none", zorder=0, gid=f"band:{verdict}:{y}"))
    axes.axvline(0.0, color="black", linewidth=0.8, zorder=1)
    for y, record in zip(positions, ordered, strict=True):
        interval = record["interval"]
        colour = VERDICT_COLOURS.get(record["verdict"], "black")
        axes.plot([interval["low"], interval["high"]], [y, y], color="black", linewidth=2,
                  solid_capstyle="butt", zorder=3)
        axes.plot([record["drop"]], [y], marker="o", markersize=6, color=colour,
                  markeredgecolor="black", linestyle="none", zorder=4)
    for y in positions[:-1]:
        axes.axhline(y - 0.5, color="white", linewidth=1.5, zorder=2)  # rows read apart
    axes.set_yticks(positions, [row_label(record) for record in ordered])
    side = blended_transform_factory(axes.transAxes, axes.transData)
    for y, record in zip(positions, ordered, strict=True):
        axes.text(1.01, y, record["verdict"], transform=side, va="center", ha="left",
                  fontsize=9, fontweight="bold", color=VERDICT_COLOURS.get(record["verdict"], "black"))
    axes.set_xlabel("drop in each comparison's own unit (0.01 = 1 point of a 0/1 metric; "
                    "1% under a relative limit)")
    axes.set_title("quantguard: drop and interval against the ship / try-qat / stay-fp16 bands",
                   fontsize=11)
    axes.tick_params(axis="y", length=0)
    for side_name in ("top", "right", "left"):
        axes.spines[side_name].set_visible(False)
    levels = {record["interval"]["confidence"] for record in ordered}
    level = f" ({100 * levels.pop():g}%)" if len(levels) == 1 else ""
    handles = [Patch(facecolor=BANDS[verdict], label=BAND_LABELS[verdict]) for verdict in BANDS]
    handles.append(Line2D([], [], color="black", linewidth=2, marker="o", markerfacecolor="white",
                          markeredgecolor="black", label=f"drop and its interval{level}"))
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return figure


def bands(record: Mapping[str, Any], low: float, high: float) -> list[tuple[str, float, float]]:
    """The row's verdict bands between ``low`` and ``high``: (verdict, start, end). No try-qat
    band when max_drop >= qat_limit (past max_drop is then stay-fp16 at once)."""
    max_drop, qat_limit = record["thresholds"]["max_drop"], record["thresholds"]["qat_limit"]
    red_from = max(max_drop, qat_limit)
    found = [("ship", low, min(max_drop, high))]
    if qat_limit > max_drop:
        found.append(("try-qat", max(max_drop, low), min(qat_limit, high)))
    found.append(("stay-fp16", max(red_from, low), high))
    return [(verdict, start, end) for verdict, start, end in found if end > start]


def _x_range(records: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """Every interval, 0 and every threshold in view, with a margin."""
    values = [0.0]
    for record in records:
        values += [record["interval"]["low"], record["interval"]["high"], record["drop"],
                   record["thresholds"]["max_drop"], record["thresholds"]["qat_limit"]]
    low, high = min(values), max(values)
    pad = 0.08 * (high - low or 1.0)
    return low - pad, high + pad


def save_plot(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *,
              dpi: int = 110) -> Path:
    """Write the forest plot as a PNG at ``path`` atomically (a temporary file in the same
    folder, then ``os.replace``), so a reader never sees half an image."""
    figure = forest_plot(records)
    # a tight bounding box: long test ids are not clipped
    return write_atomically(path, lambda stream: figure.savefig(stream, format="png", dpi=dpi,
                                                                bbox_inches="tight"))
