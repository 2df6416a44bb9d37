"""What the controller does when the session ends: JUnit suite properties, the comparison count the
project requires, the policy violations, and the JSON / Markdown / plot reports. Workers never get
here (``plugin.QuantGuardState.pytest_sessionfinish``)."""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

import pytest

from pytest_quantguard import policy
from pytest_quantguard._files import write_atomically
from pytest_quantguard._version import __version__
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.reports import json_report

RED = {"red": True, "bold": True}
REASON_CHARS = 200  # a failed test's reason, cut to this length in the summary's notes
PLAIN: dict[str, bool] = {}


def finish(session: pytest.Session, state) -> list[tuple[str, dict[str, bool]]]:
    """Do the controller's end-of-session work; return the lines the terminal summary prints."""
    config = session.config
    options = state.options
    records = sorted(state.records, key=lambda record: (record["id"], record["metric"]))
    overridden = policy.command_line_overrides(getattr(config.option, "override_ini", None))
    stated = policy.stated(options, records, state.violations, overridden)
    required = options.require_comparisons
    if any(getattr(config.option, name, False) for name in ("collectonly", "setupplan",
                                                             "setuponly")):
        required = 0  # nothing runs: no comparison is expected
    shortfall = _shortfall(records, required)
    failures = _failed_otherwise(config, records)
    notes = _terminal_notes(overridden, shortfall, stated["violations"])
    notes += [(f"quantguard: {failure}", RED) for failure in failures]
    if shortfall:
        _fail(session)
    if options.junit in ("suite", "both"):
        _suite_properties(config, records, options, stated)
    wanted = [(key, getattr(options, key)) for key in ("report", "markdown", "plot")
              if getattr(options, key)]
    if wanted and session.exitstatus == pytest.ExitCode.INTERRUPTED:
        # a report of the comparisons done before Ctrl-C would read as the whole run's
        # (docs/reports.md, "What only the controller does")
        notes.append(("quantguard: the session was interrupted; no report written ("
                      + ", ".join(f"--quant-{key} {path}" for key, path in wanted) + ")", RED))
        return notes
    if not records:
        if wanted:
            notes.append(("quantguard: no comparison ran; no report written ("
                          + ", ".join(f"--quant-{key} {path}" for key, path in wanted) + ")",
                          PLAIN))
        return notes
    markdown = _markdown(records, [*failures, *_report_notes(records, overridden, shortfall,
                                                             stated)],
                         options, stated["satisfied"])
    notes += _write_reports(session, wanted, records, options, stated, markdown)
    return notes


def _shortfall(records, required: int) -> tuple[int, int, int] | None:
    """(counted, required, advisory) when fewer comparisons counted than the project requires."""
    counted = policy.release_count(records)
    return (counted, required, len(records) - counted) if counted < required else None


def _failed_otherwise(config: pytest.Config, records) -> list[str]:
    """One line per test whose comparisons all shipped but which failed for another reason (a later
    error, a second call without name=, a policy violation, an error in teardown), with the reason
    pytest reported (docs/reports.md, "Terminal summary")."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(reporter, "stats", None) or {}
    failing: dict[str, pytest.TestReport] = {}
    for report in (*stats.get("failed", ()), *stats.get("error", ())):
        if isinstance(getattr(report, "nodeid", None), str):
            failing.setdefault(report.nodeid, report)
    tests = {json_report.test_id(record) for record in records if record["verdict"] == "ship"}
    tests -= {json_report.test_id(record) for record in records if record["verdict"] != "ship"}
    called = {json_report.test_id(record) for record in records
              if json_report.failed_otherwise(record, records)}
    lines = []
    for test in sorted(tests & (set(failing) | called)):
        report = failing.get(test)
        phase = "" if report is None or report.when == "call" else f" (in {report.when})"
        lines.append(f"{test}: its comparison shipped, but the test failed{phase}: "
                     f"{_reason(report)}")
    return lines


def _reason(report) -> str:
    """The first line of what pytest reported for a failed test (its crash message)."""
    if report is None:
        return "see the test's failure above"
    crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", None)
    lines = [line.strip() for line in str(crash or report.longrepr or "").splitlines()]
    reason = next((line for line in lines if line), "see the test's failure above")
    return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 3] + "..."


def _terminal_notes(overridden, shortfall, violations) -> list[tuple[str, dict[str, bool]]]:
    """The policy's lines in the terminal summary, with their markup."""
    notes: list[tuple[str, dict[str, bool]]] = []
    if overridden:
        notes.append((f"quantguard: policy set on the command line (-o), not by the project's "
                      f"config file: {', '.join(overridden)} (recorded in the reports)",
                      {"yellow": True, "bold": True}))
    if shortfall:
        counted, required, advisory = shortfall
        why = (f" ({advisory} more ran on a --quant-max-samples subset: advisory, not counted)"
               if advisory else " (was a gate deselected by -k/-m, skipped, or renamed?)")
        notes.append((f"quantguard: {counted} comparison(s) ran, but quant_require_comparisons "
                      f"= {required}: the session fails{why}", RED))
    notes += [(f"quantguard: policy violation in {violation['id']}: {violation['message']}", RED)
              for violation in violations]
    return notes


def _report_notes(records, overridden, shortfall, stated) -> list[str]:
    """The Markdown's notes: the policy's state, then every test's overrides."""
    notes = [f"policy violation in {v['id']}: {v['message']}" for v in stated["violations"]]
    if overridden:
        notes.insert(0, "policy set on the command line (-o), not by the project's config file: "
                        + ", ".join(overridden))
    notes += [f"override in {record['id']}: " + ", ".join(
        f"{item['key']}={item['value']!r} ({item['source']})" for item in record["overrides"])
        for record in records if record.get("overrides")]
    if shortfall:
        counted, required, _ = shortfall
        notes.insert(0, f"only {counted} comparison(s) counted; quant_require_comparisons "
                        f"= {required}: the session fails")
    return notes


def _write_reports(session: pytest.Session, wanted, records, options, stated,
                   markdown: str) -> list[tuple[str, dict[str, bool]]]:
    """The JSON, Markdown and plot files asked for, and $GITHUB_STEP_SUMMARY when it is set; a
    write that fails fails the session."""
    config = session.config
    writers = {
        "report": lambda path: _write_json(config, path, records, options, stated),
        "markdown": lambda path: write_atomically(
            path, lambda stream: stream.write((markdown + "\n").encode("utf-8"))),
        "plot": lambda path: _plot(records, path)}
    notes: list[tuple[str, dict[str, bool]]] = []
    for key, path in wanted:
        try:
            writers[key](path)
        except (QuantGuardError, OSError) as error:
            notes.append((f"quantguard: could not write the {key} report {path}: {error}", RED))
            _fail(session)
        else:
            notes.append((f"quantguard: {key} written to {path}", PLAIN))
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        try:
            with open(summary_file, "a", encoding="utf-8") as handle:
                handle.write(markdown + "\n")
        except OSError as error:
            notes.append((f"quantguard: could not append to $GITHUB_STEP_SUMMARY "
                          f"({summary_file}): {error}", RED))
    return notes


def _fail(session: pytest.Session) -> None:
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _suite_properties(config: pytest.Config, records, options, stated) -> None:
    try:
        from _pytest.junitxml import xml_key  # present and unchanged in pytest 8.0 - 9.x
    except ImportError:  # pragma: no cover - a pytest without junitxml
        return
    xml = config.stash.get(xml_key, None)
    if xml is None:  # no --junitxml (or a worker: the XML object lives on the controller)
        return
    from pytest_quantguard.reports.json_report import summary

    tally = summary(records)  # the same counts as the JSON report's summary
    properties = {
        "quant.run.comparisons": tally["comparisons"], "quant.run.ship": tally["ship"],
        "quant.run.failed": tally["failed"], "quant.run.inconclusive": tally["inconclusive"],
        "quant.run.seed": options.seed, "quant.run.version": __version__,
        "quant.run.required_comparisons": options.require_comparisons,
        "quant.run.policy_violations": len(stated["violations"]),
    }
    for name, value in properties.items():
        xml.add_global_property(name, str(value))


def _write_json(config: pytest.Config, path: str, records, options, stated) -> None:
    import importlib.util

    from pytest_quantguard.reports.json_report import (
        build_report,
        environment,
        git_commit,
        write_json,
    )

    providers = None
    if importlib.util.find_spec("onnxruntime") is not None:  # the controller may never have run
        import onnxruntime  # a model (xdist workers do), so it asks here: same report either way

        providers = list(onnxruntime.get_available_providers())
    report = build_report(
        records, settings=options.as_dict(), policy=stated,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        host=socket.gethostname(), commit=git_commit(config.rootpath))
    report["environment"] = environment(execution_providers=providers)
    config.hook.pytest_quantguard_update_json(config=config, report=report)
    write_json(Path(path), report)


def _markdown(records, notes: list[str], options,
              policy_satisfied: bool = True) -> str:
    from pytest_quantguard.reports.markdown import markdown_report

    return markdown_report(records, notes=notes, inconclusive=options.inconclusive,
                           policy_satisfied=policy_satisfied)


def _plot(records, path: Path) -> None:
    from pytest_quantguard.reports.plot import save_plot

    save_plot(records, path)
