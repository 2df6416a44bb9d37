import pytest

from pytest_quantguard import plan


@pytest.mark.parametrize(("discordance", "expected"), [(0.02, 1570), (0.05, 3925), (0.01, 785),
                                                       (0.10, 7849)])
def test_plan_matches_statistics_note_table(discordance, expected):
    # docs/verdict.md, "Remedies": 80% power at a true drop of 0, margin 1 point, 2-sided 95%.
    assert abs(plan(discordance, 0.01) - expected) <= 1


def test_fifty_percent_power_and_a_nonzero_true_drop():
    assert abs(plan(0.02, 0.01, power=0.5) - 768) <= 1
    assert abs(plan(0.02, 0.01, drop=0.005) - 6271) <= 1  # 80% power at 0.5 pt


def test_one_sided_95_percent_needs_fewer_samples():
    assert abs(plan(0.02, 0.01, confidence=0.90) - 1237) <= 1


def test_always_rounds_up():
    assert plan(0.0201, 0.01) == 1578  # 1577.6... -> 1578


@pytest.mark.parametrize("kwargs", [dict(discordance=-0.1, margin=0.01),
                                    dict(discordance=0.02, margin=0.0),
                                    dict(discordance=0.02, margin=0.01, power=1.0),
                                    dict(discordance=0.02, margin=0.01, confidence=0.0),
                                    dict(discordance=0.02, margin=0.01, drop=0.01)])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        plan(**kwargs)


@pytest.mark.parametrize(("discordance", "drop", "match"), [
    (0.0, 0.0, r"discordance must be a share in \(0, 1\]"),
    (1.5, 0.0, r"discordance must be a share in \(0, 1\]"),
    (0.01, 0.02, r"a drop of 0.02 needs a discordance of at least 0.02"),
])
def test_plan_refuses_a_discordance_that_cannot_be(discordance, drop, match):
    with pytest.raises(ValueError, match=match):
        plan(discordance, 0.05, drop=drop)
