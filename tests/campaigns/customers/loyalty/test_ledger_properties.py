"""Properties of the ledger on random histories (orders, reviews and shares, refunds,
redemptions of every kind, adjustments), on SQLite and PostgreSQL:

* once the daily job has run, every customer's balance (what their lots hold) equals the
  sum of their ledger entries: earned - redeemed - expired - reversed +/- adjustments;
* no lot holds more than it earned or less than nothing (debts aside), and what a lot
  lost is what the entries say it lost;
* the same facts imported in another order give the same ledger and the same balances.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.balances import balances_query
from campaigns.customers.loyalty.daily import earn_now, run_loyalty
from campaigns.customers.loyalty.redeeming import Redemption, adjust, redeem
from campaigns.store.models import (
    Customer,
    Event,
    LoyaltyMember,
    Order,
    PointsAllocation,
    PointsCursor,
    PointsEntry,
    PointsLot,
    ProfileTransition,
)
from tests.campaigns.customers.loyalty.helpers import add_customer, add_event, add_order, set_status

START = datetime(2026, 1, 1, 4, 0, tzinfo=UTC)
END = START + timedelta(days=400)
LOYALTY = LoyaltyConfig(enabled=True)
CUSTOMERS = ("ann", "bo", "cy")

orders = st.lists(st.tuples(st.sampled_from(CUSTOMERS), st.integers(0, 300), st.integers(1, 2000),
                            st.booleans()), max_size=8)
events = st.lists(st.tuples(st.sampled_from(CUSTOMERS), st.integers(0, 300), st.sampled_from(("review", "share"))),
                  max_size=8)
spends = st.lists(st.tuples(st.sampled_from(CUSTOMERS), st.integers(1, 400),
                            st.sampled_from(("goods", "coupons", "services", None))), max_size=6)
history = st.fixed_dictionaries({"orders": orders, "events": events, "spends": spends,
                                 "order": st.permutations(range(16)),
                                 "credit": st.lists(st.tuples(st.sampled_from(CUSTOMERS), st.integers(1, 300)),
                                                    max_size=2)})


def _clean(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for model in (PointsAllocation, PointsEntry, PointsLot, LoyaltyMember, PointsCursor, ProfileTransition,
                      Event, Order, Customer):
            conn.execute(sa.delete(model))


def _play(engine: sa.Engine, facts: dict, *, reverse_order: bool) -> tuple[Counter, dict[str, int]]:
    """Write ``facts`` (in the order given, or in the permutation's), run everything,
    return the ledger as a multiset and the balances by customer."""
    _clean(engine)
    ids = {name: add_customer(engine, name, at=START) for name in CUSTOMERS}
    writes = [("order", index, fact) for index, fact in enumerate(facts["orders"])]
    writes += [("event", index, fact) for index, fact in enumerate(facts["events"])]
    if reverse_order:
        writes = [writes[place] for place in facts["order"] if place < len(writes)]
    for kind, index, fact in writes:
        if kind == "order":
            name, day, amount, _ = fact
            add_order(engine, ids[name], f"O-{index}", at=START + timedelta(days=day, minutes=index), amount=amount)
        else:
            name, day, rule = fact
            add_event(engine, ids[name], rule, f"E-{index}", at=START + timedelta(days=day, minutes=index))
    middle = START + timedelta(days=200)
    earn_now(engine, LOYALTY, now=middle)
    for index, (name, points) in enumerate(facts["credit"]):
        adjust(engine, LOYALTY, customer_id=ids[name], points=points, adjustment_id=f"A-{index}", reason="test",
               at=middle, now=middle)
    requests = [Redemption(f"R-{index}", ids[name], points, kind, middle + timedelta(minutes=index))
                for index, (name, points, kind) in enumerate(facts["spends"])]
    redeem(engine, list(reversed(requests)) if reverse_order else requests, now=middle + timedelta(hours=1))
    for index, (_, _, _, refunded) in enumerate(facts["orders"]):
        if refunded:
            set_status(engine, f"O-{index}", "refunded")
    run_loyalty(engine, LOYALTY, now=END)
    with engine.connect() as conn:
        by_id = {customer_id: name for name, customer_id in ids.items()}
        # Lot ids differ with the order rows arrived in: an expiry is named by its points.
        names = Counter(
            (by_id[row.customer_id], row.kind, row.points, "" if row.kind == "expire" else row.source_ref)
            for row in conn.execute(sa.select(PointsEntry.customer_id, PointsEntry.kind, PointsEntry.points,
                                              PointsEntry.source_ref)))
        sums = dict(conn.execute(sa.select(PointsEntry.customer_id, sa.func.sum(PointsEntry.points))
                                 .group_by(PointsEntry.customer_id)).all())
        balances = balances_query(now=END)
        held = dict(conn.execute(sa.select(balances.c.customer_id, balances.c.balance)).all())
        for customer_id in ids.values():
            assert int(sums.get(customer_id, 0)) == int(held.get(customer_id, 0))
        lots = conn.execute(sa.select(PointsLot)).mappings().all()
        for lot in lots:
            if lot["source"] == "debt":
                assert lot["points"] <= lot["remaining"] <= 0
            else:
                assert 0 <= lot["remaining"] <= lot["points"]
                assert lot["spent"] + lot["remaining"] <= lot["points"]
            lost = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(PointsEntry.points), 0))
                                .where(PointsEntry.lot_id == lot["id"])).scalar()
            allocated = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(PointsAllocation.points), 0))
                                     .where(PointsAllocation.lot_id == lot["id"])).scalar()
            # earn + expire + reverse entries name the lot; redemptions and debt payments
            # are allocations: together they account for every point the lot lost.
            if lot["source"] != "debt" and lot["reversed_at"] is None:
                assert lot["remaining"] == int(lost) - int(allocated)
    return names, {by_id[customer_id]: int(held.get(customer_id, 0)) for customer_id in ids.values()}


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(facts=history)
def test_the_balance_is_the_ledger_and_does_not_depend_on_import_order(engine: sa.Engine, facts: dict) -> None:
    first = _play(engine, facts, reverse_order=False)
    second = _play(engine, facts, reverse_order=True)
    assert first == second
