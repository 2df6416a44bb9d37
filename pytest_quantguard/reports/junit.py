"""JUnit testcase properties (docs/reports.md, "JUnit properties"), appended as strings to
``item.user_properties``; and the JUnit XML the command line writes (``junit_xml``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class JunitCase:
    """One JUnit testcase: its name, its ``quant.*`` properties, and an outcome: None (passed),
    "failure" or "skipped", with its message and text."""

    name: str
    properties: list[tuple[str, str]] = field(default_factory=list)
    outcome: str | None = None
    message: str = ""
    text: str = ""
    classname: str = "quantguard.compare"


def compare_case(record: Mapping[str, Any], inconclusive: str) -> JunitCase:
    """A candidate's testcase, with the plugin's quant.* properties; a failure where the candidate
    does not ship."""
    failed = record["verdict"] != "ship" and not (record["verdict"] == "inconclusive"
                                                  and inconclusive == "warn")
    return JunitCase(str(record.get("name") or record.get("id")), junit_properties(record),
                     "failure" if failed else None, record["verdict"], record.get("message") or "")


def junit_xml(cases: Sequence[JunitCase], suite: str = "quantguard") -> bytes:
    """A JUnit XML testsuite of ``cases``, with its failure and skip counts."""
    from xml.etree import ElementTree

    root = ElementTree.Element("testsuite", name=suite, tests=str(len(cases)))
    for each in cases:
        case = ElementTree.SubElement(root, "testcase", classname=each.classname, name=each.name)
        properties = ElementTree.SubElement(case, "properties")
        for key, value in each.properties:
            ElementTree.SubElement(properties, "property", name=key, value=value)
        if each.outcome is not None:
            ElementTree.SubElement(case, each.outcome, message=each.message).text = each.text
    root.set("failures", str(sum(each.outcome == "failure" for each in cases)))
    root.set("skipped", str(sum(each.outcome == "skipped" for each in cases)))
    return ElementTree.tostring(ElementTree.ElementTree(root).getroot(), encoding="utf-8",
                                xml_declaration=True)
