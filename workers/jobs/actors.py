"""The Dramatiq actors, declared on a given broker (never on an implicit global one).

Actors stay thin: they fetch the process's :class:`~workers.jobs.runtime.Runtime` and call
the domain (:func:`~workers.jobs.delivery.deliver_batch`,
:func:`~campaigns.sending.event_triggers.plan_for_events`). Messages carry only delivery or event ids.
"""

from __future__ import annotations

from collections.abc import Callable

import dramatiq
from dramatiq.broker import Broker

from campaigns.sending.event_triggers import plan_for_events
from workers.jobs.broker import EVENTS_ACTOR, SEND_ACTOR, STAFF_ALERTS_ACTOR, enqueue_many, send_message
from workers.jobs.delivery import deliver_batch
from workers.jobs.runtime import Runtime
from workers.jobs.staff_alerts import send_staff_alerts

#: Dramatiq's own retries of a job, for both actors. They cover crashes of the job itself
#: (database down); provider answers are retried through the ledger, per row.
JOB_RETRIES = {"max_retries": 5, "min_backoff": 1000, "max_backoff": 60_000}


def declare_actors(broker: Broker, runtime: Callable[[], Runtime], *, queue: str) -> dict[str, dramatiq.Actor]:
    """Declare nurture's actors on ``broker``; ``runtime`` returns this process's runtime."""

    def deliver_now(current: Runtime, delivery_ids: list[int]) -> None:
        recorded = deliver_batch(current, delivery_ids)
        for delivery_id, delay in recorded.retries:
            actor.send_with_options(args=([delivery_id],), delay=int(delay.total_seconds() * 1000))

    def send_deliveries(delivery_ids: list[int]) -> None:
        """Deliver a batch of ledger rows; provider retries are re-enqueued one row each."""
        deliver_now(runtime(), delivery_ids)

    actor = dramatiq.actor(send_deliveries, broker=broker, actor_name=SEND_ACTOR, queue_name=queue, **JOB_RETRIES)

    def handle_events(event_ids: list[int]) -> None:
        """Plan event campaigns for freshly recorded events and enqueue what is due now,
        so a welcome message goes out within seconds rather than at the next tick."""
        current = runtime()
        due = plan_for_events(current.engine, current.config, event_ids, now=current.clock())
        size = current.config.broker.batch_size
        if len(due) <= size:
            # Small (the usual case: one sign-up): send in this job, saving a broker hop
            # (P6: the second hop and its idle polling were most of the latency). If this
            # job dies, the rows are already marked handed over and the scheduler sends
            # them after the lease.
            deliver_now(current, due)
            return
        enqueue_many(broker, [send_message(queue, due[start : start + size]) for start in range(0, len(due), size)])

    events_actor = dramatiq.actor(handle_events, broker=broker, actor_name=EVENTS_ACTOR, queue_name=queue, **JOB_RETRIES)

    def send_staff_alerts_due() -> None:
        """Send the staff alerts due; their retries wait in the ledger (``due_at``), and
        the scheduler wakes this actor again while any is due."""
        current = runtime()
        send_staff_alerts(engine=current.engine, config=current.config, senders=current.staff, clock=current.clock)

    staff_actor = dramatiq.actor(send_staff_alerts_due, broker=broker, actor_name=STAFF_ALERTS_ACTOR,
                                 queue_name=queue, **JOB_RETRIES)
    return {SEND_ACTOR: actor, EVENTS_ACTOR: events_actor, STAFF_ALERTS_ACTOR: staff_actor}
