"""Streaming memory and the reference-output cache: run by hand, never in CI.

    python benchmarks/bench_data.py                 # full run: a 2 GiB inputs.npy, 100,000 samples
    python benchmarks/bench_data.py --quick         # smoke run: 256 MiB, 20,000 samples
    python benchmarks/bench_data.py --dir /scratch  # where the temporary data go (default: $TMPDIR)
    python benchmarks/bench_data.py --repeat 5      # timing pairs (default 3; the median is reported)

Prints the machine, then ONE Markdown table; progress goes to stderr. Every figure is measured in
a fresh subprocess of its own:

1. Peak RSS while streaming a memory-mapped float32 ``inputs.npy`` (524,288 × 1,024 = 2 GiB, plus
   ``labels.npy``) through ``ValidationSet.from_folder(folder).batches(1024)``, summing every
   batch, and through ``compare()`` with in-memory callables that take the first 10 columns as
   class scores; beside them the baseline (python + numpy + pytest_quantguard imports) and, for
   contrast, one long-lived ``np.load(mmap_mode="r")`` map read fully. Peak RSS is the whole
   process's ``VmHWM`` (/proc/self/status) and ``ru_maxrss``, file-backed pages included.
   Target: under 500 MB.
2. The cached second run's wall time as a ratio of the first: ``comparison.run()`` on the example
   project's FP32 vs static-INT8 ONNX models over the example's held-out digits tiled (with tiny
   noise, so no sample repeats) to 100,000 samples in ``.npz`` shards. The first run gets a fresh
   ``ReferenceCache(dir)`` (a miss: load the folder, digest it, run both models, store the
   reference's records), the second another fresh process with the same directory (a hit: the
   reference does not run). Loading and digesting the data and hashing the models are in both.
   Target: ratio <= 0.6, median of ``--repeat`` pairs.

This driver imports neither numpy nor the package: on Linux a child's ``ru_maxrss`` starts from
its parent's RSS at fork (it survives exec), so the driver stays small and the data files are
written by subprocesses of their own. The data live in a temporary folder that is deleted at the
end; the run is skipped with a message when its disk has less than 5 GB free (1 GB for --quick).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from _machine import load_text, machine_line  # benchmarks/_machine.py (run as scripts)

try:  # Unix only; without it the ru_maxrss column reads n/a
    import resource
except ImportError:  # pragma: no cover
    resource = None

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
FP32_MODEL = EXAMPLE / "models" / "fp32.onnx"
INT8_MODEL = EXAMPLE / "models" / "int8.onnx"
HELDOUT = EXAMPLE / "prod_val" / "digits_heldout.npz"

COLUMNS = 1_024
ROWS, QUICK_ROWS = 524_288, 65_536  # float32 x 1,024 columns: 2 GiB, 256 MiB
SAMPLES, QUICK_SAMPLES = 100_000, 20_000
SHARD_SAMPLES = 10_000
NOISE = 1e-3  # added to the tiled digits (pixel values 0..16): no duplicates, same predictions
BATCH = 1_024
CLASSES = 10
SEED = 20240601
FREE_DISK, QUICK_FREE_DISK = 5 * 10**9, 10**9
RSS_TARGET = 500 * 10**6
RATIO_TARGET = 0.6
MB = 10**6

BASELINE, STREAM, COMPARE, LONG_LIVED = "baseline", "stream", "compare", "long-lived"


# --- helpers run in every process ----------------------------------------------------------------

def proc_status() -> dict[str, int]:
    """/proc/self/status sizes in bytes (VmHWM, VmRSS, RssAnon, RssFile); empty off Linux."""
    sizes = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    sizes[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return sizes


def ru_maxrss() -> int | None:
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def memory_figures() -> dict[str, int | None]:
    status = proc_status()
    return {"vm_hwm": status.get("VmHWM"), "ru_maxrss": ru_maxrss(),
            "rss_anon_end": status.get("RssAnon"), "rss_file_end": status.get("RssFile")}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- subprocess jobs: writing the data -----------------------------------------------------------

def make_npy(folder: Path, rows: int) -> None:
    """inputs.npy (rows x 1,024 float32, standard normal) written through a map, plus labels.npy."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    inputs = np.lib.format.open_memmap(folder / "inputs.npy", mode="w+", dtype=np.float32,
                                       shape=(rows, COLUMNS))
    rng = np.random.default_rng(SEED)
    step = 8_192
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        inputs[start:stop] = rng.standard_normal((stop - start, COLUMNS), dtype=np.float32)
        if (start // step) % 16 == 15:
            inputs.flush()  # keep dirty pages bounded
    inputs.flush()
    del inputs
    np.save(folder / "labels.npy", rng.integers(0, CLASSES, rows))


def make_shards(folder: Path, samples: int) -> None:
    """The example's held-out digits tiled to ``samples``, plus N(0, NOISE) noise, in .npz shards."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    with np.load(HELDOUT, allow_pickle=False) as heldout:
        inputs, labels = heldout["inputs"], heldout["labels"]
    rng = np.random.default_rng(SEED)
    for index, start in enumerate(range(0, samples, SHARD_SAMPLES)):
        ids = np.arange(start, min(start + SHARD_SAMPLES, samples)) % len(inputs)
        noisy = inputs[ids] + rng.normal(0.0, NOISE, (len(ids), *inputs.shape[1:])).astype(np.float32)
        np.savez(folder / f"shard_{index}.npz", inputs=noisy.astype(np.float32), labels=labels[ids])


# --- subprocess jobs: measuring ------------------------------------------------------------------

def first_ten(x):
    """The 'reference': the first 10 input columns as class scores (a view: nothing copied)."""
    return x[:, :CLASSES]


def first_ten_rounded(x):
    """The 'candidate': the same scores rounded to a 1/8 grid."""
    import numpy as np

    return np.round(x[:, :CLASSES] * 8.0) / 8.0


def memory_probe(kind: str, folder: Path) -> dict:
    """One measurement in this (fresh) process; the whole process's peak RSS at the end."""
    import warnings

    import numpy as np

    import pytest_quantguard  # noqa: F401  (the baseline: what every case imports)
    from pytest_quantguard.comparison import compare
    from pytest_quantguard.data import ValidationSet

    result: dict = {"kind": kind}
    start = time.perf_counter()
    if kind == STREAM:
        dataset = ValidationSet.from_folder(folder)
        loaded = time.perf_counter()
        total, n = 0.0, 0
        for batch in dataset.batches(BATCH):
            total += float(batch.inputs["inputs"].sum(dtype=np.float64))
            n += len(batch)
        result.update(n=n, load_seconds=loaded - start, stream_seconds=time.perf_counter() - loaded,
                      duplicates=dataset.duplicate_count())
    elif kind == COMPARE:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            comparison = compare(first_ten, first_ten_rounded, data=str(folder))
        result.update(n=comparison.n, verdict=str(comparison.verdict),
                      warnings=[str(w.message).splitlines()[0] for w in caught])
    elif kind == LONG_LIVED:
        mapped = np.load(folder / "inputs.npy", mmap_mode="r", allow_pickle=False)
        total = 0.0
        for offset in range(0, len(mapped), BATCH):
            total += float(mapped[offset:offset + BATCH].sum(dtype=np.float64))
        result["n"] = len(mapped)
        result.update(memory_figures())  # while the map is still alive
    result["seconds"] = time.perf_counter() - start
    return {**memory_figures(), **result}


def timed_run(folder: Path, cache: Path) -> dict:
    """One comparison.run() of the example's FP32 vs INT8 models with ReferenceCache(cache)."""
    started = time.perf_counter()
    from pytest_quantguard.cache import ReferenceCache
    from pytest_quantguard.comparison import run
    from pytest_quantguard.settings import Execution, Tolerance

    imported = time.perf_counter()
    comparison = run(str(FP32_MODEL), str(INT8_MODEL), str(folder), Tolerance(),
                     Execution(batch_size=BATCH, cache=ReferenceCache(cache)))
    finished = time.perf_counter()
    return {"run_seconds": finished - imported, "import_seconds": imported - started,
            "cache": comparison.runtime["cache"], "reference_ran": comparison.runtime["reference_ran"],
            "reference_seconds": comparison.runtime["reference_seconds"],
            "candidate_seconds": comparison.runtime["candidate_seconds"], "n": comparison.n,
            "verdict": str(comparison.verdict), "drop": comparison.drop}


def import_probe() -> dict:
    """Seconds for the imports run() makes lazily (onnxruntime, scipy.stats), after the eager ones."""
    import numpy  # noqa: F401

    import pytest_quantguard.comparison  # noqa: F401

    start = time.perf_counter()
    import onnxruntime  # noqa: F401

    middle = time.perf_counter()
    import scipy.stats  # noqa: F401

    return {"onnxruntime": middle - start, "scipy.stats": time.perf_counter() - middle}


# --- the driver ----------------------------------------------------------------------------------

def child(*arguments: str) -> tuple[dict | None, float]:
    """Run this script with a hidden job in a fresh process: (its JSON line or None, wall seconds)."""
    command = [sys.executable, str(Path(__file__).resolve()), *arguments]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else None), seconds


def meminfo() -> dict[str, int]:
    sizes = {}
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                sizes[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return sizes


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def machine_info() -> list[str]:
    memory = meminfo()
    total, available = memory.get("MemTotal"), memory.get("MemAvailable")
    memory_text = ("n/a" if total is None or available is None
                   else f"{total / 2**30:.1f} GiB total, {available / 2**30:.1f} GiB available")
    return [
        machine_line(f"; memory {memory_text}"),
        f"- python {platform.python_version()}, numpy {version('numpy')}, onnxruntime "
        f"{version('onnxruntime')}, pytest-quantguard {version('pytest-quantguard')}",
    ]


def mb(size: int | None) -> str:
    return "n/a" if size is None else f"{size / MB:,.0f} MB"


def peak(figures: dict) -> int | None:
    values = [figures.get(key) for key in ("vm_hwm", "ru_maxrss") if figures.get(key) is not None]
    return max(values) if values else None


def seconds_text(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def memory_rows(args: argparse.Namespace, work: Path) -> tuple[list[str], list[str]]:
    """The RSS rows and their notes (or a skip message)."""
    rows_n = QUICK_ROWS if args.quick else ROWS
    size = rows_n * COLUMNS * 4
    need = QUICK_FREE_DISK if args.quick else FREE_DISK
    free = shutil.disk_usage(work).free
    if free < need:
        message = (f"memory benchmark skipped: {work} has {free / 10**9:.1f} GB free, it needs "
                   f"{need / 10**9:.0f} GB for a {size / 2**30:g} GiB inputs.npy (choose another "
                   "disk with --dir PATH)")
        return [], [message]
    folder = work / "npy"
    log(f"writing inputs.npy ({rows_n:,} x {COLUMNS:,} float32, {size / 2**30:g} GiB) + labels.npy "
        f"in {folder} (in a subprocess)")
    _, make_seconds = child("--make-npy", str(folder), "--rows", str(rows_n))
    data_text = f"`inputs.npy` {rows_n:,} × {COLUMNS:,} float32 ({size / 2**30:g} GiB) + `labels.npy`"
    results = {}
    for kind in (BASELINE, STREAM, COMPARE):
        log(f"RSS probe: {kind}")
        results[kind], _ = child("--probe", kind, str(folder))
    available = meminfo().get("MemAvailable")
    contrast = available is None or available > 2 * size
    if contrast:
        log(f"RSS probe: {LONG_LIVED}")
        results[LONG_LIVED], _ = child("--probe", LONG_LIVED, str(folder))
    base = peak(results[BASELINE])
    rows = [f"| baseline: python + numpy + pytest_quantguard imports | — | "
            f"{mb(results[BASELINE]['vm_hwm'])} / {mb(results[BASELINE]['ru_maxrss'])} | — | — | "
            f"— | — |"]
    labels = {
        STREAM: "`ValidationSet.from_folder(folder).batches(1024)`, every batch summed",
        COMPARE: "`compare()` with in-memory callables (`x[:, :10]` as class scores)",
        LONG_LIVED: "contrast: one long-lived `np.load(mmap_mode=\"r\")` map, read fully",
    }
    for kind in (STREAM, COMPARE, LONG_LIVED):
        if kind not in results:
            continue
        figures = results[kind]
        top = peak(figures)
        above = "n/a" if top is None or base is None else f"+{mb(top - base)}"
        rate = f" ({size / figures['seconds'] / MB:,.0f} MB/s)"
        if kind == STREAM:
            time_text = (f"{seconds_text(figures['seconds'])}{rate}: from_folder (digest) "
                         f"{seconds_text(figures['load_seconds'])}, stream "
                         f"{seconds_text(figures['stream_seconds'])}")
        else:
            time_text = seconds_text(figures["seconds"]) + rate
        if kind == LONG_LIVED:
            target, verdict = "— (contrast)", "—"
            time_text += (f"; RSS with the map alive: {mb(figures['rss_anon_end'])} anon + "
                          f"{mb(figures['rss_file_end'])} file-backed")
        else:
            target = f"< {RSS_TARGET // MB} MB"
            verdict = "n/a" if top is None else ("PASS" if top < RSS_TARGET else "FAIL")
            verdict += " (quick)" if args.quick else ""
        rows.append(f"| {labels[kind]} | {data_text} | {mb(figures['vm_hwm'])} / "
                    f"{mb(figures['ru_maxrss'])} | {above} | {time_text} | {target} | {verdict} |")
    notes = [f"- peak RSS = the whole process's `VmHWM` / `ru_maxrss` at its end, each case in a "
             f"fresh process (file-backed pages included); 'above baseline' uses the larger of the "
             f"two. Data written in {make_seconds:.0f} s by a subprocess of its own; batches of "
             f"{BATCH:,}; {results[STREAM]['n']:,} samples streamed, "
             f"{results[STREAM]['duplicates']} duplicates counted."]
    compared = results[COMPARE]
    notes.append(f"- compare(): n = {compared['n']:,}, verdict {compared['verdict']} "
                 f"(random labels: the verdict means nothing here); warnings: "
                 f"{'; '.join(compared['warnings']) or 'none'}.")
    if not contrast:
        notes.append(f"- the long-lived contrast was skipped: {available / 2**30:.1f} GiB available "
                     f"memory is under twice the file ({2 * size / 2**30:g} GiB).")
    return rows, notes


def timing_rows(args: argparse.Namespace, work: Path) -> tuple[list[str], list[str]]:
    samples = QUICK_SAMPLES if args.quick else SAMPLES
    folder = work / "shards"
    log(f"writing {samples:,} tiled digits in .npz shards of {SHARD_SAMPLES:,} in {folder}")
    child("--make-shards", str(folder), "--samples", str(samples))
    size = sum(file.stat().st_size for file in folder.iterdir())
    pairs = []
    for attempt in range(args.repeat):
        cache = work / f"cache-{attempt}"
        runs = []
        for label in ("first", "second"):
            log(f"timing pair {attempt + 1}/{args.repeat}: {label} run (fresh process)")
            result, wall = child("--timed-run", str(folder), "--cache", str(cache))
            runs.append({**result, "process_seconds": wall})
        shutil.rmtree(cache, ignore_errors=True)
        pairs.append(runs)
    ratios = [second["run_seconds"] / first["run_seconds"] for first, second in pairs]
    process_ratios = [second["process_seconds"] / first["process_seconds"] for first, second in pairs]
    statuses = [f"{first['cache']} → {second['cache']}" for first, second in pairs]
    expected = all(first["cache"] == "miss" and first["reference_ran"] and second["cache"] == "hit"
                   and not second["reference_ran"] for first, second in pairs)
    firsts = statistics.median(first["run_seconds"] for first, _ in pairs)
    seconds = statistics.median(second["run_seconds"] for _, second in pairs)
    ratio = statistics.median(ratios)
    process_ratio = statistics.median(process_ratios)
    data_text = (f"example digits tiled to {samples:,} samples (+N(0, {NOISE:g}) noise), "
                 f"{-(-samples // SHARD_SAMPLES)} `.npz` shards, {size / MB:.1f} MB")
    verdict = "PASS" if ratio <= RATIO_TARGET and expected else "FAIL"
    verdict += " (quick)" if args.quick else ""
    each = ", ".join(f"{r:.2f}" for r in ratios)
    rows = [
        f"| cached second run ÷ first: `run()` wall time, `fp32.onnx` vs `int8.onnx` (cache: "
        f"{statuses[0] if len(set(statuses)) == 1 else ', '.join(statuses)}) | {data_text} | — | — | "
        f"first {seconds_text(firsts)}, second {seconds_text(seconds)}: **×{ratio:.2f}** "
        f"(median of {len(pairs)}: {each}) | ≤ {RATIO_TARGET} | {verdict} |",
        f"| the same, whole process (interpreter start and imports included) | same | — | — | "
        f"first {seconds_text(statistics.median(f['process_seconds'] for f, _ in pairs))}, second "
        f"{seconds_text(statistics.median(s['process_seconds'] for _, s in pairs))}: "
        f"×{process_ratio:.2f} (median; {', '.join(f'{r:.2f}' for r in process_ratios)}) | — | — |",
    ]
    lazy, _ = child("--import-probe")
    imports = statistics.median(r["import_seconds"] for r in [*(f for f, _ in pairs),
                                                               *(s for _, s in pairs)])
    first_runs = [first for first, _ in pairs]
    second_runs = [second for _, second in pairs]
    notes = [
        f"- timing pairs: {len(pairs)}, each with a fresh cache directory; both runs of a pair in "
        f"fresh processes. `run()` time covers loading the folder and digesting it, hashing both "
        f"models, making the sessions, inference, the interval and (first run) storing the "
        f"reference's records. Model time inside `run()` (medians): first run reference "
        f"{statistics.median(r['reference_seconds'] for r in first_runs):.2f} s + candidate "
        f"{statistics.median(r['candidate_seconds'] for r in first_runs):.2f} s; second run "
        f"reference {statistics.median(r['reference_seconds'] for r in second_runs):.2f} s + "
        f"candidate {statistics.median(r['candidate_seconds'] for r in second_runs):.2f} s; "
        f"imports before `run()` {imports:.2f} s "
        f"(not in the `run()` time). Inside `run()`, in both runs, the lazy imports cost "
        f"onnxruntime {lazy['onnxruntime']:.2f} s + scipy.stats {lazy['scipy.stats']:.2f} s "
        f"(for McNemar's p; measured in one more fresh process).",
        f"- cache status per pair (first → second): {', '.join(statuses)}; the reference ran in "
        f"every first run and in no second run: {'yes' if expected else 'NO'}. Verdict "
        f"{pairs[0][0]['verdict']}, drop {pairs[0][0]['drop']:+.4f}, n = {pairs[0][0]['n']:,}.",
    ]
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: a {QUICK_ROWS * COLUMNS * 4 // 2**20} MiB inputs.npy, "
                             f"{QUICK_SAMPLES:,} samples for the timing")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the temporary data folder goes (default: the system temp dir)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timing pairs (first run, cached second run); the median ratio is "
                             "reported (default 3)")
    parser.add_argument("--make-npy", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--make-shards", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--probe", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--timed-run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--import-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_npy is not None:
        make_npy(args.make_npy, args.rows)
        return
    if args.make_shards is not None:
        make_shards(args.make_shards, args.samples)
        return
    if args.probe is not None:
        print(json.dumps(memory_probe(args.probe[0], Path(args.probe[1]))))
        return
    if args.import_probe:
        print(json.dumps(import_probe()))
        return
    if args.timed_run is not None:
        print(json.dumps(timed_run(args.timed_run, args.cache)))
        return

    started = time.perf_counter()
    header = machine_info()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="quantguard-bench-data-", dir=args.dir))
    try:
        memory, memory_notes = memory_rows(args, work)
        shutil.rmtree(work / "npy", ignore_errors=True)  # free the disk before the timing
        timing, timing_notes = timing_rows(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(header))
    print()
    print("| measurement (each in a fresh process) | data | peak RSS: VmHWM / ru_maxrss | "
          "above baseline | time | target | result |")
    print("|---|---|---:|---:|---|---|---|")
    print("\n".join(memory + timing))
    print()
    print("\n".join(memory_notes + timing_notes))
    if args.quick:
        print(f"- --quick: a {QUICK_ROWS * COLUMNS * 4 // 2**20} MiB file and {QUICK_SAMPLES:,} "
              "samples; the targets are stated for the full run (2 GiB, 100,000 samples), so "
              "results marked (quick) are indicative only.")
    print(f"- MB = 10⁶ bytes. Load average at end (1/5/15 min): {load_text()}; total run time "
          f"{time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
