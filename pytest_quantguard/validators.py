"""Validators for settings values: each returns the normalised value or raises ValueError with a
message that reads after the setting's name ("--quant-max-drop: must be a number > 0, got -1")."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any


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
# when a comparison gets a per-layer diagnosis (docs/diagnosis.md, "When it runs")
DIAGNOSE = ("on-failure", "always", "never")


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


def count(value: Any) -> int:
    number = _int(value)
    if number < 0:
        raise ValueError(f"must be a whole number >= 0, got {value!r}")
    return number


def did_you_mean(given: str, allowed: Iterable[str]) -> str:
    """"did you mean 'max_drop'? " for the closest of ``allowed`` to ``given`` (difflib), else ""."""
    close = difflib.get_close_matches(given, list(allowed), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def unknown_keys(unknown: Iterable[str], allowed: Iterable[str]) -> str:
    """"unknown key(s) max_dorp (did you mean 'max_drop'?); the allowed keys are ..." """
    allowed = list(allowed)
    named = ", ".join(f"{key} ({did_you_mean(key, allowed).strip()})" if did_you_mean(key, allowed)
                      else key for key in unknown)
    return f"unknown key(s) {named}; the allowed keys are {', '.join(allowed)}"


def reference_floor(value: Any) -> float | dict[str, float] | None:
    """``min_reference``: one score (the gated metric's), or a table per metric: a dict, or the ini
    form ``"accuracy:0.90, rmse:55"``. The score is in the metric's own units and direction."""
    if value is None:
        return None
    if isinstance(value, str) and ":" in value:
        pairs = [item.split(":", 1) for item in value.replace("\n", ",").split(",") if item.strip()]
        value = {name.strip(): score.strip() for name, score in pairs}
    if isinstance(value, Mapping):
        if not value:
            raise ValueError("must name at least one metric, e.g. {'accuracy': 0.9} or "
                             "'accuracy:0.90, rmse:55'")
        table = {}
        for name, score in value.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"metric names must be strings, got {name!r}")
            try:
                table[name] = _float(score)
            except ValueError as error:
                raise ValueError(f"{name!r}: {error}") from None
        return table
    try:
        return _float(value)
    except ValueError:
        raise ValueError(f"must be the reference's least acceptable score (a number) or a table per "
                         f"metric ({{'accuracy': 0.9}}, or 'accuracy:0.90, rmse:55'), got {value!r}"
                         ) from None


AUTO = "auto"
# Units of a memory size: binary (KiB, MiB, GiB, TiB) and decimal (KB, MB, GB, TB) multiples.
MEMORY_UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
                "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


def batch_size(value: Any) -> int | str:
    """``--quant-batch-size``: ``auto`` (sized by the memory budget) or a whole number >= 1."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        return positive_int(value)
    except ValueError:
        raise ValueError(f"must be 'auto' or a whole number >= 1, got {value!r}") from None


def memory_size(value: Any) -> int:
    """A memory size in bytes: a whole number of bytes, or a number with a unit ('512MiB', '1GiB',
    '1.5 GB'; KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of 1000)."""
    text = str(value).strip().lower().replace(" ", "").replace("_", "")
    number, unit = text, "b"
    for name in sorted(MEMORY_UNITS, key=len, reverse=True):
        if text.endswith(name) and text != name:
            number, unit = text[:-len(name)], name
            break
    try:
        size = _float(number) * MEMORY_UNITS[unit]
    except ValueError:
        size = math.nan
    if isinstance(value, bool) or not size >= 1:
        raise ValueError(f"must be a memory size such as 512MiB, 1GiB, 1.5GB or a number of bytes "
                         f"(>= 1), got {value!r}")
    return int(size)
