"""bench/pairs.py: what alternating A/B pairs say and how sure it is (figures checked by hand)."""

from __future__ import annotations

import pytest
from bench.pairs import summarize


def test_eight_pairs_all_won_are_resolved_with_the_order_statistics_interval() -> None:
    b = [100.0] * 8
    a = [101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0, 108.0]
    summary = summarize(a, b)
    assert summary.a_won == 8
    assert summary.p_sign == pytest.approx(2 / 256)
    # n = 8 at 90 %: P(X <= 1) = 9/256 <= 0.05 < P(X <= 2) = 37/256, so [x(2), x(7)], 93 %.
    assert (summary.low, summary.high) == pytest.approx((1.02, 1.07))
    assert summary.coverage == pytest.approx(1 - 2 * 9 / 256)
    assert summary.median_ratio == pytest.approx(1.045)
    assert summary.resolved
    assert summary.describe().endswith("; resolved")


def test_seven_of_eight_close_to_each_other_are_resolved_five_of_eight_scattered_are_not() -> None:
    ratios = [0.95, 1.02, 1.04, 1.08, 1.10, 1.12, 1.15, 1.20]
    summary = summarize([r * 1000 for r in ratios], [1000.0] * 8)
    assert summary.a_won == 7
    assert summary.p_sign == pytest.approx(2 * 9 / 256)  # 0.07: a change doing nothing, 1 in 14
    assert (summary.low, summary.high) == pytest.approx((1.02, 1.15))
    assert summary.resolved  # the interval leaves 1 out even though the sign test is at 0.07

    mixed = [0.90, 0.97, 0.99, 1.01, 1.03, 1.05, 1.08, 1.20]
    unsure = summarize([r * 1000 for r in mixed], [1000.0] * 8)
    assert unsure.a_won == 5
    assert unsure.low < 1.0 < unsure.high
    assert not unsure.resolved
    assert "not resolved" in unsure.describe()


def test_ties_count_for_neither_side_and_few_pairs_give_the_whole_range() -> None:
    summary = summarize([10.0, 12.0, 10.0], [10.0, 10.0, 11.0])
    assert summary.a_won == 1
    assert summary.p_sign == 1.0  # one win, one loss
    assert (summary.low, summary.high) == pytest.approx((10 / 11, 1.2))  # n = 3: no narrower interval
    assert summary.coverage == pytest.approx(0.75)
    # Too few pairs for the coverage asked resolve nothing, however lopsided.
    assert not summarize([12.0, 13.0, 14.0], [10.0, 10.0, 10.0]).resolved
    assert not summarize([12.0], [10.0]).resolved


def test_bad_input_is_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="same number"):
        summarize([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        summarize([1.0], [0.0])
