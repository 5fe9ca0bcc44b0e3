"""When lots expire: durations in calendar months and days, calendar rules, local days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from campaigns.config.loyalty import LoyaltyConfig, check_validity
from campaigns.customers.loyalty.validity import add_months, expires_at, expiry_date


@pytest.mark.parametrize(("earned", "validity", "expiry"), [
    (date(2026, 3, 15), "1y", date(2027, 3, 15)),
    (date(2024, 2, 29), "1y", date(2025, 2, 28)),          # no 29 February next year
    (date(2026, 11, 30), "3mo", date(2027, 2, 28)),
    (date(2026, 1, 31), "1mo", date(2026, 2, 28)),
    (date(2026, 3, 15), "90d", date(2026, 6, 13)),
    (date(2026, 3, 15), "1y6mo", date(2027, 9, 15)),
    (date(2026, 3, 15), "2w", date(2026, 3, 29)),
    (date(2026, 3, 15), "month_end", date(2026, 4, 1)),
    (date(2026, 3, 15), "month_after", date(2026, 5, 1)),
    (date(2026, 3, 15), "quarter_end", date(2026, 4, 1)),
    (date(2026, 3, 15), "quarter_after", date(2026, 7, 1)),
    (date(2026, 12, 31), "quarter_after", date(2027, 4, 1)),
    (date(2026, 3, 15), "year_end", date(2027, 1, 1)),
    (date(2026, 3, 15), "year_after", date(2028, 1, 1)),
])
def test_expiry_dates(earned: date, validity: str, expiry: date) -> None:
    assert expiry_date(earned, validity) == expiry


def test_the_local_day_decides() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    # 16:30 UTC on 31 March is 00:30 on 1 April in Shanghai: April's quarter.
    assert expires_at(datetime(2026, 3, 31, 16, 30, tzinfo=UTC), "quarter_end", shanghai) == \
        datetime(2026, 6, 30, 16, 0, tzinfo=UTC)
    assert expires_at(datetime(2026, 3, 31, 15, 30, tzinfo=UTC), "quarter_end", shanghai) == \
        datetime(2026, 3, 31, 16, 0, tzinfo=UTC)
    # Across a DST change the expiry is still local midnight.
    paris = ZoneInfo("Europe/Paris")
    assert expires_at(datetime(2026, 1, 10, 12, tzinfo=UTC), "3mo", paris) == datetime(2026, 4, 9, 22, tzinfo=UTC)


def test_add_months_backwards() -> None:
    assert add_months(date(2026, 3, 31), -1) == date(2026, 2, 28)
    assert add_months(date(2026, 1, 15), -12) == date(2025, 1, 15)


@pytest.mark.parametrize("text", ["", "1x", "year", "-1y", "99999y", "1y 2q"])
def test_bad_validities_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        check_validity(text)


def test_config_cross_checks() -> None:
    with pytest.raises(ValidationError, match="unknown kind 'vouchers'"):
        LoyaltyConfig(orders={"redeemable": ["vouchers"]})
    with pytest.raises(ValidationError, match="minimum must be 0"):
        LoyaltyConfig(tiers=[{"name": "silver", "minimum": 10}])
    with pytest.raises(ValidationError, match="lowest first"):
        LoyaltyConfig(tiers=[{"name": "member", "minimum": 0}, {"name": "gold", "minimum": 50},
                             {"name": "silver", "minimum": 10}])
