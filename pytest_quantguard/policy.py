"""The policy floor: ``quant_policy_*`` ini keys no marker, call or option may loosen, and the
comparison count a project requires (docs/verdict.md, "The policy floor"). The fixture checks each
test's tolerance here before its models run; the session's reports state the policy from here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_quantguard.settings import Options, Tolerance, describe_source

POLICY_KEYS = ("quant_policy_max_drop", "quant_policy_max_error_increase",
               "quant_policy_min_reference",
               "quant_policy_min_confidence", "quant_policy_allow_point_gate",
               "quant_policy_min_bootstrap", "quant_require_comparisons")
PROJECT = "project (ini or command line)"  # the source of a value no marker or call set


def violations(tolerance: Tolerance, options: Options, nodeid: str) -> list[dict[str, Any]]:
    """Where the effective tolerance asks for more than the project's policy allows. The policy
    binds every layer (command line and ini included), so no test can loosen it."""
    found = []

    def add(key: str, value: Any, limit: Any, rule: str) -> None:
        layer = tolerance.sources.get(key)
        source = layer if layer in ("marker", "call") else PROJECT
        where = describe_source(key, layer) if layer else f"the {source}"
        found.append({"id": nodeid, "key": key, "value": value, "limit": limit, "source": source,
                      "message": f"{key}={value!r} (set by {where}) {rule}{_percent_hint(value)}"})

    most = options.policy_max_drop
    if most is not None:
        if tolerance.max_error_increase is None and tolerance.max_drop > most:
            add("max_drop", tolerance.max_drop, most, f"exceeds quant_policy_max_drop = {most:g}")
        for name, limit in (tolerance.metrics or {}).items():
            if limit is not None and limit > most:
                add("metrics", {name: limit}, most, f"exceeds quant_policy_max_drop = {most:g}")
        if (tolerance.slice_max_drop or 0) > most:
            add("slice_max_drop", tolerance.slice_max_drop, most,
                f"exceeds quant_policy_max_drop = {most:g}")
    most_errors = options.policy_max_error_increase
    if most_errors is not None and (tolerance.max_error_increase or 0) > most_errors:
        add("max_error_increase", tolerance.max_error_increase, most_errors,
            f"exceeds quant_policy_max_error_increase = {most_errors:g}")
    least = options.policy_min_confidence
    if least is not None and tolerance.confidence < least:
        add("confidence", tolerance.confidence, least,
            f"is below quant_policy_min_confidence = {least:g}")
    fewest = options.policy_min_bootstrap
    if fewest is not None and options.bootstrap < fewest:
        add("bootstrap", options.bootstrap, fewest, f"is below quant_policy_min_bootstrap = {fewest}")
    if not options.policy_allow_point_gate and tolerance.gate == "point":
        add("gate", "point", "upper", "is not allowed: quant_policy_allow_point_gate = false")
    return found


def _percent_hint(value: Any) -> str:
    """A limit of 1 or more was likely typed in percent (docs/verdict.md, "Limits and their
    units")."""
    values = list(value.values()) if isinstance(value, dict) else [value]
    if not all(isinstance(each, int | float) and not isinstance(each, bool) for each in values):
        return ""
    big = [each for each in values if each >= 1]
    return (f"; a limit is a fraction (0.01 = 1 point or 1 %): did you mean {big[0] / 100:g}?"
            if big else "")


def run_limit_warnings(options: Options) -> list[str]:
    """Run-wide limits of 1 or more (ini or command line), said once at start: a marker or call
    that sets the key hides them from the per-comparison unit check, so a percent typed there
    could go unnoticed (docs/verdict.md, "Limits and their units")."""
    relative = bool(options.values.get("relative"))
    found = []
    for key in ("max_drop", "qat_limit", "slice_max_drop", "max_error_increase"):
        value, layer = options.values.get(key), options.origins.get(key)
        if layer is None or value is None or value < 1:
            continue
        if key == "qat_limit" and options.values.get("max_error_increase") is not None:
            continue  # the try-qat band of an error rate may exceed 100 %
        unit = ("a relative limit: 0.01 = 1 %" if relative or key == "max_error_increase" else
                "on a score in [0, 1] (accuracy, F1, agreement, cosine) 0.01 = 1 point")
        found.append(f"{describe_source(key, layer)} = {value:g} is {100 * value:g} % as a fraction "
                     f"({unit}); did you mean {value / 100:g}? A comparison it applies to refuses "
                     "it where the metric is scored in [0, 1] (or the limit is relative); a test "
                     f"whose marker or call sets {key} does not use it at all")
    return found


def floor(options: Options) -> dict[str, Any]:
    """What the pipe checks per comparison (it never imports this module): the policy's limits,
    held to their metric's unit, and its min_reference table, applied beside the test's own."""
    return {"max_drop": options.policy_max_drop,
            "max_error_increase": options.policy_max_error_increase,
            "min_reference": options.policy_min_reference}


def release_count(records: Sequence[dict[str, Any]]) -> int:
    """Comparisons that count toward quant_require_comparisons: advisory ones (a
    --quant-max-samples subset) are not a release verdict."""
    return sum(not (record.get("details") or {}).get("advisory") for record in records)


def command_line_overrides(override_ini: Sequence[str] | None) -> list[str]:
    """Policy keys given with ``-o key=value`` (or PYTEST_ADDOPTS): they bypass the project's
    config file, so every report says so."""
    given = override_ini or []
    return sorted({item.split("=", 1)[0].strip() for item in given} & set(POLICY_KEYS))


def stated(options: Options, records: Sequence[dict[str, Any]],
           found: Sequence[dict[str, Any]], overridden: Sequence[str] = ()) -> dict[str, Any]:
    """The policy as the reports state it: its keys, the comparisons counted, the violations."""
    required = options.require_comparisons
    counted = release_count(records)
    return {"max_drop": options.policy_max_drop,
            "max_error_increase": options.policy_max_error_increase,
            "min_confidence": options.policy_min_confidence,
            "allow_point_gate": options.policy_allow_point_gate,
            "min_bootstrap": options.policy_min_bootstrap,
            "min_reference": options.policy_min_reference,
            "require_comparisons": required, "comparisons": counted,
            "advisory_comparisons": len(records) - counted,
            "satisfied": counted >= required and not found,
            "violations": sorted(found, key=lambda v: (v["id"], v["key"])),
            "set_on_command_line": list(overridden)}
