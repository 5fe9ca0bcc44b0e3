"""End to end on the embedded default: SQLite, StubBroker with in-process worker threads,
and the webhook channel posting to a loopback HTTP sink."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.store.db import make_engine
from campaigns.store.models import Delivery, DeliveryAttempt
from tests.conftest import TICK_NOW, seed_customers
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime

SECRET = "whsec_" + base64.b64encode(b"test-signing-key-0123456789").decode()


@pytest.fixture
def runtime(project, sqlite_url, http_sink, monkeypatch):
    monkeypatch.setenv("NURTURE_TEST_HOOK_SECRET", SECRET)
    config = load_config(project(database_url=sqlite_url, sink_url=http_sink.url))
    # One clock for scheduler and workers, as in production.
    rt = Runtime.from_config(config, engine=make_engine(config.database.url), clock=lambda: TICK_NOW)
    yield rt
    rt.close()


def statuses(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)).all())


def test_each_targeted_customer_gets_exactly_one_message_and_a_second_tick_sends_nothing(runtime, http_sink):
    # Given 40 customers, 16 of whom last ordered more than 90 days ago
    groups = seed_customers(runtime.engine, count=40, now=TICK_NOW, lapsed_share=0.4)
    workers = InProcessWorkers(runtime=runtime)

    with workers.running():
        # When the scheduler ticks just after the 10:00 Shanghai slot
        first = workers.tick(TICK_NOW)
        # And ticks again, as a restarted or duplicated scheduler would
        second = workers.tick(TICK_NOW)

    # Then each lapsed customer received exactly one message, and nobody else did
    received = sorted(body["to"] for body in http_sink.bodies())
    assert received == sorted(groups["lapsed"])
    assert first.runs[0].planned == 16 and first.enqueued_deliveries == 16
    assert second.runs == [] and second.enqueued_deliveries == 0
    # And the ledger shows every one sent, with the sink's id and one attempt each
    assert statuses(runtime.engine) == {"sent": 16}
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DeliveryAttempt)).scalar() == 16
        ids = set(conn.execute(sa.select(Delivery.provider_message_id)).scalars())
    assert all(i and i.startswith("sink-") for i in ids)


def test_requests_are_signed_per_standard_webhooks_and_carry_the_send_key(runtime, http_sink):
    seed_customers(runtime.engine, count=3, now=TICK_NOW, lapsed_share=1.0)
    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)

    assert len(http_sink.requests) == 3
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    for request in http_sink.requests:
        headers = request.headers
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request.body
        expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert hmac.compare_digest(headers["webhook-signature"], expected)
        assert headers["idempotency-key"].startswith("win_back:0:")
        assert headers["content-type"] == "application/json"


def test_a_provider_answering_429_then_500_then_garbage_is_retried_until_it_succeeds(runtime, http_sink):
    seed_customers(runtime.engine, count=1, now=TICK_NOW, lapsed_share=1.0)
    http_sink.answer(429, "slow down", Retry_After="0")
    http_sink.answer(500, "oops")
    http_sink.answer(503, b"\x00\xffnot json")

    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)

    assert len(http_sink.requests) == 4  # three failures, then the default 200
    with runtime.engine.connect() as conn:
        delivery = conn.execute(sa.select(Delivery)).one()
        outcomes = list(conn.execute(sa.select(DeliveryAttempt.outcome, DeliveryAttempt.code)
                                     .order_by(DeliveryAttempt.attempt)).all())
    assert delivery.status == "sent" and delivery.attempts == 4
    assert outcomes == [("retry", "429"), ("retry", "500"), ("retry", "503"), ("ok", "200")]


def test_retries_stop_at_max_attempts_leaving_the_error_recorded(runtime, http_sink):
    seed_customers(runtime.engine, count=1, now=TICK_NOW, lapsed_share=1.0)
    for _ in range(10):
        http_sink.answer(500, "still broken")

    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)

    with runtime.engine.connect() as conn:
        delivery = conn.execute(sa.select(Delivery)).one()
    assert len(http_sink.requests) == runtime.config.worker.max_attempts == 4
    assert delivery.status == "failed"
    assert "HTTP 500" in delivery.last_error and "gave up after 4 attempts" in delivery.last_error


def test_a_permanent_rejection_is_not_retried(runtime, http_sink):
    seed_customers(runtime.engine, count=1, now=TICK_NOW, lapsed_share=1.0)
    http_sink.answer(422, '{"error": "unknown customer"}')

    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)

    assert len(http_sink.requests) == 1
    assert statuses(runtime.engine) == {"failed": 1}


def test_an_auth_failure_pauses_the_campaign_and_keeps_the_rest_queued(runtime, http_sink):
    seed_customers(runtime.engine, count=10, now=TICK_NOW, lapsed_share=1.0)
    for _ in range(10):
        http_sink.answer(401, "bad credentials")

    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)
        # Nothing was lost: every delivery is still queued, and later ticks leave them alone
        assert statuses(runtime.engine) == {"queued": 10}
        again = workers.tick(TICK_NOW)
    assert again.enqueued_deliveries == 0
    from campaigns.sending.control import resume_campaign
    from campaigns.sending.ledger import paused_campaigns

    assert paused_campaigns(runtime.engine) == {"win_back"}
    assert resume_campaign(runtime.engine, "win_back", now=TICK_NOW)
    http_sink.responses.clear()
    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)
    assert statuses(runtime.engine) == {"sent": 10}


def test_a_sink_that_is_down_leaves_deliveries_retryable_not_lost(project, sqlite_url, monkeypatch):
    # Port 9 (discard) is closed on loopback: every POST fails to connect.
    config = load_config(project(database_url=sqlite_url, sink_url="http://127.0.0.1:9/hook", max_attempts=2))
    runtime = Runtime.from_config(config, clock=lambda: TICK_NOW)  # not the wall clock: quiet hours
    seed_customers(runtime.engine, count=2, now=TICK_NOW, lapsed_share=1.0)
    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)
    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.select(Delivery.status, Delivery.last_error)).all()
    runtime.close()
    assert [r.status for r in rows] == ["failed", "failed"]
    assert all("network error" in r.last_error for r in rows)


def test_a_channel_can_have_its_own_maximum_of_attempts(project, sqlite_url, http_sink, monkeypatch):
    monkeypatch.setenv("NURTURE_TEST_HOOK_SECRET", SECRET)
    path = project(database_url=sqlite_url, sink_url=http_sink.url, max_attempts=5)
    path.write_text(path.read_text().replace("max_attempts = 5", "max_attempts = 5\nchannel_max_attempts = { hook = 2 }"))
    config = load_config(path)
    runtime = Runtime.from_config(config, clock=lambda: TICK_NOW)
    seed_customers(runtime.engine, count=1, now=TICK_NOW, lapsed_share=1.0)
    for _ in range(5):
        http_sink.answer(503, "busy")
    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)
    runtime.close()
    assert len(http_sink.requests) == 2
