"""The compression ladder's steps that ``quantguard ladder`` and the ``quant_ladder`` fixture share
(docs/ladder.md, "quantguard ladder"): planning (the calibration check, the rung set fixed before
any rung is judged, the quantized candidates) and, once ``gatekeep`` has judged the rungs, the
rung rows, the recommendation and the summary lines.

Nothing heavy at import: the quantizers load inside ``plan_ladder``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_quantguard.errors import QuantGuardError

UNJUDGED_REASON = "the CPU runs FP16 as FP32; judge it on the GPU it ships to"


class NoRungError(QuantGuardError):
    """No rung of the ladder can be judged here: a usage error (``quantguard ladder`` exits 2)."""


def default_schemes(task: str) -> tuple[str, ...]:
    """Every scheme; INT4 for language models only (docs/ladder.md, "The rungs")."""
    from pytest_quantguard.data.checks import LANGUAGE_MODEL
    from pytest_quantguard.quantize import SCHEMES

    return tuple(s for s in SCHEMES if task == LANGUAGE_MODEL or s != "int4-weight-only")


def ladder_levels(schemes: Sequence[str], device: str) -> tuple[list[list[str]], list[str]]:
    """The tested levels (schemes grouped by level, least compressed first) and the unjudged
    schemes: FP16 on a CPU runs as FP32 there (docs/ladder.md, "The rungs")."""
    from pytest_quantguard.quantize import LEVEL

    unjudged = [s for s in schemes if s == "fp16" and device == "cpu"]
    judged = [s for s in schemes if s not in unjudged]
    levels = [[s for s in judged if LEVEL[s] == level] for level in sorted({LEVEL[s] for s in judged})]
    return levels, unjudged


@dataclass(frozen=True)
class LadderPlan:
    """The rung set, fixed before any rung is judged: the tested levels, the unjudged schemes,
    ``quantize.json``'s manifest (the candidates and the skipped schemes) and the overlap."""

    levels: list[list[str]]
    unjudged: list[str]
    manifest: dict[str, Any]
    overlap: Any
    out: Path

    @property
    def schemes(self) -> list[str]:
        return [scheme for level in self.levels for scheme in level]

    @property
    def sizes(self) -> dict[str, dict[str, Any]]:
        return {row["scheme"]: row for row in self.manifest["candidates"]}

    def model_file(self, scheme: str) -> Path:
        return self.out / self.sizes[scheme]["file"]


def plan_ladder(model: str | Path, calibration: Any, validation: Any,
                schemes: Sequence[str] | None, device: str, out: str | Path, *,
                given_by: tuple[str, str, str] = ("--calibration", "--data", "--schemes")
                ) -> LadderPlan:
    """Check the calibration set against the validation set, fix the rung set (FP16 unjudged on a
    CPU; INT4 by default only for language-model data) and quantize it into ``out``. A scheme with
    nothing to do (no layer to leave in float) is no rung: decided here, on the calibration data,
    before any rung is judged. NoRungError when no rung is left to judge. ``given_by`` names the
    calibration, data and schemes arguments in errors."""
    from pytest_quantguard.quantize import check_calibration, quantize_model

    overlap = check_calibration(calibration, validation, given_by=given_by[:2])
    levels, unjudged = ladder_levels(tuple(schemes or default_schemes(calibration.task)), device)
    if not levels:
        raise NoRungError("no rung can be judged here (FP16 on a CPU runs as FP32); add an INT8 "
                          f"scheme to {given_by[2]}")
    manifest = quantize_model(model, calibration, [s for level in levels for s in level], out,
                              overlap=overlap)
    kept = {row["scheme"] for row in manifest["candidates"]}
    levels = [left for left in ([s for s in level if s in kept] for level in levels) if left]
    if not levels:
        raise NoRungError("no rung is left to judge: " + "; ".join(
            f"{row['scheme']}: {row['reason']}" for row in manifest["skipped"])
            + f"; add another scheme to {given_by[2]}")
    return LadderPlan(levels, unjudged, manifest, overlap, Path(out))


def rung_rows(result: Any, verdicts: Mapping[str, Mapping[str, Any]], plan: LadderPlan,
              ms_per_sample: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """One row per rung of ``gatekeep``'s result, in declared order: its level, one-sided level,
    confidence, verdict ("untested" where its level received no alpha), size, compression, the
    layers left in float and the measured time per sample."""
    sizes = plan.sizes
    return [{"scheme": rung.name, "level": rung.level, "alpha": rung.alpha, "tested": rung.tested,
             "confidence": rung.confidence, "shipped": rung.shipped,
             **verdicts.get(rung.name, {"verdict": "untested"}),
             "size_bytes": sizes[rung.name]["size_bytes"],
             "compression": sizes[rung.name]["compression"],
             "excluded": sizes[rung.name].get("excluded", []),
             "ms_per_sample": ms_per_sample.get(rung.name)}
            for rung in result.rungs]


def most_compressed(rungs: Sequence[Mapping[str, Any]]) -> str | None:
    """Of the shipped rungs of the highest level that shipped, the one with the largest measured
    compression (every shipped rung is covered by the ladder's guarantee)."""
    shipped = [rung for rung in rungs if rung["shipped"]]
    if not shipped:
        return None
    top = max(rung["level"] for rung in shipped)
    return max((r for r in shipped if r["level"] == top), key=lambda r: r["compression"])["scheme"]


def ladder_summary(model: str | Path, plan: LadderPlan, alpha: float,
                   rungs: list[dict[str, Any]], machine: str,
                   reference_ms: float | None) -> dict[str, Any]:
    """``ladder.json``'s document (docs/ladder.md, "quantguard ladder")."""
    return {"model": str(model), "alpha": alpha, "levels": plan.levels, "unjudged": plan.unjudged,
            "skipped": plan.manifest["skipped"], "recommendation": most_compressed(rungs),
            "machine": machine, "reference_ms_per_sample": reference_ms, "rungs": rungs}


def machine_text(device: str) -> str:
    """The machine and execution provider the times per sample were measured on."""
    import platform

    from pytest_quantguard.runners.onnx import PROVIDERS

    return f"{platform.machine()} {platform.processor() or platform.system()}, {PROVIDERS[device]}"


def ms_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def ladder_lines(summary: Mapping[str, Any]) -> list[str]:
    """The ladder as the terminal shows it: every rung with its level, verdict and confidence,
    size, compression and time per sample; the schemes that are no rung; the unjudged; the
    recommendation."""
    lines = [f"ladder (one-sided alpha {summary['alpha']:g} over every rung; {summary['machine']}):"]
    for rung in summary["rungs"]:
        state = f"{rung['verdict']} at {rung['confidence']:.4g}" if rung["tested"] else \
            "not tested (its level received no alpha)"
        lines.append(f"  L{rung['level']} {rung['scheme']}: {state}, "
                     f"{rung['size_bytes']:,} bytes ({rung['compression']:.2f}x), "
                     f"{ms_text(rung['ms_per_sample'])} ms per sample")
    lines += [f"  {row['scheme']}: not a rung ({row['reason']})" for row in summary["skipped"]]
    lines += [f"  {scheme}: unjudged ({UNJUDGED_REASON})" for scheme in summary["unjudged"]]
    best = next((r for r in summary["rungs"] if r["scheme"] == summary["recommendation"]), None)
    if best is None:
        lines.append("recommendation: none ships; keep the reference (or try QAT)")
    else:
        lines.append(f"recommendation: {best['scheme']} ({best['size_bytes']:,} bytes, "
                     f"{best['compression']:.2f}x smaller, {ms_text(best['ms_per_sample'])} ms "
                     "per sample)")
    return lines


def ladder_details(rung: Mapping[str, Any], recommendation: str | None) -> dict[str, Any]:
    """A tested rung's ``details.ladder`` in the JSON report (docs/ladder.md, "The reports")."""
    return {"level": rung["level"], "alpha": rung["alpha"], "confidence": rung["confidence"],
            "shipped": rung["shipped"], "recommended": rung["scheme"] == recommendation,
            "ladder_passed": recommendation is not None}
