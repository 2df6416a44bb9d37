"""The ladder's guarantee: gatekeeping with propagated alpha (docs/ladder.md, "The guarantee").

The candidates are declared level by level in order of compression (e.g. FP16, then the INT8
schemes, then INT4). Level 1's schemes share the one-sided level alpha evenly (each alpha / m1);
a scheme that ships passes its own share on; a level receives the sum of the shares of the schemes
that shipped at the level before and splits it evenly among its own schemes; a level that receives
nothing is not tested. Every rung is a one-sided test at its allotted level, so the chance that
the ladder ships ANY candidate whose true drop is at or over the limit stays at alpha.

A rung allotted the one-sided level a is judged with the two-sided interval at confidence 1 - 2a
(ship when its upper bound is under the limit): ``confidence_for`` and ``one_sided_level``
convert, so a rung's interval and verdict come from the same pipe at its adjusted confidence.

Pure: no model, no data. ``ships(name, alpha)`` says whether a rung ships at that one-sided level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# The ladder's one-sided level: the gate's default two-sided 95% interval (docs/verdict.md).
DEFAULT_ALPHA = 0.025


def confidence_for(alpha: float) -> float:
    """The two-sided confidence whose upper bound is a one-sided test at level ``alpha``."""
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"a one-sided level must be in (0, 0.5), got {alpha!r}")
    return 1.0 - 2.0 * alpha


def one_sided_level(confidence: float) -> float:
    """The one-sided level of the upper bound of a two-sided ``confidence`` interval."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"a confidence must be in (0, 1), got {confidence!r}")
    return (1.0 - confidence) / 2.0


@dataclass(frozen=True)
class Rung:
    """One candidate of the ladder: its level (1 = least compressed), the one-sided level it was
    allotted (0.0 when its level received nothing), whether it was tested and whether it shipped."""

    name: str
    level: int
    alpha: float
    tested: bool
    shipped: bool

    @property
    def confidence(self) -> float | None:
        """The two-sided confidence its interval is reported at (None when not tested)."""
        return confidence_for(self.alpha) if self.tested else None


@dataclass(frozen=True)
class LadderResult:
    """Every rung in declared order, the overall one-sided level, and the recommendation: the
    most compressed rung that shipped (the highest level with a shipped rung; within a level, the
    first shipped in declared order), or None when nothing shipped."""

    rungs: tuple[Rung, ...]
    alpha: float
    recommendation: str | None

    def rung(self, name: str) -> Rung:
        for rung in self.rungs:
            if rung.name == name:
                return rung
        raise KeyError(name)

    @property
    def shipped(self) -> tuple[str, ...]:
        return tuple(rung.name for rung in self.rungs if rung.shipped)


def check_levels(levels: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    """The levels as tuples; refuses an empty ladder, an empty level or a name used twice."""
    out = tuple(tuple(level) for level in levels)
    if not out:
        raise ValueError("a ladder needs at least one level")
    names = [name for level in out for name in level]
    if any(not level for level in out):
        raise ValueError(f"every level needs at least one candidate, got {out!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"a candidate may appear once in a ladder; repeated: {', '.join(repeated)}")
    return out


def gatekeep(levels: Sequence[Sequence[str]], alpha: float,
             ships: Callable[[str, float], bool]) -> LadderResult:
    """Test the ladder by gatekeeping with propagated alpha (see the module's docstring).

    ``ships(name, a)`` is asked once per tested rung, with its allotted one-sided level ``a``;
    rungs of a level that received nothing are not asked.
    """
    confidence_for(alpha)  # refuses a level outside (0, 0.5)
    received = alpha
    rungs: list[Rung] = []
    recommendation = None
    for number, level in enumerate(check_levels(levels), start=1):
        share = received / len(level)
        passed = 0.0
        for name in level:
            tested = share > 0.0
            shipped = bool(ships(name, share)) if tested else False
            rungs.append(Rung(name, number, share if tested else 0.0, tested, shipped))
            if shipped:
                passed += share
        shipped_here = [rung.name for rung in rungs if rung.level == number and rung.shipped]
        if shipped_here:
            recommendation = shipped_here[0]
        received = passed
    return LadderResult(tuple(rungs), alpha, recommendation)
