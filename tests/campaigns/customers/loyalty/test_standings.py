"""Standings read for a batch (campaigns.customers.loyalty.balances.standings), on SQLite
and PostgreSQL: the same as one customer's standing, for every member of
tests/campaigns/loyalty_members.py, with the values worked out by hand, in two queries per
chunk of customers however many there are."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from campaigns.customers.loyalty.balances import standing, standings
from tests.campaigns.loyalty_members import LOYALTY, NOW, add_members, at


def test_standings_of_a_batch_equal_each_customers_standing(engine: sa.Engine) -> None:
    ids = add_members(engine)
    with engine.connect() as conn:
        batch = standings(conn, LOYALTY, [*ids.values(), 999_999], now=NOW)
        one_by_one = {customer_id: standing(conn, LOYALTY, customer_id, now=NOW) for customer_id in ids.values()}

    assert batch == one_by_one  # and the id of no customer is left out
    # The same again with another look-ahead for the next points to expire.
    with engine.connect() as conn:
        wide = standings(conn, LOYALTY, ids.values(), now=NOW, expiring_within=timedelta(days=45))
        assert wide == {i: standing(conn, LOYALTY, i, now=NOW, expiring_within=timedelta(days=45))
                        for i in ids.values()}


def test_the_standings_worked_out_by_hand(engine: sa.Engine) -> None:
    ids = add_members(engine)
    with engine.connect() as conn:
        got = {name: standings(conn, LOYALTY, ids.values(), now=NOW)[customer_id].as_context()
               for name, customer_id in ids.items()}

    # ann: 300 + 10 points; the order's 300 expire in 10 days, at 20:00 Shanghai time.
    assert got["ann"] == {
        "balance": 310, "by_kind": {"goods": 310, "coupons": 310, "services": 300},
        "expiring": {"points": 300, "date": "2026-06-11", "expires_at": at(10).isoformat()},
        "tier": "silver", "next_tier": "gold", "to_next_tier": 4490.0,  # 5000 - (500 + 10) earned in 12 months
        "tier_benefits": ["free shipping"],
    }
    # bob: the share's lot expired at NOW exactly; the order's expire in exactly 30 days (within).
    assert got["bob"]["balance"] == 1000 and got["bob"]["expiring"]["points"] == 1000
    assert got["bob"]["expiring"]["date"] == "2026-07-01"
    assert (got["bob"]["tier"], got["bob"]["next_tier"], got["bob"]["to_next_tier"]) == ("gold", None, None)
    # cat: nothing at all, and no member row: the lowest tier.
    assert got["cat"] == {"balance": 0, "by_kind": {"goods": 0, "coupons": 0, "services": 0}, "expiring": None,
                          "tier": "member", "next_tier": "silver", "to_next_tier": 1000.0, "tier_benefits": []}
    # dan: 80 - 50 owed; his 80 expire one second after the 30 days; the reversed order counts for nothing.
    assert got["dan"]["balance"] == 30 and got["dan"]["by_kind"] == {"goods": 30, "coupons": 30, "services": 30}
    assert got["dan"]["expiring"] is None and got["dan"]["to_next_tier"] == 920.0
    # eve: the spent order's lot expires with the review's; only the review's 20 are left of them.
    assert got["eve"]["balance"] == 70 and got["eve"]["by_kind"] == {"goods": 70, "coupons": 70, "services": 50}
    assert got["eve"]["expiring"] == {"points": 20, "date": "2026-06-06", "expires_at": at(5).isoformat()}
    assert got["eve"]["to_next_tier"] == 880.0  # 1000 - (100 + 20): the adjustment does not qualify


def test_a_batch_is_read_in_two_queries_per_chunk(engine: sa.Engine) -> None:
    ids = add_members(engine)
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as conn:
            standings(conn, LOYALTY, ids.values(), now=NOW)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2


def test_a_reminder_names_the_points_of_its_own_expiry_moment(engine: sa.Engine) -> None:
    ids = add_members(engine)
    with engine.connect() as conn:
        ann = standings(conn, LOYALTY, [ids["ann"]], now=NOW)[ids["ann"]]
    # The review's 10 points expire in 40 days: beyond the default 30 days, but a reminder
    # of them names them, with their own last local day.
    assert ann.expiring_at(at(40)).points == 10 and ann.expiring_at(at(40)).last_day == date(2026, 7, 11)
    assert ann.next_expiring(now=NOW, within=timedelta(days=45)).points == 300  # the order's come first
    assert ann.next_expiring(now=at(11), within=timedelta(days=45)).points == 10
    assert ann.expiring_at(at(3)).points == 0  # no lot of hers expires then
