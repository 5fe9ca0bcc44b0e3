"""One customer's points as ``nurture points`` shows them (campaigns/reports/points.py), on
SQLite and PostgreSQL: balances by kind, lots with their local dates, the next expiry
however far off, and the ledger newest first."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.earning import earn
from campaigns.customers.loyalty.redeeming import Redemption, redeem
from campaigns.reports.points import customer_points, last_local_day, points_summary
from tests.campaigns.customers.loyalty.helpers import add_customer, add_event, add_order

LOYALTY = LoyaltyConfig(enabled=True)
CST = timedelta(hours=8)


def local(text: str) -> datetime:
    """A wall-clock time in Asia/Shanghai, as aware UTC."""
    return (datetime.fromisoformat(text) - CST).replace(tzinfo=UTC)


def test_a_customers_points_by_hand(engine: sa.Engine) -> None:
    now = local("2026-04-10T12:00")
    ann = add_customer(engine, "ann", at=local("2026-01-01T00:00"))
    # Earned at 23:30 local on 20 March (15:30 UTC: still the 20th in UTC too), and at
    # 00:10 local on 21 March (16:10 UTC on the 20th): the local day is what counts.
    add_order(engine, ann, "O-1", at=local("2026-03-20T23:30"), amount=200)
    add_event(engine, ann, "review", "rv-1", at=local("2026-03-21T00:10"))
    earn(engine, LOYALTY, now=local("2026-03-22T00:00"))
    redeem(engine, [Redemption("R-1", ann, 15, "goods", local("2026-04-01T09:00"), note="mug")],
           now=local("2026-04-01T09:00"))

    with engine.connect() as conn:
        data = customer_points(conn, LOYALTY, ann, now=now, history_limit=2)

    assert data["timezone"] == "Asia/Shanghai"
    assert data["balance"] == 210 - 15
    # The review's 10 went first (it expires first), then 5 of the order's.
    assert data["by_kind"] == {"goods": 195, "coupons": 195, "services": 195}
    assert (data["tier"], data["next_tier"], data["to_next_tier"]) == ("member", "silver", 790.0)
    [order] = data["lots"]  # the review's lot is spent: only lots holding points are listed
    assert (order["source"], order["source_ref"], order["rule"], order["remaining"]) == ("order", "O-1", "purchase", 195)
    assert order["earned_on"] == date(2026, 3, 20)
    assert order["valid_through"] == date(2027, 3, 19)
    assert data["next_expiry"] == {"points": 195, "expires_at": local("2027-03-20T00:00"),
                                   "valid_through": date(2027, 3, 19)}
    assert [(e["kind"], e["points"], e["source_ref"]) for e in data["history"]] == [
        ("redeem", -15, "R-1"), ("earn", 10, "rv-1")]
    assert data["history"][0]["detail"] == "goods: mug"
    assert data["history_total"] == 3

    with engine.connect() as conn:
        summary = points_summary(conn, LOYALTY, ann, now=now)
    assert set(summary) == {"balance", "by_kind", "tier", "next_tier", "to_next_tier", "next_expiry"}
    assert summary["balance"] == 195


def test_a_customer_without_points(engine: sa.Engine) -> None:
    bo = add_customer(engine, "bo", timezone=None, at=local("2026-01-01T00:00"))
    with engine.connect() as conn:
        data = customer_points(conn, LOYALTY, bo, now=local("2026-04-10T12:00"), history_limit=0)
    assert (data["balance"], data["lots"], data["history"], data["history_total"]) == (0, [], [], 0)
    assert data["next_expiry"] is None and data["tier_since"] is None


def test_the_last_local_day_is_the_day_before_a_midnight_expiry() -> None:
    from zoneinfo import ZoneInfo

    shanghai = ZoneInfo("Asia/Shanghai")
    assert last_local_day(local("2027-03-20T00:00"), shanghai) == date(2027, 3, 19)
    assert last_local_day(local("2027-03-20T00:00:01"), shanghai) == date(2027, 3, 20)
    assert last_local_day(None, shanghai) is None
