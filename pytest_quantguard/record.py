"""The public record: ``Comparison`` and ``Interval``. Every report reads a ``Comparison``;
``to_dict()`` gives builtins only (its keys are the JSON report's schema, docs/reports.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from pytest_quantguard.settings import THRESHOLD_KEYS
from pytest_quantguard.verdict import Verdict


class Interval(NamedTuple):
    """The two-sided interval of the drop: exactly two floats."""

    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """One reference-vs-candidate result for one metric: the one record every report reads.

    ``to_dict()`` gives builtins only (its keys are the JSON report's schema); ``from_dict()``
    rebuilds the object. ``runtime`` holds everything that may differ between runs. With several
    metrics (``metrics=``), the returned comparison is the worst one, and ``metrics`` holds every
    metric's comparison in the order given.
    """

    verdict: Verdict
    drop: float
    interval: Interval
    reference_score: float
    candidate_score: float
    n: int
    metric: str
    method: str
    confidence: float
    resamples: int
    seed: int
    max_drop: float
    qat_limit: float
    gate: str
    message: str
    relative: bool = False
    max_error_increase: float | None = None  # set: drop is the error rate's relative growth
    n_groups: int | None = None
    name: str | None = None
    id: str = ""
    reference: dict[str, Any] = field(default_factory=dict)  # {path, sha256, bytes}
    candidate: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # {path, sha256}
    details: dict[str, Any] = field(default_factory=dict)  # method-specific figures (e.g. b, c)
    runtime: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[Comparison, ...] = ()  # every metric's comparison (several metrics only)
    slice_max_drop: float | None = None
    # the samples the two models disagree on (or that changed most), capped: {count, cap, order,
    # samples: [{index, label, reference, candidate}]}; None where the metric has no per-sample view
    discordant: dict[str, Any] | None = None
    remedy: str = ""  # what to do about the verdict (the message's last line)
    metric_kind: str = ""  # the metric's family: binary, continuous, corpus or grouped
    unit: str = ""  # how drops read: "points" (0/1 metrics), "percent" (relative margins), "metric"

    min_reference: float | None = None  # the reference's least acceptable score (strictest)

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        """The checks of the reference that failed (``details["reference_checks"]``, e.g.
        min_reference): each fails the test with its ``rule`` line, whatever the verdict."""
        return [check for check in self.details.get("reference_checks", ()) if not check["passed"]]

    @property
    def passed(self) -> bool:
        """The gate passes: the verdict is ship and no check of the reference failed."""
        return not self.verdict.failed and not self.failed_checks

    def to_dict(self) -> dict[str, Any]:
        record = {
            "id": self.id,
            "name": self.name,
            "metric": self.metric,
            "metric_kind": self.metric_kind,
            "unit": self.unit,
            "reference": {**_model_info(self.reference), "score": float(self.reference_score)},
            "candidate": {**_model_info(self.candidate), "score": float(self.candidate_score)},
            "data": {"path": self.data.get("path"), "n": int(self.n),
                     "n_groups": None if self.n_groups is None else int(self.n_groups),
                     "sha256": self.data.get("sha256")},
            "drop": float(self.drop),
            "interval": {"low": float(self.interval.low), "high": float(self.interval.high),
                         "confidence": float(self.confidence), "method": self.method,
                         "resamples": int(self.resamples), "seed": int(self.seed)},
            "verdict": str(self.verdict),
            "thresholds": {key: _threshold(getattr(self, key)) for key in THRESHOLD_KEYS},
            "cost": _cost(self.reference, self.candidate),
            "discordant": _builtins(self.discordant),
            "message": self.message,
            "remedy": self.remedy,
            "details": _builtins(self.details),
            "runtime": _builtins(self.runtime),
        }
        if self.metrics:
            record["metrics"] = [comparison.to_dict() for comparison in self.metrics]
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Comparison:
        interval, thresholds = record["interval"], record["thresholds"]
        return cls(
            verdict=Verdict(record["verdict"]), drop=record["drop"],
            interval=Interval(interval["low"], interval["high"]),
            reference_score=record["reference"]["score"],
            candidate_score=record["candidate"]["score"],
            n=record["data"]["n"], n_groups=record["data"].get("n_groups"), metric=record["metric"],
            method=interval["method"], confidence=interval["confidence"],
            resamples=interval["resamples"], seed=interval["seed"],
            **{key: thresholds.get(key) for key in THRESHOLD_KEYS},
            message=record["message"], name=record.get("name"), id=record.get("id", ""),
            reference=_model_info(record["reference"]), candidate=_model_info(record["candidate"]),
            data={"path": record["data"].get("path"), "sha256": record["data"].get("sha256")},
            details=dict(record.get("details", {})), runtime=dict(record.get("runtime", {})),
            metrics=tuple(cls.from_dict(item) for item in record.get("metrics", ())),
            discordant=record.get("discordant"), remedy=record.get("remedy", ""),
            metric_kind=record.get("metric_kind", ""), unit=record.get("unit", ""),
        )

    def all(self) -> tuple[Comparison, ...]:
        """Every metric's comparison: ``metrics`` when several were gated, else this one."""
        return self.metrics or (self,)


def _threshold(value: Any) -> Any:
    """A threshold as a builtin: floats stay floats, flags and names as they are, None as None."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    return float(value)


def _model_info(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"path": record.get("path"), "sha256": record.get("sha256"), "bytes": record.get("bytes")}


def _cost(reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict[str, Any]:
    """Model sizes and the compression ratio (reference bytes / candidate bytes)."""
    ref_bytes, cand_bytes = reference.get("bytes"), candidate.get("bytes")
    return {"reference_bytes": ref_bytes, "candidate_bytes": cand_bytes,
            "compression": (ref_bytes / cand_bytes) if ref_bytes and cand_bytes else None}


def _builtins(value: Any) -> Any:
    """Recursively convert numpy scalars and arrays to builtins (execnet cannot ship numpy)."""
    if isinstance(value, Mapping):
        return {str(key): _builtins(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_builtins(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
