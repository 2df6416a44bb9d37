"""The ladder's parts of the reports (docs/ladder.md, "The reports"): the Markdown "Ladder" section
and the JUnit testcases of ``quantguard ladder``'s combined report (pure: the ladder's summary and
the tested rungs' records in, text out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_quantguard.ladder_plan import UNJUDGED_REASON, ms_text
from pytest_quantguard.reports.junit import JunitCase, junit_properties


def _state(rung: Mapping[str, Any]) -> str:
    return rung["verdict"] if rung["tested"] else "not tested"


def markdown_section(summary: Mapping[str, Any]) -> list[str]:
    """The rungs in declared order (level, one-sided alpha, verdict or not tested, size,
    compression, time per sample), the unjudged and skipped schemes, and the recommendation."""
    lines = ["", "### Ladder", "",
             f"Gatekeeping with propagated alpha: one-sided {summary['alpha']:g} over every rung "
             f"({summary['machine']}).", "",
             "| level | rung | alpha | confidence | verdict | size | compression | ms per sample |",
             "|---:|---|---:|---:|---|---:|---:|---:|"]
    for rung in summary["rungs"]:
        confidence = f"{rung['confidence']:.4g}" if rung["tested"] else "-"
        lines.append(f"| {rung['level']} | `{rung['scheme']}` | {rung['alpha']:.4g} | {confidence} "
                     f"| {_state(rung)} | {rung['size_bytes']:,} B | {rung['compression']:.2f}× "
                     f"| {ms_text(rung['ms_per_sample'])} |")
    lines += [f"| - | `{scheme}` | - | - | unjudged ({UNJUDGED_REASON}) | - | - | - |"
              for scheme in summary["unjudged"]]
    lines += [f"| - | `{row['scheme']}` | - | - | not a rung ({row['reason']}) | - | - | - |"
              for row in summary["skipped"]]
    best = summary["recommendation"]
    lines += ["", f"**Recommendation: `{best}`** (the most compressed rung that ships)." if best
              else "**Recommendation: none ships**; keep the reference (or try QAT)."]
    return lines


def junit_cases(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[JunitCase]:
    """One testcase per rung and one ``ladder``: the shipped rungs pass; a tested rung that did not
    ship and an untested rung are skipped (the ladder passes when a recommendation exists); the
    ``ladder`` testcase fails when nothing ships. A tested rung carries its quant.* properties."""
    by_name = {record["name"]: record for record in records}
    cases = []
    for rung in summary["rungs"]:
        record = by_name.get(rung["scheme"])
        properties = junit_properties(record) if record is not None else []
        if rung["shipped"]:
            outcome, message = None, ""
        elif rung["tested"]:
            outcome = "skipped"
            message = f"does not ship at {rung['confidence']:.4g}: {rung['verdict']}"
        else:
            outcome, message = "skipped", "not tested: its level received no alpha"
        cases.append(JunitCase(rung["scheme"], properties, outcome, message,
                               classname="quantguard.ladder"))
    best = summary["recommendation"]
    cases.append(JunitCase(
        "ladder", [("quant.recommendation", str(best or ""))], None if best else "failure",
        "" if best else "nothing ships", "" if best else "\n".join(
            f"{rung['scheme']}: {_state(rung)}" for rung in summary["rungs"]),
        classname="quantguard.ladder"))
    return cases
