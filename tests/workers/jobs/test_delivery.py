"""The worker's batch: claim, render, send, record, on SQLite with the outbox channel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.sending.ledger import run_batches
from campaigns.sending.planning import claim_run, plan_run
from campaigns.store.models import Delivery, DeliveryAttempt
from tests.campaigns.sending.policy_world import world  # noqa: F401 (world: fixture)
from tests.conftest import TICK_NOW, seed_customers
from workers.jobs.delivery import deliver_batch
from workers.jobs.runtime import Runtime


def outbox_runtime(tmp_path, sqlite_url, *, template: str = "Hi {{ customer.first_name }}", clock=None,
                   concurrency: int = 1):
    (tmp_path / "templates" / "c").mkdir(parents=True)
    (tmp_path / "templates" / "c" / "m.txt.j2").write_text(template)
    (tmp_path / "config.toml").write_text(f"""
[database]
url = "{sqlite_url}"
[worker]
lease = "100s"
send_concurrency = {concurrency}
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "c"
trigger = {{ cron = "0 10 * * *" }}
channels = ["mail"]
[[campaigns.steps]]
template = "c/m"
""")
    config = load_config(tmp_path / "config.toml")
    runtime = Runtime.from_config(config, clock=clock or (lambda: TICK_NOW))
    seed_customers(runtime.engine, count=5, now=TICK_NOW)
    run_id = claim_run(runtime.engine, "c", TICK_NOW, lease=timedelta(minutes=5))
    plan_run(runtime.engine, config, config.campaigns[0], run_id=run_id, scheduled_at=TICK_NOW, now=TICK_NOW)
    ids = [i for batch in run_batches(runtime.engine, run_id, now=TICK_NOW, batch_size=100) for i in batch]
    return runtime, ids


def test_a_batch_is_rendered_written_and_recorded(tmp_path, sqlite_url):
    runtime, ids = outbox_runtime(tmp_path, sqlite_url)
    recorded = deliver_batch(runtime, ids)
    assert recorded.counts == {"ok": 5}
    files = sorted(p.read_text() for p in (tmp_path / "out" / "c").iterdir())
    assert len(files) == 5 and all("Hi Test" in f for f in files)
    # Delivering the same ids again claims nothing and sends nothing.
    assert deliver_batch(runtime, ids).counts == {}
    assert len(list((tmp_path / "out" / "c").iterdir())) == 5
    runtime.close()


def test_a_template_error_fails_the_delivery_permanently_with_the_reason(tmp_path, sqlite_url):
    runtime, ids = outbox_runtime(tmp_path, sqlite_url, template="Hi {{ customer.nickname }}")
    assert deliver_batch(runtime, ids).counts == {"permanent": 5}
    with runtime.engine.connect() as conn:
        errors = set(conn.execute(sa.select(Delivery.last_error)).scalars())
    assert len(errors) == 1
    error = errors.pop()
    assert "c/m.txt.j2" in error and "nickname" in error
    runtime.close()


def test_rows_left_when_the_lease_runs_low_are_requeued_not_sent(tmp_path, sqlite_url):
    # Each send takes 45 s of the 100 s lease: after two, 80% of it is used up.
    now = [TICK_NOW]
    runtime, ids = outbox_runtime(tmp_path, sqlite_url, clock=lambda: now[0])
    channel = runtime.channels["mail"]
    real_send = channel.send

    def slow_send(message):
        now[0] += timedelta(seconds=45)
        return real_send(message)

    channel.send = slow_send

    recorded = deliver_batch(runtime, ids)

    assert recorded.counts == {"ok": 2, "defer": 3}
    assert len(list((tmp_path / "out" / "c").iterdir())) == 2
    with runtime.engine.connect() as conn:
        statuses = conn.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)).all()
        attempts = conn.execute(sa.select(sa.func.count()).select_from(DeliveryAttempt)).scalar()
    assert dict(statuses) == {"sent": 2, "queued": 3}
    assert attempts == 5
    runtime.close()


def test_a_jobs_rows_are_sent_concurrently_on_the_send_pool(tmp_path, sqlite_url):
    import threading

    runtime, ids = outbox_runtime(tmp_path, sqlite_url, concurrency=5)
    channel = runtime.channels["mail"]
    real_send = channel.send
    state = {"now": 0, "most": 0}
    lock = threading.Lock()
    all_in = threading.Barrier(5, timeout=10)

    def overlapping_send(message):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        all_in.wait()  # only returns once five sends are in flight together
        try:
            return real_send(message)
        finally:
            with lock:
                state["now"] -= 1

    channel.send = overlapping_send
    recorded = deliver_batch(runtime, ids)
    runtime.close()
    assert recorded.counts == {"ok": 5}
    assert state["most"] == 5


def test_a_record_that_meets_a_dropped_connection_is_retried_not_left_for_a_resend(tmp_path, sqlite_url, monkeypatch):
    import workers.jobs.delivery as delivery_module

    runtime, ids = outbox_runtime(tmp_path, sqlite_url)
    real_record = delivery_module.record
    calls = []

    def flaky_record(*args, **kwargs):
        calls.append(1)
        if len(calls) < 3:  # the database dropped us twice, after the messages went out
            raise sa.exc.OperationalError("UPDATE delivery ...", None,
                                          Exception("server closed the connection unexpectedly"))
        return real_record(*args, **kwargs)

    monkeypatch.setattr(delivery_module, "record", flaky_record)
    monkeypatch.setattr(delivery_module, "RECORD_RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    # One recording for the whole job: with the real 50 ms interval a loaded machine
    # records mid-batch too, and the count of calls below would depend on its speed.
    monkeypatch.setattr(delivery_module, "RECORD_INTERVAL_S", float("inf"))

    recorded = deliver_batch(runtime, ids)

    assert recorded.counts == {"ok": 5} and len(calls) == 3
    with runtime.engine.connect() as conn:
        assert set(conn.execute(sa.select(Delivery.status)).scalars()) == {"sent"}
    runtime.close()


def test_a_record_that_keeps_failing_raises_so_the_lease_brings_the_rows_back(tmp_path, sqlite_url, monkeypatch):
    import pytest

    import workers.jobs.delivery as delivery_module

    runtime, ids = outbox_runtime(tmp_path, sqlite_url)

    def broken_record(*args, **kwargs):
        raise sa.exc.OperationalError("UPDATE delivery ...", None, Exception("connection refused"))

    monkeypatch.setattr(delivery_module, "record", broken_record)
    monkeypatch.setattr(delivery_module, "RECORD_RETRY_DELAYS_S", (0.0,))

    with pytest.raises(sa.exc.OperationalError):
        deliver_batch(runtime, ids)
    with runtime.engine.connect() as conn:  # still leased: the sweeper requeues them after the lease
        assert set(conn.execute(sa.select(Delivery.status)).scalars()) == {"sending"}
    runtime.close()


class _WorkerDied(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even except Exception handlers."""


def test_a_job_that_dies_mid_batch_has_already_recorded_what_it_sent(tmp_path, sqlite_url, monkeypatch):
    import time

    import workers.jobs.delivery as delivery_module

    runtime, ids = outbox_runtime(tmp_path, sqlite_url)  # send_concurrency 1: one after another
    outbox = runtime.channels["mail"]
    sent = []

    class SlowThenDead:
        name = "mail"

        def send(self, message):
            if len(sent) == 3:
                raise _WorkerDied()
            time.sleep(0.08)  # a provider taking 80 ms: longer than the record interval
            sent.append(message.send_key)
            return outbox.send(message)

        def close(self):
            outbox.close()

    runtime.channels["mail"] = SlowThenDead()
    monkeypatch.setattr(delivery_module, "RECORD_INTERVAL_S", 0.05)
    try:
        deliver_batch(runtime, ids)
    except _WorkerDied:
        pass
    with runtime.engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(Delivery.send_key, Delivery.status)).all())
    runtime.close()
    # Sends slower than the record interval are each recorded as they complete: nothing
    # the provider accepted is left to be sent again; only the unsent rows wait for the lease.
    assert [statuses[key] for key in sent] == ["sent", "sent", "sent"]
    assert sorted(statuses.values()).count("sending") == 2


def test_a_job_that_fails_before_sending_hands_its_rows_straight_back(tmp_path, sqlite_url, monkeypatch):
    import pytest

    import workers.jobs.delivery as delivery_module

    runtime, ids = outbox_runtime(tmp_path, sqlite_url)

    def database_gone(*args, **kwargs):
        raise sa.exc.OperationalError("SELECT ...", None, Exception("terminating connection"))

    monkeypatch.setattr(delivery_module, "send_time_skips", database_gone)
    with pytest.raises(sa.exc.OperationalError):
        deliver_batch(runtime, ids)
    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.select(Delivery.status, Delivery.attempts, Delivery.claim_token)).all()
    runtime.close()
    assert set(rows) == {("queued", 0, None)}  # due again at once, the claim undone


def test_the_worker_tells_the_channel_how_long_marketing_may_wait(world):
    seen = []
    outbox = world.runtime.channels["text"]

    class Recording:
        name = "text"

        def send(self, message):
            seen.append(message.metadata)
            return outbox.send(message)

        def close(self):
            outbox.close()

    world.runtime.channels["text"] = Recording()
    world.add("sh", phone="+8613800000001", timezone=None, consent=("sms",))
    world.run("promo_sms", at=datetime(2026, 6, 1, 12, 15, tzinfo=UTC))  # 20:15 in Shanghai

    assert seen == [{"purpose": "marketing", "deliver_within_s": 45 * 60}]
