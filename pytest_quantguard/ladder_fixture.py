"""``quant_ladder``: the compression ladder inside a test (docs/ladder.md, "From pytest").

It plans the ladder as ``quantguard ladder`` does (``ladder_plan``: the calibration check, the rung
set fixed before any rung is judged, the candidates quantized into the test's ``tmp_path``), judges
each tested rung in-process through ``quant_compare``'s own pipe at the confidence its share of
alpha gives (``gatekeep``), records every tested rung as a comparison of the test
(``<nodeid>::<scheme>``, with ``details.ladder``), and fails the test when nothing ships.

Imported by the plugin on first use of the fixture: nothing heavy here (the quantizers and the
models load inside the calls that use them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.fixture import TOLERANCE_KEY, QuantCompare, fail_on_error
from pytest_quantguard.settings import TOLERANCE_KEYS, check_layer, resolve_tolerance

WHERE = "quant_ladder"
GUARANTEE = ("gatekeeping with propagated alpha keeps the chance of shipping any rung whose true "
             "drop is at or over the limit at one-sided {alpha:g} over every rung "
             "(docs/ladder.md, \"The guarantee\")")


@dataclass(frozen=True)
class LadderOutcome:
    """What ``quant_ladder`` returns: the recommended scheme and its model file (None when nothing
    ships: the test has failed by then), every rung (``ladder.json``'s rows), the whole summary and
    the folder holding the candidates and ``ladder.json``."""

    recommendation: str | None
    model: Path | None
    rungs: list[dict[str, Any]]
    summary: dict[str, Any]
    folder: Path


class QuantLadder:
    """``quant_ladder(model, *, calibration, data=None, schemes=None, name=None, **tolerance)
    -> LadderOutcome``: fails the test unless a rung ships."""

    def __init__(self, state, request: pytest.FixtureRequest):
        self.state = state
        self.request = request
        self.compare = QuantCompare(state, request)  # the same pipe, records and names
        self.names: list[str | None] = []

    def __call__(self, model: Any, *, calibration: Any, data: Any = None, schemes: Any = None,
                 name: str | None = None, **keywords: Any) -> LadderOutcome:
        __tracebackhide__ = True
        outcome = fail_on_error(self._run, model, calibration, data, schemes, name, keywords,
                                prefix=f"quantguard: {WHERE}: ")
        if outcome.recommendation is None:
            from pytest_quantguard.ladder_plan import ladder_lines

            alpha = outcome.summary["alpha"]
            pytest.fail("\n".join([f"quantguard: {WHERE}: no rung ships; "
                                   + GUARANTEE.format(alpha=alpha),
                                   *ladder_lines(outcome.summary)]), pytrace=False)
        return outcome

    def _run(self, model: Any, calibration: Any, data: Any, schemes: Any, name: str | None,
             keywords: dict[str, Any]) -> LadderOutcome:
        from pytest_quantguard.ladder_plan import ladder_summary, machine_text, plan_ladder, rung_rows
        from pytest_quantguard.stats.ladder import confidence_for, gatekeep

        alpha = self._alpha(keywords, name)
        reference = self._model(model)
        folder = Path(self.request.getfixturevalue("tmp_path")) / (
            "quant_ladder" if name is None else f"quant_ladder-{name}")
        device = self.state.options.device
        plan = plan_ladder(reference, self._calibration(calibration),
                           self.compare.dataset(data), self._schemes(schemes), device, folder,
                           given_by=(f"calibration= of {WHERE}", "the test's data",
                                     f"schemes= of {WHERE}"))
        judged: dict[str, tuple[Any, Any]] = {}

        def ships(scheme: str, share: float) -> bool:
            rung = scheme if name is None else f"{name}.{scheme}"
            judged[scheme] = self.compare.judge(str(reference), str(plan.model_file(scheme)),
                                               data, {**keywords,
                                                      "confidence": confidence_for(share)}, rung)
            return all(each.verdict.value == "ship" and each.passed
                       for each in judged[scheme][0].all())

        result = gatekeep(plan.levels, alpha, ships)
        records = {scheme: comparison.to_dict() for scheme, (comparison, _) in judged.items()}
        verdicts = {scheme: {key: record[key] for key in ("verdict", "drop", "interval")}
                    for scheme, record in records.items()}
        ms = {scheme: record["runtime"].get("candidate_ms_per_sample")
              for scheme, record in records.items()}
        reference_ms = next((record["runtime"].get("reference_ms_per_sample")
                             for record in records.values()), None)
        summary = ladder_summary(reference, plan, alpha,
                                 rung_rows(result, verdicts, plan, ms), machine_text(device),
                                 reference_ms)
        self._record(judged, summary)
        (folder / "ladder.json").write_text(json.dumps(summary, indent=2) + "\n")
        best = summary["recommendation"]
        return LadderOutcome(best, None if best is None else plan.model_file(best),
                             summary["rungs"], summary, folder)

    def _record(self, judged: dict[str, tuple[Any, Any]], summary: dict[str, Any]) -> None:
        """Every tested rung as a comparison of the test, with its ladder facts."""
        from pytest_quantguard.ladder_plan import ladder_details

        rows = {row["scheme"]: row for row in summary["rungs"]}
        for scheme, (comparison, overrides) in judged.items():
            for each in comparison.all():
                each.details["ladder"] = ladder_details(rows[scheme], summary["recommendation"])
                self.compare.record(each, overrides)

    def _alpha(self, keywords: dict[str, Any], name: str | None) -> float:
        """The ladder's one-sided level: that of the confidence the test would run at (session,
        then marker); each rung's confidence comes from its share of it."""
        from pytest_quantguard.stats.ladder import one_sided_level

        if "confidence" in keywords:
            raise QuantGuardError("confidence= is not taken: each rung is judged at the confidence "
                                  "its share of the ladder's alpha gives (set the test's confidence "
                                  "with @quant_tolerance or --quant-confidence)")
        if name in self.names or None in self.names:
            raise QuantGuardError("this test runs more than one ladder: give every call its own "
                                  "name= (e.g. quant_ladder(model, calibration=..., name='cnn'))")
        self.names.append(name)
        check_layer({k: v for k, v in keywords.items() if k in TOLERANCE_KEYS}, WHERE)
        options = self.state.options
        confidence = resolve_tolerance(options.tolerance(), ("marker", self.request.node.stash.get(
            TOLERANCE_KEY, {})), run_sources=options.origins).confidence
        return round(one_sided_level(confidence), 12)  # 0.95 -> 0.025, not 0.025000000000000022

    def _model(self, model: Any) -> Path:
        path = Path(model) if isinstance(model, (str, Path)) else None
        if path is not None and not path.is_absolute():
            path = self.state.rootpath / path
        if path is None or path.suffix.lower() != ".onnx" or not path.is_file():
            raise QuantGuardError(f"model={model!r}: not an .onnx file (relative to the rootdir); "
                                  "the ladder quantizes an FP32 ONNX model with onnxruntime's "
                                  "quantizers: export the model to ONNX first")
        return path

    def _calibration(self, calibration: Any):
        if not isinstance(calibration, (str, Path)):
            return calibration  # a ValidationSet
        path = Path(calibration)
        return self.state.dataset(path if path.is_absolute() else self.state.rootpath / path,
                                  given_by=f"calibration= of {WHERE} (relative to the rootdir)")

    @staticmethod
    def _schemes(schemes: Any) -> tuple[str, ...] | None:
        from pytest_quantguard.quantize import parse_schemes

        if schemes is None:
            return None
        try:
            return parse_schemes(schemes if isinstance(schemes, str) else ",".join(schemes))
        except (ValueError, TypeError) as error:
            raise QuantGuardError(f"schemes= of {WHERE}: {error}") from None

