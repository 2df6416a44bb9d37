"""What every interval builder returns: the two limits, the method that made them, and its figures."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IntervalResult:
    """A two-sided interval of the drop, the method that made it, and what it was made from."""

    low: float
    high: float
    method: str
    details: dict[str, int | float | str] = field(default_factory=dict)
