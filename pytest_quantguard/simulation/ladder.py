"""The ladder's family-wise false-ship rate on simulated sets (docs/ladder.md, "The simulation").

A ``LadderCell`` is one least-favourable configuration: a ladder shape (schemes per level), each
candidate either clearly fine (true drop 0, discordance 2 %) or at the margin (true drop = the
limit, discordance 3 %), and whether the candidates' scores are correlated. Every candidate is
scored on the same samples against one reference: each set draws the reference's per-sample
correctness once (shared by all candidates); the candidates' flips are then drawn either on one
shared per-sample uniform (correlated: the schemes fail on the same hard samples, as on one set)
or independently. Only the discordant counts (b, c) of each candidate matter for the 0/1 interval.

A rung allotted the one-sided level a ships when the gate's own interval at confidence 1 - 2a has
its upper bound under the limit: ``statistic="tango"`` is Tango's score interval (vectorized
``tango_intervals``, the bound the gate's interval always contains, so its false-ship rate bounds
the gate's from above), ``statistic="gate"`` the gate's full ``percentile+tango`` interval.

A false ship is shipping ANY candidate at the margin. The rules compared: the valid gatekeeping
(``stats.ladder.gatekeep``) and three naive ones the docs show are not valid.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pytest_quantguard.stats.ladder import DEFAULT_ALPHA, confidence_for, gatekeep
from pytest_quantguard.stats.paired_binary_many import paired_binary_intervals, tango_intervals

LIMIT = 0.01
REFERENCE_ACCURACY = 0.9
SAMPLES = 4000
# (discordance, true drop) of the two kinds of candidate
STATES = {"fine": (0.02, 0.0), "margin": (0.03, LIMIT)}
BASE_SEED = 12345

Ships = Callable[[str, float], bool]
Rule = Callable[[Sequence[Sequence[str]], float, Ships], set[str]]


@dataclass(frozen=True)
class LadderCell:
    shape: tuple[int, ...]
    states: tuple[str, ...]  # "fine" / "margin" per candidate, level by level
    correlated: bool
    n: int = SAMPLES

    @property
    def levels(self) -> tuple[tuple[str, ...], ...]:
        names = iter(f"L{level}{chr(ord('a') + i)}" for level, size in enumerate(self.shape, 1)
                     for i in range(size))
        return tuple(tuple(next(names) for _ in range(size)) for size in self.shape)

    @property
    def name(self) -> str:
        parts = ["".join("F" if s == "fine" else "M" for s in self._level_states(i))
                 for i in range(len(self.shape))]
        return f"{'/'.join(parts)} {'correlated' if self.correlated else 'independent'}"

    def _level_states(self, index: int) -> tuple[str, ...]:
        start = sum(self.shape[:index])
        return self.states[start:start + self.shape[index]]

    @property
    def seed(self) -> np.random.SeedSequence:
        key = repr((self.shape, self.states, self.correlated, self.n)).encode()
        return np.random.SeedSequence([BASE_SEED, int.from_bytes(hashlib.sha256(key).digest()[:8])])


def least_favourable_cells(shape: tuple[int, ...], correlated: bool) -> list[LadderCell]:
    """Every assignment of fine / at-the-margin to the candidates with at least one at the margin."""
    size = sum(shape)
    return [LadderCell(shape, states, correlated)
            for states in itertools.product(("fine", "margin"), repeat=size) if "margin" in states]


def _cell_probabilities(state: str) -> tuple[float, float]:
    """P(reference right, candidate wrong | reference right), P(the reverse | reference wrong)."""
    discordance, drop = STATES[state]
    only_reference, only_candidate = (discordance + drop) / 2, (discordance - drop) / 2
    return only_reference / REFERENCE_ACCURACY, only_candidate / (1 - REFERENCE_ACCURACY)


def _flips(total: np.ndarray, chances: np.ndarray, correlated: bool,
           rng: np.random.Generator) -> np.ndarray:
    """Per set and candidate, how many of ``total`` samples flip with each candidate's chance.
    Correlated: one uniform per sample for all candidates (the flips nest); else independent."""
    sets, k = len(total), len(chances)
    if not correlated:
        return rng.binomial(total[:, None], chances[None, :], size=(sets, k))
    order = np.argsort(chances)
    edges = chances[order]
    widths = np.diff(np.concatenate([[0.0], edges, [1.0]]))
    counts = np.stack([rng.multinomial(int(t), widths) for t in total])
    nested = np.cumsum(counts[:, :k], axis=1)
    out = np.empty((sets, k), dtype=np.int64)
    out[:, order] = nested
    return out


def draw_counts(cell: LadderCell, sets: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(b, c): per set and candidate, the samples only the reference gets right, and the reverse."""
    chances = np.array([_cell_probabilities(state) for state in cell.states])
    reference_right = rng.binomial(cell.n, REFERENCE_ACCURACY, size=sets)
    b = _flips(reference_right, chances[:, 0], cell.correlated, rng)
    c = _flips(cell.n - reference_right, chances[:, 1], cell.correlated, rng)
    return b, c


class Decisions:
    """Whether each candidate ships at a one-sided level, for every set at once (computed the first
    time a level is asked, then looked up)."""

    def __init__(self, b: np.ndarray, c: np.ndarray, n: int, statistic: str, resamples: int = 2000):
        if statistic not in ("tango", "gate"):
            raise ValueError(f"statistic must be 'tango' or 'gate', got {statistic!r}")
        self.b, self.c, self.n, self.statistic, self.resamples = b, c, n, statistic, resamples
        self._cache: dict[tuple[int, float], np.ndarray] = {}

    def ships(self, candidate: int, alpha: float) -> np.ndarray:
        key = (candidate, round(alpha, 15))
        if key not in self._cache:
            self._cache[key] = self._upper(candidate, confidence_for(alpha)) < LIMIT
        return self._cache[key]

    def _upper(self, candidate: int, confidence: float) -> np.ndarray:
        b, c = self.b[:, candidate], self.c[:, candidate]
        n = np.full_like(b, self.n)
        if self.statistic == "tango":
            return tango_intervals(b, c, n, confidence)[1]
        seeds = np.arange(len(b)) + 1000 * candidate
        return np.array([r.high for r in paired_binary_intervals(
            b, c, n, seeds, confidence=confidence, resamples=self.resamples)])


# --- the rules ----------------------------------------------------------------------------------

def gatekeeping(levels, alpha, ships) -> set[str]:
    """The valid rule: gatekeeping with propagated alpha (docs/ladder.md, "The guarantee")."""
    return set(gatekeep(levels, alpha, ships).shipped)


def _holm(level: Sequence[str], alpha: float, ships: Ships) -> list[str]:
    remaining, shipped = list(level), []
    while remaining:
        now = [name for name in remaining if ships(name, alpha / len(remaining))]
        if not now:
            break
        shipped += now
        remaining = [name for name in remaining if name not in now]
    return shipped


def holm_full_alpha(levels, alpha, ships) -> set[str]:
    """Naive: every level at the full alpha (Holm inside it), on to the next when any ships."""
    shipped: set[str] = set()
    for level in levels:
        here = _holm(level, alpha, ships)
        if not here:
            break
        shipped.update(here)
    return shipped


def constant_alpha(levels, alpha, ships) -> set[str]:
    """Naive: alpha read as a constant 0.025 for every candidate of every level."""
    shipped: set[str] = set()
    for level in levels:
        here = [name for name in level if ships(name, alpha)]
        if not here:
            break
        shipped.update(here)
    return shipped


def unsplit_propagation(levels, alpha, ships) -> set[str]:
    """Naive: a level passes alpha * r / m on (r of its m shipped), and every scheme of the next
    level is tested at that whole amount instead of a share of it."""
    shipped: set[str] = set()
    received = alpha
    for number, level in enumerate(levels):
        each = received / len(level) if number == 0 else received
        here = [name for name in level if ships(name, each)]
        if not here:
            break
        shipped.update(here)
        received = received * len(here) / len(level)
    return shipped


RULES: dict[str, Rule] = {"gatekeeping": gatekeeping, "holm-full-alpha": holm_full_alpha,
                          "constant-alpha": constant_alpha, "unsplit": unsplit_propagation}


@dataclass(frozen=True)
class LadderCellResult:
    cell: LadderCell
    sets: int
    false_ship: dict[str, float]  # rule -> family-wise false-ship rate

    def standard_error(self, rate: float) -> float:
        return math.sqrt(max(rate * (1 - rate), 1e-12) / self.sets)


def simulate_ladder(cell: LadderCell, sets: int, *, alpha: float = DEFAULT_ALPHA,
                    statistic: str = "tango", rules: Sequence[str] = tuple(RULES)) -> LadderCellResult:
    """Each rule's family-wise false-ship rate (any candidate at the margin shipped) on ``sets``."""
    b, c = draw_counts(cell, sets, np.random.default_rng(cell.seed))
    decisions = Decisions(b, c, cell.n, statistic)
    levels = cell.levels
    index = {name: i for i, name in enumerate(name for level in levels for name in level)}
    at_margin = {name for name, state in zip(index, cell.states, strict=True) if state == "margin"}
    rates = {}
    for rule in rules:
        false = 0
        for s in range(sets):
            shipped = RULES[rule](levels, alpha,
                                  lambda name, a, s=s: bool(decisions.ships(index[name], a)[s]))
            false += bool(shipped & at_margin)
        rates[rule] = false / sets
    return LadderCellResult(cell, sets, rates)
