"""The JSON report (``--quant-report``, docs/reports.md): the run's environment, settings, policy and every
comparison record, written atomically. Its shape is the shipped JSON Schema
(``pytest_quantguard/schema/report.schema.json``, read with ``load_schema()``)."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_quantguard._files import write_atomically
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.verdict import Verdict

SCHEMA_VERSION = 1
GIT_TIMEOUT_SECONDS = 5.0
# distributions that provide ``import onnxruntime`` (the CPU wheel first)
ONNXRUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml",
                             "onnxruntime-openvino", "onnxruntime-qnn", "onnxruntime-silicon")
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1, or SHA-256 object format


def environment(*, execution_providers: Sequence[str] | None = None) -> dict[str, Any]:
    """Where the run happened: interpreter, platform and package versions (None where a package is
    not installed), read from package metadata so nothing heavy is imported (never torch). The
    execution providers are ``execution_providers`` when given (e.g. gathered from xdist workers,
    since the controller may never import onnxruntime), else onnxruntime's when it is already
    imported, else None."""
    providers = (_execution_providers() if execution_providers is None
                 else [str(provider) for provider in execution_providers])
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "pytest": _version("pytest"),
        "numpy": _version("numpy"),
        "onnxruntime": _version(*ONNXRUNTIME_DISTRIBUTIONS),
        "torch": _version("torch"),
        "scipy": _version("scipy"),
        "pytest_quantguard": _version("pytest-quantguard") or _own_version(),
        "execution_providers": providers,
    }


def _version(*distributions: str) -> str | None:
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _own_version() -> str:
    from pytest_quantguard._version import __version__

    return __version__


def _execution_providers() -> list[str] | None:
    module = sys.modules.get("onnxruntime")
    if module is None:
        return None
    try:
        return [str(provider) for provider in module.get_available_providers()]
    except Exception:  # a half-initialised or stubbed module: no providers to report
        return None


def git_commit(rootdir: Path) -> str | None:
    """The commit checked out at ``rootdir`` (``git rev-parse HEAD``), else ``$GITHUB_SHA`` (set by
    GitHub Actions, whose checkout may lack ``.git``), else None."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=rootdir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS,
                              check=False)
    except (OSError, subprocess.SubprocessError):  # git missing, rootdir gone, timeout
        done = None
    if done is not None and done.returncode == 0:
        commit = done.stdout.strip().lower()
        if _COMMIT.fullmatch(commit):
            return commit
    fallback = os.environ.get("GITHUB_SHA", "").strip().lower()
    return fallback if _COMMIT.fullmatch(fallback) else None


def summary(records: Iterable[Mapping[str, Any]], *, inconclusive: str = "fail",
            policy_satisfied: bool = True) -> dict[str, Any]:
    """Verdict counts; ``passed`` is False when any comparison failed (try-qat, stay-fp16), was
    inconclusive (unless inconclusive verdicts only warn), failed a check of the reference
    (``details.reference_checks``), shipped in a test that failed otherwise, or the policy was not
    satisfied."""
    records = list(records)
    verdicts = [record["verdict"] for record in records]
    failed = sum(Verdict(verdict).rejected for verdict in verdicts)
    # a comparison in a test marked as an expected failure (xfail) does not fail the gate
    live = [record["verdict"] for record in records
            if record.get("outcome") != "xfailed" and not passed_rung(record)]
    failing = sum(Verdict(verdict).rejected for verdict in live)
    open_ = live.count("inconclusive")
    checks = sum(bool(failed_checks(record)) for record in records
                 if record.get("outcome") != "xfailed")
    otherwise = sum(failed_otherwise(record, records) for record in records)
    return {"comparisons": len(verdicts), "ship": verdicts.count("ship"), "failed": failed,
            "inconclusive": verdicts.count("inconclusive"),
            "expected_failures": len(verdicts) - len(live),
            "failed_checks": checks, "shipped_in_failed_tests": otherwise,
            "passed": failing == 0 and checks == 0 and (open_ == 0 or inconclusive == "warn")
            and policy_satisfied and otherwise == 0}


def passed_rung(record: Mapping[str, Any]) -> bool:
    """A rung of a ladder that recommends a rung: its own verdict does not fail the gate
    (docs/ladder.md, "The reports")."""
    return bool(((record.get("details") or {}).get("ladder") or {}).get("ladder_passed"))


def failed_checks(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A record's failed checks of the reference (docs/verdict.md, "Checks of the reference")."""
    return [check for check in (record.get("details") or {}).get("reference_checks", ())
            if not check.get("passed")]


def failed_otherwise(record: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> bool:
    """The comparison passed the gate but its test failed for another reason (a later error, a
    second call without ``name=``, a policy violation): no comparison or check of that test failed."""
    if record.get("outcome") != "failed" or record["verdict"] != "ship" or failed_checks(record):
        return False
    test = test_id(record)
    return all(other["verdict"] == "ship" for other in records if test_id(other) == test)


def test_id(record: Mapping[str, Any]) -> str:
    """The pytest node id of the test that made the record (its id without ``::name``)."""
    name, comparison_id = record.get("name"), record["id"]
    if name and comparison_id.endswith(f"::{name}"):
        return comparison_id[:-len(name) - 2]
    return comparison_id


def build_report(records: Iterable[Mapping[str, Any]], *, settings: Mapping[str, Any],
                 policy: Mapping[str, Any], created: str, host: str, commit: str | None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole report as builtins: comparisons sorted by id then metric, so a serial run and a
    pytest-xdist run (whose records arrive in any order) give the same list. ``records`` are
    ``Comparison.to_dict()`` outputs, used as they are; ``extra`` adds top-level keys.
    ``summary.passed`` honours ``settings["inconclusive"]`` ("warn" lets inconclusive pass) and
    ``policy["satisfied"]`` (False fails the run)."""
    ordered = sorted(records, key=_order)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created": created,
        "host": host,
        "environment": environment(),
        "git_commit": commit,
        "settings": dict(settings),
        "policy": dict(policy),
        "summary": summary(ordered, inconclusive=str(settings.get("inconclusive", "fail")),
                           policy_satisfied=bool(policy.get("satisfied", True))),
        "comparisons": ordered,
    }
    if extra:
        clashes = sorted(set(extra) & set(report))
        if clashes:
            raise ValueError(f"extra report keys {clashes} would replace the report's own keys")
        report.update(extra)
    return report


def _order(record: Mapping[str, Any]) -> tuple[str, ...]:
    """Sort key: id, metric, then the models and data as tie-breakers (never arrival order)."""
    return (str(record.get("id") or ""), str(record.get("metric") or ""),
            str(record.get("name") or ""),
            *(str((record.get(part) or {}).get(key) or "") for part in ("reference", "candidate",
                                                                         "data")
              for key in ("path", "sha256")))


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    """Write ``report`` to ``path`` atomically: a temporary file in the same folder, then
    ``os.replace``, so a reader (or a crash) never sees half a report. Strict JSON: NaN and
    Infinity are refused, naming where they are."""
    path = Path(path)
    try:
        text = json.dumps(report, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError:
        where = _first_non_finite(report, "report") or "the report"
        raise QuantGuardError(f"cannot write the quantguard JSON report {path}: {where} is NaN or "
                              "infinite, which strict JSON cannot hold") from None
    except TypeError as error:
        raise QuantGuardError(f"cannot write the quantguard JSON report {path}: {error}") from None
    try:
        write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))
    except OSError as error:
        reason = error.strerror or str(error)
        if error.filename and str(error.filename) != str(path) and \
                not str(error.filename).endswith(".tmp"):
            reason += f" ({error.filename})"
        raise QuantGuardError(f"cannot write the quantguard JSON report {path}: {reason}; choose "
                              "another path for --quant-report") from None


def _first_non_finite(value: Any, where: str) -> str | None:
    """The JSON path of the first NaN or infinite float in ``value`` (e.g.
    ``report.comparisons[2].drop``), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, Mapping):
        items: Iterable[tuple[str, Any]] = ((f"{where}.{key}", item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for inner, item in items:
        found = _first_non_finite(item, inner)
        if found is not None:
            return found
    return None


def load_schema() -> dict[str, Any]:
    """The report's JSON Schema (Draft 2020-12), as shipped in the package."""
    schema = resources.files("pytest_quantguard") / "schema" / "report.schema.json"
    return json.loads(schema.read_text(encoding="utf-8"))
