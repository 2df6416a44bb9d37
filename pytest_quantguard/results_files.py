"""Reading a results folder's files (docs/results.md, "The results layout"): the numeric arrays,
the sample ids and ``results.json``, each checked so that a malformed file is an error naming it
and never a silent mismatch."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard.errors import QuantGuardError

FORMAT = "quantguard-results"
VERSION = 1
RESULTS_FILE = "results.json"
IDS_FILE = "ids.npy"
# results.json's keys (docs/results.md, "The results layout"): any other is refused, so a typo
# ("data-digest") never turns a check off silently
KEYS = ("format", "version", "data_digest", "n", "model", "outputs", "provenance", "top_k")


def load_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise QuantGuardError(f"{path}: missing; a results folder holds {IDS_FILE} and one .npy per "
                              "output (docs/results.md)")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise QuantGuardError(f"{path}: not a readable .npy array ({error}); numeric arrays only, "
                              "saved with numpy.save") from None
    if array.dtype.kind not in "biuf":  # not complex, timedelta, datetime, text, void, objects
        raise QuantGuardError(f"{path}: dtype {array.dtype} is not numeric; save booleans, "
                              "integers or floats (e.g. outputs as float32)")
    return array


def sample_ids(path: Path) -> np.ndarray:
    ids = load_array(path)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":  # float ids would be truncated silently
        raise QuantGuardError(f"{path}: the sample ids must be a 1-D array of distinct integers "
                              f"(int64), got {ids.dtype} of shape {list(ids.shape)}; copy ids.npy of "
                              "quantguard export-inputs")
    return ids.astype(np.int64, copy=False)


def read_document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise QuantGuardError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise QuantGuardError(f"{path}: 'format' must be {FORMAT!r} (docs/results.md)")
    unknown = [key for key in document if key not in KEYS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], KEYS, n=1)
        raise QuantGuardError(f"{path}: unknown key {unknown[0]!r}"
                              f"{f' (did you mean {close[0]!r}?)' if close else ''}; results.json "
                              f"holds {', '.join(KEYS)}; put your own fields under 'provenance' "
                              "(docs/results.md)")
    if type(document.get("version")) is not int or document["version"] != VERSION:
        raise QuantGuardError(f"{path}: results version {document.get('version')!r}; this version "
                              f"of pytest-quantguard reads version {VERSION}: upgrade it, or write "
                              f"version {VERSION}")
    digest = document.get("data_digest")
    if digest is not None and not isinstance(digest, str):
        raise QuantGuardError(f"{path}: 'data_digest' must be the data set's sha256 string")
    n = document.get("n")
    if n is not None and (type(n) is not int or n < 0):
        raise QuantGuardError(f"{path}: 'n' is {n!r}; give the number of samples, a whole number")
    for key in ("model", "provenance"):
        if not isinstance(document.get(key) or {}, dict):
            raise QuantGuardError(f"{path}: {key!r} must be an object ({{...}}), not "
                                  f"{document[key]!r}")
    if not isinstance((document.get("provenance") or {}).get("data") or "", str):
        raise QuantGuardError(f"{path}: 'provenance.data' must be the data folder's path, a string")
    return document
