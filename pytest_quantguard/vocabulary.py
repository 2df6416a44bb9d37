"""Words more than one floor needs: the tasks a validation set can declare and the ways to pool
per-token outputs. ``data/`` (the manifest's checks) and ``metrics/`` (what a metric belongs to)
both import them from here, so neither imports the other."""

from __future__ import annotations

TASKS = ("classification", "regression", "language-model", "fidelity", "detection")
POOLINGS = ("mean", "max", "first", "last")  # per-token outputs -> one vector per sample
