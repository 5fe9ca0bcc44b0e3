"""The receiver's group-commit writer: concurrent requests share transactions, each gets
its own results, and one bad request fails only itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from campaigns.responses import recording as domain
from campaigns.store.models import Customer, Delivery, Response
from workers.http import batching
from workers.http.batching import ResponseWriter

NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)


@pytest.fixture
def engine(sqlite_engine):
    """20 sent SMS deliveries, provider ids SM00..SM19."""
    with sqlite_engine.begin() as conn:
        customer_id = conn.execute(sa.insert(Customer.__table__).values(
            external_id="ann", phone="+15550000001", attributes={}, created_at=NOW, updated_at=NOW)
            .returning(Customer.__table__.c.id)).scalar_one()
        conn.execute(sa.insert(Delivery.__table__), [
            {"campaign": "promo", "customer_id": customer_id, "channel": "sms_us", "template": "t", "due_at": NOW,
             "dispatch_after": NOW, "send_key": f"promo:{i}:{customer_id}:once", "step": i, "status": "sent",
             "provider_message_id": f"SM{i:02d}", "sent_at": NOW}
            for i in range(20)
        ])
    return sqlite_engine


@pytest.fixture
def calls(monkeypatch):
    """The sizes of the record_responses calls the writer makes (the real function runs)."""
    sizes: list[int] = []

    def counted(engine, items, *, now):
        sizes.append(len(items))
        return domain.record_responses(engine, items, now=now)

    monkeypatch.setattr(batching, "record_responses", counted)
    return sizes


def receipt(i: int, kind: str = "delivered") -> domain.InboundResponse:
    return domain.InboundResponse(kind=kind, provider="twilio", provider_ref=f"SM{i:02d}:{kind}", occurred_at=NOW,
                                  provider_message_id=f"SM{i:02d}", family="sms")


def delivery_steps(engine) -> dict[int, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(Delivery.id, Delivery.step)).all())


def stored_refs(engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(Response.provider_ref)).scalars())


def test_concurrent_requests_share_a_transaction_and_each_gets_its_own_results(engine, calls):
    writer = ResponseWriter(engine=engine, clock=lambda: NOW)

    async def main():
        # 10 requests of one receipt and 10 of two: 20 requests, 30 items.
        requests = [[receipt(i)] for i in range(10)] + [[receipt(i, "undelivered"), receipt(i + 10)] for i in range(10)]
        return requests, await asyncio.gather(*(writer.record(items) for items in requests))

    requests, answers = asyncio.run(main())

    assert sum(calls) == 30 and len(calls) < len(requests)  # batched, nothing recorded twice
    steps = delivery_steps(engine)
    for items, results in zip(requests, answers, strict=True):
        assert len(results) == len(items)
        for item, result in zip(items, results, strict=True):
            assert not result.duplicate
            assert f"SM{steps[result.delivery_id]:02d}" == item.provider_message_id
    assert len(stored_refs(engine)) == 30


def test_a_request_repeating_another_in_the_same_batch_is_the_duplicate(engine, calls):
    writer = ResponseWriter(engine=engine, clock=lambda: NOW)

    async def main():
        return await asyncio.gather(writer.record([receipt(1)]), writer.record([receipt(1)]))

    first, second = asyncio.run(main())
    assert (first[0].duplicate, second[0].duplicate) == (False, True)
    assert stored_refs(engine) == ["SM01:delivered"]


def test_a_bad_request_fails_alone_and_the_rest_of_its_batch_is_recorded(engine, calls):
    writer = ResponseWriter(engine=engine, clock=lambda: NOW)
    bad = domain.InboundResponse(kind="teleported", provider="twilio", provider_ref="x", occurred_at=NOW)

    async def main():
        return await asyncio.gather(writer.record([receipt(1)]), writer.record([receipt(2), bad]),
                                    writer.record([receipt(3)]), return_exceptions=True)

    good_one, failed, good_three = asyncio.run(main())
    assert isinstance(failed, ValueError) and "teleported" in str(failed)
    assert not good_one[0].duplicate and not good_three[0].duplicate
    # The failed request recorded nothing, not even its valid item: the provider pushes it again.
    assert stored_refs(engine) == ["SM01:delivered", "SM03:delivered"]
    assert calls[0] == 4  # tried together first, then one by one


def test_batches_stay_within_the_item_limit(engine, calls):
    writer = ResponseWriter(engine=engine, clock=lambda: NOW, max_batch_items=4)

    async def main():
        return await asyncio.gather(*(writer.record([receipt(i), receipt(i, "undelivered")]) for i in range(10)))

    asyncio.run(main())
    assert sum(calls) == 20 and max(calls) <= 4
    assert len(stored_refs(engine)) == 20


def test_a_request_whose_client_went_away_does_not_stop_the_others(engine, calls):
    writer = ResponseWriter(engine=engine, clock=lambda: NOW)

    async def main():
        gone = asyncio.ensure_future(writer.record([receipt(5)]))
        staying = asyncio.ensure_future(writer.record([receipt(6)]))
        await asyncio.sleep(0)  # both handed in, the batch on its way
        gone.cancel()
        result = await staying
        await writer.wait_idle()
        return result

    result = asyncio.run(main())
    assert not result[0].duplicate
    assert "SM06:delivered" in stored_refs(engine)


def test_nothing_to_record_touches_nothing(engine, calls):
    assert asyncio.run(ResponseWriter(engine=engine, clock=lambda: NOW).record([])) == []
    assert calls == []


def test_a_writer_cancelled_mid_batch_answers_every_waiting_request(engine, monkeypatch):
    """Server shutdown cancels the writer's task: nobody may be left waiting forever."""
    started = asyncio.Event()

    async def stuck(*args, **kwargs):
        started.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(batching, "run_in_threadpool", stuck)
    writer = ResponseWriter(engine=engine, clock=lambda: NOW)

    async def main():
        first = asyncio.ensure_future(writer.record([receipt(1)]))
        await started.wait()
        second = asyncio.ensure_future(writer.record([receipt(2)]))  # waits for the next batch
        await asyncio.sleep(0)
        writer._drainer.cancel()
        # A bound, not a timing: without the fix both would wait forever.
        return await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 30)

    outcomes = asyncio.run(main())
    assert [type(outcome) for outcome in outcomes] == [batching.WriterStopped, batching.WriterStopped]
