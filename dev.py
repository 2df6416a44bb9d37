#!/usr/bin/env python3
"""The quick start, on any machine with Python 3.11+ (standard library only).

    python3 dev.py gate   # the example project's quantization gate (needs only the onnx extra)
    python3 dev.py test   # the project's test suite (the dev extra: torch CPU, onnx, sklearn, xdist)
    python3 dev.py lint   # ruff

Each command creates its own virtual environment on first use (.venv-gate/ for the gate, .venv/
for tests and lint), installs this checkout into it from pyproject.toml, and runs. Extra
arguments go to pytest (or ruff): ``python3 dev.py test -k verdict``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TARGETS = {
    "gate": (".venv-gate", ".[onnx]", ["-m", "pytest", "example_project", "-p", "no:cacheprovider"]),
    "test": (".venv", ".[dev]", ["-m", "pytest", "-p", "no:cacheprovider"]),
    "lint": (".venv", ".[dev]", ["-m", "ruff", "check", "."]),
}


def python_in(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(name: str, requirement: str) -> Path:
    env = ROOT / name
    python = python_in(env)
    if not python.exists():
        print(f"dev.py: creating {name}/", flush=True)
        try:
            venv.EnvBuilder(with_pip=True).create(env)
        except (OSError, subprocess.CalledProcessError) as error:
            sys.exit(f"dev.py: could not create {name}/ ({error}). On Debian/Ubuntu install the "
                     "venv module first: apt-get install python3-venv")
    stamp = env / ".installed"
    sources = [ROOT / "pyproject.toml"]
    if not stamp.exists() or stamp.read_text() != requirement or any(
            source.stat().st_mtime > stamp.stat().st_mtime for source in sources):
        print(f"dev.py: installing {requirement} into {name}/", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--editable", requirement], cwd=ROOT, check=True)
        stamp.write_text(requirement)
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in TARGETS:
        print(__doc__)
        return 2
    env, requirement, command = TARGETS[argv[0]]
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by an older python3
        print("dev.py: pytest-quantguard needs Python 3.11 or newer", file=sys.stderr)
        return 2
    python = ensure_env(env, requirement)
    return subprocess.run([str(python), *command, *argv[1:]], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
