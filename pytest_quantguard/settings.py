"""The one table of settings: every option, its ini twin, its marker key and how it is validated.

Precedence, low to high: default < ini < CLI < marker < call keyword. Validators raise ValueError
with a message that reads after the setting's name ("--quant-max-drop: must be > 0, got -1").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_quantguard.errors import QuantGuardError


def positive_float(value: Any) -> float:
    number = _float(value)
    if not number > 0:
        raise ValueError(f"must be a number > 0, got {value!r}")
    return number


def open_fraction(value: Any) -> float:
    number = _float(value)
    if not 0 < number < 1:
        raise ValueError(f"must be a number strictly between 0 and 1, got {value!r}")
    return number


def positive_int(value: Any) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError(f"must be a whole number >= 1, got {value!r}")
    return number


def seed_int(value: Any) -> int:
    number = _int(value)
    if number < 0:
        raise ValueError(f"must be a whole number >= 0, got {value!r}")
    return number


def choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    check.__name__ = f"one of {'|'.join(allowed)}"
    return check


GATES = ("upper", "point")  # what the limit is held against: the upper bound, or the point estimate
gate_name = choice(*GATES)


def optional_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"must be True, False or None, got {value!r}")


def flag(value: Any) -> bool:
    """An on/off setting: a bool, or an ini word (true/false, on/off, yes/no, 1/0)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("true", "on", "yes", "1"):
        return True
    if word in ("false", "off", "no", "0"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def name_or_index(value: Any) -> str | int | None:
    if value is None or isinstance(value, str) or (isinstance(value, int)
                                                   and not isinstance(value, bool) and value >= 0):
        return value
    raise ValueError(f"must be an output name (str) or index (int >= 0), got {value!r}")


def metric_name(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"must be a metric name (str), got {value!r}")


def metric_table(value: Any) -> dict[str, float | None] | None:
    """``metrics=``: metric name -> its max_drop (None: the max_drop in force)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"must be a non-empty dict of metric name -> max_drop, e.g. "
                         f"{{'accuracy': 0.01, 'macro_f1': 0.02}}; got {value!r}")
    table = {}
    for key, limit in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric names must be strings, got {key!r}")
        try:
            table[key] = None if limit is None else positive_float(limit)
        except ValueError as error:
            raise ValueError(f"{key!r}: {error}") from None
    return table


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {value!r}")
    return number


def _int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"must be a whole number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a whole number, got {value!r}") from None


@dataclass(frozen=True)
class Option:
    """A run-wide setting: ``--quant-<flag>`` on the command line, ``quant_<key>`` in the ini file."""

    key: str
    default: Any
    validate: Callable[[Any], Any]
    help: str
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--quant-" + self.key.replace("_", "-")

    @property
    def ini(self) -> str:
        return "quant_" + self.key


OPTIONS: tuple[Option, ...] = (
    Option("data", None, str, "validation set folder (.npz shards, .npy arrays, CSV tables or an "
           "image folder); a command-line path resolves against the invocation dir, the ini path "
           "against the ini file", "DIR"),
    Option("max_drop", 0.01, positive_float, "ship limit: the largest acceptable drop", "X"),
    Option("qat_limit", 0.03, positive_float, "try-qat / stay-fp16 boundary", "X"),
    Option("confidence", 0.95, open_fraction, "two-sided interval level", "C"),
    Option("bootstrap", 10000, positive_int, "bootstrap resamples", "N"),
    Option("seed", 0, seed_int, "resampling seed", "S"),
    Option("gate", "upper", gate_name, "what the limit is held against: the "
           "interval's upper bound, or the point estimate", "{" + ",".join(GATES) + "}"),
    Option("inconclusive", "fail", choice("fail", "warn"), "what an inconclusive verdict does: fail "
           "the test, or pass with a QuantGuardWarning", "{fail,warn}"),
    Option("batch_size", 1024, positive_int, "inference batch size (never larger than the set; a "
           "model's fixed batch dimension wins)", "N"),
    Option("max_samples", None, positive_int, "run on a stratified, seeded subset of at most N "
           "samples, for fast local iteration; every report marks such a run advisory", "N"),
    Option("device", "cpu", choice("cpu", "cuda"), "where models run: onnxruntime's CPU or CUDA "
           "execution provider, torch's cpu or cuda device", "{cpu,cuda}"),
    Option("cache", True, flag, "keep the reference model's outputs between runs, under pytest's "
           "cache directory (--quant-no-cache: off; a reference is still reused within a run)"),
    Option("report", None, str, "write the JSON report (every comparison, the environment, the "
           "settings and the policy) to PATH", "PATH"),
    Option("markdown", None, str, "write the Markdown summary to PATH (it is also appended to "
           "$GITHUB_STEP_SUMMARY when that variable is set)", "PATH"),
    Option("plot", None, str, "write a forest plot (PNG) of every comparison's drop and interval "
           "to PATH (needs the plot extra)", "PATH"),
)
OPTIONS_BY_KEY = {option.key: option for option in OPTIONS}
PATH_OPTIONS = ("data", "report", "markdown", "plot")  # relative paths: see _resolve_options


def optional_fraction(value: Any) -> float | None:
    return None if value in (None, "") else open_fraction(value)


def optional_positive(value: Any) -> float | None:
    return None if value in (None, "") else positive_float(value)


def count(value: Any) -> int:
    number = _int(value)
    if number < 0:
        raise ValueError(f"must be a whole number >= 0, got {value!r}")
    return number


@dataclass(frozen=True)
class IniKey:
    """A project-level setting with no command-line twin (the policy lives in the project's
    config, where review sees it)."""

    key: str
    default: Any
    validate: Callable[[Any], Any]
    help: str

    @property
    def ini(self) -> str:
        return "quant_" + self.key


INI_KEYS: tuple[IniKey, ...] = (
    IniKey("junit", "both", choice("testcase", "suite", "both", "off"), "which JUnit properties "
           "quantguard writes: per testcase, per suite, both, or none"),
    IniKey("policy_max_drop", None, optional_positive, "the largest max_drop (and metrics= limit, "
           "slice_max_drop) any marker, call or option may set; a test asking for more fails"),
    IniKey("policy_max_error_increase", None, optional_positive, "the largest max_error_increase "
           "any marker, call or option may set"),
    IniKey("policy_min_confidence", None, optional_fraction, "the lowest confidence any marker, "
           "call or option may set"),
    IniKey("policy_allow_point_gate", True, flag, "whether gate='point' (the point estimate "
           "instead of the upper bound) is allowed"),
    IniKey("policy_min_bootstrap", None, lambda value: None if value in (None, "") else
           positive_int(value), "the fewest bootstrap resamples (--quant-bootstrap) a run may use"),
    IniKey("require_comparisons", 0, count, "fail the session when fewer comparisons ran (a -k "
           "typo or a skipped gate must not turn the run green)"),
)

# The marker's allowed keys and their validators (the one table; later issues add keys here).
MARKER_KEYS: dict[str, Callable[[Any], Any]] = {
    "max_drop": positive_float,
    "qat_limit": positive_float,
    "metric": metric_name,
    "relative": optional_bool,
    "confidence": lambda value: None if value is None else open_fraction(value),
    "gate": lambda value: None if value is None else gate_name(value),
    "output": name_or_index,
    # 0/1 metrics: the candidate's error rate may grow by at most this fraction of the reference's
    "max_error_increase": lambda value: None if value is None else positive_float(value),
    # several metrics on one run of each model: {name: max_drop or None}
    "metrics": metric_table,
    # every class and manifest slice must also ship under this limit (else they are reported only)
    "slice_max_drop": lambda value: None if value is None else positive_float(value),
}
MARKER_SIGNATURE = ("quant_tolerance(max_drop=0.01, qat_limit=0.03, metric='accuracy', "
                    "relative=None, confidence=None, gate=None, output=None, "
                    "max_error_increase=None, metrics=None, slice_max_drop=None)")
# Two ways to state the one ship limit: a nearer layer's limit replaces a farther layer's.
LIMIT_KEYS = ("max_drop", "max_error_increase")
# Two ways to say what is measured: one metric, or several with their limits.
METRIC_KEYS = ("metric", "metrics")


def merge_tolerance(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge settings layers, farthest first: later layers win key by key, None means "inherit",
    and a layer that states a limit (``max_drop`` or ``max_error_increase``) replaces the other."""
    merged: dict[str, Any] = {}
    for layer in layers:
        given = {key: value for key, value in layer.items() if value is not None}
        for slot in (LIMIT_KEYS, METRIC_KEYS):
            if any(key in given for key in slot):
                for key in slot:
                    merged.pop(key, None)
        merged.update(given)
    return merged


def validate_marker(args: tuple[Any, ...], kwargs: Mapping[str, Any], *,
                    where: str = "@quant_tolerance") -> dict[str, Any]:
    """Check a ``quant_tolerance`` marker's arguments; QuantGuardError names the allowed keys."""
    allowed = ", ".join(MARKER_KEYS)
    if args:
        raise QuantGuardError(f"{where} takes keyword arguments only (allowed keys: "
                              f"{allowed}); got positional {list(args)}")
    unknown = sorted(set(kwargs) - set(MARKER_KEYS))
    if unknown:
        raise QuantGuardError(f"{where}: unknown key(s) {', '.join(unknown)}; the allowed "
                              f"keys are {allowed}")
    checked = {}
    for key, value in kwargs.items():
        try:
            checked[key] = MARKER_KEYS[key](value)
        except ValueError as error:
            raise QuantGuardError(f"{where}({key}=...): {error}") from None
    if all(checked.get(key) is not None for key in LIMIT_KEYS):
        raise QuantGuardError(f"{where}: give max_drop or max_error_increase, not both (two ways to "
                              "state the same limit)")
    if all(checked.get(key) is not None for key in METRIC_KEYS):
        raise QuantGuardError(f"{where}: give metric= (one metric) or metrics= (several), not both")
    return checked
