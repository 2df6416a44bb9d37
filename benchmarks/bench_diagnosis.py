"""The time the per-layer diagnosis adds to a failing comparison (docs/diagnosis.md, "Timing").
Run by hand, never in CI.

    python benchmarks/bench_diagnosis.py            # 5 repeats of each case
    python benchmarks/bench_diagnosis.py --quick    # 2 repeats (a smoke run)

Cases: the example's two failing comparisons (``fp32`` vs the 2-bit ``int2``, stay-fp16; the
outlier MLP vs its per-tensor INT8 at batch 1, try-qat) and the BERT-style encoder of
``bench_encoder.py`` (5.3 M parameters, 512 sentences, fp32 vs dynamic INT8, metric cosine; it
ships, so its diagnosis is asked for with ``--quant-diagnose always``). Each repeat times, in one
process with warm imports, ``compare()`` with its default options, then the diagnosis hook on the
same comparison (``attach_diagnosis``: both models on the seeded sample with their tensors
exposed, the matching, the weights, the remedies).

Targets (medians): added <= max(10 %, 2 s) of the comparison on the example models, <= 10 % on
the encoder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from _machine import load_text, machine_line  # benchmarks/_machine.py (run as scripts)
from _pairs import verdict

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MODELS = REPO / "example_project" / "models"


def cases() -> list[tuple[str, str, str, object, dict, float]]:
    """(name, reference, candidate, data, compare() keywords, minimum added seconds allowed)."""
    import numpy as np
    from bench_encoder import FP32, INPUTS, INT8, build

    from pytest_quantguard import ValidationSet

    build()
    with np.load(FP32.parent / "sentences.npz") as data:
        sentences = ValidationSet({name: data[name] for name in INPUTS})
    digits = ValidationSet.from_folder(REPO / "example_project" / "prod_val")
    return [("example: fp32 vs int2 (stay-fp16)", MODELS / "fp32.onnx", MODELS / "int2.onnx",
             digits, {}, 2.0),
            ("example: outlier MLP vs per-tensor INT8, batch 1 (try-qat)",
             MODELS / "outlier_fp32.onnx", MODELS / "outlier_int8_per_tensor.onnx", digits,
             {"batch_size": 1}, 2.0),
            ("encoder 5.3 M parameters: fp32 vs dynamic INT8, cosine (ship; always)", FP32, INT8,
             sentences, {"metric": "cosine"}, 0.0)]


def once(reference, candidate, data, keywords) -> tuple[float, float, dict]:
    from pytest_quantguard import compare
    from pytest_quantguard.diagnosis.layers import attach_diagnosis
    from pytest_quantguard.runners import make_runner
    from pytest_quantguard.settings import make_execution

    start = time.perf_counter()
    comparison = compare(str(reference), str(candidate), data=data, **keywords)
    compared = time.perf_counter() - start
    runners = [make_runner(str(model)) for model in (reference, candidate)]
    start = time.perf_counter()
    diagnosed = attach_diagnosis(comparison, *runners, data, make_execution(diagnose="always"), [])
    return compared, time.perf_counter() - start, diagnosed.details["diagnosis"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    print(machine_line())
    rows = []
    for name, reference, candidate, data, keywords, floor in cases():
        runs = [once(reference, candidate, data, keywords) for _ in range(repeats)]
        compared = statistics.median(run[0] for run in runs)
        added = statistics.median(run[1] for run in runs)
        allowed = max(0.10 * compared, floor)
        diagnosis = runs[-1][2]
        first = diagnosis["layers"][0] if diagnosis["layers"] else {}
        rows.append(f"| {name} | {compared:.2f} s | {added:.2f} s ({added / compared:.1%}) | "
                    f"{allowed:.2f} s: {verdict(added <= allowed)} | {diagnosis['samples']} | "
                    f"{first.get('node', diagnosis['skipped'])} |")
        print(f"  {name}: done", file=sys.stderr, flush=True)
    print(f"\n{repeats} repeats each, medians, one process (imports warm); load at end "
          f"{load_text()}\n")
    print("| case | comparison | diagnosis added | allowed | samples | first layer |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
