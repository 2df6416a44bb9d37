"""The Markdown summary a reviewer reads on a pull request, verdicts first (pure: records in, text
out). ``--quant-markdown PATH`` writes it; under GitHub Actions it is also appended to
``$GITHUB_STEP_SUMMARY``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pytest_quantguard.formatting import size_text, time_text
from pytest_quantguard.reports.json_report import failed_checks, failed_otherwise, passed_rung, summary
from pytest_quantguard.verdict import severity

COLUMNS = ("verdict", "test", "metric", "reference", "candidate", "drop", "interval", "n", "size",
           "time per sample")
SHOWN_SLICES = 3  # rows of "classes / slices that lost most" per comparison that did not ship
SHOWN_DISCORDANT = 5  # discordant sample indices named per comparison (the JSON report has more)
SHOWN_LAYERS = 5  # diagnosed layers per comparison that did not ship (the JSON report has all)


def by_severity(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Records in report order: stay-fp16, try-qat, inconclusive, ship; then by id."""
    return sorted(records, key=lambda r: (-severity(r["verdict"]), r["id"]))


def markdown_report(records: Sequence[Mapping[str, Any]], *, title: str = "Quantization gate",
                    notes: Iterable[str] = (), inconclusive: str = "fail",
                    policy_satisfied: bool = True) -> str:
    """A heading, a one-line verdict, one table row per comparison (worst first), what lost most
    where a comparison did not ship, then ``notes`` (policy overrides, advisories) as bullets.

    ``inconclusive`` is the run's ``--quant-inconclusive`` ("fail" or "warn"): whether an
    inconclusive comparison fails the gate. A comparison whose test is an expected failure
    (``outcome`` "xfailed") does not fail it; ``policy_satisfied`` False (too few comparisons, a
    policy violation) does. With no records, a short text says no comparison ran.
    """
    notes = [_one_line(note) for note in notes]
    lines = [f"## {_one_line(title)}", ""]
    if not records:
        lines.append("No comparison ran: nothing was gated (check the test selection, e.g. `-k`).")
        return "\n".join([*lines, *_notes(notes)]) + "\n"
    ordered = by_severity(records)
    lines += [_summary(ordered, inconclusive, policy_satisfied), "",
              *_table(ordered, inconclusive)]
    risks = [line for record in ordered for line in _risks(record)]
    if risks:
        lines += ["", "### Risk notes", "", *risks]
    lost = [line for record in ordered if record["verdict"] != "ship" for line in _lost(record)]
    if lost:
        lines += ["", "### What did not ship", "", *lost]
    checks = [f"- {_code(record['id'])}: {_one_line(check['rule'])}" for record in ordered
              for check in failed_checks(record)]
    if checks:
        lines += ["", "### Failed checks of the reference", "", *checks]
    return "\n".join([*lines, *_notes(notes)]) + "\n"


def _summary(records: Sequence[Mapping[str, Any]], inconclusive: str,
             policy_satisfied: bool = True) -> str:
    tally = summary(records, inconclusive=inconclusive, policy_satisfied=policy_satisfied)
    count, expected = tally["comparisons"], tally["expected_failures"]
    extra = f" ({expected} in tests marked as expected failures)" if expected else ""
    if tally["failed_checks"]:
        extra += (f"; {tally['failed_checks']} with a failed check of the reference (the test "
                  "fails whatever the verdict)")
    if tally["shipped_in_failed_tests"]:
        extra += f"; {tally['shipped_in_failed_tests']} shipped in a test that failed otherwise"
    policy = "" if policy_satisfied else " (the project's policy is not met: see the notes)"
    return (f"{count} comparison{'s' if count != 1 else ''}: {tally['ship']} ship, "
            f"{tally['failed']} failed, {tally['inconclusive']} inconclusive{extra}; **the gate "
            f"{'passes' if tally['passed'] else 'fails'}**{policy}.")


def _table(records: Sequence[Mapping[str, Any]], inconclusive: str) -> list[str]:
    rows = [COLUMNS, tuple("---" for _ in COLUMNS)]
    rows += [_row(record, inconclusive, records) for record in records]
    return ["| " + " | ".join(row) + " |" for row in rows]


def _row(record: Mapping[str, Any], inconclusive: str,
         records: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    fmt = unit_formatter(record)
    interval = record["interval"]
    data = record["data"]
    n = f"{data['n']:,}"
    if data.get("n_groups"):
        n += f" ({data['n_groups']:,} groups)"
    details = record.get("details") or {}
    if details.get("advisory"):
        n += f" (subset of {details['subset_of']:,})" if "subset_of" in details else " (subset)"
    return (
        ("**FAIL**" if (failed_checks(record) and record.get("outcome") != "xfailed")
         or failed_otherwise(record, records) else
         _marker(record['verdict'], inconclusive, record.get('outcome'), passed_rung(record)))
        + f" {record['verdict']}"
        + (" (reference check failed)" if failed_checks(record) else "")
        + (" (test failed)" if failed_otherwise(record, records) else "")
        + (" (advisory)" if details.get("advisory") else "")
        + (" (expected failure: xfail)" if record.get("outcome") == "xfailed" else "")
        + (" (ladder rung; the ladder passed)" if passed_rung(record)
           and record["verdict"] != "ship" else "")
        + (" (suspicious gain)" if details.get("suspicious_gain") else ""),
        _code(record["id"], cell=True),
        _cell(record["metric"]),
        f"{record['reference']['score']:.4f}",
        f"{record['candidate']['score']:.4f}",
        fmt(record["drop"]),
        f"[{fmt(interval['low'])}, {fmt(interval['high'])}] "
        f"{100 * interval['confidence']:g}% {_cell(interval['method'])}",
        n,
        _size(record.get("cost") or {}),
        _times(record.get("runtime") or {}),
    )


def _marker(verdict: str, inconclusive: str, outcome: str | None = None,
            waived: bool = False) -> str:
    if verdict == "ship" or outcome == "xfailed" or waived:
        return "**ok**"
    if verdict == "inconclusive" and inconclusive == "warn":
        return "**warn**"
    return "**FAIL**"


def unit_formatter(record: Mapping[str, Any]) -> Callable[[float], str]:
    """How this record's drops read (its ``unit``): points for absolute drops of 0/1 metrics,
    percent for relative and error-increase margins, else 4 significant digits in the metric's
    units."""
    return {"points": _points, "percent": _percent}.get(record.get("unit", "metric"), _plain)


def _points(value: float) -> str:
    return f"{100 * value:.2f} pt"


def _percent(value: float) -> str:
    return f"{100 * value:+.2f}%"


def _plain(value: float) -> str:
    return f"{value:.4g}"


def _size(cost: Mapping[str, Any]) -> str:
    return size_text(cost, arrow="→", times="×", none="—")


def _times(runtime: Mapping[str, Any]) -> str:
    return time_text(runtime, arrow="→", unit=" ms", none="—")


def _lost(record: Mapping[str, Any]) -> list[str]:
    """One bullet per comparison that did not ship: what lost most, the discordant samples and
    the remedy."""
    details = record.get("details") or {}
    lines = [f"- {_code(record['id'])} ({_one_line(record['metric'])}): **{record['verdict']}**"]
    fmt = unit_formatter(record)
    for key, what in (("per_class", "classes"), ("per_size", "object sizes"), ("slices", "slices")):
        rows = details.get(key) or []
        if not rows:
            continue
        if key == "per_class":
            label = details.get("per_class_metric", record["metric"])
            # per-class rows are each class's accuracy unless the metric is itself 0/1
            row_fmt = fmt if label == record["metric"] else _points
        else:
            label, row_fmt = record["metric"], fmt
        shown = "; ".join(_slice_row(row, row_fmt) for row in rows[:SHOWN_SLICES])
        lines.append(f"  - {what} that lost most ({_one_line(label)}, by upper bound): {shown}")
    discordant = record.get("discordant")
    if discordant:
        lines.append(f"  - {_discordant(discordant, details)}")
    if record.get("remedy"):
        lines.append(f"  - remedy: {_one_line(record['remedy'])}")
    return lines + _diagnosis(details.get("diagnosis")) + _remedies(details.get("remedies"))


def _risks(record: Mapping[str, Any]) -> list[str]:
    """A comparison's risk notes, one bullet each under its id (docs/risks.md)."""
    found = (record.get("details") or {}).get("risks") or []
    if not found:
        return []
    return [f"- {_code(record['id'])}: {len(found)} risk note{'s' if len(found) != 1 else ''}",
            *(f"  - `{risk['kind']}` ({risk['model']}): {_one_line(risk['text'])}"
              for risk in found)]


def _diagnosis(diagnosis: Mapping[str, Any] | None) -> list[str]:
    """The per-layer diagnosis's top layers (docs/risks.md, "Where the notes appear")."""
    if not diagnosis:
        return []
    if diagnosis.get("skipped"):
        return [f"  - diagnosis: not run ({_one_line(diagnosis['skipped'])})"]
    lines = [f"  - diagnosis ({_one_line(str(diagnosis.get('format')))}, local error = "
             f"{_one_line(str(diagnosis.get('measure')))}, {diagnosis.get('samples')} samples): "
             "the layers that lose most on their own"]
    for layer in (diagnosis.get("layers") or [])[:SHOWN_LAYERS]:
        weight = "—" if layer.get("weight") is None else _code(layer["weight"])
        lines.append(f"    {layer['rank']}. {_code(layer['node'])} ({layer['op_type']}): local "
                     f"error {layer['local_error']:.4g}, weight {weight}"
                     + (f" (error {layer['weight_error']:.3g})"
                        if layer.get("weight_error") is not None else "")
                     + (f", risks: {', '.join(layer['risks'])}" if layer.get("risks") else ""))
    return lines


def _remedies(remedies: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """Each remedy: its title, why, and its code as a fenced block."""
    lines = []
    for each in remedies or []:
        lines += [f"  - remedy: **{_one_line(each['title'])}**: {_one_line(each['why'])}", "",
                  "    ```python",
                  *(f"    {line}" for line in str(each.get("code", "")).strip("\n").splitlines()),
                  "    ```", ""]
    return lines


def _slice_row(row: Mapping[str, Any], fmt: Callable[[float], str]) -> str:
    name = f"{_code(str(row['slice']))} (n={row['n']:,})"
    if "drop" not in row:
        return f"{name} {_one_line(str(row.get('error', 'no estimate')))}"
    shown = f"{name} {fmt(row['drop'])} [{fmt(row['low'])}, {fmt(row['high'])}]"
    return shown + (f" {row['verdict']}" if "verdict" in row else "")


def _discordant(discordant: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    count = discordant.get("count", 0)
    changed = "changed" if discordant.get("order") == "largest change" else "flipped"
    text = f"discordant samples: {count:,} {changed}"
    if "reference_only" in details:
        text += (f" ({details['reference_only']:,} only the reference gets right, "
                 f"{details.get('candidate_only', 0):,} only the candidate)")
    samples = discordant.get("samples") or []
    if samples:
        order = "largest change first" if discordant.get("order") == "largest change" else "first"
        shown = ", ".join(f"#{sample['index']}" for sample in samples[:SHOWN_DISCORDANT])
        if len(samples) >= count:
            kept = "every one"
        elif discordant.get("order") == "largest change":
            kept = f"the {len(samples):,} largest changes"
        else:
            kept = f"the first {len(samples):,}"
        text += (f"; {order}: {shown}" + (", …" if len(samples) > SHOWN_DISCORDANT else "")
                 + f" (the JSON report lists {kept})")
    return text


def _notes(notes: Sequence[str]) -> list[str]:
    if not notes:
        return []
    return ["", "### Notes", "", *(f"- {note}" for note in notes)]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _cell(text: str) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    return _one_line(text).replace("|", "\\|")


def _code(text: str, *, cell: bool = False) -> str:
    """``text`` as inline code; in a table ``cell`` its pipes are escaped (GFM splits the row into
    cells before it reads code spans, and drops the backslash there)."""
    text = _one_line(text)
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    shown = f"{fence}{pad}{text}{pad}{fence}"
    return shown.replace("|", "\\|") if cell else shown
