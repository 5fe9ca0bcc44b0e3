"""The Dramatiq actors, declared on a given broker (never on an implicit global one).

Actors stay thin: they fetch the process's :class:`~workers.runtime.Runtime` and call
:func:`~workers.delivery.deliver_batch`. Messages carry only delivery ids.
"""

from __future__ import annotations

from collections.abc import Callable

import dramatiq
from dramatiq.broker import Broker

from workers.broker import SEND_ACTOR
from workers.delivery import deliver_batch
from workers.runtime import Runtime


def declare_actors(broker: Broker, runtime: Callable[[], Runtime], *, queue: str) -> dict[str, dramatiq.Actor]:
    """Declare nurture's actors on ``broker``; ``runtime`` returns this process's runtime."""

    def send_deliveries(delivery_ids: list[int]) -> None:
        """Deliver a batch of ledger rows; provider retries are re-enqueued one row each."""
        current = runtime()
        recorded = deliver_batch(current, delivery_ids)
        for delivery_id, delay in recorded.retries:
            actor.send_with_options(args=([delivery_id],), delay=int(delay.total_seconds() * 1000))

    # Dramatiq's own retries cover crashes of the job itself (database down); provider
    # answers are retried through the ledger above, per row.
    actor = dramatiq.actor(
        send_deliveries,
        broker=broker,
        actor_name=SEND_ACTOR,
        queue_name=queue,
        max_retries=5,
        min_backoff=1000,
        max_backoff=60_000,
    )
    return {SEND_ACTOR: actor}
