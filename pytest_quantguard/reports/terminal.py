"""The end-of-run summary table (pure: records in, lines out), fitted to the terminal's width."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_quantguard.formatting import drop_text, human_bytes, size_text, time_text
from pytest_quantguard.reports.json_report import failed_checks, failed_otherwise, passed_rung
from pytest_quantguard.reports.markdown import unit_formatter

__all__ = ["drop_text", "failed_otherwise", "human_bytes", "size_text", "summary_lines",
           "terminal_width", "time_text", "verdict_text"]

COLUMNS = ("test", "metric", "reference", "candidate", "drop", "interval", "limit", "verdict",
           "risks", "size", "ms/sample", "cache")
# Left out one by one, first to last, while the table is wider than the terminal; test, interval
# and verdict always stay (docs/reports.md, "Terminal summary").
DROP_ORDER = ("cache", "ms/sample", "size", "risks", "candidate", "reference", "drop", "metric",
              "limit")
MIN_TEST_WIDTH = 24  # a test id is shortened from the left (keeping its name) to no less than this
SEPARATOR = "  "
CACHE_LEGEND = ("cache: hit = the reference's outputs were reused (from .pytest_cache or an "
                "earlier comparison in this run), miss = the reference ran, off = not cached")
RISKS_LEGEND = ("risks: how many risk notes each comparison has (docs/risks.md); the JSON and "
                "Markdown reports list them, a failure message says them")
VERDICT_MARKUP = {"ship": {"green": True}, "inconclusive": {"yellow": True}}
Line = tuple[str, dict[str, bool]]


def terminal_width() -> int | None:
    """The width to fit: ``COLUMNS`` when set, else the terminal's when the output is one, with
    pytest's own reading (``shutil``, 80 when under 40); None (no limit) for a pipe or a file."""
    if not os.environ.get("COLUMNS", "").strip() and not _isatty(sys.stdout):
        return None
    width = shutil.get_terminal_size(fallback=(80, 24)).columns
    return width if width >= 40 else 80


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


def summary_lines(records: Iterable[Mapping[str, Any]], width: int | None = None) -> list[Line]:
    """One header, one row per comparison sorted by id (each with the markup of its verdict), then
    the legend: fitted to ``width`` (default ``terminal_width()``) by leaving out columns in
    ``DROP_ORDER``, then by shortening test ids."""
    records = sorted(records, key=lambda r: r["id"])
    width = terminal_width() if width is None else width
    rows = [dict(zip(COLUMNS, _row(record, records), strict=True)) for record in records]
    columns = list(COLUMNS)
    dropped = []
    for name in DROP_ORDER:
        if width is None or _table_width(columns, rows) <= width:
            break
        columns.remove(name)
        dropped.append(name)
    if width is not None:
        _shorten_tests(columns, rows, width)
    widths = {name: max([len(name), *(len(row[name]) for row in rows)]) for name in columns}

    def render(cells: Mapping[str, str]) -> str:
        return SEPARATOR.join(cells[name].ljust(widths[name]) for name in columns).rstrip()

    lines: list[Line] = [(render({name: name for name in columns}), {"bold": True})]
    for record, row in zip(records, rows, strict=True):
        failed = failed_otherwise(record, records) or failed_checks(record)
        shown = "failed" if failed else record["verdict"]
        lines.append((render(row), VERDICT_MARKUP.get(shown, {"red": True})))
    legend = [CACHE_LEGEND] if "cache" in columns else []
    if "risks" in columns and any(row["risks"] not in ("0", "-") for row in rows):
        legend.append(RISKS_LEGEND)
    if dropped:
        legend.append(f"columns left out to fit {width} columns (COLUMNS): {', '.join(dropped)}; "
                      "the JSON and Markdown reports hold them")
    for text in legend:  # a line each, wrapped only where the terminal is narrower
        lines += [(line, {}) for line in ([text] if width is None else textwrap.wrap(text, width))]
    return lines


def verdict_text(record: Mapping[str, Any], records: Sequence[Mapping[str, Any]] = ()) -> str:
    """The verdict and what qualifies it: advisory, xfail, suspicious gain, a test that failed."""
    details = record.get("details") or {}
    return (record["verdict"]
            + (" (advisory)" if details.get("advisory") else "")
            + (" (xfail)" if record.get("outcome") == "xfailed" else "")
            + (" (ladder rung)" if passed_rung(record) and record["verdict"] != "ship" else "")
            + (" (suspicious gain)" if details.get("suspicious_gain") else "")
            + (" (reference check failed)" if failed_checks(record) else "")
            + (" (test failed)" if failed_otherwise(record, records or [record]) else ""))


def _row(record: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The cells, drops in the Markdown report's unit (points, percent or the metric's own)."""
    fmt = unit_formatter(record)
    interval = record["interval"]
    limit = (record.get("thresholds") or {}).get("max_drop")
    return (
        record["id"],
        record["metric"],
        f"{record['reference']['score']:.4f}",
        f"{record['candidate']['score']:.4f}",
        fmt(record["drop"]),
        f"[{fmt(interval['low'])}, {fmt(interval['high'])}] {100 * interval['confidence']:g}%",
        "-" if limit is None else fmt(limit).lstrip("+"),
        verdict_text(record, records),
        _risk_count(record),
        size_text(record.get("cost") or {}),
        time_text(record.get("runtime", {})),
        str(record.get("runtime", {}).get("cache", "off")),
    )


def _risk_count(record: Mapping[str, Any]) -> str:
    """The number of risk notes ("-" for a record from before they existed)."""
    risks = (record.get("details") or {}).get("risks")
    return "-" if risks is None else str(len(risks))


def _table_width(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> int:
    return sum(max([len(name), *(len(row[name]) for row in rows)]) for name in columns) \
        + len(SEPARATOR) * (len(columns) - 1)


def _shorten_tests(columns: Sequence[str], rows: list[dict[str, str]], width: int) -> None:
    """Test ids too long for what is left: '...' and their end (the test's and comparison's name)."""
    others = _table_width([name for name in columns if name != "test"], rows) + len(SEPARATOR)
    room = max(MIN_TEST_WIDTH, width - others)
    for row in rows:
        if len(row["test"]) > room:
            row["test"] = "..." + row["test"][-(room - 3):]
