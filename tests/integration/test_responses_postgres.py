"""Provider pushes retried concurrently on PostgreSQL: eight copies of the same receipt
and of the same opt-out reply, recorded at the same moment, land once each."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import sqlalchemy as sa

from campaigns.db import make_engine
from campaigns.models import Customer, Response, Suppression
from campaigns.responses import InboundResponse, record_responses

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
