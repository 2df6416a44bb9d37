"""Alternating plugin / hand-loop pairs, each side in a fresh subprocess (its wall time and peak
RSS from ``resource.getrusage``), and the median/spread summary the scale benchmarks print."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

MiB = 2**20


def child_result(wall: float) -> None:
    """Print a child's figures (its wall time, its peak RSS in bytes) as the last stdout line."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall": wall, "rss": peak if sys.platform == "darwin" else peak * 1024}))


def run_child(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def alternate(pairs: int, first, second) -> tuple[list[dict], list[dict]]:
    """``pairs`` runs of each, alternating (first, second, first, ...)."""
    a, b = [], []
    for i in range(pairs):
        a.append(first())
        b.append(second())
        print(f"  pair {i + 1}/{pairs}: {a[-1]['wall']:.2f} s / {b[-1]['wall']:.2f} s",
              file=sys.stderr, flush=True)
    return a, b


def spread(values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    """'median (min–max)'."""
    v = [x / scale for x in values]
    return f"{statistics.median(v):.2f} {unit} ({min(v):.2f}–{max(v):.2f})"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
