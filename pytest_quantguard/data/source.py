"""What every folder format hands back (parts of the set that load on demand), and the digest they
all feed (docs/data.md: formats, digests)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard._files import hash_file
from pytest_quantguard.errors import QuantGuardError

MANIFEST_NAME = "quantguard.toml"
DEFAULT_INPUT_NAME = "inputs"
DEFAULT_LABEL_NAME = "labels"
# A file read again after the digest holds other bytes (docs/data.md, "What is refused").
CHANGED = ("changed since the set was read and digested; do not rewrite validation data while a "
           "run uses it, and rerun")


@dataclass(frozen=True)
class Part:
    """A piece of the set that loads on demand (one shard file, or the in-memory arrays)."""

    n: int
    origin: str
    # load(with_inputs) -> (inputs, labels); with_inputs=False may skip reading the inputs
    load: Callable[[bool], tuple[dict[str, np.ndarray], np.ndarray | None]]
    # load_groups() -> the group id of each sample (None: the set has no groups)
    load_groups: Callable[[], np.ndarray] | None = None
    # stream(batch_size) -> the inputs of consecutive batches, each read on its own (memory-mapped
    # arrays, images); None: batches are sliced from load(True)
    stream: Callable[[int], Iterator[dict[str, np.ndarray]]] | None = None
    # load_slices() -> the slice label of each sample (None: the set has no slices)
    load_slices: Callable[[], np.ndarray] | None = None


@dataclass
class Loaded:
    """One format's view of a folder (or of in-memory arrays): its parts in load order, input names
    and per-sample shapes."""

    parts: list[Part]
    input_names: list[str]
    has_labels: bool
    # input name -> the shape of one sample (without the batch axis), for [preprocess] checks
    sample_shapes: dict[str, tuple[int, ...]]
    # class names the format itself defines (image class folders); None: the manifest's, if any
    class_names: list[str] | None = None
    # where each part's labels live, when not in its origin file (labels.npy beside inputs.npy)
    label_origins: list[str] | None = None


class FileDigest:
    """sha256 over (relative path, size, bytes) of every file read, in load order, then the manifest."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._sha = hashlib.sha256()

    def _name(self, file: Path, size: int) -> None:
        self._sha.update(f"{file.relative_to(self.folder).as_posix()}\0{size}\0".encode())

    def add_file(self, file: Path) -> None:
        """Hash a file by streaming it (large arrays: nothing is kept in memory)."""
        self._name(file, file.stat().st_size)
        hash_file(self._sha, file)

    def add_bytes(self, file: Path, data: bytes) -> bytes:
        """Hash a file already read whole (CSV tables, images: read once, hashed and checked);
        returns its fingerprint, for ``read_unchanged`` when the file is read again."""
        self._name(file, len(data))
        self._sha.update(data)
        return fingerprint(data)

    def finish(self, manifest: dict[str, Any]) -> str:
        self._sha.update(json.dumps(manifest, sort_keys=True).encode())
        return self._sha.hexdigest()


def natural_key(path: Path) -> list[Any]:
    """Sort key putting ``shard_2`` before ``shard_10``."""
    return [int(token) if token.isdigit() else token.lower()
            for token in re.split(r"(\d+)", path.name)]


def listing(paths: list[Path], limit: int = 8) -> str:
    """A short, readable list of file names for messages."""
    names = [path.name for path in paths[:limit]]
    more = f", … ({len(paths) - limit} more)" if len(paths) > limit else ""
    return (", ".join(names) + more) if names else "nothing"


def fingerprint(data: bytes) -> bytes:
    """What a file read whole held: compared when it is read again, per batch or part."""
    return hashlib.blake2b(data, digest_size=16).digest()


def read_unchanged(file: Path, expected: bytes) -> bytes:
    """A file read again (a CSV shard per part, an image per batch), refused when its bytes are no
    longer those the digest covered."""
    data = read_bytes(file)
    if fingerprint(data) != expected:
        raise QuantGuardError(f"{file}: {CHANGED}")
    return data


def read_bytes(file: Path) -> bytes:
    """A whole file (a CSV table, an image), or an error naming it."""
    try:
        return file.read_bytes()
    except OSError as error:
        raise QuantGuardError(f"{file}: could not be read ({error})") from None
