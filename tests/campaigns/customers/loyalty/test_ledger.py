"""The points ledger on hand-computed sequences, on SQLite and PostgreSQL: earning by
order and event with their own validity, a redemption across lots of different sources,
expiry at the exact local boundary, a refund after spending, a replay earning nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaigns.config.loyalty import EventEarnRule, LoyaltyConfig, OrderEarnRule
from campaigns.customers.loyalty.balances import ledger_sum, standing
from campaigns.customers.loyalty.daily import run_loyalty
from campaigns.customers.loyalty.earning import earn
from campaigns.customers.loyalty.expiry import expire_lots
from campaigns.customers.loyalty.redeeming import Redemption, adjust, redeem
from campaigns.customers.loyalty.refunds import reverse_refunds
from campaigns.store.models import PointsCursor
from tests.campaigns.customers.loyalty.helpers import (
    add_customer,
    add_event,
    add_order,
    entries,
    lots,
    set_status,
)

CST = timedelta(hours=8)
LOYALTY = LoyaltyConfig(enabled=True)


def local(text: str) -> datetime:
    """A wall-clock time in Asia/Shanghai, as aware UTC."""
    return (datetime.fromisoformat(text) - CST).replace(tzinfo=UTC)


def balance(engine: sa.Engine, customer: int, now: datetime) -> int:
    with engine.connect() as conn:
        return standing(conn, LOYALTY, customer, now=now).balance


def test_a_whole_history_by_hand(engine: sa.Engine) -> None:
    now = local("2026-03-15T12:00")
    ann = add_customer(engine, "ann", at=now)
    # 120.50 paid of which 10.50 shipping: 110 points, valid 1 year from the local day.
    add_order(engine, ann, "O-1", at=local("2026-03-15T10:00"), amount=120.50, shipping=10.50)
    add_event(engine, ann, "review", "rv-1", at=local("2026-03-20T23:30"))  # 10 points, 3 months
    add_event(engine, ann, "share", "sh-1", at=local("2026-03-21T00:10"))   # 5 points, 6 months
    add_event(engine, ann, "page_view", "pv-1", at=local("2026-03-21T00:20"))  # no rule: nothing
    report = earn(engine, LOYALTY, now=local("2026-03-22T00:00"))
    assert (report.lots, report.points) == (3, 125)
    by_ref = {lot["source_ref"]: lot for lot in lots(engine, ann)}
    assert by_ref["O-1"]["expires_at"] == local("2027-03-15T00:00")
    assert by_ref["O-1"]["kinds"] == ",coupons,goods,services,"
    # Earned at 23:30 local on 20 March: valid through 19 June, gone at 00:00 on 20 June.
    assert by_ref["rv-1"]["expires_at"] == local("2026-06-20T00:00")
    assert by_ref["sh-1"]["expires_at"] == local("2026-09-21T00:00")
    assert by_ref["rv-1"]["kinds"] == ",coupons,goods,"

    # 12 points of goods: the review's lot expires first (10), then the share's (2).
    at = local("2026-04-01T09:00")
    [first] = redeem(engine, [Redemption("R-1", ann, 12, "goods", at)], now=at)
    assert first.status == "redeemed"
    assert first.lots == ((by_ref["rv-1"]["id"], 10), (by_ref["sh-1"]["id"], 2))
    # Services: only the order's lot may pay. 100 of its 110; then 20 more is refused whole.
    [second, third] = redeem(engine, [Redemption("R-2", ann, 100, "services", at),
                                      Redemption("R-3", ann, 20, "services", at + timedelta(minutes=1))], now=at)
    assert second.status == "redeemed" and second.lots == ((by_ref["O-1"]["id"], 100),)
    assert third.status == "refused"
    assert third.reason == "not enough points: 10 redeemable for services, 20 asked"
    assert balance(engine, ann, at) == 125 - 112 == 13
    # The same redemption again is a duplicate; the same id with other points is refused.
    again = redeem(engine, [Redemption("R-1", ann, 12, "goods", at), Redemption("R-2", ann, 99, "services", at)],
                   now=at)
    assert [result.status for result in again] == ["duplicate", "refused"]
    [other_kind] = redeem(engine, [Redemption("R-1", ann, 12, "coupons", at)], now=at)
    assert other_kind.status == "refused"
    assert balance(engine, ann, at) == 13

    # The share's 3 points left expire at 00:00 local on 21 September, not a second before.
    expire_lots(engine, now=local("2026-09-20T23:59:59"))
    assert balance(engine, ann, local("2026-09-20T23:59:59")) == 13
    gone = expire_lots(engine, now=local("2026-09-21T00:00"))
    assert (gone.lots, gone.points) == (1, 3)
    assert balance(engine, ann, local("2026-09-21T00:00")) == 10
    assert expire_lots(engine, now=local("2026-09-22T00:00")).lots == 0  # nothing expires twice

    # O-1 refunded after 100 of its points were spent: its 10 go at once, 100 are owed.
    set_status(engine, "O-1", "refunded")
    refund = reverse_refunds(engine, LOYALTY, now=local("2026-10-01T10:00"))
    assert (refund.lots, refund.points, refund.owed) == (1, 110, 100)
    assert balance(engine, ann, local("2026-10-01T10:00")) == -100
    assert reverse_refunds(engine, LOYALTY, now=local("2026-10-02T10:00")).lots == 0
    # A later order of 150 settles the debt: 50 left, all in the new lot.
    add_order(engine, ann, "O-2", at=local("2026-10-05T10:00"), amount=150)
    earn(engine, LOYALTY, now=local("2026-10-05T11:00"))
    assert balance(engine, ann, local("2026-10-05T11:00")) == 50
    o2 = next(lot for lot in lots(engine, ann) if lot["source_ref"] == "O-2")
    assert o2["remaining"] == 50

    assert entries(engine, ann) == [
        ("earn", 110, "O-1"), ("earn", 10, "rv-1"), ("earn", 5, "sh-1"),
        ("redeem", -12, "R-1"), ("redeem", -100, "R-2"),
        ("expire", -3, str(by_ref["sh-1"]["id"])),
        ("reverse", -110, "O-1"),
        ("earn", 150, "O-2"),
    ]
    with engine.connect() as conn:
        assert ledger_sum(conn, ann) == balance(engine, ann, local("2026-10-05T11:00"))


def test_a_replayed_import_earns_nothing_twice(engine: sa.Engine) -> None:
    now = local("2026-05-01T12:00")
    bo = add_customer(engine, "bo", at=now)
    add_order(engine, bo, "O-9", at=now, amount=88)
    add_event(engine, bo, "review", "rv-9", at=now)
    assert earn(engine, LOYALTY, now=now).points == 98
    assert earn(engine, LOYALTY, now=now).lots == 0
    with engine.begin() as conn:  # even from the start again (a restored cursor)
        conn.execute(sa.delete(PointsCursor))
    assert earn(engine, LOYALTY, now=now).lots == 0
    assert [entry[:2] for entry in entries(engine, bo)] == [("earn", 88), ("earn", 10)]


def test_order_rules_rounding_minimum_channels_and_start(engine: sa.Engine) -> None:
    loyalty = LoyaltyConfig(enabled=True, earn_from=datetime(2026, 1, 1).date(), orders=OrderEarnRule(
        points_per_unit=1, rounding="round", minimum_amount=20, channels={"store": 2}, exclude_shipping=False))
    now = local("2026-05-01T12:00")
    cy = add_customer(engine, "cy", at=now)
    add_order(engine, cy, "old", at=local("2025-12-31T23:59"), amount=500)   # before the programme
    add_order(engine, cy, "small", at=now, amount=19.99)                      # under the minimum
    add_order(engine, cy, "web", at=now, amount=30.50, shipping=5)            # rounds half up: 31
    add_order(engine, cy, "till", at=now, amount=30.20, channel="store")      # 2 per unit: 60.4 -> 60
    add_order(engine, cy, "void", at=now, amount=100, status="cancelled")     # never paid
    report = earn(engine, loyalty, now=now)
    assert {lot["source_ref"]: lot["points"] for lot in lots(engine, cy)} == {"web": 31, "till": 60}
    assert report.skipped == 3


def test_event_caps_per_local_day_and_month(engine: sa.Engine) -> None:
    loyalty = LoyaltyConfig(enabled=True, events={"share": EventEarnRule(points=5, max_per_day=12, max_per_month=20)})
    now = local("2026-05-31T12:00")
    di = add_customer(engine, "di", at=now)
    # Three shares on 1 May local (the first at 00:30, still 30 April in UTC): 5 + 5 + 2.
    for index, at in enumerate(("2026-05-01T00:30", "2026-05-01T09:00", "2026-05-01T20:00")):
        add_event(engine, di, "share", f"a{index}", at=local(at))
    # Two the next day: 5 + 3 (the month's cap of 20 reached), then one in June: 5 again.
    add_event(engine, di, "share", "b0", at=local("2026-05-02T09:00"))
    add_event(engine, di, "share", "b1", at=local("2026-05-02T10:00"))
    add_event(engine, di, "share", "c0", at=local("2026-06-01T00:05"))
    earn(engine, loyalty, now=now)
    assert [(lot["source_ref"], lot["points"]) for lot in sorted(lots(engine, di), key=lambda lot: lot["earned_at"])] \
        == [("a0", 5), ("a1", 5), ("a2", 2), ("b0", 5), ("b1", 3), ("c0", 5)]
    # A second batch later in the month finds the cap already used.
    add_event(engine, di, "share", "b2", at=local("2026-05-20T10:00"))
    assert earn(engine, loyalty, now=now).lots == 0


def test_forgiven_refund_takes_back_only_what_is_left(engine: sa.Engine) -> None:
    loyalty = LoyaltyConfig(enabled=True, negative_balance="forgive")
    now = local("2026-05-01T12:00")
    ed = add_customer(engine, "ed", at=now)
    add_order(engine, ed, "O-1", at=now, amount=100)
    earn(engine, loyalty, now=now)
    redeem(engine, [Redemption("R-1", ed, 60, "goods", now)], now=now)
    set_status(engine, "O-1", "refunded")
    report = reverse_refunds(engine, loyalty, now=now)
    assert (report.points, report.owed, report.forgiven) == (40, 0, 60)
    assert balance(engine, ed, now) == 0
    assert entries(engine, ed)[-1] == ("reverse", -40, "O-1")


def test_adjustments_add_a_lot_or_spend_like_a_redemption(engine: sa.Engine) -> None:
    now = local("2026-05-01T12:00")
    fy = add_customer(engine, "fy", at=now)
    assert adjust(engine, LOYALTY, customer_id=fy, points=50, adjustment_id="A-1", reason="goodwill",
                  at=now, now=now).status == "adjusted"
    assert adjust(engine, LOYALTY, customer_id=fy, points=50, adjustment_id="A-1", reason="goodwill",
                  at=now, now=now).status == "duplicate"
    refused = adjust(engine, LOYALTY, customer_id=fy, points=-80, adjustment_id="A-2", reason="typo", at=now, now=now)
    assert refused.status == "refused" and "50 redeemable in all" in (refused.reason or "")
    assert adjust(engine, LOYALTY, customer_id=fy, points=-30, adjustment_id="A-3", reason="typo",
                  at=now, now=now).status == "adjusted"
    assert entries(engine, fy) == [("adjust", 50, "A-1"), ("adjust", -30, "A-3")]
    assert balance(engine, fy, now) == 20


def test_a_redemption_before_a_lot_was_earned_cannot_use_it(engine: sa.Engine) -> None:
    now = local("2026-05-01T12:00")
    gu = add_customer(engine, "gu", at=now)
    add_order(engine, gu, "O-1", at=now, amount=100)
    earn(engine, LOYALTY, now=now)
    [result] = redeem(engine, [Redemption("R-1", gu, 10, "goods", now - timedelta(hours=1))], now=now)
    assert result.status == "refused"


def test_the_daily_job_runs_every_step_and_repeats_safely(engine: sa.Engine) -> None:
    now = local("2026-05-01T12:00")
    hu = add_customer(engine, "hu", at=now)
    add_order(engine, hu, "O-1", at=local("2025-04-01T12:00"), amount=300)   # expired by now
    add_order(engine, hu, "O-2", at=local("2026-04-01T12:00"), amount=1200)  # silver (1000+)
    first = run_loyalty(engine, LOYALTY, now=now).to_dict()
    assert first["earned"]["points"] == 1500
    assert first["expired"] == {"lots": 1, "points": 300}
    assert first["tiers"]["upgraded"] == 1 and first["tiers"]["entered"] == {"silver": 1}
    second = run_loyalty(engine, LOYALTY, now=now).to_dict()
    assert (second["earned"]["lots"], second["expired"]["lots"], second["tiers"]["upgraded"]) == (0, 0, 0)
    with engine.connect() as conn:
        assert ledger_sum(conn, hu) == standing(conn, LOYALTY, hu, now=now).balance == 1200


def test_a_merge_moves_points_and_an_unmerge_puts_them_back(engine: sa.Engine) -> None:
    from campaigns.customers.identity.merging import merge_customers
    from campaigns.customers.identity.unmerging import unmerge
    from campaigns.customers.loyalty.tiers import recompute_tiers

    now = local("2026-05-01T12:00")
    store, shop = add_customer(engine, "store-1", at=now), add_customer(engine, "shop-1", at=now + timedelta(hours=1))
    add_order(engine, store, "S-1", at=now, amount=700)
    add_order(engine, shop, "W-1", at=now, amount=400)
    earn(engine, LOYALTY, now=now)
    recompute_tiers(engine, LOYALTY, now=now)
    with engine.begin() as conn:
        merge_id = merge_customers(conn, survivor_id=store, merged_id=shop, reason="same phone", actor="test",
                                   now=now)
    assert balance(engine, store, now) == 1100
    # Together they qualify for silver (1,000): the next recompute moves the survivor up.
    assert recompute_tiers(engine, LOYALTY, now=now).entered == {"silver": 1}
    with engine.begin() as conn:
        unmerge(conn, merge_id=merge_id, now=now)
    assert (balance(engine, store, now), balance(engine, shop, now)) == (700, 400)
    assert [entry[:2] for entry in entries(engine, shop)] == [("earn", 400)]
