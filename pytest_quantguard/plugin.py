"""The pytest11 entry point: options, ini keys, the marker, fixtures and hooks. Glue only.

Imported in every pytest run where the package is installed, so nothing heavy is imported here:
backends load inside the runners that need them.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_quantguard import settings
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning

MARKER = "quant_tolerance"
TOLERANCE_KEYS = ("max_drop", "qat_limit", "relative", "confidence", "gate", "max_error_increase",
                  "metrics", "slice_max_drop")
NO_DATA = ("no validation data: pass --quant-data DIR, set quant_data = DIR in the ini file "
           "(pytest.ini, tox.ini, setup.cfg or pyproject.toml), or give data= to quant_compare")


@dataclass(eq=False)  # identity semantics: it is registered as a plugin
class QuantGuardState:
    """The plugin's one state object, kept in ``config.stash``."""

    options: dict[str, Any]
    rootpath: Path
    datasets: dict[Path, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)  # gathered from test reports
    violations: list[dict[str, Any]] = field(default_factory=list)  # policy violations, gathered
    pytest_cache: Any = None  # config.cache (None under -p no:cacheprovider)
    _reference_cache: Any = None
    session_notes: list[tuple[str, dict[str, bool]]] = field(default_factory=list)

    def reference_cache(self):
        """The reference-output cache, made on first use (no folder is created before that)."""
        if self._reference_cache is None:
            from pytest_quantguard.cache import ReferenceCache

            directory = None
            if self.options["cache"] and self.pytest_cache is not None:
                directory = Path(self.pytest_cache.mkdir("quantguard"))
            self._reference_cache = ReferenceCache(directory)
        return self._reference_cache

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Gather comparisons from test reports: locally, or on the xdist controller."""
        if report.when != "call":
            return
        outcome = report.outcome
        if hasattr(report, "wasxfail"):  # an expected failure, or an unexpected pass
            outcome = "xfailed" if report.skipped else "xpassed"
        self.records.extend({**record, "outcome": outcome}
                            for record in getattr(report, "quantguard", None) or ())
        self.violations.extend(getattr(report, "quantguard_violations", None) or ())

    @pytest.hookimpl(tryfirst=True)  # before junitxml's own sessionfinish writes the XML
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """On the controller only: suite properties, the comparison count the project requires,
        and the JSON / Markdown / plot reports."""
        if hasattr(session.config, "workerinput"):
            return
        from pytest_quantguard.reports.session import finish

        self.session_notes = finish(session, self)

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int,
                                config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):
            return  # only the controller prints
        if self.records:
            from pytest_quantguard.reports.terminal import summary_lines

            terminalreporter.write_sep("=", f"quantguard: {len(self.records)} comparison(s)")
            for line, markup in summary_lines(self.records):
                terminalreporter.write_line(line, **markup)
        for line, markup in self.session_notes:
            terminalreporter.write_line(line, **markup)

    def dataset(self, path: Path):
        """Load (once per process) and return the validation set in ``path``."""
        from pytest_quantguard.data import ValidationSet

        path = path.resolve()
        if path not in self.datasets:
            self.datasets[path] = ValidationSet.from_folder(path)
        return self.datasets[path]


STATE_KEY = pytest.StashKey[QuantGuardState]()
TOLERANCE_KEY = pytest.StashKey[dict[str, Any]]()
RECORDS_KEY = pytest.StashKey[list[dict[str, Any]]]()
VIOLATIONS_KEY = pytest.StashKey[list[dict[str, Any]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("quantguard", "quantization gate (pytest-quantguard)")
    for option in settings.OPTIONS:
        if option.validate is settings.flag:  # on/off: --quant-X and --quant-no-X
            group.addoption(option.flag, dest=option.ini, default=None, action="store_true",
                            help=f"{option.help}. Default: on (ini: {option.ini} = true|false)")
            group.addoption(option.flag.replace("--quant-", "--quant-no-"), dest=option.ini,
                            default=None, action="store_false", help=f"turn {option.flag} off")
        else:
            group.addoption(option.flag, dest=option.ini, default=None, metavar=option.metavar,
                            type=_cli_type(option.validate),
                            help=f"{option.help}. Default: {option.default} (ini: {option.ini})")
        parser.addini(option.ini, f"{option.help} (default: {option.default})", default="")
    for key in settings.INI_KEYS:
        parser.addini(key.ini, f"{key.help} (default: {key.default})", default="")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_quantguard import hooks

    pluginmanager.add_hookspecs(hooks)


def _register_metric(name: str, **declaration: Any):
    from pytest_quantguard.metrics import register_metric

    return register_metric(name, **declaration)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{settings.MARKER_SIGNATURE}: quantguard tolerance for this test's "
        "quant_compare calls (overrides the ini and command-line settings)")
    state = QuantGuardState(options=_resolve_options(config), rootpath=config.rootpath,
                            pytest_cache=getattr(config, "cache", None))
    config.stash[STATE_KEY] = state
    config.pluginmanager.register(state, "quantguard-state")
    config.hook.pytest_quantguard_register_metrics.call_historic(
        kwargs={"register": _register_metric})


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is not None and config.pluginmanager.is_registered(state):
        config.pluginmanager.unregister(state)


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(STATE_KEY, None)
    if state is None or state.options["data"] is None:
        return None
    options = state.options
    header = (f"quantguard: data={options['data']} max_drop={options['max_drop']} "
              f"qat_limit={options['qat_limit']} confidence={options['confidence']} "
              f"gate={options['gate']} bootstrap={options['bootstrap']} seed={options['seed']}")
    if options["device"] != "cpu":
        header += f" device={options['device']}"
    if options["max_samples"] is not None:
        header += f" max_samples={options['max_samples']} (ADVISORY: a subset, not a release verdict)"
    return header


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Validate the test's markers before its fixtures run: a bad key errors this test only."""
    tolerance: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers(MARKER))):  # farthest first; closest wins
        try:
            tolerance = settings.merge_tolerance(
                tolerance, settings.validate_marker(mark.args, mark.kwargs))
        except QuantGuardError as error:
            failure = str(error)
            break
    else:
        item.stash[TOLERANCE_KEY] = tolerance
        return
    pytest.fail(failure, pytrace=False)  # outside the except: no chained traceback


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if call.when == "call":  # builtins only: they travel to the xdist controller
        records = item.stash.get(RECORDS_KEY, None)
        if records:
            report.quantguard = list(records)
        violations = item.stash.get(VIOLATIONS_KEY, None)
        if violations:
            report.quantguard_violations = list(violations)
    return report


@pytest.fixture
def quant_model(request: pytest.FixtureRequest):
    """``quant_model(model, output=None) -> runner``: loads anything ``quant_compare`` takes (a
    model file, a torch module, a callable) once, on the run's device; call it on a batch, or
    pass it to ``quant_compare`` as the reference or candidate. ``output`` keeps one output."""
    state = request.config.stash[STATE_KEY]

    def quant_model(model: Any, output: str | int | None = None):
        __tracebackhide__ = True
        from pytest_quantguard.runners import make_runner
        from pytest_quantguard.runners.selection import select_output

        failure = None
        try:
            runner = make_runner(model, base_dir=state.rootpath, role="model",
                                 device=state.options["device"])
            return runner if output is None else select_output(runner, output)
        except QuantGuardError as error:
            failure = f"quantguard: {error}"
        pytest.fail(failure, pytrace=False)  # outside the except: no chained traceback

    return quant_model


@pytest.fixture(scope="session")
def quant_data(pytestconfig: pytest.Config):
    """The ValidationSet loaded from --quant-data / quant_data (fails, never skips, without one)."""
    state = pytestconfig.stash[STATE_KEY]
    if state.options["data"] is None:
        pytest.fail(f"quantguard: {NO_DATA}", pytrace=False)
    try:
        return state.dataset(Path(state.options["data"]))
    except QuantGuardError as error:
        failure = f"quantguard: {error}"
    pytest.fail(failure, pytrace=False)  # outside the except: no chained traceback is shown


@pytest.fixture
def quant_compare(request: pytest.FixtureRequest):
    """``quant_compare(reference, candidate, *, data=None, metric=None, output=None, name=None,
    **keywords) -> Comparison``: fails the test unless the verdict is ``ship``."""
    state = request.config.stash[STATE_KEY]
    item = request.node
    names: list[str | None] = []

    def quant_compare(reference: Any, candidate: Any, *, data: Any = None, metric: str | None = None,
                      output: str | int | None = None, name: str | None = None, **keywords: Any):
        __tracebackhide__ = True
        from pytest_quantguard.comparison import run, suspicious_gain_text

        failure = None
        try:
            _check_name(names, name)
            called = _call_tolerance(keywords)
            if metric is not None:  # the call's metric= replaces a marker's metrics=
                called["metric"] = metric
            marked = settings.merge_tolerance(item.stash.get(TOLERANCE_KEY, {}), called)
            tolerance = settings.merge_tolerance(state.options, marked)
            sources = {**{key: "marker" for key in item.stash.get(TOLERANCE_KEY, {})},
                       **{key: "call" for key in called}}
            violations = _policy_violations(tolerance, sources, state.options, item.nodeid)
            if violations:
                item.stash.setdefault(VIOLATIONS_KEY, []).extend(violations)
                raise QuantGuardError("the project's policy forbids this: " + "; ".join(
                    violation["message"] for violation in violations))
            overrides = [{"key": key, "value": tolerance.get(key), "source": source}
                         for key, source in sorted(sources.items()) if key in TOLERANCE_KEYS]
            if "max_error_increase" in tolerance:
                # its unit is not the project's: only a qat_limit given beside it applies
                tolerance["qat_limit"] = marked.get("qat_limit")
            comparison = run(
                reference, candidate, data=_data(request, state, data),
                metric=tolerance.get("metric"), metrics=tolerance.get("metrics"),
                slice_max_drop=tolerance.get("slice_max_drop"),
                output=output if output is not None else tolerance.get("output"),
                max_drop=tolerance.get("max_drop"), qat_limit=tolerance["qat_limit"],
                max_error_increase=tolerance.get("max_error_increase"),
                relative=tolerance.get("relative"), confidence=tolerance["confidence"],
                gate=tolerance["gate"], resamples=state.options["bootstrap"],
                seed=state.options["seed"], name=name, metric_options=keywords,
                batch_size=state.options["batch_size"], base_dir=state.rootpath,
                cache=state.reference_cache(), device=state.options["device"],
                max_samples=state.options["max_samples"],
                progress=_progress(request.config, item.nodeid if name is None else
                                   f"{item.nodeid}::{name}"),
                comparison_id=item.nodeid if name is None else f"{item.nodeid}::{name}")
        except QuantGuardError as error:
            failure = f"quantguard: {error}"
        if failure is not None:
            pytest.fail(failure, pytrace=False)  # outside the except: no chained traceback
        for each in comparison.all():
            _record(item, each, overrides, state.options["junit"])
        for each in comparison.all():  # after recording: under -W error the figures are kept
            if each.details.get("suspicious_gain"):
                warnings.warn(QuantGuardWarning(suspicious_gain_text(each)), stacklevel=2)
        failing = [each for each in comparison.all() if not each.passed]
        if not failing:
            return comparison
        if all(each.verdict == "inconclusive" for each in failing) \
                and state.options["inconclusive"] == "warn":
            for each in failing:
                warnings.warn(QuantGuardWarning(each.message), stacklevel=2)
            return comparison
        pytest.fail("\n\n".join(each.message for each in failing), pytrace=False)

    return quant_compare


PROGRESS_AFTER_S = 2.0  # a comparison shorter than this shows no progress at all
PROGRESS_EVERY_S = 5.0


def _progress(config: pytest.Config, label: str):
    """Progress lines for long comparisons, through the terminal reporter (never print): on a
    terminal, or with -v; at most one every few seconds, none for short runs or on xdist workers."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput"):
        return None
    if not (config.get_verbosity() > 0 or reporter.isatty):
        return None
    import time

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


def _record(item: pytest.Item, comparison, overrides: list[dict[str, Any]], junit: str) -> None:
    from pytest_quantguard.reports.junit import junit_properties

    record = comparison.to_dict()
    record["overrides"] = overrides  # what this test's marker and call set (reports show them)
    item.stash.setdefault(RECORDS_KEY, []).append(record)
    if junit in ("testcase", "both"):
        item.user_properties.extend(junit_properties(record))  # JUnit reads the item's list


def _policy_violations(tolerance: dict[str, Any], sources: dict[str, str], options: dict[str, Any],
                       nodeid: str) -> list[dict[str, Any]]:
    """Where the effective tolerance asks for more than the project's policy allows. The policy
    binds every layer (command line and ini included), so no test can loosen it."""
    found = []

    def add(key: str, value: Any, limit: Any, rule: str) -> None:
        source = sources.get(key, "project (ini or command line)")
        found.append({"id": nodeid, "key": key, "value": value, "limit": limit,
                      "source": source,
                      "message": f"{key}={value!r} (set by the {source}) {rule}"})

    most = options["policy_max_drop"]
    if most is not None:
        if "max_error_increase" not in tolerance and tolerance.get("max_drop", 0) > most:
            add("max_drop", tolerance["max_drop"], most,
                f"exceeds quant_policy_max_drop = {most:g}")
        for name, limit in (tolerance.get("metrics") or {}).items():
            if limit is not None and limit > most:
                add("metrics", {name: limit}, most, f"exceeds quant_policy_max_drop = {most:g}")
        if (tolerance.get("slice_max_drop") or 0) > most:
            add("slice_max_drop", tolerance["slice_max_drop"], most,
                f"exceeds quant_policy_max_drop = {most:g}")
    most_errors = options["policy_max_error_increase"]
    if most_errors is not None and (tolerance.get("max_error_increase") or 0) > most_errors:
        add("max_error_increase", tolerance["max_error_increase"], most_errors,
            f"exceeds quant_policy_max_error_increase = {most_errors:g}")
    least = options["policy_min_confidence"]
    if least is not None and tolerance["confidence"] < least:
        add("confidence", tolerance["confidence"], least,
            f"is below quant_policy_min_confidence = {least:g}")
    fewest = options["policy_min_bootstrap"]
    if fewest is not None and options["bootstrap"] < fewest:
        add("bootstrap", options["bootstrap"], fewest,
            f"is below quant_policy_min_bootstrap = {fewest}")
    if not options["policy_allow_point_gate"] and tolerance["gate"] == "point":
        add("gate", "point", "upper", "is not allowed: quant_policy_allow_point_gate = false")
    return found


def _check_name(names: list[str | None], name: str | None) -> None:
    if name is not None and not isinstance(name, str):
        raise QuantGuardError(f"name= must be a string, got {name!r}")
    if names and (name is None or None in names):
        raise QuantGuardError("this test calls quant_compare more than once: give every call its "
                              "own name= (e.g. quant_compare(ref, int8, name='int8'))")
    if name is not None and name in names:
        raise QuantGuardError(f"name={name!r} is used twice in this test; names must be unique")
    names.append(name)


def _call_tolerance(keywords: dict[str, Any]) -> dict[str, Any]:
    """Tolerance keys given on the call (highest precedence), validated like the marker's."""
    found = {key: keywords.pop(key) for key in TOLERANCE_KEYS if key in keywords}
    return settings.validate_marker((), found, where="quant_compare")


def _data(request: pytest.FixtureRequest, state: QuantGuardState, data: Any):
    if data is None:
        if state.options["data"] is None:
            raise QuantGuardError(NO_DATA)
        return request.getfixturevalue("quant_data")
    if isinstance(data, (str, Path)):
        path = Path(data)
        return state.dataset(path if path.is_absolute() else state.rootpath / path)
    return data


def _cli_type(validate):
    def parse(text: str):
        try:
            return validate(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = getattr(validate, "__name__", "value")
    return parse


def _resolve_options(config: pytest.Config) -> dict[str, Any]:
    """default < ini < CLI, each value validated; a bad ini value is a usage error naming it."""
    resolved: dict[str, Any] = {}
    for option in settings.OPTIONS:
        value = config.getoption(option.ini)
        if value is not None:
            if option.key in settings.PATH_OPTIONS:
                value = str(config.invocation_params.dir / value)
        else:
            raw = config.getini(option.ini)
            if raw in (None, "", []):
                value = option.default
            else:
                where = f"{option.ini} = {raw!r}" + (f" in {config.inipath}" if config.inipath else "")
                try:
                    value = option.validate(raw.strip() if isinstance(raw, str) else raw)
                except ValueError as error:
                    raise pytest.UsageError(f"quantguard: {where}: {error}") from None
                if option.key in settings.PATH_OPTIONS:
                    base = config.inipath.parent if config.inipath else config.rootpath
                    value = str(base / value)
        resolved[option.key] = value
    for key in settings.INI_KEYS:
        raw = config.getini(key.ini)
        if raw in (None, "", []):
            resolved[key.key] = key.default
            continue
        where = f"{key.ini} = {raw!r}" + (f" in {config.inipath}" if config.inipath else "")
        try:
            resolved[key.key] = key.validate(raw.strip() if isinstance(raw, str) else raw)
        except ValueError as error:
            raise pytest.UsageError(f"quantguard: {where}: {error}") from None
    if resolved["plot"] is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise pytest.UsageError('quantguard: --quant-plot needs matplotlib: pip install '
                                    '"pytest-quantguard[plot]"')
    return resolved
