"""Why a candidate does not ship: risk notes, the per-layer diagnosis and remedies that run."""
