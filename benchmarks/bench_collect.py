"""The plugin-import guard: ``pytest --collect-only`` of 1,000 generated, unrelated tests with
the plugin and without it (``-p no:quantguard``), alternating. Run by hand, never in CI.

    python benchmarks/bench_collect.py            # 7 alternating pairs
    python benchmarks/bench_collect.py --quick    # 3 pairs

Target: with / without <= 1.05 (medians).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine_line  # benchmarks/_machine.py (run as scripts)
from _pairs import spread, verdict

TESTS, FILES = 1_000, 20
TARGET = 1.05


def collect(folder: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                    *extra], cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pairs = 3 if args.quick else 7
    print(machine_line())
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "pytest.ini").write_text("[pytest]\n")
        for f in range(FILES):
            body = "".join(f"def test_{i}():\n    assert {i} + 1 == {i + 1}\n\n"
                           for i in range(TESTS // FILES))
            (folder / f"test_unrelated_{f}.py").write_text(body)
        collect(folder)  # warm the file cache and the bytecode
        with_plugin, without = [], []
        for _ in range(pairs):
            with_plugin.append(collect(folder))
            without.append(collect(folder, "-p", "no:quantguard"))
    ratio = statistics.median(with_plugin) / statistics.median(without)
    print(f"\n`pytest --collect-only` of {TESTS:,} tests, {pairs} alternating pairs\n")
    print("| run | wall, median (min–max) |\n|---|---|")
    print(f"| with the plugin | {spread(with_plugin)} |\n| `-p no:quantguard` | {spread(without)} |")
    print(f"\nratio {ratio:.3f}; target <= {TARGET}: {verdict(ratio <= TARGET)}")


if __name__ == "__main__":
    main()
