"""Validators for settings values: each returns the normalised value or raises ValueError with a
message that reads after the setting's name ("--quant-max-drop: must be a number > 0, got -1")."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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
