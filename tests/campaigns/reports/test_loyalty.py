"""``report loyalty`` on a hand-built history (SQLite and PostgreSQL): every figure of the
report is worked out by hand below, from the ledger functions' own rules, including the
month boundary in Asia/Shanghai (23:30 local on 31 March is March; 00:30 local on 1 April,
still 31 March in UTC, is April)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.balances import ledger_sum
from campaigns.customers.loyalty.earning import earn
from campaigns.customers.loyalty.expiry import expire_lots
from campaigns.customers.loyalty.ledger import NewLot, add_lots, kinds_text
from campaigns.customers.loyalty.redeeming import Redemption, adjust, redeem
from campaigns.customers.loyalty.refunds import reverse_refunds
from campaigns.customers.loyalty.tiers import recompute_tiers
from campaigns.errors import NurtureError
from campaigns.reports.loyalty import (
    CSV_COLUMNS,
    KindMonth,
    MonthTotals,
    SourceMonth,
    TierCount,
    TierMove,
    loyalty_report,
    month_range,
    parse_month,
)
from tests.campaigns.customers.loyalty.helpers import add_customer, add_event, add_order, set_status

CST = timedelta(hours=8)
#: Seed 004's rules and tiers (member, silver from 1,000 x1.2, gold from 5,000), 5 fen a point.
LOYALTY = LoyaltyConfig(enabled=True, point_value=0.05)


def local(text: str) -> datetime:
    """A wall-clock time in Asia/Shanghai, as aware UTC."""
    return (datetime.fromisoformat(text) - CST).replace(tzinfo=UTC)


def build_history(engine: sa.Engine) -> dict[str, int]:
    """Four customers over January to June 2026 (all times local, Asia/Shanghai)."""
    start = local("2026-01-01T00:00")
    ids = {name: add_customer(engine, name, at=start) for name in ("ann", "bo", "cy", "dee")}
    ann, bo, cy, dee = ids["ann"], ids["bo"], ids["cy"], ids["dee"]

    def earn_at(text: str) -> None:
        earn(engine, LOYALTY, now=local(text))

    # January. cy: a review (10, valid 3 months: gone 5 April) and a share (5, gone 5 July).
    add_event(engine, cy, "review", "cy-rv-1", at=local("2026-01-05T09:00"))
    add_event(engine, cy, "share", "cy-sh-1", at=local("2026-01-05T09:05"))
    earn_at("2026-01-05T10:00")
    # ann: 1,200 paid, 1,200 points (member, x1), silver at once.
    add_order(engine, ann, "O-1", at=local("2026-01-10T10:00"), amount=1200)
    earn_at("2026-01-10T12:00")
    recompute_tiers(engine, LOYALTY, now=local("2026-01-10T12:00"))
    # bo: a review, 10 (gone 20 April).
    add_event(engine, bo, "review", "bo-rv-1", at=local("2026-01-20T09:00"))
    earn_at("2026-01-20T10:00")

    # February. ann spends 300 on goods (from O-1); bo and dee share (5 each; bo's gone
    # 14 August, dee's 20 August).
    [spent] = redeem(engine, [Redemption("R-1", ann, 300, "goods", local("2026-02-05T10:00"))],
                     now=local("2026-02-05T10:00"))
    assert spent.status == "redeemed"
    add_event(engine, bo, "share", "bo-sh-1", at=local("2026-02-14T09:00"))
    add_event(engine, dee, "share", "dee-sh-1", at=local("2026-02-20T09:00"))
    earn_at("2026-02-20T10:00")

    # March. bo redeems 12 for coupons: his review's 10 (expires first), then 2 of the share.
    [coupons] = redeem(engine, [Redemption("R-2", bo, 12, "coupons", local("2026-03-20T10:00"), note="5 off")],
                       now=local("2026-03-20T10:00"))
    assert coupons.status == "redeemed"
    # At 23:30 local on 31 March (15:30 UTC) bo pays 1,000: March. Silver at once.
    add_order(engine, bo, "O-2", at=local("2026-03-31T23:30"), amount=1000)
    earn_at("2026-03-31T23:45")
    recompute_tiers(engine, LOYALTY, now=local("2026-03-31T23:45"))
    # cy reviews at 16:30 UTC on 31 March, 00:30 local on 1 April: April (10, gone 1 July).
    add_event(engine, cy, "review", "cy-rv-2", at=datetime(2026, 3, 31, 16, 30, tzinfo=UTC))
    earn_at("2026-04-01T01:00")

    # April. cy's January review (10 left) expires at 00:00 on 5 April.
    assert expire_lots(engine, now=local("2026-04-06T02:30")).points == 10
    # bo: +50 by hand, then -20 by hand (taken like a redemption: the share's 3, then 17 of O-2).
    assert adjust(engine, LOYALTY, customer_id=bo, points=50, adjustment_id="A-1", reason="apology",
                  at=local("2026-04-10T10:00"), now=local("2026-04-10T10:00")).status == "adjusted"
    assert adjust(engine, LOYALTY, customer_id=bo, points=-20, adjustment_id="A-2", reason="correction",
                  at=local("2026-04-12T10:00"), now=local("2026-04-12T10:00")).status == "adjusted"
    # ann's O-1 refunded on 15 April: 900 left go, 300 spent become a debt (1,200 reversed).
    set_status(engine, "O-1", "refunded")
    assert reverse_refunds(engine, LOYALTY, now=local("2026-04-15T10:00")).points == 1200
    recompute_tiers(engine, LOYALTY, now=local("2026-04-15T10:00"))  # ann below silver: grace starts
    # dee reviews on 25 April (10, gone 25 July).
    add_event(engine, dee, "review", "dee-rv-1", at=local("2026-04-25T10:00"))
    earn_at("2026-04-25T11:00")

    # May. dee's referral reward: 100 (valid a year), as referrals write it.
    with engine.begin() as conn:
        add_lots(conn, [NewLot(customer_id=dee, source="referral", source_ref="7", rule="referral", points=100,
                               kinds=kinds_text(LOYALTY.kinds), earned_at=local("2026-05-10T10:00"),
                               expires_at=local("2027-05-10T00:00"))], now=local("2026-05-10T10:00"))
    # ann's grace (30 days from 15 April) is over: down to member.
    recompute_tiers(engine, LOYALTY, now=local("2026-05-20T02:30"))
    return ids


REPORT_NOW = local("2026-06-10T12:00")
MONTHS = ["2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12",
          "2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]


def test_every_figure_by_hand(engine: sa.Engine) -> None:
    ids = build_history(engine)
    report = loyalty_report(engine, LOYALTY, now=REPORT_NOW)

    # Outstanding at 10 June: bo 983 (O-2) + 50; cy 5 (share) + 10 (April review);
    # dee 5 (share) + 10 (review) + 100 (referral). ann owes 300.
    assert (report.outstanding, report.holders) == (983 + 50 + 15 + 115, 3) == (1163, 3)
    assert report.liability == pytest.approx(1163 * 0.05) == pytest.approx(58.15)
    assert (report.debts, report.debtors) == (300, 1)
    # Within 30 days (to 10 July): cy's review (1 July) and share (5 July), 15; within 60
    # (9 August) also dee's review (25 July), 25; within 90 (8 September) dee's share (20 August).
    assert report.expiring == {30: 15, 60: 25, 90: 30}

    # The last 12 months, by source (config order: purchase, review, share, ..., adjustment).
    assert report.months == MONTHS
    assert report.by_source == [
        SourceMonth("2026-01", "purchase", earned=1200),
        SourceMonth("2026-01", "review", earned=20),                  # cy and bo
        SourceMonth("2026-01", "share", earned=5),                    # cy
        SourceMonth("2026-02", "purchase", redeemed=300),             # ann's goods
        SourceMonth("2026-02", "share", earned=10),                   # bo and dee
        SourceMonth("2026-03", "purchase", earned=1000),              # 23:30 local on 31 March
        SourceMonth("2026-03", "review", redeemed=10),                # bo's coupons ...
        SourceMonth("2026-03", "share", redeemed=2),                  # ... across two lots
        SourceMonth("2026-04", "purchase", reversed=1200, adjusted=-17),
        SourceMonth("2026-04", "review", earned=20, expired=10),      # cy (00:30 local, 1 April), dee
        SourceMonth("2026-04", "share", adjusted=-3),
        SourceMonth("2026-04", "adjustment", adjusted=50),
        SourceMonth("2026-05", "referral", earned=100),
    ]
    assert report.redeemed_by_kind == [KindMonth("2026-02", "goods", 300), KindMonth("2026-03", "coupons", 12)]
    totals = {row.month: row for row in report.totals}
    assert [row.month for row in report.totals] == MONTHS
    assert totals["2026-01"] == MonthTotals("2026-01", earned=1225, net=1225, upgrades=1)
    assert totals["2026-02"] == MonthTotals("2026-02", earned=10, redeemed=300, net=-290)
    assert totals["2026-03"] == MonthTotals("2026-03", earned=1000, redeemed=12, net=988, upgrades=1)
    assert totals["2026-04"] == MonthTotals("2026-04", earned=20, expired=10, reversed=1200, adjusted=30,
                                            net=20 - 10 - 1200 + 30)
    assert totals["2026-05"] == MonthTotals("2026-05", earned=100, net=100, downgrades=1)
    assert totals["2025-07"] == MonthTotals("2025-07")
    # The months' changes add up to the ledger: outstanding less debts.
    with engine.connect() as conn:
        ledger = sum(ledger_sum(conn, customer) for customer in ids.values())
    assert sum(row.net for row in report.totals) == ledger == 1163 - 300

    # Tiers now: ann (a member row, back to member), cy and dee (no row) are members; bo silver.
    assert report.customers == 4
    assert report.tiers == [TierCount("member", 3, 0.75), TierCount("silver", 1, 0.25), TierCount("gold", 0, 0.0)]
    assert report.movements == [
        TierMove("2026-01", "member", "silver", "up", 1),     # ann
        TierMove("2026-03", "member", "silver", "up", 1),     # bo, at 23:45 local on 31 March
        TierMove("2026-05", "silver", "member", "down", 1),   # ann, after the grace period
    ]

    data = report.to_dict()
    assert data["expiring"] == [{"within_days": 30, "points": 15}, {"within_days": 60, "points": 25},
                                {"within_days": 90, "points": 30}]
    assert data["debt_value"] == 15.0 and data["liability"] == 58.15
    rows = report.csv_rows()
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)
    assert ["source", "2026-04", "adjustment", "", "", "", "", 0, 0, 0, 0, 50] in rows
    assert ["movement", "2026-05", "silver", "member", "", 1, "", "", "", "", "", ""] in rows


def test_a_range_of_months_and_a_past_now(engine: sa.Engine) -> None:
    build_history(engine)
    report = loyalty_report(engine, LOYALTY, now=REPORT_NOW, first=date(2026, 3, 1), last=date(2026, 4, 1))
    assert report.months == ["2026-03", "2026-04"]
    assert {row.month for row in report.by_source} == {"2026-03", "2026-04"}
    assert [row.earned for row in report.totals] == [1000, 20]
    assert report.outstanding == 1163  # the standing figures do not depend on the range

    # As of 1 April 00:45 local: cy's review at 00:30 is in (April: 10 earned); nothing later
    # is, and March's figures are whole.
    early = loyalty_report(engine, LOYALTY, now=local("2026-04-01T00:45"), first=date(2026, 3, 1))
    assert early.months == ["2026-03", "2026-04"]
    assert [(row.month, row.earned, row.redeemed) for row in early.totals] == [("2026-03", 1000, 12),
                                                                              ("2026-04", 10, 0)]
    assert [move.month for move in early.movements] == ["2026-03"]


def test_an_empty_programme(engine: sa.Engine) -> None:
    add_customer(engine, "solo", at=REPORT_NOW)
    report = loyalty_report(engine, LOYALTY, now=REPORT_NOW)
    assert (report.outstanding, report.debts, report.liability) == (0, 0, 0.0)
    assert report.expiring == {30: 0, 60: 0, 90: 0}
    assert report.by_source == [] and report.movements == [] and report.redeemed_by_kind == []
    assert report.tiers[0] == TierCount("member", 1, 1.0)
    assert all(row == MonthTotals(row.month) for row in report.totals)


def test_months_are_local_and_checked() -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Shanghai")
    # 16:30 UTC on 31 March is already April in Shanghai: April is the last month.
    months = month_range(zone, now=datetime(2026, 3, 31, 16, 30, tzinfo=UTC))
    assert (months[0], months[-1], len(months)) == (date(2025, 5, 1), date(2026, 4, 1), 12)
    assert month_range(zone, now=REPORT_NOW, last=date(2026, 2, 1))[0] == date(2025, 3, 1)
    assert month_range(zone, now=REPORT_NOW, first=date(2026, 5, 1)) == [date(2026, 5, 1), date(2026, 6, 1)]
    assert parse_month("2026-03") == date(2026, 3, 1)
    for bad in ("2026-13", "2026-3", "March", "2026-03-01"):
        with pytest.raises(NurtureError, match="is not a month"):
            parse_month(bad)
    with pytest.raises(NurtureError, match="is after"):
        month_range(zone, now=REPORT_NOW, first=date(2026, 5, 1), last=date(2026, 4, 1))
    with pytest.raises(NurtureError, match="240 months at most"):
        month_range(zone, now=REPORT_NOW, first=date(2000, 1, 1))


def test_month_limits_follow_daylight_saving(engine: sa.Engine) -> None:
    # New York: March 2026 begins at 05:00 UTC (EST), April at 04:00 UTC (EDT).
    loyalty = LoyaltyConfig(enabled=True, timezone="America/New_York")
    who = add_customer(engine, "ny", timezone="America/New_York", at=REPORT_NOW)
    add_event(engine, who, "review", "ny-1", at=datetime(2026, 3, 1, 4, 59, tzinfo=UTC))   # 28 Feb, 23:59 EST
    add_event(engine, who, "review", "ny-2", at=datetime(2026, 4, 1, 3, 59, tzinfo=UTC))   # 31 Mar, 23:59 EDT
    add_event(engine, who, "share", "ny-3", at=datetime(2026, 4, 1, 4, 0, tzinfo=UTC))     # 1 Apr, 00:00 EDT
    earn(engine, loyalty, now=datetime(2026, 4, 2, tzinfo=UTC))
    report = loyalty_report(engine, loyalty, now=datetime(2026, 4, 2, tzinfo=UTC), first=date(2026, 2, 1))
    assert report.by_source == [SourceMonth("2026-02", "review", earned=10), SourceMonth("2026-03", "review", earned=10),
                                SourceMonth("2026-04", "share", earned=5)]
