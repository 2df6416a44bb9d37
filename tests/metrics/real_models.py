"""Real data and two models of different quality for the metric tests: scikit-learn's digits with
a logistic regression (the reference) against its weights rounded to a 4-bit grid (the
"quantized" candidate), and scikit-learn's diabetes with a ridge regression against its
coefficients on a coarse grid. Both are given to ``compare()`` as callables."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import LogisticRegression, Ridge

from pytest_quantguard import ValidationSet


def rounded(weights: np.ndarray, levels: int) -> np.ndarray:
    """Symmetric per-tensor rounding to ``levels`` steps each side of zero (fake quantization)."""
    scale = np.abs(weights).max() / levels
    return np.round(weights / scale) * scale


class Digits:
    """Held-out digits and two classifiers of different quality, as callables and as arrays."""

    def __init__(self) -> None:
        inputs, labels = load_digits(return_X_y=True)
        inputs = inputs / 16.0
        self.train_x, self.train_y = inputs[:900], labels[:900]
        self.x, self.y = inputs[900:], labels[900:]
        self.data = (self.x, self.y)
        model = LogisticRegression(max_iter=5000).fit(self.train_x, self.train_y)
        self.model = model
        quantized = rounded(model.coef_, 7)  # 4-bit weights

        def reference(batch: np.ndarray) -> np.ndarray:
            return model.predict_proba(batch)

        def candidate(batch: np.ndarray) -> np.ndarray:  # logits: argmax and ranks are what count
            return batch @ quantized.T + model.intercept_

        self.reference, self.candidate = reference, candidate
        self.reference_scores = reference(self.x)
        self.candidate_scores = candidate(self.x)

    def predictions(self) -> tuple[np.ndarray, np.ndarray]:
        return self.reference_scores.argmax(1), self.candidate_scores.argmax(1)


class Diabetes:
    """Held-out diabetes patients, a ridge regression and its coarsely rounded coefficients."""

    def __init__(self) -> None:
        inputs, targets = load_diabetes(return_X_y=True)
        self.x, self.y = inputs[300:], targets[300:]
        model = Ridge(alpha=0.05).fit(inputs[:300], targets[:300])
        quantized = rounded(model.coef_, 3)

        def reference(batch: np.ndarray) -> np.ndarray:
            return model.predict(batch)

        def candidate(batch: np.ndarray) -> np.ndarray:
            return batch @ quantized + model.intercept_

        self.reference, self.candidate = reference, candidate
        self.reference_predictions = reference(self.x)
        self.candidate_predictions = candidate(self.x)
        self.data = ValidationSet(self.x, self.y, task="regression")
