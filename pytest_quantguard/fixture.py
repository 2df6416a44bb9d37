"""What the fixtures do (``plugin.py`` only returns these): ``QuantCompare`` turns the test's
layers into a ``Tolerance``, holds it against the policy, runs the pipe, records the result for the
reports and fails the test unless it ships; ``QuantModel`` loads a model once.

Imported by the plugin on first use of a fixture, never at plugin load: nothing heavy here either.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from pytest_quantguard import policy
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.settings import TOLERANCE_KEYS, check_layer, resolve_tolerance

PACKAGE = Path(__file__).resolve().parent
NO_DATA = ("no validation data: pass --quant-data DIR, set quant_data = DIR in the ini file "
           "(pytest.ini, tox.ini, setup.cfg or pyproject.toml), or give data= to quant_compare")
PROGRESS_AFTER_S = 2.0  # a comparison shorter than this shows no progress at all
PROGRESS_EVERY_S = 5.0
# What a test's item stash holds: its markers' merged tolerance, its records, its violations.
TOLERANCE_KEY = pytest.StashKey[dict[str, Any]]()
RECORDS_KEY = pytest.StashKey[list[dict[str, Any]]]()
VIOLATIONS_KEY = pytest.StashKey[list[dict[str, Any]]]()


def fail_on_error(call: Callable[..., Any], *args: Any, prefix: str = "quantguard: ",
                  **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``; a QuantGuardError fails the test with its message alone. The
    failure is raised outside the ``except``, so no chained traceback is shown."""
    __tracebackhide__ = True
    try:
        with _warnings_at_the_callers_line(sys._getframe(1)):
            return call(*args, **kwargs)
    except QuantGuardError as error:
        failure = f"{prefix}{error}"
    _fail(failure)


@contextlib.contextmanager
def _warnings_at_the_callers_line(caller):
    """QuantGuardWarnings raised in the pipe point at the test's line that called the fixture, not
    into this package; other warnings keep their own place. Re-issued through the filters in force
    (``-W error`` still turns them into failures)."""
    while caller is not None and Path(caller.f_code.co_filename).resolve().is_relative_to(PACKAGE):
        caller = caller.f_back
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for each in caught:
        if issubclass(each.category, QuantGuardWarning) and caller is not None:
            warnings.warn_explicit(each.message, each.category, caller.f_code.co_filename,
                                   caller.f_lineno, module=caller.f_globals.get("__name__"),
                                   registry=caller.f_globals.setdefault("__warningregistry__", {}))
        else:
            warnings.warn_explicit(each.message, each.category, each.filename, each.lineno)


def _fail(message: str) -> NoReturn:
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


class QuantModel:
    """``quant_model(model, output=None) -> runner``: loads anything ``quant_compare`` takes (a
    model file, a torch module, a callable) once, on the run's device; ``output`` keeps one output."""

    def __init__(self, state):
        self.state = state

    def __call__(self, model: Any, output: str | int | None = None):
        __tracebackhide__ = True
        return fail_on_error(self._load, model, output)

    def _load(self, model: Any, output: str | int | None):
        from pytest_quantguard.runners import make_runner
        from pytest_quantguard.runners.selection import select_output

        runner = make_runner(model, base_dir=self.state.rootpath, role="model",
                             device=self.state.options.device)
        return runner if output is None else select_output(runner, output)


class QuantCompare:
    """``quant_compare(reference, candidate, *, data=None, metric=None, output=None, name=None,
    **keywords) -> Comparison``: fails the test unless the verdict is ``ship``. A list of
    candidates gives a tuple of comparisons, one recorded per candidate; the test fails, after
    all are recorded, unless every one ships (docs/usage.md, "Several candidates")."""

    def __init__(self, state, request: pytest.FixtureRequest):
        self.state = state
        self.request = request
        self.item = request.node
        self.names: list[str | None] = []

    def __call__(self, reference: Any, candidate: Any, *, data: Any = None,
                 metric: str | None = None, output: str | int | None = None,
                 name: str | list[str] | None = None, **keywords: Any):
        __tracebackhide__ = True
        comparison, overrides = fail_on_error(self.judge, reference, candidate, data,
                                              dict(keywords, metric=metric, output=output), name)
        found = [each for one in (comparison if isinstance(comparison, tuple) else (comparison,))
                 for each in one.all()]
        for each in found:
            self.record(each, overrides)
        self._fail_unless_shipped(found)
        return comparison

    def judge(self, reference: Any, candidate: Any, data: Any, keywords: dict[str, Any],
              name: str | list[str] | None):
        """The test's layers -> a Tolerance (policy-checked) -> the pipe; (comparison, the
        overrides to record). Also ``quant_ladder``'s way to judge a rung."""
        from pytest_quantguard.comparison import candidate_names, run

        several = isinstance(candidate, (list, tuple))
        for own in candidate_names(list(candidate), name) if several else [name]:
            self._check_name(own)
        options = self.state.options
        call = {key: keywords.pop(key) for key in TOLERANCE_KEYS if key in keywords}
        tolerance = resolve_tolerance(options.tolerance(),
                                      ("marker", self.item.stash.get(TOLERANCE_KEY, {})),
                                      ("call", check_layer(call, "quant_compare")),
                                      run_sources=options.origins)
        found = policy.violations(tolerance, options, self.item.nodeid)
        if found:
            self.item.stash.setdefault(VIOLATIONS_KEY, []).extend(found)
            raise QuantGuardError("the project's policy forbids this: " + "; ".join(
                violation["message"] for violation in found))
        comparison_id = self.item.nodeid if name is None or several else \
            f"{self.item.nodeid}::{name}"  # several: <nodeid>::<each candidate's name>
        execution = options.execution(base_dir=self.state.rootpath,
                                      cache=self.state.reference_cache(),
                                      progress=progress_reporter(self.state, self.request.config,
                                                                 comparison_id))
        comparison = run(reference, candidate, self.dataset(data), tolerance, execution, name=name,
                         comparison_id=comparison_id, metric_options=keywords,
                         policy=policy.floor(options))
        return comparison, tolerance.overrides()

    def _fail_unless_shipped(self, found: list) -> None:
        """Warn about suspicious gains; fail unless every metric of every candidate ships and every
        check of the reference passed (an inconclusive verdict only warns with quant_inconclusive
        = warn; a failed check always fails: docs/verdict.md, "Checks of the reference")."""
        __tracebackhide__ = True
        from pytest_quantguard.message import suspicious_gain_text

        for each in found:  # after recording: under -W error the figures are kept
            if each.details.get("suspicious_gain"):
                warnings.warn(QuantGuardWarning(suspicious_gain_text(each)), stacklevel=3)
        failing = [each for each in found if not each.passed]
        if not failing:
            return
        if all(each.verdict == "inconclusive" and not each.failed_checks for each in failing) \
                and self.state.options.inconclusive == "warn":
            for each in failing:
                warnings.warn(QuantGuardWarning(each.message), stacklevel=3)
            return
        _fail("\n\n".join(each.message for each in failing))

    def record(self, comparison, overrides: list[dict[str, Any]]) -> None:
        """Keep the comparison for the session's reports (and the test's JUnit properties)."""
        from pytest_quantguard.reports.junit import junit_properties

        record = comparison.to_dict()
        record["overrides"] = overrides  # what this test's marker and call set (reports show them)
        self.item.stash.setdefault(RECORDS_KEY, []).append(record)
        if self.state.options.junit in ("testcase", "both"):
            self.item.user_properties.extend(junit_properties(record))  # JUnit reads this list

    def _check_name(self, name: str | None) -> None:
        if name is not None and not isinstance(name, str):
            raise QuantGuardError(f"name= must be a string, got {name!r}")
        if self.names and (name is None or None in self.names):
            raise QuantGuardError("this test calls quant_compare more than once: give every call "
                                  "its own name= (e.g. quant_compare(ref, int8, name='int8'))")
        if name is not None and name in self.names:
            raise QuantGuardError(f"name={name!r} is used twice in this test; names must be unique")
        self.names.append(name)

    def dataset(self, data: Any):
        """``data=`` of a call (None: the session's --quant-data) as a validation set."""
        if data is None:
            if self.state.options.data is None:
                raise QuantGuardError(NO_DATA)
            return self.request.getfixturevalue("quant_data")
        if isinstance(data, (str, Path)):
            path = Path(data)
            return self.state.dataset(path if path.is_absolute() else self.state.rootpath / path,
                                      given_by="data= of quant_compare (relative to the rootdir)")
        return data


def progress_reporter(state, config: pytest.Config, label: str):
    """Progress lines for long comparisons, through the terminal reporter (never print): on a
    terminal, or with -v; at most one every few seconds, none for short runs or on xdist workers."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not state.controller:
        return None
    if not (config.get_verbosity() > 0 or reporter.isatty):
        return None
    start = time.monotonic()
    last = [start]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - start < PROGRESS_AFTER_S or now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        rate = done / (now - start)
        reporter.write_line(f"quantguard: {label}: {done:,}/{total:,} samples "
                            f"({100 * done / total:.0f}%, {rate:,.0f} samples/s)")

    return report
