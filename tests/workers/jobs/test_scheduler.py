"""The scheduler of workers/jobs/scheduler.py: a tick plans the due cron run and enqueues
only what is due, once however often it runs; ``nurture run`` plans who is targeted at each
call, nobody twice; one process at a time leads (the lease itself: tests/campaigns/store/test_leases.py).

Ticks here enqueue onto Dramatiq's stub broker with no worker: the queue holds what a tick
handed over (sending it is tests/workers/jobs/test_actors.py's business)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaigns.store.leases import SCHEDULER_LEASE, lease_holder
from campaigns.store.models import Customer, Order
from tests.campaigns.five_customers import NOW, config_with, people  # noqa: F401 (people: fixture)
from tests.conftest import grant_consent
from workers.jobs.broker import make_broker
from workers.jobs.scheduler import Leadership, run_now, tick

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=60)
#: Just after campaign c's 10:00 UTC cron slot on NOW's day.
AFTER_SLOT = NOW.replace(hour=10, minute=0, second=30)


def test_a_tick_plans_the_due_run_enqueues_what_is_due_and_a_second_tick_nothing(people):
    config = config_with("min_orders = 1")  # ann, bob, dan reachable (eve has no address); two steps
    broker = make_broker(config.broker)
    queue = broker.queues[config.broker.queue]

    first = tick(config=config, engine=people, broker=broker, now=AFTER_SLOT)

    [run] = first.runs
    assert (run.campaign, run.scheduled_at, run.planned) == ("c", NOW.replace(hour=10, minute=0), 6)
    # Step 0 is due now, step 1 in two days: three deliveries, in one job (batch_size 50).
    assert (first.enqueued_deliveries, first.enqueued_jobs, queue.qsize()) == (3, 1, 1)

    again = tick(config=config, engine=people, broker=broker, now=AFTER_SLOT)

    assert (again.runs, again.enqueued_deliveries, again.enqueued_jobs, queue.qsize()) == ([], 0, 0, 1)
    broker.close()


def test_run_now_plans_who_is_targeted_now_and_nobody_twice(people):
    config = config_with("min_orders = 1")
    broker = make_broker(config.broker)
    at = NOW.replace(hour=15, minute=7, second=5)

    first = run_now(config=config, engine=people, broker=broker, campaign=config.campaigns[0], now=at,
                    keep_ids=True)
    again = run_now(config=config, engine=people, broker=broker, campaign=config.campaigns[0],
                    now=at + timedelta(seconds=40))
    # Imported within the same minute: a second run must reach her (it said "nothing more
    # to send" while a manual run was claimed per minute).
    with people.begin() as conn:
        fay = conn.execute(sa.insert(Customer.__table__).values(
            external_id="fay", email="fay@x.cn", attributes={}, created_at=NOW, updated_at=NOW,
        ).returning(Customer.__table__.c.id)).scalar_one()
        conn.execute(sa.insert(Order.__table__).values(order_id="fay-0", customer_id=fay, ordered_at=NOW,
                                                       amount=9.0, channel="store"))
    grant_consent(people, now=NOW, external_ids=["fay"])
    third = run_now(config=config, engine=people, broker=broker, campaign=config.campaigns[0],
                    now=at + timedelta(seconds=50))

    [run] = first.runs
    assert run.scheduled_at == at and first.enqueued_deliveries == 3 and len(first.delivery_ids) == 3
    assert [r.planned for r in again.runs] == [0] and again.enqueued_deliveries == 0
    assert [r.planned for r in third.runs] == [2] and third.enqueued_deliveries == 1  # fay's two steps
    assert third.delivery_ids is None  # kept only when asked
    assert broker.queues[config.broker.queue].qsize() == 2
    broker.close()


def test_leadership_stands_by_while_another_scheduler_leads(sqlite_engine):
    first = Leadership(engine=sqlite_engine, ttl=TTL, holder="first")
    second = Leadership(engine=sqlite_engine, ttl=TTL, holder="second")
    assert first.hold(T0) and not second.hold(T0)
    assert first.hold(T0 + timedelta(seconds=30)) and not second.hold(T0 + timedelta(seconds=31))
    first.release()  # a clean shutdown
    assert second.hold(T0 + timedelta(seconds=32))
    assert lease_holder(sqlite_engine, SCHEDULER_LEASE).holder == "second"
