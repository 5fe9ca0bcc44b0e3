"""The actors of workers/jobs/actors.py, declared by ``declare_actors`` on Dramatiq's stub
broker and run by a real :class:`dramatiq.Worker`, over a SQLite runtime with the outbox
channel: each actor delivers what its message names and nothing else."""

from __future__ import annotations

import sqlalchemy as sa
from dramatiq import Worker
from dramatiq.broker import Broker

from campaigns.store.models import Delivery
from tests.campaigns.sending.test_event_triggers import NOW, add_customer, config_for, store
from tests.workers.jobs.test_delivery import outbox_runtime
from workers.jobs.actors import declare_actors
from workers.jobs.broker import EVENTS_ACTOR, SEND_ACTOR, make_broker
from workers.jobs.runtime import Runtime


def work(broker: Broker, queue: str) -> None:
    """Run a worker until the queue (and its delayed messages) is empty; an actor's
    error fails the join."""
    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        broker.join(queue, fail_fast=True)
        worker.join()
    finally:
        worker.stop()


def statuses(engine: sa.Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(Delivery.id, Delivery.status)).all())


def test_send_deliveries_delivers_the_rows_it_is_given_and_no_others(tmp_path, sqlite_url):
    runtime, ids = outbox_runtime(tmp_path, sqlite_url)  # five queued rows of campaign c
    queue = runtime.config.broker.queue
    broker = make_broker(runtime.config.broker)
    actors = declare_actors(broker, lambda: runtime, queue=queue)

    actors[SEND_ACTOR].send(ids[:2])
    work(broker, queue)

    assert statuses(runtime.engine) == {**{i: "queued" for i in ids[2:]}, **{i: "sent" for i in ids[:2]}}
    assert len(list((tmp_path / "out" / "c").iterdir())) == 2
    # The same message again (a redelivery): the rows are sent already, nothing goes twice.
    actors[SEND_ACTOR].send(ids[:2])
    work(broker, queue)
    assert len(list((tmp_path / "out" / "c").iterdir())) == 2
    broker.close()
    runtime.close()


def test_handle_events_sends_the_first_step_for_the_events_it_is_given_only(tmp_path, sqlite_url):
    config = config_for(tmp_path, sqlite_url)  # welcome on a signup event; step 1 three days later
    runtime = Runtime.from_config(config, clock=lambda: NOW)
    ann = add_customer(runtime.engine, "ann")
    bob = add_customer(runtime.engine, "bob")
    mine = store(runtime.engine, ann, "signup", NOW, "e1")
    store(runtime.engine, bob, "signup", NOW, "e2")  # recorded, but not in the message
    queue = config.broker.queue
    broker = make_broker(config.broker)
    actors = declare_actors(broker, lambda: runtime, queue=queue)

    actors[EVENTS_ACTOR].send([mine])
    work(broker, queue)

    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.select(Delivery.customer_id, Delivery.step, Delivery.status)
                            .order_by(Delivery.customer_id, Delivery.step)).all()
    assert [tuple(row) for row in rows] == [(ann, 0, "sent"), (ann, 1, "queued")]
    assert len(list((tmp_path / "out" / "welcome").iterdir())) == 1
    broker.close()
    runtime.close()
