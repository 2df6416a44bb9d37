"""The JSON report's schema (docs/reports.md): shipped as package data, with the parts that the
settings table owns generated from it. ``python -m pytest_quantguard.reports.schema`` rewrites
them; a test fails while the shipped file and the table disagree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_quantguard.settings import BY_KEY, THRESHOLD_KEYS

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema" / "report.schema.json"


def thresholds_schema() -> dict[str, Any]:
    """Every comparison's ``thresholds``: one key per threshold setting, typed by its row."""
    return {"type": "object", "required": list(THRESHOLD_KEYS), "additionalProperties": False,
            "properties": {key: dict(BY_KEY[key].threshold) for key in THRESHOLD_KEYS}}


def generated(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its generated parts made anew from the settings table."""
    updated = json.loads(json.dumps(schema))
    updated["$defs"]["comparison"]["properties"]["thresholds"] = thresholds_schema()
    return updated


def text(schema: dict[str, Any]) -> str:
    """The shipped file's exact layout."""
    return json.dumps(schema, indent=2) + "\n"


def main() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    SCHEMA_FILE.write_text(text(generated(schema)), encoding="utf-8")


if __name__ == "__main__":
    main()
