"""Random streams for resampling, derived from what is compared, never from where it runs."""

from __future__ import annotations

import hashlib

import numpy as np


def scores_digest(*arrays: np.ndarray) -> str:
    """sha256 over the per-sample scores of both models (dtype, shape and bytes of each)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def derive_rng(seed: int, data_digest: str, metric: str, scores_sha256: str) -> np.random.Generator:
    """A Generator seeded from (seed, data digest, metric name, scores digest).

    The test id and the xdist worker play no part, so ``compare()`` and the fixture give identical
    intervals for identical inputs on every machine.
    """
    key = f"quantguard/v1|{int(seed)}|{data_digest}|{metric}|{scores_sha256}".encode()
    entropy = int.from_bytes(hashlib.sha256(key).digest(), "big")
    return np.random.default_rng(np.random.SeedSequence(entropy))
