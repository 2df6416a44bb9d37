"""The one table of settings, the typed settings a comparison is asked for, and the one resolver.

Every setting is one row of ``SETTINGS``: its key, default, validator, help, and the layers that may
set it (the ini file, the command line, the ``quant_tolerance`` marker, a ``quant_compare`` /
``compare()`` keyword). Precedence, low to high: default < ini < CLI < marker < call keyword. The
marker signature, the tolerance key list, the JSON schema's ``thresholds`` and ``docs/options.md``
are generated from the table (docs/contributing.md, "Add a tolerance key").

Values are validated once, where they enter (scipy's ``_bootstrap_iv`` pattern): the resolvers
below return ``Tolerance``, ``Execution`` and ``Options`` objects the pipe trusts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.settings_table import (
    BY_KEY,
    CALL,
    CLI,
    EVERYWHERE,
    INI,
    INI_KEYS,
    LIMIT_KEYS,
    MARKER,
    MARKER_SIGNATURE,
    METRIC_KEYS,
    NUMBER,
    OPTIONAL_NUMBER,
    OPTIONS,
    PATH_OPTIONS,
    PER_TEST,
    RUN_WIDE,
    SETTINGS,
    THRESHOLD_KEYS,
    TOLERANCE_KEYS,
    UNIT,
    Setting,
    default,
)
from pytest_quantguard.validators import (
    DIAGNOSE,
    GATES,
    choice,
    flag,
    gate_name,
    metric_name,
    metric_table,
    name_or_index,
    open_fraction,
    optional_bool,
    positive_float,
    positive_int,
    seed_int,
    unknown_keys,
)

__all__ = ["BY_KEY", "CALL", "CLI", "DIAGNOSE", "EVERYWHERE", "GATES", "INI", "INI_KEYS",
           "LIMIT_KEYS", "MARKER", "MARKER_SIGNATURE", "METRIC_KEYS", "NUMBER", "OPTIONAL_NUMBER",
           "OPTIONS", "PATH_OPTIONS", "PER_TEST", "RUN_WIDE", "SETTINGS", "THRESHOLD_KEYS",
           "TOLERANCE_KEYS", "UNIT", "Execution", "Options", "Setting", "Tolerance",
           "check_layer", "choice", "default", "flag", "gate_name", "make_execution",
           "merge_tolerance", "metric_name", "metric_table", "name_or_index", "open_fraction",
           "optional_bool", "positive_float", "positive_int", "resolve_options",
           "resolve_tolerance", "seed_int", "validate_marker"]

@dataclass(frozen=True)
class Tolerance:
    """What one comparison is asked to decide: the metric(s), the limit and how it is held.

    With ``max_error_increase`` the limit is the error rate's relative growth and ``max_drop`` is
    None; ``sources`` says which keys a marker or a call set (for the policy and the reports)."""

    metric: str | None = None
    metrics: Mapping[str, float | None] | None = None
    max_drop: float | None = default("max_drop")
    max_error_increase: float | None = None
    qat_limit: float = default("qat_limit")
    relative: bool | None = None
    confidence: float = default("confidence")
    gate: str = default("gate")
    slice_max_drop: float | None = None
    output: str | int | None = None
    min_reference: float | Mapping[str, float] | None = None
    batch_size: int | str = default("batch_size")  # used when a marker or call sets it
    # the layer each key came from: "ini", "cli", "marker" or "call" (absent: the default)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def limit(self) -> float:
        """The ship limit in the margin's unit."""
        return self.max_error_increase if self.max_error_increase is not None else self.max_drop

    def limits(self) -> dict[str | None, float]:
        """Each metric to gate (None: the task's default) -> its ship limit."""
        if self.metrics is None:
            return {self.metric: self.limit}
        return {key: self.limit if value is None else value for key, value in self.metrics.items()}

    def overrides(self) -> list[dict[str, Any]]:
        """What the test's marker and call set, for the reports."""
        return [{"key": key, "value": getattr(self, key), "source": source}
                for key, source in sorted(self.sources.items())
                if BY_KEY[key].overrides and source in PER_TEST]

    def source(self, key: str, where: str = "") -> str:
        """Where ``key``'s value came from, as the user wrote it: "--quant-max-drop (command
        line)", "quant_max_drop (ini file)", "@quant_tolerance(max_drop=...)", "max_drop= (the call's
        keyword)" (``where``: the call's name, if known), or "the default"."""
        return describe_source(key, self.sources.get(key), where)


def describe_source(key: str, layer: str | None, where: str = "") -> str:
    """A setting's origin as the user wrote it (errors name the option and its layer)."""
    setting = BY_KEY[key]
    return {INI: f"{setting.ini} (ini file)", CLI: f"{setting.flag} (command line)",
            MARKER: f"@quant_tolerance({key}=...)",
            CALL: f"{where}({key}=...)" if where else f"the call's {key}"}.get(
                layer or "", f"{key} (the default)")


@dataclass(frozen=True)
class Execution:
    """How a comparison runs: resampling, batching, device, subset, paths, cache, progress and
    the per-layer diagnosis of a failing comparison."""

    resamples: int = default("bootstrap")
    # resamples set by the user (not the default): a metric with its own default (detection)
    # then uses it as given (docs/metrics.md, "Detection")
    resamples_given: bool = False
    seed: int = default("seed")
    batch_size: int | str = default("batch_size")  # "auto": sized by ``memory`` (batching.py)
    memory: int = default("memory")  # bytes
    device: str = default("device")
    max_samples: int | None = default("max_samples")
    base_dir: Path | None = None  # relative model and data paths resolve against it
    cache: Any = None  # a cache.ReferenceCache; None: outputs are reused within the call only
    progress: Callable[[int, int], None] | None = None
    # when a failing comparison gets a per-layer diagnosis (docs/diagnosis.md, "When it runs")
    diagnose: str = default("diagnose")


EXECUTION_KEYS = {"resamples": "bootstrap", "seed": "seed", "batch_size": "batch_size",
                  "memory": "memory", "device": "device", "max_samples": "max_samples",
                  "diagnose": "diagnose"}


def make_execution(**given: Any) -> Execution:
    """An ``Execution`` from keyword values, each checked by its setting's validator (None: the
    default); errors name the keyword as given."""
    checked = {}
    for name, value in given.items():
        if name in EXECUTION_KEYS and value is not None:
            value = _checked(name, BY_KEY[EXECUTION_KEYS[name]].validate, value)
        checked[name] = value
    return Execution(**{key: value for key, value in checked.items()
                        if value is not None or key not in EXECUTION_KEYS},
                     resamples_given=checked.get("resamples") is not None)


def check_layer(given: Mapping[str, Any], where: str | None = None, *,
                args: tuple[Any, ...] = ()) -> dict[str, Any]:
    """One marker's or call's tolerance keywords, validated; None means "inherit" and is dropped.
    ``where`` prefixes errors ("@quant_tolerance(max_drop=...): ..."); without it they read
    "max_drop: ..." (``compare()``)."""
    label = where or "compare()"
    allowed = ", ".join(TOLERANCE_KEYS)
    if args:
        raise QuantGuardError(f"{label} takes keyword arguments only (allowed keys: {allowed}); "
                              f"got positional {list(args)}")
    unknown = sorted(set(given) - set(TOLERANCE_KEYS))
    if unknown:
        raise QuantGuardError(f"{label}: {unknown_keys(unknown, TOLERANCE_KEYS)}")
    checked = {}
    for key, value in given.items():
        if value is not None:
            checked[key] = _checked(f"{where}({key}=...)" if where else key,
                                    BY_KEY[key].validate, value)
    if all(key in checked for key in LIMIT_KEYS):
        raise QuantGuardError(
            f"{where}: give max_drop or max_error_increase, not both (two ways to state the same "
            "limit)" if where else f"give max_drop={checked['max_drop']!r} or max_error_increase="
            f"{checked['max_error_increase']!r}, not both: they are two ways to state the same limit")
    if all(key in checked for key in METRIC_KEYS):
        raise QuantGuardError(
            f"{where}: give metric= (one metric) or metrics= (several), not both" if where else
            f"give metric={checked['metric']!r} or metrics={{...}}, not both")
    return checked


def validate_marker(args: tuple[Any, ...], kwargs: Mapping[str, Any], *,
                    where: str = "@quant_tolerance") -> dict[str, Any]:
    """Check a ``quant_tolerance`` marker's arguments; QuantGuardError names the allowed keys."""
    return check_layer(kwargs, where, args=args)


def merge_tolerance(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge settings layers, farthest first: later layers win key by key, None means "inherit",
    and a layer that states a limit (``max_drop`` or ``max_error_increase``) replaces the other;
    one that states ``metric`` or ``metrics`` likewise."""
    merged: dict[str, Any] = {}
    for layer in layers:
        given = {key: value for key, value in layer.items() if value is not None}
        for slot in (LIMIT_KEYS, METRIC_KEYS):
            if any(key in given for key in slot):
                for key in slot:
                    merged.pop(key, None)
        merged.update(given)
    return merged


Layer = tuple[str, Mapping[str, Any]]  # ("marker" | "call", checked values)


def resolve_tolerance(run: Mapping[str, Any] | None = None, *per_test: Layer,
                      run_sources: Mapping[str, str] | None = None) -> Tolerance:
    """The one resolver: the run-wide values (default < ini < CLI, already checked) under the
    per-test layers, given as ``("marker" | "call", checked values)`` farthest first;
    ``run_sources`` says which run-wide keys the ini file or the command line set
    (``Options.origins``).

    The special case is explicit here: with ``max_error_increase`` the try-qat band is in the
    error rate's unit, so only a ``qat_limit`` given beside it (marker or call) applies, else 3x the
    limit (docs/verdict.md, "Error-rate increase")."""
    run_wide = {key: value for key, value in (run or {}).items() if key in TOLERANCE_KEYS}
    merged = merge_tolerance(run_wide, *(values for _, values in per_test))
    nearest = merge_tolerance(*(values for _, values in per_test))
    sources = {key: layer for key, layer in (run_sources or {}).items() if key in run_wide}
    sources.update({key: layer for layer, values in per_test for key in values})
    if merged.get("max_error_increase") is not None:
        increase = merged["max_error_increase"]
        if merged.get("relative"):
            raise QuantGuardError("relative=True and max_error_increase= are two different "
                                  "margins; give one")
        if merged.get("metrics") is not None:
            raise QuantGuardError("max_error_increase= applies to one metric; with metrics= give "
                                  "each metric's max_drop instead")
        merged["max_drop"] = None
        merged["relative"] = False
        merged["qat_limit"] = nearest.get("qat_limit", round(3 * increase, 12))
    return Tolerance(**merged, sources=sources)


@dataclass(frozen=True)
class Options:
    """The run-wide settings (default < ini < CLI), every value checked: ``options.max_drop``."""

    values: Mapping[str, Any]
    origins: Mapping[str, str] = field(default_factory=dict)  # key -> "ini" | "cli" (else default)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["values"][key]
        except KeyError:
            raise AttributeError(key) from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def tolerance(self) -> dict[str, Any]:
        """The run-wide layer of every comparison's tolerance."""
        return {key: value for key, value in self.values.items() if key in TOLERANCE_KEYS}

    def execution(self, **where: Any) -> Execution:
        """This run's ``Execution`` (``base_dir``, ``cache`` and ``progress`` are the caller's)."""
        return Execution(**{name: self.values[key] for name, key in EXECUTION_KEYS.items()},
                         resamples_given="bootstrap" in self.origins, **where)


def resolve_options(read_cli: Callable[[str], Any], read_ini: Callable[[str], Any], *,
                    cli_dir: Path, ini_dir: Path, ini_file: Path | None = None) -> Options:
    """default < ini < CLI, each value checked; relative paths resolve against the invocation dir
    (command line) or the ini file's folder. A bad ini value is an error naming it and the file."""
    resolved: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for setting in SETTINGS:
        if INI not in setting.layers:
            continue
        value = read_cli(setting.ini) if CLI in setting.layers else None
        base, origins[setting.key] = cli_dir, CLI
        if value is None:
            raw = read_ini(setting.ini)
            if raw in (None, "", []):
                resolved[setting.key] = setting.default
                del origins[setting.key]
                continue
            where = f"{setting.ini} = {raw!r}" + (f" in {ini_file}" if ini_file else "")
            try:
                value = setting.validate(raw.strip() if isinstance(raw, str) else raw)
            except ValueError as error:
                raise QuantGuardError(f"quantguard: {where}: {error}") from None
            base, origins[setting.key] = ini_dir, INI
        resolved[setting.key] = str(base / value) if setting.key in PATH_OPTIONS else value
    if resolved["plot"] is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise QuantGuardError('quantguard: --quant-plot needs matplotlib: pip install '
                                  '"pytest-quantguard[plot]"')
    return Options(resolved, origins)


def ini_typos(ini_keys: Iterable[str]) -> list[str]:
    """``quant_*`` keys of the ini file that are not quantguard's, each with the closest valid key
    and the list (pytest's own "unknown config option" names no fix)."""
    ours = [setting.ini for setting in SETTINGS if INI in setting.layers]
    return [unknown_keys([key], ours).replace("unknown key(s)", "unknown ini key", 1)
            for key in sorted(set(ini_keys)) if key.startswith("quant_") and key not in ours]


def _checked(key: str, validate: Callable[[Any], Any], value: Any) -> Any:
    try:
        return validate(value)
    except ValueError as error:
        raise QuantGuardError(f"{key}: {error}") from None


def options_table() -> str:
    """docs/options.md's tables, generated from SETTINGS (a test keeps the file in sync)."""
    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|")

    lines = ["# Options, ini keys and marker keys", "",
             "Generated from `pytest_quantguard/settings.py` (`python -m pytest_quantguard.settings "
             "> docs/options.md`); a test keeps it in sync. Precedence, low to high: default < ini "
             "< command line < `quant_tolerance` marker < `quant_compare` / `compare()` keyword.",
             ""]
    groups = (("Run-wide: command line and ini file", lambda s: CLI in s.layers),
              ("Project policy: ini file only", lambda s: s.layers == (INI,)),
              ("Per test: marker and call keyword only", lambda s: INI not in s.layers))
    for title, chosen in groups:
        lines += [f"## {title}", "", "| key | command line | ini | marker / call | default | "
                  "meaning |", "|---|---|---|---|---|---|"]
        for setting in filter(chosen, SETTINGS):
            lines.append("| " + " | ".join((
                f"`{setting.key}`",
                f"`{setting.flag}`" if CLI in setting.layers else "",
                f"`{setting.ini}`" if INI in setting.layers else "",
                "yes" if MARKER in setting.layers else "",
                f"`{setting.default!r}`", cell(setting.help))) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(options_table(), end="")
