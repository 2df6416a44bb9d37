"""An inconclusive verdict says what a set of this size can resolve (docs/verdict.md, "Inconclusive:
sample size"): the smallest limit at 80% power, as guidance for the next set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import indexed, model_wrong_on
from pytest_quantguard import Verdict, compare
from pytest_quantguard.stats.plan import plan, samples_for_variance, smallest_margin
from pytest_quantguard.verdict import inconclusive_remedy

Z = 1.959963984540054 + 0.8416212335729143  # two-sided 95% + 80% power


def test_285_samples_that_never_disagree_resolve_about_1_7_points():
    wrong = np.zeros(285, bool)
    wrong[:20] = True
    result = compare(model_wrong_on(wrong), model_wrong_on(wrong), data=indexed(285),
                     resamples=500)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "about 827 samples (542 more) would resolve it (80% power)" in result.remedy
    assert ("for the next set: 285 samples resolve a limit of about 0.0170 (1.70 pt) at 80% power"
            in result.remedy)
    # no disagreement was seen: the message says the discordance is the 3/n floor, not observed
    assert ("at a discordance of 3/n = 1.1% (the floor: the models disagreed on 0% of the "
            "samples)") in result.remedy
    assert "raising max_drop after it voids the false-ship guarantee" in result.remedy
    assert result.remedy in result.message


@pytest.mark.parametrize(("n", "flips"), [(120, 2), (400, 6)])
def test_a_small_set_with_disagreements_names_its_resolvable_limit(n, flips):
    reference_wrong = np.zeros(n, bool)
    candidate_wrong = np.zeros(n, bool)
    candidate_wrong[:flips // 2] = True  # b: only the reference right
    reference_wrong[n - flips // 2:] = True  # c: only the candidate right
    result = compare(model_wrong_on(reference_wrong), model_wrong_on(candidate_wrong),
                     data=indexed(n), resamples=500)
    assert result.verdict == Verdict.INCONCLUSIVE
    share = max(flips / n, 3 / n)
    expected = Z * math.sqrt(share / n)
    assert f"{n:,} samples resolve a limit of about {expected:.4f} ({100 * expected:.2f} pt)" \
        in result.remedy


def test_the_smallest_limit_inverts_the_sample_size():
    for variance, n, drop in ((0.01, 285, 0.0), (0.3, 5000, 0.002), (2.5, 77, 0.1)):
        margin = smallest_margin(variance, n, drop=drop)
        assert samples_for_variance(variance, margin, drop=drop) == n
    assert plan(3 / 285, smallest_margin(3 / 285, 285)) == 285


def test_the_guidance_also_stands_beside_more_data_is_unlikely_to_help():
    text = inconclusive_remedy(0.009, 0.01, 1000, discordance=0.05, fmt=lambda x: f"{x:.3f}")
    assert text.startswith("more data is unlikely to help")
    assert "for the next set: 1,000 samples resolve a limit of about " in text
    shown = float(text.split("a limit of about ")[1].split(" ")[0])
    assert shown == pytest.approx(0.009 + Z * math.sqrt((0.05 - 0.009 ** 2) / 1000), abs=1e-3)
