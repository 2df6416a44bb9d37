"""The long fuzz run: tests/fuzz under the ``quantguard-long`` Hypothesis profile (400 examples a
test, randomized: each run draws new inputs). Run by hand, never in CI; what it found is listed in
docs/development.md, "Fuzzing and faults".

    python benchmarks/fuzz_long.py              # the long profile
    python benchmarks/fuzz_long.py -x -q        # extra arguments go to pytest
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine_line  # benchmarks/_machine.py (run as scripts)

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    env = {**os.environ, "QUANTGUARD_FUZZ_PROFILE": "quantguard-long",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    status = subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                              str(REPO / "tests" / "fuzz"), *argv], cwd=REPO, env=env)
    print(f"fuzz_long: exit {status} in {time.perf_counter() - started:.0f} s; {machine_line()}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
