"""Margins other than an absolute drop, grouped data and McNemar, through compare()."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import indexed, model_wrong_on
from pytest_quantguard import QuantGuardWarning, ValidationSet, Verdict, compare
from pytest_quantguard.errors import QuantGuardError

N = 200_000
REFERENCE_WRONG = np.zeros(N, bool)
REFERENCE_WRONG[:1000] = True  # 99.5% accurate


@pytest.mark.parametrize(("extra_errors", "verdict"), [(2000, Verdict.STAY_FP16), (100, Verdict.SHIP)])
def test_max_error_increase_is_the_mlperf_rule(extra_errors, verdict):
    """99.5% -> 98.5% is one point of accuracy but three times the errors: it fails a 20% limit
    on the error rate's growth; 99.5% -> 99.45% (+10% errors) ships. The candidate's extra errors
    are its only disagreements with the reference."""
    candidate_wrong = REFERENCE_WRONG.copy()
    candidate_wrong[1000:1000 + extra_errors] = True
    result = compare(model_wrong_on(REFERENCE_WRONG), model_wrong_on(candidate_wrong),
                     data=indexed(N), max_error_increase=0.2)
    assert result.verdict == verdict
    assert result.drop == pytest.approx(extra_errors / 1000)
    assert result.max_drop == 0.2 and result.max_error_increase == 0.2
    assert result.qat_limit == pytest.approx(0.6)  # the try-qat band: up to 3x the limit
    assert result.to_dict()["thresholds"]["max_error_increase"] == 0.2
    assert "error-rate increase" in result.message
    assert "error rate: reference 0.0050" in result.message
    # the same pair under the absolute 1-point default ships 98.5% only if the bound allows it:
    absolute = compare(model_wrong_on(REFERENCE_WRONG), model_wrong_on(candidate_wrong),
                       data=indexed(N))
    assert absolute.drop == pytest.approx(extra_errors / N)


def test_relative_accuracy_drop():
    n = 5000
    reference_wrong = np.zeros(n, bool)
    reference_wrong[:500] = True  # 90%
    candidate_wrong = reference_wrong.copy()
    candidate_wrong[500:545] = True  # 89.1%: 1% of 90% lost
    result = compare(model_wrong_on(reference_wrong), model_wrong_on(candidate_wrong),
                     data=indexed(n), relative=True, max_drop=0.02)
    assert result.relative and result.drop == pytest.approx(1 - 0.891 / 0.9)
    assert result.interval.low < result.drop < result.interval.high
    assert result.method == "percentile+tango"
    assert "relative drop +1.00%" in result.message
    assert result.verdict == Verdict.SHIP


def test_relative_margin_inconclusive_names_the_samples_needed():
    n = 300
    reference_wrong = np.zeros(n, bool)
    reference_wrong[:30] = True
    candidate_wrong = reference_wrong.copy()
    candidate_wrong[30:31] = True
    result = compare(model_wrong_on(reference_wrong), model_wrong_on(candidate_wrong),
                     data=indexed(n), relative=True)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "samples (" in result.message and "more) would resolve it" in result.message


def test_error_increase_without_reference_errors_is_a_clear_error():
    with pytest.raises(QuantGuardError, match="the reference makes no error on these 50 samples"):
        compare(model_wrong_on(np.zeros(50, bool)), model_wrong_on(np.ones(50, bool)),
                data=indexed(50), max_error_increase=0.2)


def test_mcnemar_p_is_reported_not_gated():
    from scipy.stats import binomtest

    n = 1000
    reference_wrong = np.zeros(n, bool)
    candidate_wrong = np.zeros(n, bool)
    candidate_wrong[:9] = True  # b = 9
    reference_wrong[9:11] = True  # c = 2
    result = compare(model_wrong_on(reference_wrong), model_wrong_on(candidate_wrong),
                     data=indexed(n), max_drop=0.05, qat_limit=0.1)
    p = binomtest(9, 11).pvalue
    assert result.details["mcnemar_p"] == pytest.approx(p)
    assert f"McNemar exact p = {p:.3g}" in result.message
    assert result.verdict == Verdict.SHIP  # significant or not, the margin decides


def grouped_pair(groups: int, size: int, seed: int):
    """Grouped 0/1 outcomes: in some groups the candidate breaks on many samples at once."""
    rng = np.random.default_rng(seed)
    n = groups * size
    reference_wrong = rng.random(n) < 0.1
    group_damage = np.repeat(rng.random(groups) < 0.2, size) & (rng.random(n) < 0.3)
    return reference_wrong, reference_wrong | group_damage, np.repeat(np.arange(groups), size)


@pytest.mark.filterwarnings("ignore:the call.s max_drop = 0.2 lets accuracy lose up to 20 points")
def test_grouped_data_resample_groups_and_widen_the_interval():
    reference_wrong, candidate_wrong, groups = grouped_pair(200, 10, 0)
    inputs, labels = indexed(len(groups))
    grouped = compare(model_wrong_on(reference_wrong), model_wrong_on(candidate_wrong),
                      data=ValidationSet(inputs, labels, groups=groups), max_drop=0.2, qat_limit=0.5)
    flat = compare(model_wrong_on(reference_wrong), model_wrong_on(candidate_wrong),
                   data=ValidationSet(inputs, labels), max_drop=0.2, qat_limit=0.5)
    assert grouped.method == "cluster-bca" and grouped.n_groups == 200
    assert grouped.to_dict()["data"]["n_groups"] == 200
    assert grouped.drop == flat.drop
    # samples within a group fail together: the clustered interval is clearly wider
    assert grouped.interval.high - grouped.interval.low > 1.5 * (flat.interval.high - flat.interval.low)
    assert "200 groups" in grouped.message and "cluster-bca" in grouped.message


def test_few_groups_warn():
    reference_wrong, candidate_wrong, groups = grouped_pair(12, 20, 1)
    inputs, labels = indexed(len(groups))
    with pytest.warns(QuantGuardWarning, match="only 12 groups; a clustered interval with fewer "
                                               "than 30 groups is unreliable"):
        result = compare(model_wrong_on(reference_wrong), model_wrong_on(candidate_wrong),
                         data=ValidationSet(inputs, labels, groups=groups))
    assert result.method in ("cluster-bca", "degenerate-fallback")


@pytest.mark.parametrize("margin", [{}, {"relative": True}, {"max_error_increase": 0.2}])
def test_identical_models_on_grouped_data_give_a_finite_nonzero_interval(margin):
    reference_wrong, _, groups = grouped_pair(50, 4, 2)
    inputs, labels = indexed(len(groups))
    model = model_wrong_on(reference_wrong)
    result = compare(model, model, data=ValidationSet(inputs, labels, groups=groups), **margin)
    assert result.method == "degenerate-fallback"
    assert np.isfinite(result.interval).all() and result.interval.high > result.interval.low


def test_group_ids_are_checked():
    inputs, labels = indexed(10)
    with pytest.raises(QuantGuardError, match=r"groups must be 1-D with one id per sample \(10\)"):
        ValidationSet(inputs, labels, groups=np.zeros(9))
    with pytest.raises(QuantGuardError, match="NaN or Inf among the group ids"):
        ValidationSet(inputs, labels, groups=np.full(10, np.nan))
