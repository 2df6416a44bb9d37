"""The ladder's gatekeeping with propagated alpha (docs/ladder.md, "The guarantee")."""

from __future__ import annotations

import math

import pytest

from pytest_quantguard.stats.ladder import confidence_for, gatekeep, one_sided_level

LEVELS = (("fp16",), ("int8-dynamic", "int8-static", "int8-per-channel"), ("int4",))


def _ships(shipping: set[str], asked: list | None = None):
    def ships(name: str, alpha: float) -> bool:
        if asked is not None:
            asked.append((name, alpha))
        return name in shipping
    return ships


def test_level_one_shares_alpha_and_each_shipped_share_passes_on():
    asked: list = []
    levels = (("a", "b"), ("c", "d", "e"), ("f",))
    result = gatekeep(levels, 0.025, _ships({"a", "c", "d", "f"}, asked))
    alphas = {rung.name: rung.alpha for rung in result.rungs}
    assert alphas["a"] == alphas["b"] == pytest.approx(0.0125)
    # level 2 receives a's share only (b did not ship) and splits it in three
    assert alphas["c"] == alphas["d"] == alphas["e"] == pytest.approx(0.0125 / 3)
    # level 3 receives the shares of c and d
    assert alphas["f"] == pytest.approx(2 * 0.0125 / 3)
    assert [name for name, _ in asked] == ["a", "b", "c", "d", "e", "f"]
    assert result.recommendation == "f"
    assert result.shipped == ("a", "c", "d", "f")


def test_a_level_that_receives_nothing_is_not_tested():
    asked: list = []
    result = gatekeep(LEVELS, 0.025, _ships({"fp16", "int4"}, asked))
    assert [name for name, _ in asked] == ["fp16", "int8-dynamic", "int8-static", "int8-per-channel"]
    int4 = result.rung("int4")
    assert (int4.tested, int4.shipped, int4.alpha, int4.confidence) == (False, False, 0.0, None)
    assert result.recommendation == "fp16"


def test_recommendation_is_the_most_compressed_shipped_rung_first_in_declared_order():
    result = gatekeep(LEVELS, 0.025, _ships({"fp16", "int8-static", "int8-per-channel"}))
    assert result.recommendation == "int8-static"
    assert gatekeep(LEVELS, 0.025, _ships(set())).recommendation is None


def test_the_allotted_levels_never_sum_past_alpha_along_any_path():
    levels = (("a", "b"), ("c", "d", "e"), ("f", "g"))
    names = [n for level in levels for n in level]
    for mask in range(1 << len(names)):
        shipping = {n for i, n in enumerate(names) if mask >> i & 1}
        result = gatekeep(levels, 0.025, _ships(shipping))
        for number in (1, 2, 3):
            level_total = sum(r.alpha for r in result.rungs if r.level == number)
            assert level_total <= 0.025 + 1e-15
        # every tested rung's level is the share of a path of shipped ancestors: a rung that
        # cannot be over the limit without a false ship above it, or is one of the level-1 split
        first = sum(r.alpha for r in result.rungs if r.level == 1)
        assert math.isclose(first, 0.025)


def test_rung_confidence_is_the_two_sided_level_of_its_one_sided_share():
    result = gatekeep(LEVELS, 0.025, _ships({"fp16"}))
    assert result.rung("fp16").confidence == pytest.approx(0.95)
    assert result.rung("int8-static").confidence == pytest.approx(1 - 2 * 0.025 / 3)
    assert one_sided_level(confidence_for(0.004)) == pytest.approx(0.004)


@pytest.mark.parametrize("levels, message", [
    ((), "at least one level"),
    ((("a",), ()), "at least one candidate"),
    ((("a",), ("a", "b")), "repeated: a"),
])
def test_bad_ladders_are_refused(levels, message):
    with pytest.raises(ValueError, match=message):
        gatekeep(levels, 0.025, _ships(set()))


@pytest.mark.parametrize("alpha", [0.0, 0.5, -0.1, 1.0])
def test_a_level_outside_zero_half_is_refused(alpha):
    with pytest.raises(ValueError, match="one-sided level"):
        gatekeep(LEVELS, alpha, _ships(set()))
