import pytest

from pytest_quantguard import Verdict
from pytest_quantguard.verdict import decide, inconclusive_remedy

LIMITS = dict(max_drop=0.01, qat_limit=0.03)


@pytest.mark.parametrize(("drop", "low", "high", "gate", "expected"), [
    (0.000, -0.004, 0.004, "upper", "ship"),
    (0.005, -0.002, 0.0099, "upper", "ship"),
    (0.005, -0.002, 0.0100, "upper", "inconclusive"),  # U == max_drop does not ship
    (0.009, 0.001, 0.030, "upper", "inconclusive"),
    (0.010, 0.001, 0.030, "upper", "try-qat"),  # p == max_drop is not below it
    (0.029, 0.020, 0.040, "upper", "try-qat"),
    (0.030, 0.020, 0.040, "upper", "stay-fp16"),
    (0.087, 0.067, 0.108, "upper", "stay-fp16"),
    (-0.020, -0.030, -0.011, "upper", "ship"),  # negative drops follow the same rule
    (-0.005, -0.030, 0.020, "upper", "inconclusive"),
    (0.009, 0.001, 0.030, "point", "ship"),  # point gate: never inconclusive
    (0.012, 0.001, 0.030, "point", "try-qat"),
    (0.050, 0.030, 0.070, "point", "stay-fp16"),
])
def test_rule(drop, low, high, gate, expected):
    assert decide(drop, low, high, gate=gate, **LIMITS).verdict == expected


def test_no_try_qat_band_when_max_drop_reaches_qat_limit():
    decision = decide(0.04, 0.035, 0.045, max_drop=0.03, qat_limit=0.03)
    assert decision.verdict == Verdict.STAY_FP16
    assert "no try-qat band" in decision.rule
    assert decide(0.02, 0.0, 0.05, max_drop=0.05, qat_limit=0.03).verdict == "inconclusive"


def test_established_when_the_lower_bound_reaches_max_drop():
    assert decide(0.02, 0.011, 0.03, **LIMITS).established
    assert not decide(0.02, 0.009, 0.03, **LIMITS).established


def test_verdict_is_a_str_enum_with_hyphenated_values():
    assert Verdict.TRY_QAT == "try-qat" and f"{Verdict.STAY_FP16}" == "stay-fp16"
    assert [v.value for v in Verdict] == ["ship", "try-qat", "stay-fp16", "inconclusive"]


def test_unknown_gate_is_refused():
    with pytest.raises(ValueError, match="gate"):
        decide(0.0, -0.01, 0.01, gate="lower", **LIMITS)


def test_inconclusive_remedy_counts_samples_with_the_discordance_floor():
    # 100 samples, no disagreement: discordance floored at 3/n = 0.03 -> plan(0.03, 0.01) = 2355.
    text = inconclusive_remedy(0.0, 0.01, 100, discordance=0.0)
    assert "about 2,355 samples (2,255 more)" in text


def test_inconclusive_remedy_near_the_limit_says_more_data_will_not_help():
    assert "unlikely to help" in inconclusive_remedy(0.008, 0.01, 1000, discordance=0.05)
    assert "unlikely to help" not in inconclusive_remedy(0.007, 0.01, 1000, discordance=0.05)
