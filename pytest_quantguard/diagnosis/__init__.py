"""Why a candidate may not ship: risk notes about both models (``risks``), the per-layer diagnosis
and the remedies that follow from it (docs/risks.md). Nothing heavy is imported here."""
