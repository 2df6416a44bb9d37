"""Every metric family's ``Scores``, by name: both models' scores, the drop and its interval.

Each family lives beside its metrics (docs/intervals.md has each family's interval):

| families | module |
|---|---|
| ``BinaryScores``, ``MacroF1Scores``, ``PerClassScores`` | ``metrics.classification`` |
| ``MeanScores``, ``R2Scores`` | ``metrics.regression`` |
| ``PerplexityScores`` | ``metrics.language`` |
| ``AgreementScores``, ``DistanceScores`` | ``metrics.fidelity`` |
| ``CorpusScores`` | ``metrics.custom`` |
"""

from __future__ import annotations

from pytest_quantguard.metrics.breakdown import breakdown
from pytest_quantguard.metrics.classification import (
    BinaryScores,
    MacroF1Scores,
    PerClassScores,
    macro_f1,
)
from pytest_quantguard.metrics.custom import CorpusScores
from pytest_quantguard.metrics.fidelity import AgreementScores, DistanceScores
from pytest_quantguard.metrics.language import PerplexityScores
from pytest_quantguard.metrics.regression import MeanScores, R2Scores

__all__ = [
    "AgreementScores",
    "BinaryScores",
    "CorpusScores",
    "DistanceScores",
    "MacroF1Scores",
    "MeanScores",
    "PerClassScores",
    "PerplexityScores",
    "R2Scores",
    "breakdown",
    "macro_f1",
]
