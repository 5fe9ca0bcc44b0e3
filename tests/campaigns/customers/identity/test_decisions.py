"""Deciding review items (issue #15): a pair merged from its review item (the earlier
customer survives, reason ``review``), or kept apart for good; unknown and closed items
are a clear NurtureError. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.config.schema import AppConfig
from campaigns.customers.identity.decisions import (
    ReviewDecisionError,
    keep_apart,
    list_reviews,
    merge_review,
    recompute_survivor,
)
from campaigns.customers.profiles import recompute_profiles
from campaigns.errors import NurtureError
from campaigns.store.models import Customer, CustomerMerge, CustomerProfile, IdentityReview, Order

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def seed(engine) -> dict[str, int]:
    """Four customers: "mum" (created first) and "kid" share an email, as do "x" and "y";
    "kid" has an order. Two open review items, the mum/kid one opened first."""
    with engine.begin() as conn:
        conn.execute(sa.insert(Customer.__table__), [
            {"external_id": name, "email": email, "created_at": T0 + timedelta(days=day), "updated_at": T0,
             "attributes": {}}
            # "kid" is inserted first (lower row id) but created later: the survivor is by created_at.
            for name, email, day in (("kid", "fam@example.com", 5), ("mum", "fam@example.com", 1),
                                     ("x", "xy@example.com", 2), ("y", "xy@example.com", 3))])
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        conn.execute(sa.insert(Order.__table__), {"order_id": "O-kid", "customer_id": ids["kid"],
                                                  "ordered_at": T0 + timedelta(days=6), "amount": 80.0})
        conn.execute(sa.insert(IdentityReview.__table__), [
            {"customer_id": min(ids["kid"], ids["mum"]), "other_customer_id": max(ids["kid"], ids["mum"]),
             "kind": "email", "value": "fam@example.com", "source": "shop", "status": "open",
             "opened_at": T0 + timedelta(days=7)},
            {"customer_id": ids["x"], "other_customer_id": ids["y"], "kind": "email", "value": "xy@example.com",
             "source": None, "status": "open", "opened_at": T0 + timedelta(days=8)},
        ])
    return ids


def review_ids(engine) -> list[int]:
    with engine.connect() as conn:
        return [item.id for item in list_reviews(conn)]


def test_list_reviews_names_both_customers_oldest_first(engine):
    ids = seed(engine)
    with engine.connect() as conn:
        items = list_reviews(conn)
    assert [(i.customer_external_id, i.other_external_id, i.kind, i.value, i.source, i.status) for i in items] == [
        ("kid", "mum", "email", "fam@example.com", "shop", "open"),
        ("x", "y", "email", "xy@example.com", None, "open"),
    ]
    assert items[0].customer_id == ids["kid"] and items[0].opened_at == T0 + timedelta(days=7)
    assert items[1].as_dict()["other_external_id"] == "y"


def test_merge_review_keeps_the_earlier_customer_and_records_the_merge(engine):
    ids = seed(engine)
    first, second = review_ids(engine)
    with engine.begin() as conn:
        decision = merge_review(conn, first, actor="ana", now=NOW)
    assert (decision.survivor_id, decision.merged_id) == (ids["mum"], ids["kid"])
    assert (decision.survivor_external_id, decision.merged_external_id) == ("mum", "kid")
    with engine.connect() as conn:
        merge = conn.execute(sa.select(CustomerMerge).where(CustomerMerge.id == decision.merge_id)).one()
        assert (merge.survivor_id, merge.merged_id, merge.reason, merge.actor) == (ids["mum"], ids["kid"],
                                                                                  "review", "ana")
        assert conn.execute(sa.select(Customer.id).where(Customer.external_id == "kid")).first() is None
        assert conn.execute(sa.select(Order.customer_id).where(Order.order_id == "O-kid")).scalar() == ids["mum"]
    assert review_ids(engine) == [second]
    with engine.begin() as conn, pytest.raises(ReviewDecisionError, match=f"review item {first}"):
        merge_review(conn, first, actor="ana", now=NOW)


def test_keep_apart_closes_the_item_for_good(engine):
    ids = seed(engine)
    first, second = review_ids(engine)
    with engine.begin() as conn:
        item = keep_apart(conn, second, now=NOW)
    assert (item.customer_external_id, item.other_external_id) == ("x", "y")
    with engine.connect() as conn:
        kept = list_reviews(conn, status="kept_apart")
        assert [(i.id, i.decided_at) for i in kept] == [(second, NOW)]
        assert conn.execute(sa.select(sa.func.count()).select_from(Customer)).scalar() == 4
    assert review_ids(engine) == [first]
    for decide in (lambda conn: keep_apart(conn, second, now=NOW),
                   lambda conn: merge_review(conn, second, actor="ana", now=NOW)):
        with engine.begin() as conn, pytest.raises(ReviewDecisionError, match="already closed .kept apart"):
            decide(conn)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(CustomerMerge)).scalar() == 0
    assert ids["x"] != ids["y"]


def test_unknown_items_are_a_nurture_error(engine):
    seed(engine)
    with engine.begin() as conn:
        with pytest.raises(NurtureError, match="no review item 999"):
            keep_apart(conn, 999, now=NOW)
        with pytest.raises(NurtureError, match="no review item 999"):
            merge_review(conn, 999, actor="ana", now=NOW)


def test_recompute_survivor_counts_the_merged_orders_once_profiles_exist(engine):
    ids = seed(engine)
    first, _ = review_ids(engine)
    with engine.begin() as conn:
        decision = merge_review(conn, first, actor="ana", now=NOW)
    config = AppConfig()
    assert recompute_survivor(engine, config, decision.survivor_id) is False  # never computed: nothing to keep up
    recompute_profiles(engine, config, as_of=NOW)
    with engine.begin() as conn:  # the profile as a stale full run would have left it
        conn.execute(sa.update(CustomerProfile.__table__).where(CustomerProfile.customer_id == ids["mum"])
                     .values(orders_count=0))
    assert recompute_survivor(engine, config, decision.survivor_id) is True
    with engine.connect() as conn:
        assert conn.execute(sa.select(CustomerProfile.orders_count)
                            .where(CustomerProfile.customer_id == ids["mum"])).scalar() == 1
