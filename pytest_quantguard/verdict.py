"""The decision framework: a drop, its interval and the tolerance become a verdict and a message.

Rule (docs/verdict.md), with p the point estimate and [L, U] the interval of the drop:
1. ship          if U < max_drop (gate="point": if p < max_drop)
2. inconclusive  if p < max_drop (never with gate="point")
3. try-qat       if p < qat_limit
4. stay-fp16     otherwise
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pytest_quantguard.settings import GATES


class Verdict(enum.StrEnum):
    SHIP = "ship"
    TRY_QAT = "try-qat"
    STAY_FP16 = "stay-fp16"
    INCONCLUSIVE = "inconclusive"

    @property
    def severity(self) -> int:
        """How bad the verdict is: ship 0 < inconclusive 1 < try-qat 2 < stay-fp16 3. Orders every
        report (worst first) and picks the worst of several comparisons or slices."""
        return _SEVERITY[self]

    @property
    def failed(self) -> bool:
        """Whether the gate fails on it: every verdict but ship (the fixture may turn an
        inconclusive one into a warning with quant_inconclusive = warn)."""
        return self is not Verdict.SHIP

    @property
    def rejected(self) -> bool:
        """Whether the data shows the candidate over the limit (try-qat, stay-fp16), as opposed
        to shipping or not being able to tell (inconclusive)."""
        return self in (Verdict.TRY_QAT, Verdict.STAY_FP16)


_SEVERITY = {Verdict.SHIP: 0, Verdict.INCONCLUSIVE: 1, Verdict.TRY_QAT: 2, Verdict.STAY_FP16: 3}


def severity(verdict: str) -> int:
    """``Verdict(verdict).severity`` for a verdict stored as text (a record, a slice row)."""
    return Verdict(verdict).severity


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    rule: str
    established: bool  # L >= max_drop: the degradation is beyond doubt, not just possible


def decide(drop: float, low: float, high: float, *, max_drop: float, qat_limit: float,
           gate: str = "upper", fmt=lambda x: f"{x:.4f}") -> Decision:
    """Apply the verdict rule; ``fmt`` renders values in the metric's units for the rule text."""
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    established = low >= max_drop
    if gate == "point":
        if drop < max_drop:
            return Decision(Verdict.SHIP, f"ship because the drop {fmt(drop)} < max_drop "
                            f"{fmt(max_drop)} (gate=point: the interval is not held against the "
                            "limit)", established)
    elif high < max_drop:
        return Decision(Verdict.SHIP, f"ship because the upper bound {fmt(high)} < max_drop "
                        f"{fmt(max_drop)}", established)
    elif drop < max_drop:
        return Decision(Verdict.INCONCLUSIVE, f"inconclusive because the drop {fmt(drop)} < max_drop "
                        f"{fmt(max_drop)} <= the upper bound {fmt(high)}: the data cannot tell "
                        "whether the candidate is within the limit", established)
    if drop < qat_limit:
        rule = (f"try-qat because max_drop {fmt(max_drop)} <= the drop {fmt(drop)} < qat_limit "
                f"{fmt(qat_limit)}")
        return Decision(Verdict.TRY_QAT, rule, established)
    if max_drop >= qat_limit:
        rule = (f"stay-fp16 because the drop {fmt(drop)} >= max_drop {fmt(max_drop)}, and there is "
                f"no try-qat band (max_drop >= qat_limit {fmt(qat_limit)})")
    else:
        rule = f"stay-fp16 because the drop {fmt(drop)} >= qat_limit {fmt(qat_limit)}"
    return Decision(Verdict.STAY_FP16, rule, established)


def inconclusive_remedy(drop: float, max_drop: float, n: int, *, discordance: float | None = None,
                        variance: float | None = None, confidence: float = 0.95,
                        unit: str = "samples", fmt=lambda x: f"{x:.4g}") -> str:
    """"About N samples (M more) would resolve it", or why more data is unlikely to help; and the
    smallest limit a set of this size resolves, as guidance for the next set.

    N is the total size for 80% power at the observed drop (floored at 0), using the observed
    discordance floored at 3/n (0/1 metrics), or the per-unit variance of the linearized drop
    (other margins and families; ``unit`` names what is counted: samples, or groups). The
    smallest limit is the same formula solved for the limit at n (docs/verdict.md, "Remedies");
    ``fmt`` shows it in the limit's unit.
    """
    # numpy-backed: imported when a message needs it, never at plugin load (reports import this)
    from pytest_quantguard.stats.plan import plan, samples_for_variance, smallest_margin

    assumed = max(drop, 0.0)
    at_this = "at this discordance"
    if discordance is not None:
        share = min(max(discordance, 3.0 / n), 1.0)
        if discordance < 3.0 / n:  # too few disagreements seen to estimate it from
            at_this = (f"at a discordance of 3/n = {100 * share:.2g}% (the floor: the models "
                       f"disagreed on {100 * discordance:.2g}% of the samples)")
        assumed = min(assumed, share)
        variance = max(share - assumed * assumed, 0.0)
    elif variance is None:
        raise ValueError("give the discordance (0/1 metrics) or the per-unit variance")
    smallest = smallest_margin(variance, n, power=0.8, confidence=confidence, drop=assumed)
    guidance = (f"; for the next set: {n:,} {unit} resolve a limit of about {fmt(smallest)} at "
                f"80% power {at_this}; choose the limit before seeing a result: raising "
                "max_drop after it voids the false-ship guarantee")
    if drop >= 0.8 * max_drop:
        return ("more data is unlikely to help: the observed drop is at least 80% of max_drop, so "
                "even a much larger set would most likely not bring the upper bound under the "
                "limit" + guidance)
    if discordance is not None:
        needed = plan(share, max_drop, power=0.8, confidence=confidence, drop=assumed)
    else:
        needed = samples_for_variance(variance, max_drop, power=0.8, confidence=confidence,
                                      drop=assumed)
    if needed <= n:
        return (f"about {needed:,} {unit} would resolve it at 80% power; this set already has "
                f"{n:,}, so a re-run on fresh data of the same size may resolve it" + guidance)
    return f"about {needed:,} {unit} ({needed - n:,} more) would resolve it (80% power)" + guidance


REMEDIES = {
    Verdict.SHIP: "none needed: the candidate is within the limit on this data",
    Verdict.TRY_QAT: ("try quantization-aware training (QAT), or a gentler scheme (per-channel "
                      "weights, keep the most sensitive layers in higher precision), then re-run "
                      "the gate"),
    Verdict.STAY_FP16: ("stay at FP16 (or full precision), or get bigger hardware: this "
                        "quantization loses too much on this data"),
}
