"""The house rules (docs/architecture.md): rooms of bounded size, floors that point down, generated
references in sync with the settings table, and comments that cite only the repo's own docs."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from pytest_quantguard import settings
from pytest_quantguard.reports import schema

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pytest_quantguard"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 70
MAX_PLUGIN_LINES = 300
PIPE = ("comparison", "inference", "judging", "message", "record", "formatting", "verdict",
        "settings", "validators", "cache", "vocabulary")
DATA_FORMATS = ("npy", "npz", "tables", "images", "folder", "source", "checks", "preprocess")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, eagerly or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_modules_and_functions_stay_small(path):
    lines = path.read_text(encoding="utf-8").count("\n")
    limit = MAX_PLUGIN_LINES if path.name == "plugin.py" and path.parent == PACKAGE else \
        MAX_MODULE_LINES
    assert lines <= limit, f"{module_name(path)}: {lines} lines (at most {limit}): split it"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, \
                f"{module_name(path)}:{node.lineno} {node.name}: {length} lines (at most 70)"


def test_floors_point_down():
    upward = []
    for path in MODULES:
        name = module_name(path)
        for target in imports(path):
            if not target.startswith("pytest_quantguard"):
                continue
            in_pipe = (name.split(".")[-1] in PIPE and name.count(".") == 1) \
                or name.startswith("pytest_quantguard.diagnosis")
            if in_pipe and target.startswith(("pytest_quantguard.reports",
                                              "pytest_quantguard.plugin",
                                              "pytest_quantguard.fixture")):
                upward.append(f"{name} -> {target} (the pipe imports no report)")
            if name.startswith("pytest_quantguard.stats") and target.startswith(
                    ("pytest_quantguard.metrics", "pytest_quantguard.simulation",
                     "pytest_quantguard.comparison")):
                upward.append(f"{name} -> {target} (stats/ imports no metric)")
            if name.startswith(("pytest_quantguard.data", "pytest_quantguard.metrics")) \
                    and target.startswith(("pytest_quantguard.comparison",
                                           "pytest_quantguard.judging")):
                upward.append(f"{name} -> {target} (a floor below the pipe)")
            if name.split(".")[-1] in DATA_FORMATS and name.startswith("pytest_quantguard.data") \
                    and target.startswith("pytest_quantguard.data.validation_set"):
                upward.append(f"{name} -> {target} (formats use data/checks.py and source.py)")
            if name.startswith("pytest_quantguard.data") and target.startswith(
                    "pytest_quantguard.metrics"):
                upward.append(f"{name} -> {target} (data/ knows no metric)")
    assert upward == []


def test_no_module_imports_a_private_name_of_another():
    crossing = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "pytest_quantguard"):
                crossing += [f"{module_name(path)}: {node.module}.{alias.name}"
                             for alias in node.names if alias.name.startswith("_")
                             and alias.name not in ("__version__",)]
    assert crossing == []


def test_comments_cite_only_the_repos_own_documents():
    outside = re.compile(r"SPEC\b|research/|research gotcha|\bIssue \d|\bissue \d|later issue")
    sources = [*MODULES, PACKAGE / "schema" / "report.schema.json",
               *(path for path in (ROOT / "tests").rglob("*.py") if path != Path(__file__)),
               *(ROOT / "benchmarks").glob("*.py")]
    cited = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sources
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if outside.search(line)]
    assert cited == []
    docs = {match for path in MODULES
            for match in re.findall(r"docs/[\w./-]+\.md", path.read_text(encoding="utf-8"))}
    assert docs, "the code cites the repo's docs"
    missing = sorted(page for page in docs if not (ROOT / page).is_file())
    assert missing == [], "cited pages must exist"


def test_cited_sections_exist():
    """``(docs/page.md, "Heading")``: the page has that heading."""
    headings = {page.name: set(re.findall(r"^#+\s+(.*?)\s*$", page.read_text(encoding="utf-8"),
                                          re.MULTILINE)) for page in (ROOT / "docs").glob("*.md")}
    unknown = []
    for path in [*MODULES, PACKAGE / "schema" / "report.schema.json"]:
        text = re.sub(r"\s*\n\s*#?\s*", " ", path.read_text(encoding="utf-8"))
        for page, heading in re.findall(r'docs/(\w+\.md),\s*\\?"([^"\\]+)\\?"', text):
            if heading not in headings.get(page, ()):
                unknown.append(f"{path.relative_to(ROOT)}: {page} has no section {heading!r}")
    assert unknown == []


def test_the_options_page_is_generated_from_the_settings_table():
    page = ROOT / "docs" / "options.md"
    assert page.read_text(encoding="utf-8") == settings.options_table(), \
        "run: python -m pytest_quantguard.settings > docs/options.md"
    for setting in settings.SETTINGS:
        assert f"`{setting.key}`" in page.read_text(encoding="utf-8")


def test_the_schema_thresholds_are_generated_from_the_settings_table():
    shipped = json.loads(schema.SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema.text(schema.generated(shipped)) == schema.SCHEMA_FILE.read_text(encoding="utf-8"), \
        "run: python -m pytest_quantguard.reports.schema"
    thresholds = shipped["$defs"]["comparison"]["properties"]["thresholds"]
    assert thresholds["required"] == list(settings.THRESHOLD_KEYS)


def test_marker_signature_and_tolerance_keys_come_from_the_table():
    per_test = [s.key for s in settings.SETTINGS if settings.MARKER in s.layers]
    assert list(settings.TOLERANCE_KEYS) == per_test
    generated = ", ".join(f"{s.key}={s.default!r}" for s in settings.SETTINGS if s.key in per_test)
    assert f"quant_tolerance({generated})" == settings.MARKER_SIGNATURE
    assert settings.MARKER_SIGNATURE.startswith("quant_tolerance(max_drop=0.01, qat_limit=0.03, ")
    shown = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8").split("@pytest.mark.", 1)[1]
    shown = " ".join(shown.split("```", 1)[0].split()).replace("( ", "(")
    assert shown == settings.MARKER_SIGNATURE.replace("'", '"'), "docs/usage.md: the marker's signature"
