"""The end-of-run summary table (pure: records in, lines out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pytest_quantguard.formatting import drop_text, human_bytes, size_text, time_text

__all__ = ["drop_text", "human_bytes", "size_text", "summary_lines", "time_text"]

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
