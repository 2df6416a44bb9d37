"""Small file helpers shared by the data and runner rooms: how paths are shown, how files are hashed."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def shown(path: Path | str, base: Path | None = None) -> str:
    """``path`` relative to ``base`` (default: the current directory) if it lies inside, else as is."""
    path = Path(path)
    try:
        return path.resolve().relative_to((base or Path.cwd()).resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)


def hash_file(digest: Any, path: Path) -> None:
    """Feed ``path``'s bytes into a hashlib ``digest``, 1 MiB at a time."""
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
