"""Campaign control (campaigns.sending.control) end to end on SQLite, the stub broker's
in-process workers and a loopback webhook sink, on a pinned clock: a paused campaign plans
nothing and sends nothing, its queued rows wait and go out after resume; retry re-queues
only failed rows, once each, with the same send key."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns.errors import NurtureError
from campaigns.project.loading import load_config, parse_config
from campaigns.sending.control import (
    check_runnable,
    pause_campaign,
    paused_reason,
    resume_campaign,
    retry_failed,
)
from campaigns.sending.event_triggers import plan_for_events
from campaigns.store.db import make_engine
from campaigns.store.models import Customer, Delivery, DeliveryAttempt, Enrollment, Event
from tests.conftest import TICK_NOW, grant_consent, seed_customers
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime
from workers.jobs.scheduler import tick


@pytest.fixture
def runtime(project, sqlite_url, http_sink):
    # The step skips C00004 (attributes.n = 4): a skipped row is a decision, not a failure.
    config = load_config(project(database_url=sqlite_url, sink_url=http_sink.url, extra="when = 'attributes.n < 4'"))
    # One pinned clock for the scheduler and the workers.
    rt = Runtime.from_config(config, engine=make_engine(config.database.url), clock=lambda: TICK_NOW)
    yield rt
    rt.close()


def statuses(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)).all())


def test_a_paused_campaign_plans_nothing_and_sends_nothing_until_resumed(runtime, http_sink):
    seed_customers(runtime.engine, count=4, now=TICK_NOW, lapsed_share=1.0)
    assert pause_campaign(runtime.engine, "win_back", reason="new offer coming", now=TICK_NOW)
    assert paused_reason(runtime.engine, "win_back") == "by hand: new offer coming"

    with InProcessWorkers(runtime=runtime).running() as workers:
        paused = workers.tick(TICK_NOW)
        # The due 10:00 slot is not even claimed: nothing is planned, nothing sent.
        assert (paused.runs, paused.enqueued_deliveries) == ([], 0)
        assert statuses(runtime.engine) == {} and http_sink.requests == []
        with pytest.raises(NurtureError, match="paused .*nurture resume win_back"):
            check_runnable(runtime.engine, runtime.config.campaign("win_back"))

        assert resume_campaign(runtime.engine, "win_back", now=TICK_NOW)
        resumed = workers.tick(TICK_NOW)

    # The slot is still within max_lateness: the resumed campaign runs it.
    assert [run.planned for run in resumed.runs] == [4]
    assert statuses(runtime.engine) == {"sent": 4} and len(http_sink.requests) == 4
    assert paused_reason(runtime.engine, "win_back") is None
    assert not resume_campaign(runtime.engine, "win_back", now=TICK_NOW)


def test_rows_queued_before_a_pause_wait_even_if_already_enqueued_and_go_after_resume(runtime, http_sink):
    seed_customers(runtime.engine, count=4, now=TICK_NOW, lapsed_share=1.0)
    workers = InProcessWorkers(runtime=runtime)
    # The tick hands the run's rows to the broker; no worker has taken them yet.
    planned = tick(config=runtime.config, engine=runtime.engine, broker=workers.broker, now=TICK_NOW)
    assert planned.enqueued_deliveries == 4
    assert pause_campaign(runtime.engine, "win_back", now=TICK_NOW)
    assert not pause_campaign(runtime.engine, "win_back", reason="again", now=TICK_NOW)  # first reason kept
    assert paused_reason(runtime.engine, "win_back") == "by hand"

    with workers.running():
        workers.join()  # the jobs run: they claim nothing of a paused campaign
        assert statuses(runtime.engine) == {"queued": 4} and http_sink.requests == []
        assert workers.tick(TICK_NOW).enqueued_deliveries == 0  # nor does the dispatcher hand them out
        assert resume_campaign(runtime.engine, "win_back", now=TICK_NOW)
        # At the very next tick, not a lease later: resume brings them back to their due time.
        assert workers.tick(TICK_NOW).enqueued_deliveries == 4

    assert statuses(runtime.engine) == {"sent": 4}
    assert sorted(body["to"] for body in http_sink.bodies()) == [f"C{n:05d}" for n in range(4)]


def test_retry_requeues_only_failed_rows_once_each_with_their_send_key_and_history(runtime, http_sink):
    groups = seed_customers(runtime.engine, count=5, now=TICK_NOW, lapsed_share=1.0)
    with runtime.engine.connect() as conn:  # skipped by the step's condition
        skipped = conn.execute(sa.select(Customer.id).where(Customer.external_id == "C00004")).scalar_one()
    for _ in range(4):
        http_sink.answer(422, '{"error": "template field missing"}')  # permanent: failed at once
    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)
        assert statuses(runtime.engine) == {"failed": 4, "skipped": 1}
        with runtime.engine.connect() as conn:
            keys = dict(conn.execute(sa.select(Delivery.id, Delivery.send_key)).all())
        campaign = runtime.config.campaign("win_back")
        # Failed before --since: left alone.
        assert retry_failed(runtime.engine, campaign, now=TICK_NOW, since=TICK_NOW + timedelta(minutes=1)).requeued == 0

        report = retry_failed(runtime.engine, campaign, now=TICK_NOW, since=TICK_NOW)
        assert (report.requeued, report.not_retried) == (4, {})
        # A second retry before the next tick finds nothing more to re-queue.
        assert retry_failed(runtime.engine, campaign, now=TICK_NOW).requeued == 0
        workers.tick(TICK_NOW)
        workers.tick(TICK_NOW)

    assert statuses(runtime.engine) == {"sent": 4, "skipped": 1}
    sent_to = [body["to"] for body in http_sink.bodies()[4:]]
    assert sorted(sent_to) == groups["lapsed"][:4]  # once each, the skipped one never
    with runtime.engine.connect() as conn:
        assert dict(conn.execute(sa.select(Delivery.id, Delivery.send_key)).all()) == keys
        attempts = conn.execute(sa.select(DeliveryAttempt.delivery_id, DeliveryAttempt.attempt,
                                          DeliveryAttempt.outcome).order_by(DeliveryAttempt.id)).all()
        states = set(conn.execute(sa.select(Enrollment.state).where(Enrollment.customer_id != skipped)).scalars())
    # Each sent row shows both tries: the permanent failure, then the send.
    assert sorted((a.attempt, a.outcome) for a in attempts) == [(1, "permanent")] * 4 + [(2, "ok")] * 4
    assert states == {"completed"}  # the last step's failure ended them; the send ends them again
    assert retry_failed(runtime.engine, campaign, now=TICK_NOW).requeued == 0


def test_retry_leaves_rows_whose_series_ended_otherwise(runtime, http_sink):
    seed_customers(runtime.engine, count=2, now=TICK_NOW, lapsed_share=1.0)
    for _ in range(2):
        http_sink.answer(422, "no")
    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(TICK_NOW)
    with runtime.engine.begin() as conn:  # one of them reached the goal since
        first = conn.execute(sa.select(Enrollment.id).order_by(Enrollment.id)).scalars().first()
        conn.execute(sa.update(Enrollment).where(Enrollment.id == first).values(state="exited_goal"))

    report = retry_failed(runtime.engine, runtime.config.campaign("win_back"), now=TICK_NOW)

    assert (report.requeued, report.not_retried) == (1, {"exited_goal": 1})
    assert statuses(runtime.engine) == {"queued": 1, "failed": 1}


EVENT_CONFIG = """
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "welcome"
trigger = { event = "signup" }
channels = ["mail"]
[[campaigns.steps]]
template = "w/hello"
"""


def test_the_event_fast_path_plans_nothing_for_a_paused_campaign(sqlite_engine, tmp_path):
    (tmp_path / "templates" / "w").mkdir(parents=True)
    (tmp_path / "templates" / "w" / "hello.txt.j2").write_text("Hi")
    config = parse_config(EVENT_CONFIG, base=tmp_path)
    with sqlite_engine.begin() as conn:
        customer = conn.execute(sa.insert(Customer.__table__).values(
            external_id="new", email="new@example.com", created_at=TICK_NOW, updated_at=TICK_NOW,
            attributes={}).returning(Customer.__table__.c.id)).scalar_one()
        event = conn.execute(sa.insert(Event.__table__).values(
            customer_id=customer, name="signup", occurred_at=TICK_NOW, properties={}, dedupe_key="e1",
        ).returning(Event.__table__.c.id)).scalar_one()
    grant_consent(sqlite_engine, now=TICK_NOW)
    pause_campaign(sqlite_engine, "welcome", now=TICK_NOW)

    assert plan_for_events(sqlite_engine, config, [event], now=TICK_NOW) == []
    assert statuses(sqlite_engine) == {}

    resume_campaign(sqlite_engine, "welcome", now=TICK_NOW)
    assert len(plan_for_events(sqlite_engine, config, [event], now=TICK_NOW)) == 1


def test_a_disabled_campaign_cannot_be_run_by_hand(runtime):
    campaign = runtime.config.campaign("win_back").model_copy(update={"enabled": False})

    with pytest.raises(NurtureError, match="disabled .*enabled = false"):
        check_runnable(runtime.engine, campaign)
