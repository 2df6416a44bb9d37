"""The pytest11 entry point: options, ini keys, the marker, fixtures and hooks. Glue only.

Imported in every pytest run where the package is installed, so nothing heavy is imported here:
backends load inside the runners that need them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_quantguard import policy, settings
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.fixture import (
    NO_DATA,
    RECORDS_KEY,
    TOLERANCE_KEY,
    VIOLATIONS_KEY,
    QuantCompare,
    QuantModel,
    fail_on_error,
)

MARKER = "quant_tolerance"


@dataclass(eq=False)  # identity semantics: it is registered as a plugin
class QuantGuardState:
    """The plugin's one state object, kept in ``config.stash``."""

    options: settings.Options
    rootpath: Path
    controller: bool  # not an xdist worker: only the controller prints and writes reports
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
            if self.options.cache and self.pytest_cache is not None:
                directory = Path(self.pytest_cache.mkdir("quantguard"))
            self._reference_cache = ReferenceCache(directory)
        return self._reference_cache

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Gather comparisons from test reports: locally, or on the xdist controller. An error in
        teardown marks the test's comparisons failed (the call's report came first)."""
        if report.when != "call":
            if report.when == "teardown" and report.failed:
                self.records[:] = [{**record, "outcome": "failed"} if _made_by(record, report.nodeid)
                                else record for record in self.records]
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
        if not self.controller:
            return
        from pytest_quantguard.reports.session import finish

        self.session_notes = finish(session, self)

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int,
                                config: pytest.Config) -> None:
        if not self.controller:
            return  # only the controller prints
        if self.records:
            from pytest_quantguard.reports.terminal import summary_lines

            terminalreporter.write_sep("=", f"quantguard: {len(self.records)} comparison(s)")
            for line, markup in summary_lines(self.records):
                terminalreporter.write_line(line, **markup)
            if config.get_verbosity() > 0:  # the batch each comparison ran with (docs/models.md)
                from pytest_quantguard.batching import batch_text

                for record in sorted(self.records, key=lambda r: r["id"]):
                    terminalreporter.write_line(f"quantguard: {record['id']}: "
                                                f"{batch_text(record.get('runtime') or {})}")
        for line, markup in self.session_notes:
            terminalreporter.write_line(line, **markup)

    def dataset(self, path: Path, given_by: str | None = None):
        """Load (once per process) and return the validation set in ``path``; ``given_by`` names
        where the path came from, for the not-found message."""
        from pytest_quantguard.data import ValidationSet

        path = path.resolve()
        if path not in self.datasets:
            self.datasets[path] = ValidationSet.from_folder(path, given_by=given_by)
        return self.datasets[path]


STATE_KEY = pytest.StashKey[QuantGuardState]()


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
                            controller=not hasattr(config, "workerinput"),
                            pytest_cache=getattr(config, "cache", None))
    config.stash[STATE_KEY] = state
    config.pluginmanager.register(state, "quantguard-state")
    if state.controller:
        for text in policy.run_limit_warnings(state.options):
            try:
                config.issue_config_time_warning(QuantGuardWarning(text), stacklevel=2)
            except QuantGuardWarning:  # -W error: a usage error, never an INTERNALERROR
                raise pytest.UsageError(f"quantguard: {text}") from None
    config.hook.pytest_quantguard_register_metrics.call_historic(
        kwargs={"register": _register_metric})


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is not None and config.pluginmanager.is_registered(state):
        config.pluginmanager.unregister(state)


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(STATE_KEY, None)
    if state is None or state.options.data is None:
        return None
    options = state.options
    header = (f"quantguard: data={options.data} max_drop={options.max_drop} "
              f"qat_limit={options.qat_limit} confidence={options.confidence} "
              f"gate={options.gate} bootstrap={options.bootstrap} seed={options.seed}")
    if options.device != "cpu":
        header += f" device={options.device}"
    if options.max_samples is not None:
        header += f" max_samples={options.max_samples} (ADVISORY: a subset, not a release verdict)"
    return header


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Validate the test's markers before its fixtures run: a bad key errors this test only."""
    __tracebackhide__ = True
    item.stash[TOLERANCE_KEY] = fail_on_error(_marker_tolerance, item, prefix="")


def _marker_tolerance(item: pytest.Item) -> dict[str, Any]:
    tolerance: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers(MARKER))):  # farthest first; closest wins
        tolerance = settings.merge_tolerance(
            tolerance, settings.validate_marker(mark.args, mark.kwargs))
    return tolerance


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
def quant_model(request: pytest.FixtureRequest) -> QuantModel:
    """``quant_model(model, output=None) -> runner``: loads anything ``quant_compare`` takes (a
    model file, a torch module, a callable) once, on the run's device; call it on a batch, or
    pass it to ``quant_compare`` as the reference or candidate. ``output`` keeps one output."""
    return QuantModel(request.config.stash[STATE_KEY])


@pytest.fixture(scope="session")
def quant_data(pytestconfig: pytest.Config):
    """The ValidationSet loaded from --quant-data / quant_data (fails, never skips, without one)."""
    state = pytestconfig.stash[STATE_KEY]
    if state.options.data is None:
        pytest.fail(f"quantguard: {NO_DATA}", pytrace=False)
    return fail_on_error(state.dataset, Path(state.options.data))


@pytest.fixture
def quant_compare(request: pytest.FixtureRequest) -> QuantCompare:
    """``quant_compare(reference, candidate, *, data=None, metric=None, output=None, name=None,
    **keywords) -> Comparison``: fails the test unless the verdict is ``ship``."""
    return QuantCompare(request.config.stash[STATE_KEY], request)


@pytest.fixture
def quant_ladder(request: pytest.FixtureRequest):
    """``quant_ladder(model, *, calibration, data=None, schemes=None, name=None, **tolerance)``:
    the compression ladder (docs/ladder.md, "From pytest"); fails the test unless a rung ships."""
    from pytest_quantguard.ladder_fixture import QuantLadder

    return QuantLadder(request.config.stash[STATE_KEY], request)


def _cli_type(validate):
    def parse(text: str):
        try:
            return validate(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = getattr(validate, "__name__", "value")
    return parse


def _ini_keys(path: Path | None) -> list[str]:
    """The keys of the ini file's pytest section (pytest lists them only in a deprecated API)."""
    if path is None or not path.is_file():
        return []
    if path.suffix == ".toml":
        import tomllib

        with open(path, "rb") as file:
            tool = tomllib.load(file).get("tool", {}).get("pytest", {})
        return [*tool, *tool.get("ini_options", {})]
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    return [key for section in ("pytest", "tool:pytest") if parser.has_section(section)
            for key in parser[section]]


def _resolve_options(config: pytest.Config) -> settings.Options:
    """default < ini < CLI (settings.resolve_options); a bad value is a usage error naming it."""
    base = config.inipath.parent if config.inipath else config.rootpath
    given = [*_ini_keys(config.inipath), *(item.split("=", 1)[0].strip()
                                           for item in config.known_args_namespace.override_ini or ())]
    typos = settings.ini_typos(given)
    if typos:  # pytest's own "unknown config option" names no fix
        raise pytest.UsageError(f"quantguard: {config.inipath or 'the ini file'}: "
                                + "; ".join(typos))
    try:
        return settings.resolve_options(config.getoption, config.getini,
                                        cli_dir=config.invocation_params.dir, ini_dir=base,
                                        ini_file=config.inipath)
    except QuantGuardError as error:
        raise pytest.UsageError(str(error)) from None


def _made_by(record: dict, nodeid: str) -> bool:
    """Whether a comparison record came from the test ``nodeid`` (named ones end ``::name``)."""
    return record["id"] == nodeid or record["id"].startswith(nodeid + "::")
