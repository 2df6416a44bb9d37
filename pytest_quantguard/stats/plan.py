"""How many paired validation samples resolve a margin (docs/verdict.md, "Remedies")."""

from __future__ import annotations

import math
from statistics import NormalDist


def plan(discordance: float, margin: float, *, power: float = 0.8, confidence: float = 0.95,
         drop: float = 0.0) -> int:
    """Total samples so the upper bound of the drop falls under ``margin`` with ``power``.

    ``n = (z_{1-a} + z_{1-b})^2 (d - drop^2) / (margin - drop)^2`` with ``a = (1 - confidence)/2``
    (the gate holds the upper bound of a two-sided interval), rounded up. ``discordance`` is the
    share of samples on which the two models disagree in correctness (0/1 metrics): the per-sample
    difference's variance is then ``discordance - drop^2``. For other metrics, whose per-sample
    variance is known, use ``samples_for_variance``.
    """
    if not (math.isfinite(discordance) and 0 < discordance <= 1):
        raise ValueError(f"discordance must be a share in (0, 1], got {discordance!r}: with no "
                         "disagreement there is nothing to resolve; plan on at least 3/n for a "
                         "pilot of n samples that showed none")
    if abs(drop) > discordance + 1e-9:  # floating-point slack: drop = (b - c)/n <= (b + c)/n
        raise ValueError(f"a drop of {drop!r} needs a discordance of at least {abs(drop)!r} "
                         "(drop = (c - b)/n and discordance = (b + c)/n)")
    # power, confidence, margin and drop < margin are checked there
    return samples_for_variance(max(discordance - drop * drop, 0.0), margin, power=power,
                                confidence=confidence, drop=drop)


def samples_for_variance(variance: float, margin: float, *, power: float = 0.8,
                         confidence: float = 0.95, drop: float = 0.0) -> int:
    """Units needed when each unit's (linearized) drop has ``variance``: any metric family.

    ``n = (z_{1-a} + z_{1-b})^2 variance / (margin - drop)^2``, rounded up. For clustered data
    the units are groups and ``variance`` is the per-group linearized variance.
    """
    if not (math.isfinite(variance) and variance >= 0):
        raise ValueError(f"variance must be a finite number >= 0, got {variance!r}")
    _check_fraction("power", power)
    _check_fraction("confidence", confidence)
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    if not drop < margin:
        raise ValueError(f"drop must be below the margin ({margin!r}), got {drop!r}")
    normal = NormalDist()
    alpha = (1.0 - confidence) / 2.0
    z_sum = normal.inv_cdf(1.0 - alpha) + normal.inv_cdf(power)
    return max(1, math.ceil(z_sum * z_sum * variance / (margin - drop) ** 2 - 1e-9))


def _check_fraction(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def smallest_margin(variance: float, n: int, *, power: float = 0.8, confidence: float = 0.95,
                    drop: float = 0.0) -> float:
    """``samples_for_variance`` inverted: the smallest margin ``n`` units resolve with ``power``
    when each unit's drop has ``variance`` and the true drop is ``drop``:
    ``drop + (z_{1-a} + z_{1-b}) sqrt(variance / n)``. For a 0/1 metric pass the discordance
    less ``drop^2`` (as ``plan`` does)."""
    if not (math.isfinite(variance) and variance >= 0):
        raise ValueError(f"variance must be a finite number >= 0, got {variance!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    _check_fraction("power", power)
    _check_fraction("confidence", confidence)
    normal = NormalDist()
    z_sum = normal.inv_cdf(1.0 - (1.0 - confidence) / 2.0) + normal.inv_cdf(power)
    return drop + z_sum * math.sqrt(variance / n)
