"""JUnit testcase properties (docs/reports.md, "JUnit properties"), appended as strings to
``item.user_properties``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def junit_properties(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``quant.*`` properties of one comparison (``quant.<name>.*`` for a named one)."""
    prefix = f"quant.{record['name']}." if record.get("name") else "quant."
    interval, thresholds = record["interval"], record["thresholds"]
    fields = [
        ("metric", record["metric"]),
        ("reference_score", record["reference"]["score"]),
        ("candidate_score", record["candidate"]["score"]),
        ("drop", record["drop"]),
        ("ci_low", interval["low"]),
        ("ci_high", interval["high"]),
        ("confidence", interval["confidence"]),
        ("method", interval["method"]),
        ("n", record["data"]["n"]),
        ("max_drop", thresholds["max_drop"]),
        ("gate", thresholds["gate"]),
        ("verdict", record["verdict"]),
    ]
    runtime = record.get("runtime") or {}
    if runtime.get("batch_size") is not None:  # the batch the verdict holds for (docs/models.md)
        fields.append(("batch_size", runtime["batch_size"]))
    if runtime.get("batch_dependent"):  # a dynamically quantized model: results depend on it
        fields.append(("batch_dependent", ",".join(runtime["batch_dependent"])))
    details = record.get("details") or {}
    # counts of the risk notes and diagnosed layers (docs/risks.md, "Where the notes appear")
    fields.append(("risks", len(details.get("risks") or ())))
    diagnosis = details.get("diagnosis") or {}
    if diagnosis.get("layers"):
        fields.append(("diagnosed_layers", len(diagnosis["layers"])))
    return [(prefix + key, _text(value)) for key, value in fields]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
