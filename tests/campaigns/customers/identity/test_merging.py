"""Merging and unmerging (campaigns.customers.identity.merging / unmerging), on SQLite and
PostgreSQL: what the survivor holds after a merge, and every table, every column, every
row back as it was after the unmerge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from campaigns.config.schema import AppConfig
from campaigns.customers.identity.merging import EXITED_MERGED, MergeError, choose_survivor, merge_customers
from campaigns.customers.identity.unmerging import unmerge
from campaigns.customers.profiles import recompute_profiles
from campaigns.store.models import (
    Consent,
    Customer,
    CustomerIdentifier,
    CustomerMerge,
    Delivery,
    DeliveryAttempt,
    Enrollment,
    Event,
    IdentityReview,
    Order,
    OrderItem,
    Recommendation,
    Response,
    Suppression,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=3)


def insert(conn, model, **values) -> int:
    table = model.__table__
    return conn.execute(sa.insert(table).values(**values).returning(table.primary_key.columns.values()[0])).scalar_one()


def customer(conn, external_id: str, *, days_ago: int, **values) -> int:
    values.setdefault("attributes", {})
    return insert(conn, Customer, external_id=external_id, created_at=NOW - timedelta(days=days_ago),
                  updated_at=NOW - timedelta(days=1), **values)


def delivery(conn, customer_id: int, campaign: str, step: int, occurrence: str, enrollment_id: int | None,
             status: str, **values) -> int:
    return insert(conn, Delivery, send_key=f"{campaign}:{step}:{customer_id}:{occurrence}", campaign=campaign,
                  step=step, customer_id=customer_id, channel="mail", template="t", enrollment_id=enrollment_id,
                  status=status, due_at=NOW + timedelta(days=step), dispatch_after=NOW + timedelta(days=step),
                  created_at=NOW - timedelta(days=2), updated_at=NOW - timedelta(days=2), **values)


def enrollment(conn, customer_id: int, campaign: str, occurrence: str, *, holdout: bool = False,
               state: str | None = None) -> int:
    return insert(conn, Enrollment, campaign=campaign, customer_id=customer_id, occurrence=occurrence,
                  enrolled_at=NOW - timedelta(days=2), holdout=holdout,
                  state=state or ("held_out" if holdout else "active"))


def build(engine) -> dict[str, int]:
    """Y, then the survivor A (earliest after Y), the merged B, X and Z; B has one of
    everything, several of them conflicting with A's."""
    with engine.begin() as conn:
        y = customer(conn, "y", days_ago=900)
        a = customer(conn, "pos:1", days_ago=400, name="Wang Fang", phone="+8613800000001",
                     acquisition_channel="store", attributes={"vip": True, "city": "Shanghai"})
        b = customer(conn, "shop:9", days_ago=30, name="W. Fang", email="wf@example.com", locale="zh-CN",
                     acquisition_channel="ecommerce", attributes={"city": "Beijing", "tier": "gold"})
        x = customer(conn, "x", days_ago=10)
        z = customer(conn, "z", days_ago=5)
        for owner, kind, value, source in [(a, "id", "pos:1", "pos"), (a, "phone", "+8613800000001", "pos"),
                                           (b, "id", "shop:9", "shop"), (b, "email", "wf@example.com", "shop"),
                                           (b, "unionid", "u-1", "wechat")]:
            insert(conn, CustomerIdentifier, customer_id=owner, kind=kind, value=value, source=source,
                   verified=kind == "unionid", first_seen_at=NOW - timedelta(days=3), last_seen_at=NOW)
        for owner, order_id, days, amount in [(a, "P-1", 200, 50.0), (b, "S-1", 20, 80.0), (b, "S-2", 2, 12.5)]:
            order = insert(conn, Order, order_id=order_id, customer_id=owner, ordered_at=NOW - timedelta(days=days),
                           amount=amount, channel="store" if owner == a else "ecommerce")
            insert(conn, OrderItem, order_pk=order, sku=f"sku-{order_id}", category="tea", quantity=2, price=amount / 2)
        for owner, key in [(a, "ev-a"), (b, "ev-b1"), (b, "ev-b2")]:
            insert(conn, Event, customer_id=owner, name="signup", occurred_at=NOW - timedelta(days=3),
                   properties={"key": key}, dedupe_key=key)
        for owner, channel, status in [(a, "email", "granted"), (a, "sms", "granted"), (b, "email", "withdrawn"),
                                       (b, "sms", "granted"), (b, "wechat", "granted")]:
            insert(conn, Consent, customer_id=owner, channel=channel, status=status, source=f"src-{owner}",
                   recorded_at=NOW - timedelta(days=owner))
        insert(conn, Suppression, channel="email", address="wf@example.com", reason="bounced",
               created_at=NOW - timedelta(days=1))
        # The same (campaign, occurrence) for both: B's goes, its queued step is skipped.
        a_win = enrollment(conn, a, "winback", "once")
        b_win = enrollment(conn, b, "winback", "once")
        delivery(conn, a, "winback", 0, "once", a_win, "sent", sent_at=NOW - timedelta(days=1))
        b_win_sent = delivery(conn, b, "winback", 0, "once", b_win, "sent", sent_at=NOW - timedelta(days=1))
        delivery(conn, b, "winback", 1, "once", b_win, "queued")
        # Both running the welcome series from two sign-ups: B's ends, its next step is skipped.
        enrollment(conn, a, "welcome", "ev1")
        b_welcome = enrollment(conn, b, "welcome", "ev2")
        delivery(conn, b, "welcome", 1, "ev2", b_welcome, "queued")
        # A held out of promo, B treated: B's ends, A stays held out.
        enrollment(conn, a, "promo", "r1", holdout=True)
        b_promo = enrollment(conn, b, "promo", "r2")
        delivery(conn, b, "promo", 0, "r2", b_promo, "queued")
        # Only B in vip (held out): it moves with B.
        enrollment(conn, b, "vip", "once", holdout=True)
        insert(conn, DeliveryAttempt, delivery_id=b_win_sent, attempt=1, outcome="sent", started_at=NOW,
               finished_at=NOW)
        insert(conn, Response, delivery_id=b_win_sent, customer_id=b, kind="click", provider="links",
               provider_ref="r-1", occurred_at=NOW, payload={"url": "https://x"})
        insert(conn, Response, customer_id=a, kind="reply", provider="sms", provider_ref="r-2", occurred_at=NOW,
               payload={})
        # Reviews: A-B (decided by the merge), B-X (repeats A-X), Y-B (becomes Y-A), B-Z (becomes A-Z).
        for low, high in [(a, b), (a, x), (b, x), (y, b), (b, z)]:
            insert(conn, IdentityReview, customer_id=low, other_customer_id=high, kind="email",
                   value=f"family-{low}-{high}@example.cn", source="shop", status="open", opened_at=NOW - timedelta(days=1))
    recompute_profiles(engine, AppConfig(), as_of=NOW - timedelta(days=1))
    return {"a": a, "b": b, "x": x, "y": y, "z": z}


def snapshot(engine) -> dict[str, list[dict]]:
    """Every table but the merge log, every column, every row, in key order."""
    tables = {}
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if table.name == CustomerMerge.__tablename__:
                continue
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).mappings().all()
            tables[table.name] = [dict(row) for row in rows]
    return tables


def merge(engine, survivor: int, merged: int, *, now: datetime = LATER) -> int:
    with engine.begin() as conn:
        return merge_customers(conn, survivor_id=survivor, merged_id=merged, reason="test", actor="tester", now=now)


def test_the_survivor_is_the_earliest_customer_then_the_lowest_id(engine):
    ids = build(engine)
    with engine.begin() as conn:
        assert choose_survivor(conn, [ids["b"], ids["a"], ids["z"]]) == ids["a"]
        conn.execute(sa.update(Customer.__table__).where(Customer.id == ids["z"])
                     .values(created_at=NOW - timedelta(days=400)))
        assert choose_survivor(conn, [ids["z"], ids["b"], ids["a"]]) == ids["a"]  # same time: lower id
        with pytest.raises(MergeError):
            choose_survivor(conn, [987654])


def test_a_merge_gives_the_survivor_everything_and_unmerge_puts_every_row_back(engine):
    ids = build(engine)
    a, b = ids["a"], ids["b"]
    before = snapshot(engine)
    merge_id = merge(engine, a, b)
    after = snapshot(engine)

    people = {row["id"]: row for row in after["customer"]}
    assert b not in people
    survivor = people[a]
    assert survivor["name"] == "Wang Fang" and survivor["email"] == "wf@example.com" and survivor["locale"] == "zh-CN"
    assert survivor["acquisition_channel"] == "store"
    assert survivor["attributes"] == {"vip": True, "city": "Shanghai", "tier": "gold"}
    for table in ("customer_identifier", "orders", "event", "profile_transition", "delivery", "response"):
        assert b not in {row["customer_id"] for row in after[table]}, table
    assert len([r for r in after["orders"] if r["customer_id"] == a]) == 3
    assert after["order_item"] == before["order_item"] and after["suppression"] == before["suppression"]
    assert after["delivery_attempt"] == before["delivery_attempt"]
    assert {r["channel"]: r["status"] for r in after["consent"] if r["customer_id"] == a} == {
        "email": "withdrawn", "sms": "granted", "wechat": "granted"}
    assert {(r["campaign"], r["occurrence"], r["state"], r["holdout"]) for r in after["enrollment"]} == {
        ("winback", "once", "active", False), ("welcome", "ev1", "active", False),
        ("welcome", "ev2", EXITED_MERGED, False), ("promo", "r1", "held_out", True),
        ("promo", "r2", EXITED_MERGED, False), ("vip", "once", "held_out", True)}
    skipped = [r for r in after["delivery"] if r["status"] == "skipped"]
    assert len(skipped) == 3 and {r["last_error"] for r in skipped} == {"merged into pos:1"}
    assert not [r for r in after["delivery"] if r["status"] == "queued"]
    assert {r["send_key"] for r in after["delivery"]} == {r["send_key"] for r in before["delivery"]}
    assert [r["customer_id"] for r in after["customer_profile"]].count(b) == 0
    assert {(r["customer_id"], r["other_customer_id"], r["status"]) for r in after["identity_review"]} == {
        (a, ids["x"], "open"), (ids["y"], a, "open"), (a, ids["z"], "open")}
    with engine.connect() as conn:
        record = conn.execute(sa.select(CustomerMerge).where(CustomerMerge.id == merge_id)).one()
    assert record.merged_external_id == "shop:9" and record.actor == "tester"
    # A-B decided by the merge, B-X repeating A-X: both kept in the record only.
    assert sorted(row["status"] for row in record.removed["identity_review"]) == ["merged", "open"]

    with engine.begin() as conn:
        result = unmerge(conn, merge_id=merge_id, now=LATER + timedelta(hours=1))
    assert result.merged_id == b and result.moved_back["orders"] == 2
    assert snapshot(engine) == before
    with engine.connect() as conn:
        assert conn.execute(sa.select(CustomerMerge.unmerged_at)).scalar_one() == LATER + timedelta(hours=1)
    with engine.begin() as conn, pytest.raises(MergeError, match="already reversed"):
        unmerge(conn, merge_id=merge_id, now=LATER)
    with engine.begin() as conn, pytest.raises(MergeError, match="no merge with id 999"):
        unmerge(conn, merge_id=999, now=LATER)


def test_the_merged_customers_recommendations_go_and_the_survivors_stay(engine):
    """recommendation has no foreign key to cascade with (migration 0014): the merge
    removes the merged customer's rows itself; the next refresh recomputes the survivor's."""
    ids = build(engine)
    a, b = ids["a"], ids["b"]
    with engine.begin() as conn:
        for owner, sku in [(a, "tea-1"), (b, "tea-2"), (ids["x"], "tea-3")]:
            insert(conn, Recommendation, customer_id=owner, rank=1, sku=sku, score=1.0, reason="popular",
                   computed_at=NOW)
    merge(engine, a, b)
    with engine.connect() as conn:
        left = conn.execute(sa.select(Recommendation.customer_id, Recommendation.sku)
                            .order_by(Recommendation.customer_id)).all()
    assert [tuple(row) for row in left] == [(a, "tea-1"), (ids["x"], "tea-3")]


def test_rows_created_after_the_merge_stay_with_the_survivor(engine):
    ids = build(engine)
    merge_id = merge(engine, ids["a"], ids["b"])
    with engine.begin() as conn:
        insert(conn, Order, order_id="NEW", customer_id=ids["a"], ordered_at=LATER, amount=1.0)
        unmerge(conn, merge_id=merge_id, now=LATER)
        owner = conn.execute(sa.select(Order.customer_id).where(Order.order_id == "NEW")).scalar_one()
    assert owner == ids["a"]


def test_merges_are_undone_newest_first(engine):
    ids = build(engine)
    before = snapshot(engine)
    first = merge(engine, ids["a"], ids["b"])
    second = merge(engine, ids["a"], ids["x"], now=LATER + timedelta(minutes=1))
    third = merge(engine, ids["y"], ids["a"], now=LATER + timedelta(minutes=2))
    for blocked, blockers in [(first, f"{third}, {second}"), (second, str(third))]:
        with engine.begin() as conn, pytest.raises(MergeError, match=f"later merges? {blockers} of the same customer"):
            unmerge(conn, merge_id=blocked, now=LATER)
    for merge_id in (third, second, first):
        with engine.begin() as conn:
            unmerge(conn, merge_id=merge_id, now=LATER + timedelta(hours=1))
    assert snapshot(engine) == before


def test_a_customer_cannot_be_merged_into_itself_or_a_stranger(engine):
    ids = build(engine)
    before = snapshot(engine)
    for survivor, merged, message in [(ids["a"], ids["a"], "into itself"), (ids["a"], 424242, "no customer")]:
        with engine.begin() as conn, pytest.raises(MergeError, match=message):
            merge_customers(conn, survivor_id=survivor, merged_id=merged, reason="t", actor="t", now=LATER)
    assert snapshot(engine) == before


def test_forgetting_a_survivor_removes_its_identifiers_and_the_personal_data_of_its_merges(engine):
    from campaigns.customers.forget import FORGOTTEN_PREFIX, forget_customer

    ids = build(engine)
    merge_id = merge(engine, ids["a"], ids["b"])
    report = forget_customer(engine, "pos:1", now=LATER, secret="installation-secret")
    assert (report.identifiers_removed, report.merges_scrubbed, report.reviews_scrubbed) == (5, 1, 3)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(CustomerIdentifier)).scalar() == 0
        record = conn.execute(sa.select(CustomerMerge)).one()
        reviews = conn.execute(sa.select(IdentityReview.value)).scalars().all()
    kept = repr((record.merged_external_id, record.removed, record.changed))
    for personal in ("shop:9", "W. Fang", "wf@example.com", "zh-CN", "Beijing", "Shanghai", "@example.cn"):
        assert personal not in kept
    assert record.merged_external_id.startswith(FORGOTTEN_PREFIX)
    assert set(reviews) == {FORGOTTEN_PREFIX}
    # The merge can still be undone, to a record as forgotten as the survivor.
    with engine.begin() as conn:
        unmerge(conn, merge_id=merge_id, now=LATER)
        restored = conn.execute(sa.select(Customer).where(Customer.id == ids["b"])).one()
    assert restored.external_id == record.merged_external_id and restored.email is None and restored.attributes == {}
