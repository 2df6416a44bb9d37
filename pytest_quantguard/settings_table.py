"""The rows of the one settings table (docs/architecture.md, "Settings: one table, one resolver").

``settings.py`` re-exports every name here and holds the typed ``Tolerance`` / ``Execution`` and the
resolver; this module holds only the table: each ``Setting`` row, the layers and the key lists the
marker signature, the schema's thresholds and docs/options.md are generated from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_quantguard.validators import (
    DIAGNOSE,
    GATES,
    batch_size,
    choice,
    count,
    flag,
    gate_name,
    memory_size,
    metric_name,
    metric_table,
    name_or_index,
    open_fraction,
    optional_bool,
    positive_float,
    positive_int,
    reference_floor,
    seed_int,
)

INI, CLI, MARKER, CALL = "ini", "cli", "marker", "call"  # the layers, farthest first
RUN_WIDE = (INI, CLI)
PER_TEST = (MARKER, CALL)
EVERYWHERE = (INI, CLI, MARKER, CALL)
NUMBER = {"type": "number"}
# every limit's unit, in its help and errors (docs/verdict.md, "Limits and their units")
UNIT = ("in the metric's units: a fraction for scores in [0, 1], 0.01 = 1 point; with relative=True "
        "0.01 = 1 percent")
OPTIONAL_NUMBER = {"type": ["number", "null"]}


@dataclass(frozen=True)
class Setting:
    """One setting: ``--quant-<flag>`` and ``quant_<key>`` where its layers include the command
    line and the ini file; a marker / call keyword where they include those."""

    key: str
    default: Any
    validate: Callable[[Any], Any]
    help: str
    metavar: str | None = None
    layers: tuple[str, ...] = RUN_WIDE
    # recorded in every comparison's "thresholds": the JSON Schema of the recorded value
    threshold: Mapping[str, Any] | None = None
    overrides: bool = True  # a marker or call setting it is listed among the test's overrides

    @property
    def flag(self) -> str:
        return "--quant-" + self.key.replace("_", "-")

    @property
    def ini(self) -> str:
        return "quant_" + self.key


SETTINGS: tuple[Setting, ...] = (
    Setting("data", None, str, "validation set folder (.npz shards, .npy arrays, CSV tables or an "
            "image folder); a command-line path resolves against the invocation dir, the ini path "
            "against the ini file", "DIR"),
    Setting("max_drop", 0.01, positive_float, "ship limit: the largest acceptable drop, " + UNIT, "X",
            EVERYWHERE, threshold=NUMBER),
    Setting("qat_limit", 0.03, positive_float, "try-qat / stay-fp16 boundary, above max_drop, " + UNIT, "X",
            EVERYWHERE, threshold=NUMBER),
    Setting("metric", None, metric_name, "the metric to gate (None: the task's default: accuracy, "
            "rmse, perplexity or agreement)", layers=PER_TEST, overrides=False),
    Setting("relative", None, optional_bool, "judge the relative drop, cand/ref - 1 (None: the "
            "metric's default)", layers=PER_TEST, threshold={"type": "boolean"}),
    Setting("confidence", 0.95, open_fraction, "two-sided interval level", "C", EVERYWHERE),
    Setting("bootstrap", 10000, positive_int, "bootstrap resamples", "N"),
    Setting("seed", 0, seed_int, "resampling seed", "S"),
    Setting("gate", "upper", gate_name, "what the limit is held against: the interval's upper "
            "bound, or the point estimate", "{" + ",".join(GATES) + "}", EVERYWHERE,
            threshold={"enum": list(GATES)}),
    Setting("output", None, name_or_index, "the model output to score: a name or an index (None: "
            "the manifest's output, else the first)", layers=PER_TEST, overrides=False),
    Setting("max_error_increase", None, positive_float, "0/1 metrics, instead of max_drop: the "
            "candidate's error rate may grow by at most this fraction of the reference's (0.2 = "
            "20 percent; below 1)",
            layers=PER_TEST, threshold=OPTIONAL_NUMBER),
    Setting("metrics", None, metric_table, "several metrics on one run of each model: {name: "
            "max_drop or None (the max_drop in force)}, each " + UNIT, layers=PER_TEST),
    Setting("slice_max_drop", None, positive_float, "every class and manifest slice must also "
            "ship under this limit (otherwise they are reported only), " + UNIT, layers=PER_TEST,
            threshold=OPTIONAL_NUMBER),
    Setting("min_reference", None, reference_floor, "the reference's least acceptable score on this "
            "data, in the metric's own units and direction (a ceiling for lower-is-better metrics "
            "such as rmse): one number, or a table per metric ('accuracy:0.90, rmse:55'); a miss "
            "fails the test: the data or the reference is wrong, not the quantization", "TABLE",
            EVERYWHERE, threshold=OPTIONAL_NUMBER),
    Setting("inconclusive", "fail", choice("fail", "warn"), "what an inconclusive verdict does: "
            "fail the test, or pass with a QuantGuardWarning", "{fail,warn}"),
    Setting("diagnose", "on-failure", choice(*DIAGNOSE), "per-layer diagnosis of an ONNX pair "
            "(which layers lose the accuracy, and remedies as code): on a failing verdict only, "
            "on every comparison, or never (docs/diagnosis.md)", "{" + ",".join(DIAGNOSE) + "}"),
    Setting("batch_size", "auto", batch_size, "inference batch: auto (the largest power of two "
            "whose estimated memory fits --quant-memory, docs/models.md) or a number, e.g. the "
            "deployment's batch for a dynamically quantized model (never larger than the set; a "
            "model's fixed batch dimension wins)", "{auto,N}", EVERYWHERE),
    Setting("memory", 512 * 2**20, memory_size, "memory budget of one batch (inputs, outputs and "
            "activations, estimated from the models and the data's shapes) that auto batches fit: "
            "bytes, or 512MiB, 1GiB (default: 512MiB)", "SIZE"),
    Setting("max_samples", None, positive_int, "run on a stratified, seeded subset of at most N "
            "samples, for fast local iteration; every report marks such a run advisory", "N"),
    Setting("device", "cpu", choice("cpu", "cuda"), "where models run: onnxruntime's CPU or CUDA "
            "execution provider, torch's cpu or cuda device", "{cpu,cuda}"),
    Setting("cache", True, flag, "keep the reference model's outputs between runs, under pytest's "
            "cache directory (--quant-no-cache: off; a reference is still reused within a run)"),
    Setting("report", None, str, "write the JSON report (every comparison, the environment, the "
            "settings and the policy) to PATH", "PATH"),
    Setting("markdown", None, str, "write the Markdown summary to PATH (it is also appended to "
            "$GITHUB_STEP_SUMMARY when that variable is set)", "PATH"),
    Setting("plot", None, str, "write a forest plot (PNG) of every comparison's drop and interval "
            "to PATH (needs the plot extra)", "PATH"),
    # Project-level settings with no command-line twin: the policy lives in the project's config,
    # where review sees it (docs/verdict.md, "The policy floor").
    Setting("junit", "both", choice("testcase", "suite", "both", "off"), "which JUnit properties "
            "quantguard writes: per testcase, per suite, both, or none", layers=(INI,)),
    Setting("policy_max_drop", None, positive_float, "the largest max_drop (and metrics= limit, "
            "slice_max_drop) any marker, call or option may set; a test asking for more fails; "
            + UNIT,
            layers=(INI,)),
    Setting("policy_max_error_increase", None, positive_float, "the largest max_error_increase "
            "any marker, call or option may set (0.2 = 20 percent)", layers=(INI,)),
    Setting("policy_min_reference", None, reference_floor, "a min_reference table every "
            "comparison of the named metrics must meet besides its own ('accuracy:0.90, rmse:55')",
            layers=(INI,)),
    Setting("policy_min_confidence", None, open_fraction, "the lowest confidence any marker, call "
            "or option may set", layers=(INI,)),
    Setting("policy_allow_point_gate", True, flag, "whether gate='point' (the point estimate "
            "instead of the upper bound) is allowed", layers=(INI,)),
    Setting("policy_min_bootstrap", None, positive_int, "the fewest bootstrap resamples "
            "(--quant-bootstrap) a run may use", layers=(INI,)),
    Setting("require_comparisons", 0, count, "fail the session when fewer comparisons ran (a -k "
            "typo or a skipped gate must not turn the run green)", layers=(INI,)),
)

BY_KEY = {setting.key: setting for setting in SETTINGS}
OPTIONS = tuple(setting for setting in SETTINGS if CLI in setting.layers)  # --quant-* and ini
INI_KEYS = tuple(setting for setting in SETTINGS if setting.layers == (INI,))
PATH_OPTIONS = tuple(option.key for option in OPTIONS if option.metavar in ("DIR", "PATH"))
TOLERANCE_KEYS = tuple(setting.key for setting in SETTINGS if MARKER in setting.layers)
THRESHOLD_KEYS = tuple(setting.key for setting in SETTINGS if setting.threshold is not None)
MARKER_SIGNATURE = "quant_tolerance(" + ", ".join(
    f"{key}={BY_KEY[key].default!r}" for key in TOLERANCE_KEYS) + ")"
# Two ways to state the one ship limit: a nearer layer's limit replaces a farther layer's.
LIMIT_KEYS = ("max_drop", "max_error_increase")
# Two ways to say what is measured: one metric, or several with their limits.
METRIC_KEYS = ("metric", "metrics")


def default(key: str) -> Any:
    """The table's default for ``key`` (the one place defaults are written)."""
    return BY_KEY[key].default
