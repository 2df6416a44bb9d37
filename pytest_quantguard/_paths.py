"""How paths are shown to people: relative to the working directory when inside it."""

from __future__ import annotations

from pathlib import Path


def shown(path: Path | str, base: Path | None = None) -> str:
    """``path`` relative to ``base`` (default: the current directory) if it lies inside, else as is."""
    path = Path(path)
    try:
        return path.resolve().relative_to((base or Path.cwd()).resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)
