"""The end-of-run summary table (pure: records in, lines out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

COLUMNS = ("test", "metric", "reference", "candidate", "drop", "interval", "verdict", "size",
           "ms/sample", "cache")
VERDICT_MARKUP = {"ship": {"green": True}, "inconclusive": {"yellow": True}}


def summary_lines(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, dict[str, bool]]]:
    """One header, one row per comparison sorted by id; each with the markup for its verdict."""
    rows = [_row(record) for record in sorted(records, key=lambda r: r["id"])]
    table = [COLUMNS, *[row for row, _ in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]

    def render(cells) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    lines = [(render(COLUMNS), {"bold": True})]
    for row, verdict in rows:
        lines.append((render(row), VERDICT_MARKUP.get(verdict, {"red": True})))
    return lines


def _row(record: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    interval = record["interval"]
    level = f"{100 * interval['confidence']:g}%"
    relative = record.get("details", {}).get("margin", "absolute") != "absolute"
    cells = (
        record["id"],
        record["metric"],
        f"{record['reference']['score']:.4f}",
        f"{record['candidate']['score']:.4f}",
        drop_text(record["drop"], relative),
        f"[{drop_text(interval['low'], relative)}, {drop_text(interval['high'], relative)}] {level}",
        record["verdict"] + (" (advisory)" if record.get("details", {}).get("advisory") else "")
        + (" (xfail)" if record.get("outcome") == "xfailed" else "")
        + (" (suspicious gain)" if record.get("details", {}).get("suspicious_gain") else ""),
        size_text(record.get("cost") or {}),
        time_text(record.get("runtime", {})),
        str(record.get("runtime", {}).get("cache", "off")),
    )
    return cells, record["verdict"]


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
