#!/usr/bin/env python3
"""The quick start, on any machine with Python 3.11+ (standard library only).

    python3 dev.py gate       # the example project's quantization gate (needs only the onnx extra)
    python3 dev.py test       # the test suite, on all cores (-n auto; `-n 0` runs it serially)
    python3 dev.py lint       # ruff
    python3 dev.py docs       # the docs site, warnings as errors (mkdocs build --strict -> build/site/)
    python3 dev.py package [--python PYTHON ...]
                              # sdist + wheel, twine check, and the example gate run from the wheel
                              # installed in a fresh environment (once per --python; default: this one)
    python3 dev.py workflows  # the GitHub workflows against the GitHub workflow schema (offline)

Each command creates its own virtual environment on first use (.venv-gate/ for the gate, .venv/
for tests and lint, .venv-docs/ for docs, package and workflows), installs this checkout into it
from pyproject.toml, and runs. Extra arguments go to pytest (or ruff, mkdocs, check-jsonschema):
``python3 dev.py test -k verdict``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
WORKFLOWS = [".github/workflows/ci.yml", "example_project/.github/workflows/quantization-gate.yml"]
TOOLS = (".venv-docs", ".[docs,release]")
TARGETS = {
    "gate": (".venv-gate", ".[onnx]", ["-m", "pytest", "example_project", "-p", "no:cacheprovider"]),
    # -n auto first: a later `-n N` on the command line replaces it.
    "test": (".venv", ".[dev]", ["-m", "pytest", "-p", "no:cacheprovider", "-n", "auto"]),
    "lint": (".venv", ".[dev]", ["-m", "ruff", "check", "."]),
    "docs": (*TOOLS, ["-m", "mkdocs", "build", "--strict", "--site-dir", "build/site"]),
    "workflows": (*TOOLS, ["-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           *WORKFLOWS]),
    "package": (*TOOLS, None),
}
# What the wheel must carry besides the code.
WHEEL_DATA = ("pytest_quantguard/py.typed", "pytest_quantguard/schema/report.schema.json")


def python_in(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def create_env(env: Path, python: str | None = None) -> Path:
    """A fresh virtual environment at env, made by this interpreter or by `python`."""
    try:
        if python is None:
            venv.EnvBuilder(with_pip=True).create(env)
        else:
            subprocess.run([python, "-m", "venv", str(env)], check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        sys.exit(f"dev.py: could not create {env} ({error}). On Debian/Ubuntu install the "
                 "venv module first: apt-get install python3-venv")
    return python_in(env)


def pip_install(python: Path, *requirements: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *requirements], cwd=ROOT, check=True)


def ensure_env(name: str, requirement: str) -> Path:
    env = ROOT / name
    python = python_in(env)
    if not python.exists():
        print(f"dev.py: creating {name}/", flush=True)
        create_env(env)
    stamp = env / ".installed"
    sources = [ROOT / "pyproject.toml"]
    if not stamp.exists() or stamp.read_text() != requirement or any(
            source.stat().st_mtime > stamp.stat().st_mtime for source in sources):
        print(f"dev.py: installing {requirement} into {name}/", flush=True)
        pip_install(python, "--editable", requirement)
        stamp.write_text(requirement)
    return python


def build_and_check(tools: Path, dist: Path) -> Path:
    """Build the sdist and the wheel into dist, check them with twine; the wheel's path."""
    subprocess.run([str(tools), "-m", "build", "--outdir", str(dist), str(ROOT)], check=True)
    subprocess.run([str(tools), "-m", "twine", "check", "--strict", *map(str, dist.iterdir())], check=True)
    (wheel,) = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in WHEEL_DATA if name not in names]
    if missing:
        sys.exit(f"dev.py: {wheel.name} lacks {', '.join(missing)} (pyproject.toml: package-data)")
    print(f"dev.py: {wheel.name} holds {', '.join(WHEEL_DATA)}", flush=True)
    return wheel


def smoke(wheel: Path, python: str | None, work: Path) -> None:
    """Install the wheel (onnx extra) into a fresh environment and run the example gate from a
    copy of example_project/, so that nothing is imported from this checkout."""
    label = python or sys.executable
    env = work / "env"
    print(f"dev.py: installing {wheel.name}[onnx] into a fresh environment of {label}", flush=True)
    installed = create_env(env, python)
    pip_install(installed, f"{wheel}[onnx]")
    example = shutil.copytree(ROOT / "example_project", work / "example_project")
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    where = subprocess.run([str(installed), "-c", "import pytest_quantguard as q; print(q.__file__)"],
                           cwd=example, env=clean, check=True, capture_output=True, text=True).stdout
    if Path(where.strip()).resolve().is_relative_to(ROOT):
        sys.exit(f"dev.py: the smoke test imported the checkout ({where.strip()}), not the wheel")
    print(f"dev.py: example gate with {where.strip()}", flush=True)
    subprocess.run([str(installed), "-m", "pytest", "-p", "no:cacheprovider"], cwd=example, env=clean,
                   check=True)


def package(tools: Path, argv: list[str]) -> int:
    pythons: list[str | None] = [None]
    for position, word in enumerate(argv):
        if word == "--python":
            pythons.append(argv[position + 1])
    with tempfile.TemporaryDirectory(prefix="quantguard-package-") as tmp:
        wheel = build_and_check(tools, Path(tmp) / "dist")
        for number, python in enumerate(pythons):
            smoke(wheel, python, Path(tmp) / f"smoke-{number}")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in TARGETS:
        print(__doc__)
        return 2
    env, requirement, command = TARGETS[argv[0]]
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by an older python3
        print("dev.py: pytest-quantguard needs Python 3.11 or newer", file=sys.stderr)
        return 2
    python = ensure_env(env, requirement)
    if command is None:
        try:
            return package(python, argv[1:])
        except subprocess.CalledProcessError as error:
            print(f"dev.py: {' '.join(map(str, error.cmd))} exited {error.returncode}", file=sys.stderr)
            return 1
    # Material for MkDocs prints an end-of-life banner on every build unless this is set.
    env_vars = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([str(python), *command, *argv[1:]], cwd=ROOT, env=env_vars).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
