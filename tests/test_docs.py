"""The user docs cannot rot: the blocks of the executed pages run in order (docs/getting-started.md,
"Running the blocks of a page"), and the sample-size table is what `quantguard plan` prints."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from conftest import REPO
from pytest_quantguard import cli

DOCS = REPO / "docs"
# Pages whose blocks run as a user would type them; a recipe page joins by being named here.
EXECUTED_PAGES = ("getting-started.md", "device-workflow.md", "recipe-openvino.md")
# What a page's folder holds before its blocks run: (from the repository, to the page's folder).
PAGE_FILES = {"recipe-openvino.md": (("example_project/models/fp32.onnx", "models/fp32.onnx"),
                                     ("example_project/prod_val", "prod_val"))}
# The packages a page's code imports beyond the suite's own (the `dev` extra installs them).
PAGE_NEEDS = {"recipe-openvino.md": ("openvino", "nncf")}
# The commands a `bash` block may start with, run by this interpreter.
COMMANDS = {
    "python": [sys.executable],
    "pytest": [sys.executable, "-m", "pytest"],
    "quantguard": [sys.executable, "-m", "pytest_quantguard"],
}
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(text: str) -> list[tuple[str, str | None, str]]:
    """(language, title or None, body) of every fenced block of a page, in order."""
    found = []
    for match in FENCE.finditer(text):
        info, body = match.group(1).strip(), match.group(2)
        title = re.search(r'title="([^"]+)"', info)
        found.append((info.split(" ")[0] if info else "", title.group(1) if title else None, body))
    return found


def run_line(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    words = shlex.split(line, comments=True)
    assert words[0] in COMMANDS, f"a bash block may run only {sorted(COMMANDS)}: {line!r}"
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([*COMMANDS[words[0]], *words[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def run_page(page: Path, cwd: Path) -> list[str]:
    """Write the titled blocks and run the bash lines of a page; the output of every line."""
    outputs = []
    for language, title, body in blocks(page.read_text(encoding="utf-8")):
        if title:
            (cwd / title).parent.mkdir(parents=True, exist_ok=True)
            (cwd / title).write_text(body, encoding="utf-8")
        elif language == "bash":
            for line in filter(None, (line.strip() for line in body.splitlines())):
                done = run_line(line, cwd)
                assert done.returncode == 0, f"{page.name}: `{line}` exited {done.returncode}:\n" \
                                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                outputs.append(done.stdout)
    return outputs


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[str]]]:
    """Each executed page, run once: {page: (its folder, the output of each bash line)}."""
    pages = {}
    for name in EXECUTED_PAGES:
        missing = [module for module in PAGE_NEEDS.get(name, ()) if not find_spec(module)]
        if missing:  # reported by the page's test as a skip naming them
            pages[name] = (Path(), [f"needs {', '.join(missing)} (the dev extra)"])
            continue
        folder = tmp_path_factory.mktemp(name.removesuffix(".md"))
        for source, target in PAGE_FILES.get(name, ()):
            (folder / target).parent.mkdir(parents=True, exist_ok=True)
            copy = shutil.copytree if (REPO / source).is_dir() else shutil.copy
            copy(REPO / source, folder / target)
        pages[name] = (folder, run_page(DOCS / name, folder))
    return pages


@pytest.mark.parametrize("name", EXECUTED_PAGES)
def test_every_block_of_the_page_runs(name, ran):
    if ran[name][0] == Path():
        pytest.skip(f"{name}: {ran[name][1][0]}")
    assert ran[name][1], f"{name} has no bash block to run"


def test_the_openvino_recipe_shows_its_real_run(ran):
    folder, outputs = ran["recipe-openvino.md"]
    if folder == Path():
        pytest.skip(outputs[0])
    text = (DOCS / "recipe-openvino.md").read_text(encoding="utf-8")
    shown = text.split("<!-- openvino-run -->\n```text\n", 1)[1].split("\n```", 1)[0]
    printed = next(line for output in outputs for line in output.splitlines()
                   if line.startswith("openvino_int8: "))
    # the verdict, n and seed as printed; the scores may differ by a sample on another CPU
    assert printed.split("  ")[0] == shown.split("  ")[0] == "openvino_int8: ship"
    assert printed.split(", n ")[1] == shown.split(", n ")[1]
    report = json.loads((folder / "gate.json").read_text(encoding="utf-8"))
    record = report["comparisons"][0]
    assert record["verdict"] == "ship" and record["candidate"]["path"].endswith("openvino_int8")
    provenance = json.loads((folder / "results" / "openvino_int8" / "results.json").read_text())
    assert provenance["provenance"]["runner"].startswith("openvino ")
    assert "FakeQuantize" in (folder / "models" / "openvino_int8.xml").read_text()  # INT8 for real


def test_getting_started_ends_in_a_green_gate_with_its_reports(ran):
    tmp_path, outputs = ran["getting-started.md"]
    gate = next(output for output in outputs if "quantguard: 1 comparison(s)" in output)
    assert re.search(r"test_int8_ships .* ship ", gate), gate
    report = json.loads((tmp_path / "reports" / "quantguard.json").read_text(encoding="utf-8"))
    assert [comparison["verdict"] for comparison in report["comparisons"]] == ["ship"]
    assert report["policy"]["violations"] == []
    loaded = next(output for output in outputs if output.startswith("ValidationSet("))
    assert [line.split(", ")[1:3] for line in loaded.splitlines()] == [["n=899", "task='classification'"]] * 2


def plan_json(discordance: str, margin: str) -> dict[str, int]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["plan", "--discordance", discordance, "--margin", margin, "--json"]) == 0
    return json.loads(out.getvalue())


def test_the_sample_size_table_is_what_quantguard_plan_prints():
    text = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    table = text.split("<!-- plan-table -->\n", 1)[1].split("\n\n", 1)[0].splitlines()
    rows = [[cell.strip() for cell in row.strip("|").split("|")] for row in table[2:]]
    assert len(rows) >= 4
    for share, *counts in rows:
        discordance = str(float(share.rstrip("%")) / 100)
        expected = []
        for margin in ("0.01", "0.02"):
            planned = plan_json(discordance, margin)
            expected += [f"{planned['n']:,}", f"{planned['n_50']:,}"]
        assert counts == expected, f"row {share}: the page says {counts}, quantguard plan {expected}"


def test_block_rules():
    page = '```python title="a/b.py"\nprint(1)\n```\n\n```bash\npython a/b.py\n```\n\n```text\nx\n```\n'
    assert blocks(page) == [("python", "a/b.py", "print(1)\n"), ("bash", None, "python a/b.py\n"),
                            ("text", None, "x\n")]


def slug(heading: str) -> str:
    """The anchor MkDocs (and GitHub, for these headings) gives a heading."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_the_readme_is_a_front_door_whose_links_resolve():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 400, "README.md is the front door: move detail to docs/"
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", readme)
    local = [(target, anchor) for target, anchor in links if "://" not in target]
    assert len(local) >= 10
    for target, anchor in local:
        path = REPO / target
        assert path.exists(), f"README.md links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+\s+(.*?)\s*$", path.read_text(encoding="utf-8"), re.MULTILINE)
            assert anchor in {slug(heading) for heading in headings}, f"{target} has no #{anchor}"
    assert "python3 dev.py gate" in readme and "python3 dev.py test" in readme
