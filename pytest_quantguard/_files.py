"""Small file helpers shared by the data, runner and report rooms: how paths are shown, how files
are hashed, how files are written."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


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


def write_atomically(path: Path | str, write: Callable[[BinaryIO], Any]) -> Path:
    """Write a file through ``write(stream)`` into a temporary file beside ``path``, then rename it
    over ``path``: a reader (or a crash) never sees half a file. Parent folders are created; the
    file's permissions follow the umask; the temporary file is removed on any failure, and the
    ``OSError`` (or the writer's own error) propagates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        with temporary.open("xb") as stream:  # opened by name ("x": never an existing file)
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
