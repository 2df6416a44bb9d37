"""Our paired-drop intervals against ``scipy.stats.bootstrap``: run by hand, never in CI.

    python benchmarks/bench_intervals.py              # full run (a few minutes on 2 cores)
    python benchmarks/bench_intervals.py --quick      # smoke run: n in {1e3, 1e4, 1e6}
    python benchmarks/bench_intervals.py --repeat 5   # best of 5 for every call under 2 s

Prints the machine, then ONE Markdown table: per metric family and n, our time, scipy's time
(``paired=True, vectorized=True``, the same 10,000 resamples, ``batch`` sized to stay far under
1 GB, seeded ``rng``) and the ratio scipy / ours, the peak memory of the continuous path, how far
our limits are from scipy's, and the performance targets as PASS/FAIL. Progress goes to stderr.

Families: (a) 0/1 accuracy drop (``paired_binary_interval`` from (b, c), the counting included;
scipy: percentile of mean(f - q)); (b) macro-F1 drop, 5 classes (``macro_f1_interval``; scipy:
percentile and BCa of a vectorized macro-F1 statistic); (c) relative MAE (``ratio_interval``;
scipy: percentile and BCa of the log ratio of sums); (d) ``compare()`` end to end on accuracy with
in-memory callables. Only numpy, scipy and pytest_quantguard are used.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import scipy
from _machine import load_text, machine_line  # benchmarks/_machine.py (run as scripts)
from scipy import stats

import pytest_quantguard
from pytest_quantguard.comparison import compare
from pytest_quantguard.stats import paired_binary_interval
from pytest_quantguard.stats.families import macro_f1_interval, ratio_interval

try:  # Unix only; without it the memory column reads n/a
    import resource
except ImportError:  # pragma: no cover
    resource = None

RESAMPLES = 10_000
CONFIDENCE = 0.95
CLASSES = 5
SEED = 20240601
SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000, 1_000_000)
PERCENTILE_MAX_N, BCA_MAX_N = 100_000, 10_000  # scipy cells above these are estimated, not run
QUICK_PERCENTILE_MAX_N, QUICK_BCA_MAX_N = 10_000, 1_000
MAX_SCIPY_SECONDS = 60.0  # a scipy cell estimated slower than this is skipped
REPEAT_BELOW_SECONDS = 2.0  # calls faster than this are repeated (best of --repeat)
SCIPY_BATCH_BYTES = 512 * 2**20  # scipy's per-batch working set, kept well under 1 GB
TARGET_N = 1_000_000
MiB = 2**20

ACCURACY, MACRO_F1, CONTINUOUS, COMPARE = "accuracy", "macro_f1", "continuous", "compare"
LABELS = {
    ACCURACY: "0/1 accuracy drop",
    MACRO_F1: f"macro-F1 drop ({CLASSES} classes)",
    CONTINUOUS: "relative MAE (continuous)",
    COMPARE: "compare() end to end, accuracy",
}
# Rough bytes per resampled element for scipy (int64 indices, gathered data, statistic temporaries).
SCIPY_BYTES_PER_ELEMENT = {ACCURACY: 32, MACRO_F1: 64, CONTINUOUS: 48}
TARGETS = {  # family -> (text, seconds limit, memory limit in bytes or None), checked at TARGET_N
    ACCURACY: ("< 50 ms", 0.050, None),
    MACRO_F1: ("< 50 ms", 0.050, None),
    CONTINUOUS: ("< 60 s and < 1 GB", 60.0, 2**30),
    COMPARE: ("< 1 s", 1.0, None),
}


# --- data --------------------------------------------------------------------------------------

def accuracy_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample 0/1 correctness (int8): reference 90% right, 2% of samples flipped."""
    rng = np.random.default_rng([SEED, n, 1])
    reference = (rng.random(n) < 0.9).astype(np.int8)
    candidate = reference.copy()
    flip = rng.random(n) < 0.02
    candidate[flip] = 1 - candidate[flip]
    return reference, candidate


def macro_f1_data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' predictions (int8): reference 85% right, candidate agrees on 97%."""
    rng = np.random.default_rng([SEED, n, 2])
    labels = rng.integers(0, CLASSES, n, dtype=np.int8)
    reference = np.where(rng.random(n) < 0.85, labels, rng.integers(0, CLASSES, n, dtype=np.int8))
    candidate = np.where(rng.random(n) < 0.97, reference,
                         rng.integers(0, CLASSES, n, dtype=np.int8))
    return labels, reference.astype(np.int8), candidate.astype(np.int8)


def continuous_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample absolute errors (float64) of a reference and a slightly noisier candidate."""
    rng = np.random.default_rng([SEED, n, 3])
    residual = rng.standard_normal(n)
    candidate = np.abs(residual + 0.15 * rng.standard_normal(n))
    return np.abs(residual), candidate


def compare_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Class scores (n, 10) float32 and labels: the models are callables on these scores."""
    rng = np.random.default_rng([SEED, n, 4])
    labels = rng.integers(0, 10, n)
    scores = rng.standard_normal((n, 10), dtype=np.float32)
    scores[np.arange(n), labels] += 1.5
    return scores, labels


def identity_model(x: np.ndarray) -> np.ndarray:
    return x


def quantized_model(x: np.ndarray) -> np.ndarray:
    """The reference scores rounded to a 1/8 grid (ties then resolve to the first class)."""
    return np.round(x * 8.0) / 8.0


# --- our intervals -----------------------------------------------------------------------------

def ours_accuracy(reference: np.ndarray, candidate: np.ndarray):
    b = int(np.count_nonzero((reference == 1) & (candidate == 0)))
    c = int(np.count_nonzero((reference == 0) & (candidate == 1)))
    return paired_binary_interval(b, c, len(reference), confidence=CONFIDENCE,
                                  resamples=RESAMPLES, rng=np.random.default_rng(SEED))


def ours_macro_f1(labels, reference, candidate):
    return macro_f1_interval(labels, reference, candidate, confidence=CONFIDENCE,
                             resamples=RESAMPLES, rng=np.random.default_rng(SEED))


def ours_continuous(reference_errors, candidate_errors):
    return ratio_interval(reference_errors, candidate_errors, higher_is_better=False,
                          confidence=CONFIDENCE, resamples=RESAMPLES,
                          rng=np.random.default_rng(SEED))


# --- scipy statistics (vectorized over the leading axes, the samples on `axis`) ------------------

def mean_difference(reference, candidate, axis=-1):
    return np.mean(reference - candidate, axis=axis)


def log_ratio_of_sums(reference, candidate, axis=-1):
    """log(sum candidate / sum reference): the working scale of the relative MAE drop."""
    return np.log(np.sum(candidate, axis=axis)) - np.log(np.sum(reference, axis=axis))


def macro_f1_drop_statistic(labels, reference, candidate):
    """Vectorized macro-F1(reference) - macro-F1(candidate), each averaged over its class set on
    the whole data (labels present in the labels or its predictions, as ours and scikit-learn do),
    a class's F1 being 0 where it is 0/0. Confusion matrices of all resamples from one bincount."""
    masks = [np.bincount(labels, minlength=CLASSES).astype(bool)
             | np.bincount(predicted, minlength=CLASSES).astype(bool)
             for predicted in (reference, candidate)]

    def statistic(y, ref, cand, axis=-1):
        y, ref, cand = (np.moveaxis(a, axis, -1) for a in (y, ref, cand))
        lead, n = y.shape[:-1], y.shape[-1]
        rows = math.prod(lead)
        offsets = (np.arange(rows, dtype=np.int64) * CLASSES * CLASSES)[:, None]
        base = y.reshape(rows, n).astype(np.int64)
        base *= CLASSES
        base += offsets  # (resample, label) cell index, shared by both models
        f1 = []
        for predicted, mask in zip((ref, cand), masks, strict=True):
            codes = base + predicted.reshape(rows, n)
            matrix = np.bincount(codes.ravel(), minlength=rows * CLASSES * CLASSES)
            matrix = matrix.reshape(rows, CLASSES, CLASSES)  # [resample, label, prediction]
            tp = np.diagonal(matrix, axis1=1, axis2=2).astype(np.float64)
            denominator = matrix.sum(axis=1) + matrix.sum(axis=2)
            scores = np.divide(2.0 * tp, denominator, out=np.zeros_like(tp),
                               where=denominator > 0)
            f1.append(scores[:, mask].mean(axis=1))
        return (f1[0] - f1[1]).reshape(lead)

    return statistic


def scipy_batch(family: str, n: int) -> int:
    return int(max(1, min(RESAMPLES, SCIPY_BATCH_BYTES // (n * SCIPY_BYTES_PER_ELEMENT[family]))))


def scipy_interval(family: str, data: tuple, statistic, method: str) -> tuple[float, float]:
    result = stats.bootstrap(data, statistic, n_resamples=RESAMPLES,
                             batch=scipy_batch(family, len(data[0])), vectorized=True, paired=True,
                             method=method, confidence_level=CONFIDENCE,
                             rng=np.random.default_rng(SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# --- measuring -----------------------------------------------------------------------------------

def timed(function, repeat: int):
    """(best seconds, last result): calls under REPEAT_BELOW_SECONDS are repeated up to `repeat`."""
    best, result = math.inf, None
    for attempt in range(max(1, repeat)):
        gc.collect()
        start = time.perf_counter()
        result = function()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        if attempt == 0 and elapsed >= REPEAT_BELOW_SECONDS:
            break
    return best, result


def current_rss() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def peak_rss() -> int | None:
    """The process's peak RSS: ru_maxrss (on Linux it also counts the parent's peak at exec)."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def reset_peak_rss() -> bool:
    """Reset Linux's VmHWM to the current RSS (writing 5 to /proc/self/clear_refs, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def vm_hwm() -> int | None:
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def continuous_probe(n: int, repeat: int) -> dict:
    """Run in a fresh process: time ratio_interval at n, its peak RSS above the RSS before the
    call, and (in one more, untimed call) the peak of tracemalloc-traced allocations."""
    reference, candidate = continuous_data(n)
    warm_reference, warm_candidate = continuous_data(200)  # loads whatever the call loads lazily
    ratio_interval(warm_reference, warm_candidate, higher_is_better=False, confidence=CONFIDENCE,
                   resamples=100, rng=np.random.default_rng(0))
    gc.collect()
    baseline = current_rss()
    hwm = baseline is not None and reset_peak_rss() and vm_hwm() is not None
    if not hwm:
        baseline = peak_rss()
    seconds, result = timed(functools.partial(ours_continuous, reference, candidate), repeat)
    peak = vm_hwm() if hwm else peak_rss()
    extra = None if baseline is None or peak is None else max(0, peak - baseline)
    gc.collect()
    tracemalloc.start()
    ours_continuous(reference, candidate)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": seconds, "peak_extra_bytes": extra, "traced_peak_bytes": traced,
            "rss_source": "VmHWM" if hwm else "ru_maxrss", "low": result.low,
            "high": result.high, "method": result.method}


def run_continuous_probe(n: int, repeat: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--continuous-probe", str(n),
               "--repeat", str(repeat)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- formatting ----------------------------------------------------------------------------------

def seconds_text(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 600:
        return f"{seconds:.3g} s"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} days"


def ratio_text(ratio: float) -> str:
    return f"×{ratio:,.0f}" if ratio >= 10 else f"×{ratio:.2g}"


def bytes_text(size: int | None) -> str:
    return "n/a" if size is None else f"{size / MiB:,.0f} MiB"


def memory_text(row: dict) -> str:
    if row["family"] != CONTINUOUS:
        return "—"
    return f"{bytes_text(row['memory'])} / {bytes_text(row['traced'])}"


class ScipyColumn:
    """One scipy method for one family: measured cells, and estimates for the skipped ones."""

    def __init__(self, family: str, method: str, max_n: int, percentile: ScipyColumn | None = None):
        self.family, self.method, self.max_n, self.percentile = family, method, max_n, percentile
        self.measured: dict[int, float] = {}

    def estimate(self, n: int) -> float | None:
        """Linear in n for percentile; BCa = percentile (linear) + jackknife (quadratic in n)."""
        if not self.measured:
            return None
        base = max(self.measured)
        if self.method == "percentile":
            return self.measured[base] * n / base
        resampling = self.percentile.estimate(n) if self.percentile else None
        base_resampling = self.percentile.measured.get(base) if self.percentile else None
        if resampling is None or base_resampling is None:
            return self.measured[base] * (n / base) ** 2
        jackknife = max(self.measured[base] - base_resampling, 0.0)
        return resampling + jackknife * (n / base) ** 2

    def run(self, n: int, data: tuple, statistic, ours: float, repeat: int):
        """(cell text, limits or None)."""
        estimate = self.estimate(n)
        too_slow = estimate is not None and estimate > MAX_SCIPY_SECONDS
        if n > self.max_n or too_slow:
            if estimate is None:
                return "skipped", None
            why = f" > {MAX_SCIPY_SECONDS:.0f} s" if n <= self.max_n else ""
            return f"skipped (est. {seconds_text(estimate)}{why}; ~{ratio_text(estimate / ours)})", None
        log(f"  scipy {self.method} n={n:,} (batch {scipy_batch(self.family, n)})")
        seconds, limits = timed(lambda: scipy_interval(self.family, data, statistic, self.method),
                                repeat)
        self.measured[n] = seconds
        return f"{seconds_text(seconds)} ({ratio_text(seconds / ours)})", limits


def expm1(limits: tuple[float, float] | None) -> tuple[float, float] | None:
    """scipy's log-ratio limits on our drop scale (cand/ref - 1)."""
    return None if limits is None else (math.expm1(limits[0]), math.expm1(limits[1]))


def limits_gap(ours: tuple[float, float], theirs: tuple[float, float] | None, label: str) -> str:
    """max |our limit - scipy's| as a share of scipy's interval width."""
    if theirs is None:
        return "—"
    width = theirs[1] - theirs[0]
    gap = max(abs(ours[0] - theirs[0]), abs(ours[1] - theirs[1]))
    return f"{100 * gap / width:.1f}% ({label})" if width > 0 else "—"


def target_cell(family: str, n: int, seconds: float, memory: int | None) -> tuple[str, str]:
    if n != TARGET_N:
        return "—", "—"
    text, limit, memory_limit = TARGETS[family]
    passed = seconds < limit
    if memory_limit is not None:
        passed = passed and memory is not None and memory < memory_limit
    return text, "PASS" if passed else "FAIL"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_info() -> list[str]:
    return [
        machine_line(),
        f"- python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"pytest_quantguard {pytest_quantguard.__version__}",
        f"- {RESAMPLES:,} resamples, confidence {CONFIDENCE}, seeded rng; scipy.stats.bootstrap with "
        "paired=True, vectorized=True",
    ]


# --- the run -------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: n in {1e3, 1e4, 1e6}; scipy percentile to 1e4, BCa to 1e3")
    parser.add_argument("--repeat", type=int, default=3,
                        help="best of N for every call under 2 s (default 3)")
    parser.add_argument("--continuous-probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.continuous_probe is not None:
        print(json.dumps(continuous_probe(args.continuous_probe, args.repeat)))
        return

    started = time.perf_counter()
    sizes = QUICK_SIZES if args.quick else SIZES
    percentile_max = QUICK_PERCENTILE_MAX_N if args.quick else PERCENTILE_MAX_N
    bca_max = QUICK_BCA_MAX_N if args.quick else BCA_MAX_N
    header = machine_info()
    rows: list[dict] = []
    rss_source = "n/a"

    # (a) accuracy: ours vs scipy percentile of mean(f - q)
    column = ScipyColumn(ACCURACY, "percentile", percentile_max)
    for n in sizes:
        log(f"{LABELS[ACCURACY]} n={n:,}")
        data = accuracy_data(n)
        ours, result = timed(functools.partial(ours_accuracy, *data), args.repeat)
        text, limits = column.run(n, data, mean_difference, ours, args.repeat)
        rows.append(dict(family=ACCURACY, n=n, ours=ours, method=result.method, percentile=text,
                         bca="—", gap=limits_gap((result.low, result.high), limits, "pct")))

    # (b) macro-F1: ours vs scipy percentile and BCa of a vectorized macro-F1 statistic
    percentile = ScipyColumn(MACRO_F1, "percentile", percentile_max)
    bca = ScipyColumn(MACRO_F1, "BCa", bca_max, percentile)
    for n in sizes:
        log(f"{LABELS[MACRO_F1]} n={n:,}")
        data = macro_f1_data(n)
        statistic = macro_f1_drop_statistic(*data)
        ours, result = timed(functools.partial(ours_macro_f1, *data), args.repeat)
        percentile_text, percentile_limits = percentile.run(n, data, statistic, ours, args.repeat)
        bca_text, bca_limits = bca.run(n, data, statistic, ours, args.repeat)
        gap = limits_gap((result.low, result.high), bca_limits, "BCa") if bca_limits else \
            limits_gap((result.low, result.high), percentile_limits, "pct")
        rows.append(dict(family=MACRO_F1, n=n, ours=ours, method=result.method,
                         percentile=percentile_text, bca=bca_text, gap=gap))

    # (c) relative MAE: ours in a fresh process (time and peak RSS) vs scipy on the log ratio
    percentile = ScipyColumn(CONTINUOUS, "percentile", percentile_max)
    bca = ScipyColumn(CONTINUOUS, "BCa", bca_max, percentile)
    for n in sizes:
        log(f"{LABELS[CONTINUOUS]} n={n:,} (ours in a fresh process)")
        probe = run_continuous_probe(n, args.repeat)
        ours = probe["seconds"]
        data = continuous_data(n)
        percentile_text, percentile_limits = percentile.run(n, data, log_ratio_of_sums, ours,
                                                            args.repeat)
        bca_text, bca_limits = bca.run(n, data, log_ratio_of_sums, ours, args.repeat)
        ours_limits = (probe["low"], probe["high"])
        gap = limits_gap(ours_limits, expm1(bca_limits), "BCa") if bca_limits else \
            limits_gap(ours_limits, expm1(percentile_limits), "pct")
        rows.append(dict(family=CONTINUOUS, n=n, ours=ours, method=probe["method"],
                         percentile=percentile_text, bca=bca_text, gap=gap,
                         memory=probe["peak_extra_bytes"], traced=probe["traced_peak_bytes"]))
        rss_source = probe["rss_source"]
        del data

    # (d) compare() end to end: only the call is timed, the data made beforehand
    for n in sizes:
        log(f"{LABELS[COMPARE]} n={n:,}")
        scores, labels = compare_data(n)
        ours, comparison = timed(functools.partial(compare, identity_model, quantized_model,
                                                   data=(scores, labels), resamples=RESAMPLES),
                                 args.repeat)
        rows.append(dict(family=COMPARE, n=n, ours=ours, method=comparison.method,
                         percentile="—", bca="—", gap="—"))
        del scores, labels

    total = time.perf_counter() - started
    print("\n".join(header))
    print()
    print("| metric family | n | ours | our method | scipy percentile (scipy/ours) | "
          "scipy BCa (scipy/ours) | our peak memory (RSS / traced) | limits vs scipy | "
          "target (n = 1e6) | result |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---|---|")
    for row in rows:
        memory = row.get("memory")
        target, verdict = target_cell(row["family"], row["n"], row["ours"], memory)
        print(f"| {LABELS[row['family']]} | {row['n']:,} | {seconds_text(row['ours'])} | "
              f"{row['method']} | {row['percentile']} | {row['bca']} | "
              f"{memory_text(row)} | {row['gap']} | "
              f"{target} | {verdict} |")
    largest = max(n for n in sizes if n <= percentile_max)
    batches = ", ".join(f"{LABELS[f]} {scipy_batch(f, largest)}"
                        for f in (ACCURACY, MACRO_F1, CONTINUOUS))
    load = load_text()
    print()
    print(f"- ours: best of {args.repeat} for calls under {REPEAT_BELOW_SECONDS:.0f} s, one run "
          "otherwise; scipy cells the same. The accuracy time includes counting (b, c) from the "
          "per-sample arrays; compare() times only the call (data made beforehand).")
    print("- skipped scipy cells are estimated from the largest measured size of the same column: "
          "percentile linear in n; BCa = percentile (linear in n) + its jackknife part "
          "(BCa − percentile at the largest measured n) scaled by n² (scipy's jackknife is "
          f"n leave-one-out statistics of n − 1 values). A cell estimated over "
          f"{MAX_SCIPY_SECONDS:.0f} s is skipped too.")
    print(f"- scipy batch: at most {SCIPY_BATCH_BYTES // MiB} MiB of resampled elements per batch "
          f"(at n = {largest:,}: {batches}); peak RSS of "
          f"this whole process (scipy included): {bytes_text(peak_rss())}.")
    if rss_source == "VmHWM":
        rss_how = ("the peak RSS during the timed calls (VmHWM in /proc/self/status, reset to the "
                   "current RSS just before them through /proc/self/clear_refs; ru_maxrss is not "
                   "used because on Linux it inherits the parent's peak across exec)")
    else:
        rss_how = "resource.getrusage(RUSAGE_SELF).ru_maxrss after the timed calls"
    print(f"- our peak memory (continuous only), ratio_interval in a fresh process after imports, "
          f"data creation and a small warm-up call: RSS = {rss_how}, minus the RSS before them; "
          "traced = tracemalloc's peak of traced allocations (numpy's included) during one more, "
          "untimed call. The target is checked on the RSS figure.")
    print("- limits vs scipy: max |our limit − scipy's| as a share of scipy's interval width, "
          "against scipy BCa where measured, else percentile. 'our method' is the result's .method: "
          "accuracy is the count-bootstrap percentile interval widened to contain Tango's score "
          "interval (percentile+tango, or tango-score where the score interval was the wider); "
          "the continuous path above 1e5 samples is the delta-method interval (linearized).")
    bootstrapped = [row for row in rows if row["family"] == CONTINUOUS and row["method"] == "bca"]
    if bootstrapped:
        row = max(bootstrapped, key=lambda row: row["n"])
        print(f"- continuous path at the largest n it bootstraps here (n = {row['n']:,}; the "
              f"analytic interval takes over above 1e5 samples): {seconds_text(row['ours'])}, peak memory "
              f"{bytes_text(row['memory'])} RSS / {bytes_text(row['traced'])} traced.")
    print(f"- load average at end (1/5/15 min): {load}; total run time {total:.0f} s.")


if __name__ == "__main__":
    main()
