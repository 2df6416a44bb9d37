"""The message a failing test shows, and the remedy it ends with: the numbers, the interval, the
rule that fired and what to do (docs/verdict.md, "Remedies")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_quantguard.formatting import drop_formatter, drop_text, row_formatter, score_texts
from pytest_quantguard.verdict import REMEDIES, Verdict, inconclusive_remedy

if TYPE_CHECKING:
    from pytest_quantguard.judging import Plan, Subject
    from pytest_quantguard.metrics import Evaluation, Metric
    from pytest_quantguard.record import Comparison
    from pytest_quantguard.settings import Execution, Tolerance

SHOWN_SLICES = 3  # rows of "which classes / slices lost most" in a message
SHOWN_LAYERS = 5  # diagnosed layers in a message (docs/risks.md, "Where the notes appear")
SHORT_CODE = 6  # a remedy's code of at most this many lines is shown in the message itself
ANALYTIC = ("linearized", "linearized-cluster", "wilson")  # interval methods without resamples
WHAT = {"absolute": "drop", "relative": "relative drop", "error-increase": "error-rate increase"}


@dataclass(frozen=True)
class Judgement:
    """Everything one metric's verdict rests on: what the message and the remedy are made of."""

    plan: Plan
    subject: Subject
    tolerance: Tolerance
    execution: Execution
    evaluation: Evaluation
    details: dict[str, Any]
    verdict: Verdict
    rule: str
    established: bool
    culprit: dict[str, Any] | None  # the class or slice that decided the verdict (slice_max_drop)
    notes: list[str]
    checks: list[dict[str, Any]] = field(default_factory=list)  # of the reference (judging)

    @property
    def metric(self) -> Metric:
        return self.plan.metric

    @property
    def margin(self) -> str:
        return self.plan.margin

    @property
    def max_drop(self) -> float:
        return self.plan.max_drop

    @property
    def suspicious(self) -> bool:
        """Shipped with the whole interval below -max_drop: a gain too large to be believed."""
        return self.verdict == Verdict.SHIP and self.evaluation.interval.high < -self.max_drop

    @property
    def fmt(self):
        return drop_formatter(self.metric.points, self.margin)


def message(judgement: Judgement) -> str:
    """The whole message: headline, scores, drop and interval, what lost most, notes, rule, remedy."""
    j = judgement
    fmt, low, high = j.fmt, j.evaluation.interval.low, j.evaluation.interval.high
    dataset = j.subject.dataset
    failed = [check for check in j.checks if not check["passed"]]
    lines = [
        f"quantguard verdict: {j.verdict}"
        + (" (but a check FAILED: the gate fails)" if failed else "")
        + f" (candidate {j.subject.candidate.description} vs "
        f"reference {j.subject.reference.description} on {dataset.description}, n={dataset.n}"
        + (f", {dataset.n_groups} groups" if dataset.n_groups else "") + ")",
        "  {}: reference {}, candidate {}".format(j.metric.key, *score_texts(
            j.evaluation.reference_score, j.evaluation.candidate_score)),
    ]
    # a failed check of the reference fails the test whatever the verdict (docs/verdict.md,
    # "Checks of the reference")
    lines += [f"  FAILED check: {check['rule']}" for check in j.checks if not check["passed"]]
    if j.margin == "error-increase":
        lines.append(f"  error rate: reference {1 - j.evaluation.reference_score:.4f}, candidate "
                     f"{1 - j.evaluation.candidate_score:.4f} (max_error_increase: the candidate's "
                     f"error rate may be at most {1 + j.max_drop:g}x the reference's)")
    shown = f"[{drop_text(low)}, {drop_text(high)}]" if j.margin == "absolute" else \
        f"[{fmt(low)}, {fmt(high)}]"
    method = j.evaluation.interval.method
    lines.append(f"  {WHAT[j.margin]} {fmt(j.evaluation.drop)}, {100 * j.tolerance.confidence:g}% interval "
                 f"{shown} ({method}" + (", analytic: no resamples)" if method in ANALYTIC else
                                         f", {j.execution.resamples} resamples)"))
    lines += _family_lines(j)
    lines += _lost_most(j)
    lines += _method_lines(method, j.details.get("groups", dataset.n_groups))
    lines.extend(f"  note: {note}" for note in j.notes)
    if j.suspicious:
        lines.append("  warning: the candidate is better beyond the limit; check that both models "
                     "get the same preprocessing")
    rule = j.rule
    if j.established:
        rule += f"; degradation established (lower bound {fmt(low)} >= max_drop)"
    lines.append(f"  rule: {rule}")
    lines.append(f"  remedy: {remedy(j)}")
    return "\n".join(lines)


def _family_lines(j: Judgement) -> list[str]:
    """The family's own figures: flips and McNemar, disagreements, the worst class, LM extras."""
    details, lines = j.details, []
    if "reference_only" in details:
        where = f"in class {details['worst_class']!r}, " if "worst_class" in details else ""
        line = (f"  {where}samples only the reference gets right: {details['reference_only']}; "
                f"only the candidate: {details['candidate_only']}")
        if "mcnemar_p" in details:
            p = details["mcnemar_p"]
            shown_p = f"= {p:.3g}" if p >= 1e-300 else "< 1e-300"
            line += f"; McNemar exact p {shown_p} (tests for any difference; not used by the gate)"
        lines.append(line)
    if "disagreements" in details:
        lines.append(f"  the models' top-1 classes differ on {details['disagreements']} of "
                     f"{j.subject.dataset.n} samples (no labels needed)")
    if "worst_class" in details:
        lines.append(f"  worst class: {details['worst_class']!r} (n={details['worst_class_n']}); "
                     "every class's accuracy is gated")
    if "top_token_agreement" in details:
        lines.append(f"  beside it: top-token agreement {100 * details['top_token_agreement']:.2f}%, "
                     f"mean KL(reference || candidate) {details['mean_kl']:.4g} nats per token "
                     f"({details['tokens']:,} tokens)")
    return lines


def _lost_most(j: Judgement) -> list[str]:
    """The classes and slices that lost most, by upper bound (when any lost at all)."""
    lines = []
    for key, what_rows in (("per_class", "classes"), ("per_size", "object sizes"),
                           ("slices", "slices")):
        rows = [row for row in j.details.get(key, ()) if "drop" in row]
        if rows and any(row["drop"] > 0 for row in rows):
            if key == "per_class":  # each class's accuracy, unless the metric is itself 0/1
                label, short = j.details.get("per_class_metric", j.metric.key), \
                    row_formatter(True, j.margin)
            else:  # detection's per-size rows are mAP, in points on the absolute margin
                label, short = j.metric.key, row_formatter(
                    j.metric.kind == "binary" or (key == "per_size" and j.metric.bounded), j.margin)
            shown_rows = "; ".join(
                f"{row['slice']!r} (n={row['n']}) {short(row['drop'])} "
                f"[{short(row['low'])}, {short(row['high'])}]"
                + (f" {row['verdict']}" if "verdict" in row else "")
                for row in rows[:SHOWN_SLICES])
            lines.append(f"  {what_rows} that lost most ({label}, by upper bound): {shown_rows}")
    return lines


def _method_lines(method: str, groups: int | None) -> list[str]:
    if method == "degenerate-fallback":
        return ["  (degenerate-fallback: the two models never differ here, so every bootstrap "
                "resample is identical; the interval is the score bound for zero differences)"]
    if method == "cluster-bca":
        return [f"  (cluster-bca: the {groups} groups are resampled as units, because "
                "samples within a group are correlated)"]
    return []


def remedy(j: Judgement) -> str:
    """What to do: for an inconclusive verdict, how many samples would resolve it (or why more
    data will not help); else the verdict's standing remedy."""
    failed = [check["check"] for check in j.checks if not check["passed"]]
    if failed and set(failed) == {"misaligned"}:
        return ("fix the candidate's results first (the failed check above): write each row beside "
                "its sample's id, or key the rows by input hashes; until they are aligned, no "
                "verdict about the quantization holds")
    if failed:
        return ("fix the data or the reference first (the failed check above): until the "
                "reference is right on these labels, no verdict about the quantization holds")
    if j.verdict != Verdict.INCONCLUSIVE:
        return REMEDIES[j.verdict]
    if j.culprit is not None:
        culprit = j.culprit
        return (f"the {culprit['what']} {culprit['slice']!r} has {culprit['n']} samples, too few "
                f"to resolve slice_max_drop {j.fmt(j.tolerance.slice_max_drop)} on its own: collect more "
                "samples of it (size it with `quantguard plan` and that slice's discordance), or "
                "raise slice_max_drop")
    sizing = j.evaluation.sizing
    if sizing is None:
        return "more samples would narrow the interval"
    return inconclusive_remedy(j.evaluation.drop, j.max_drop, sizing.units,
                               discordance=sizing.discordance, variance=sizing.variance,
                               unit=sizing.unit, confidence=j.tolerance.confidence, fmt=j.fmt)


def suspicious_gain_text(comparison: Comparison) -> str:
    """The warning for a candidate better than its reference beyond the limit."""
    low, high = comparison.interval
    return (f"{comparison.id or comparison.metric}: the candidate scores better than the "
            f"reference beyond the limit ({comparison.metric} drop {comparison.drop:+.4g}, whole "
            f"interval [{low:+.4g}, {high:+.4g}] below -max_drop {-comparison.max_drop:+.4g}); a "
            "quantized model rarely beats its reference: this usually means mismatched "
            "preprocessing between the two models (input scaling, layout, tokenizer, label order)")


def with_findings(text: str, details: dict[str, Any]) -> str:
    """``text`` (a message) with ``findings_lines`` before its rule, so that it still ends with
    the remedy."""
    lines = text.split("\n")
    found = findings_lines(details)
    at = max((index for index, line in enumerate(lines) if line.startswith("  rule: ")),
             default=len(lines))
    return "\n".join([*lines[:at], *found, *lines[at:]])


def findings_lines(details: dict[str, Any]) -> list[str]:
    """What a comparison that did not ship adds to its message: the risk notes, the top diagnosed
    layers and the remedies (docs/risks.md, "Where the notes appear")."""
    lines = []
    risks = details.get("risks") or []
    if risks:
        lines.append("  risk notes (docs/risks.md):")
        lines += [f"    - {risk['kind']} ({risk['model']}): {risk['text']}" for risk in risks]
    diagnosis = details.get("diagnosis")
    if diagnosis:
        lines += _diagnosis_lines(diagnosis)
    remedies = details.get("remedies") or []
    if remedies:
        lines.append("  remedies (their code: \"remedies\" in the JSON and Markdown reports):")
        for each in remedies:
            lines.append(f"    - {each['title']}: {each['why']}")
            code = each.get("code", "").strip("\n").splitlines()
            if code and len(code) <= SHORT_CODE:
                lines += [f"        {line}" for line in code]
    return lines


def _diagnosis_lines(diagnosis: dict[str, Any]) -> list[str]:
    """The diagnosis's top layers, one line each (or why none ran)."""
    if diagnosis.get("skipped"):
        return [f"  diagnosis: not run ({diagnosis['skipped']})"]
    layers = diagnosis.get("layers") or []
    lines = [f"  diagnosis ({diagnosis.get('format', '?')}; local error = "
             f"{diagnosis.get('measure', '?')}; {diagnosis.get('samples', '?')} samples, seed "
             f"{diagnosis.get('seed', '?')}, {diagnosis.get('seconds', 0.0):.1f} s): the layers "
             "that lose most on their own"]
    for layer in layers[:SHOWN_LAYERS]:
        weight = layer.get("weight")
        error = layer.get("weight_error")
        shown_weight = "-" if weight is None else weight + (
            "" if error is None else f" (weight error {error:.3g})")
        risks = ", ".join(layer.get("risks") or []) or "-"
        lines.append(f"    {layer['rank']}. {layer['node']} ({layer['op_type']}) local error "
                     f"{layer['local_error']:.4g}, weight {shown_weight}, risks: {risks}")
    if diagnosis.get("not_matched"):
        lines.append(f"    ({len(diagnosis['not_matched'])} layer(s) not matched between the "
                     "models: see the JSON report)")
    return lines
