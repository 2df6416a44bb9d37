"""Reference outputs kept between comparisons: reused within a run, cached between runs.

What is kept is what the metric reduced the reference's outputs to (one small record per sample,
e.g. the predicted class), never the raw outputs. An entry is keyed by everything that could
change it: the model's bytes (its sha256, external data included), the data digest, the metric,
the chosen output, the runner settings and the library versions. A model without a digest (a
plain callable) is never cached and shows ``off``.

Entries live under pytest's cache directory (``.pytest_cache/d/quantguard``), written atomically
(a temporary file, then ``os.replace``); a corrupt or missing entry is a miss, never an error.
``--cache-clear`` empties it, ``--quant-no-cache`` and ``-p no:cacheprovider`` turn it off (the
in-run reuse stays: a reference compared with several candidates runs once per process).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard._files import write_atomically

ENTRY_VERSION = 1
LIBRARIES = ("pytest-quantguard", "numpy", "onnxruntime", "onnxruntime-gpu", "torch")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that can change a reference's outputs (absent ones omitted)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class ReferenceCache:
    """In-run reuse (always) plus an on-disk store (``directory``; None: off)."""

    directory: Path | None
    memory: dict[str, np.ndarray] = field(default_factory=dict)
    probed: bool = field(default=False, repr=False)  # the folder took a write (see _writable)

    def key(self, model_sha256: str | None, parts: dict[str, Any]) -> str | None:
        """The entry's name, or None when the model cannot be identified by its bytes."""
        if model_sha256 is None:
            return None
        description = {"entry": ENTRY_VERSION, "model": model_sha256, **parts,
                       "libraries": library_versions()}
        text = json.dumps(description, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str | None, n: int) -> tuple[np.ndarray | None, str]:
        """(records, status): status is ``hit`` (this run or on disk), ``miss`` or ``off``."""
        if key is None:
            return None, "off"
        if key in self.memory:
            return self.memory[key], "hit" if self.directory is not None else "off"
        if self.directory is None:
            return None, "off"
        records = self._read(self.directory / f"{key}.npy", n)
        if records is None:
            return (None, "miss") if self._writable() else (None, "off")
        self.memory[key] = records
        return records, "hit"

    def put(self, key: str | None, records: np.ndarray) -> None:
        if key is None:
            return
        self.memory[key] = records
        if self.directory is not None and not self._write(self.directory / f"{key}.npy", records):
            # a read-only or full disk costs the cache, never the comparison: it is off from here
            # on, and says so (docs/caching.md)
            self.directory = None

    @staticmethod
    def _read(path: Path, n: int) -> np.ndarray | None:
        try:
            records = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # missing, truncated, corrupt: a miss
            return None
        if records.ndim == 0 or len(records) != n:
            return None
        return records

    def _writable(self) -> bool:
        """Whether a miss can be stored: a probe file is written; when it cannot be, the disk store
        is off for the rest of the run (a read-only or full cache folder)."""
        if self.directory is None:
            return False
        if self.probed:
            return True
        if not self._write(self.directory / ".probe", np.zeros(1, np.uint8)):
            self.directory = None
            return False
        with contextlib.suppress(OSError):
            (self.directory / ".probe").unlink()
        self.probed = True
        return True

    @staticmethod
    def _write(path: Path, records: np.ndarray) -> bool:
        """Store ``records`` atomically; False when the disk refuses (read-only, full, too big)."""
        try:
            write_atomically(path, lambda file: np.save(file, records, allow_pickle=False))
        except OSError:
            return False
        return True
