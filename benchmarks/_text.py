"""Real text for the scale benchmarks, nothing downloaded: the standard library's own ``.py``
files (the running interpreter's lib directory), split into words and numbered by a word
vocabulary, and the cache folder where a benchmark keeps the models it built."""

from __future__ import annotations

import collections
import re
import sysconfig
import tempfile
from pathlib import Path

WORD = re.compile(r"[A-Za-z_]+|\d+|[^\sA-Za-z_\d]")
PAD, UNK = 0, 1  # ids 0 and 1; words from 2


def cache_dir(name: str) -> Path:
    """``<tmp>/quantguard-bench/<name>``: built once, reused by later runs (delete it to rebuild)."""
    folder = Path(tempfile.gettempdir()) / "quantguard-bench" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def stdlib_documents(limit: int) -> list[list[str]]:
    """The words of up to ``limit`` standard-library modules, one list per file, in sorted order."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for path in sorted(lib.glob("*.py")):
        words = WORD.findall(path.read_text(encoding="utf-8", errors="replace"))
        if len(words) >= 512:
            documents.append(words)
        if len(documents) == limit:
            break
    return documents


def vocabulary(documents: list[list[str]], size: int) -> dict[str, int]:
    """The ``size - 2`` most frequent words (ties by first sight), numbered from 2."""
    counts = collections.Counter(word for words in documents for word in words)
    return {word: index + 2 for index, (word, _) in enumerate(counts.most_common(size - 2))}


def encode(words: list[str], vocab: dict[str, int]) -> list[int]:
    return [vocab.get(word, UNK) for word in words]
