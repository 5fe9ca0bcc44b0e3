"""The conversion lift and its interval (campaigns.reports.stats)."""

from __future__ import annotations

import pytest

from campaigns.reports.stats import conversion_lift


def test_lift_and_interval_match_a_hand_computation():
    lift = conversion_lift(1000, 120, 1000, 100)
    # p_t = .12, p_h = .10; se = sqrt(.12*.88/1000 + .1*.9/1000) = 0.0139857
    assert lift.absolute == pytest.approx(0.02)
    assert lift.low == pytest.approx(0.02 - 1.959964 * 0.0139857, abs=1e-6)
    assert lift.high == pytest.approx(0.02 + 1.959964 * 0.0139857, abs=1e-6)
    assert lift.relative == pytest.approx(0.2)
    assert not lift.significant
    assert conversion_lift(10_000, 1_200, 10_000, 1_000).significant


def test_an_empty_group_gives_no_lift():
    lift = conversion_lift(100, 10, 0, 0)
    assert lift.treated_rate == 0.1 and lift.holdout_rate is None and lift.absolute is None
