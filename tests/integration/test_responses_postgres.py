"""Provider pushes retried concurrently on PostgreSQL: eight copies of the same receipt
and of the same opt-out reply, recorded at the same moment, land once each."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import sqlalchemy as sa

from campaigns.responses.recording import InboundResponse, record_responses
from campaigns.store.db import make_engine
from campaigns.store.models import Customer, Delivery, Response, Suppression

NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)


def test_concurrent_copies_of_a_push_are_recorded_once(postgres_url):
    engine = make_engine(postgres_url, pool_size=10)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(Customer.__table__).values(
                external_id="ann", phone="+8613800000001", attributes={}, created_at=NOW, updated_at=NOW))
        items = [
            InboundResponse(kind="replied", provider="tencent", provider_ref="reply-1", occurred_at=NOW,
                            address="+8613800000001", family="sms", text="TD"),
            InboundResponse(kind="delivered", provider="tencent", provider_ref="sid-9:SUCCESS", occurred_at=NOW,
                            provider_message_id="sid-9", family="sms"),
        ]
        barrier = threading.Barrier(8)
        outcomes: list[bool] = []
        lock = threading.Lock()

        def push() -> None:
            barrier.wait()
            results = record_responses(engine, items, now=NOW)
            with lock:
                outcomes.extend(r.duplicate for r in results)

        threads = [threading.Thread(target=push) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(outcomes).count(False) == 2  # one first-time record per distinct push
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(Response)).scalar_one() == 2
            assert conn.execute(sa.select(Suppression.address)).scalars().all() == ["+8613800000001"]
    finally:
        engine.dispose()


def seed_sent_sms(engine: sa.Engine, count: int) -> None:
    """One customer with ``count`` sent SMS, provider ids SM0000, SM0001, ..."""
    with engine.begin() as conn:
        customer_id = conn.execute(sa.insert(Customer.__table__).values(
            external_id="ann", phone="+15550000001", attributes={}, created_at=NOW, updated_at=NOW)
            .returning(Customer.__table__.c.id)).scalar_one()
        conn.execute(sa.insert(Delivery.__table__), [
            {"campaign": "promo", "customer_id": customer_id, "channel": "sms_us", "template": "t",
             "due_at": NOW, "dispatch_after": NOW, "send_key": f"promo:{i}:{customer_id}:once", "step": i,
             "status": "sent", "provider_message_id": f"SM{i:04d}", "sent_at": NOW}
            for i in range(count)
        ])


def receipt(i: int) -> InboundResponse:
    """Twilio's "delivered" for the i-th SMS of :func:`seed_sent_sms`."""
    return InboundResponse(kind="delivered", provider="twilio", provider_ref=f"SM{i:04d}:delivered",
                           occurred_at=NOW, provider_message_id=f"SM{i:04d}", family="sms")


def test_a_batch_of_300_receipts_with_50_retries_lands_each_once(postgres_url):
    """PostgreSQL's batch insert (INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING
    RETURNING) returns only the new rows; each must still be matched to its own item and
    delivery."""
    engine = make_engine(postgres_url)
    try:
        seed_sent_sms(engine, 300)

        earlier = record_responses(engine, [receipt(i) for i in range(0, 300, 6)], now=NOW)  # 50 retried later
        results = record_responses(engine, [receipt(i) for i in reversed(range(300))], now=NOW)

        assert [r.duplicate for r in earlier] == [False] * 50
        assert [r.duplicate for r in results] == [i % 6 == 0 for i in reversed(range(300))]
        with engine.connect() as conn:
            by_id = dict(conn.execute(sa.select(Response.id, Response.provider_ref)).all())
            steps = dict(conn.execute(sa.select(Delivery.id, Delivery.step)).all())
            assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)
                                .where(Delivery.receipt_status == "delivered")).scalar_one() == 300
        for i, result in zip(reversed(range(300)), results, strict=True):
            assert steps[result.delivery_id] == i
            if not result.duplicate:
                assert by_id[result.response_id] == f"SM{i:04d}:delivered"
        assert len(by_id) == 300
    finally:
        engine.dispose()


#: Receipts per batch: enough for the two statements to overlap every time (at 200 they
#: rarely did, and the unsorted code passed by luck).
N = 3000


def test_overlapping_batches_in_opposite_orders_do_not_deadlock(postgres_url):
    """Two receiver processes commit batches holding the same receipts in opposite orders
    (a provider retrying while the first push is still being written): rows are locked in
    one order, so neither transaction waits for the other in a cycle."""
    engine = make_engine(postgres_url, pool_size=4)
    try:
        seed_sent_sms(engine, N)
        items = [receipt(i) for i in range(N)]
        errors: list[sa.exc.DBAPIError] = []
        new: list[int] = []
        barrier = threading.Barrier(2)

        def push(batch: list[InboundResponse]) -> None:
            barrier.wait()
            try:
                new.append(sum(not r.duplicate for r in record_responses(engine, batch, now=NOW)))
            except sa.exc.DBAPIError as exc:  # unsorted, this was DeadlockDetected on "response"
                errors.append(exc)

        threads = [threading.Thread(target=push, args=(batch,)) for batch in (items, items[::-1])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert sum(new) == N
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(Response)).scalar_one() == N
    finally:
        engine.dispose()
