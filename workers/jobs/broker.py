"""Broker construction and batched enqueueing.

``stub://`` gives Dramatiq's :class:`StubBroker`, worked by in-process worker threads
(the embedded default); ``redis://`` gives a :class:`RedisBroker` for separate worker
processes. :func:`enqueue_many` sends a batch of messages in one Redis pipeline instead
of one round trip each.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from dramatiq import Message
from dramatiq.broker import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis

from campaigns.config.runtime import BrokerConfig

#: The actor that delivers a batch of ledger rows.
SEND_ACTOR = "send_deliveries"
#: The actor that plans event campaigns for freshly recorded events and enqueues what is due.
EVENTS_ACTOR = "handle_events"
#: The actor that sends the staff alerts due (``staff_alert``: detractors, complaints).
STAFF_ALERTS_ACTOR = "send_staff_alerts"


def make_broker(config: BrokerConfig) -> Broker:
    """A broker for ``config.url`` with Dramatiq's default middleware."""
    if config.in_process:
        broker: Broker = StubBroker()
        broker.emit_after("process_boot")
    else:
        broker = RedisBroker(url=config.url, namespace=config.namespace)
    broker.declare_queue(config.queue)
    return broker


def send_message(queue: str, delivery_ids: Sequence[int]) -> Message:
    """The message asking a worker to deliver ``delivery_ids`` (ids only: never bodies or PII)."""
    return Message(queue_name=queue, actor_name=SEND_ACTOR, args=(list(delivery_ids),), kwargs={}, options={})


def events_message(queue: str, event_ids: Sequence[int]) -> Message:
    """The message asking a worker to act on freshly recorded events (ids only)."""
    return Message(queue_name=queue, actor_name=EVENTS_ACTOR, args=(list(event_ids),), kwargs={}, options={})


def staff_alerts_message(queue: str) -> Message:
    """The message asking a worker to send the staff alerts due (no arguments: the worker
    leases the rows itself, so two such jobs at once send each alert once)."""
    return Message(queue_name=queue, actor_name=STAFF_ALERTS_ACTOR, args=(), kwargs={}, options={})


def enqueue_many(broker: Broker, messages: Sequence[Message]) -> int:
    """Enqueue ``messages``; on Redis in a single pipelined round trip.

    Mirrors :meth:`RedisBroker.enqueue` (fresh ``redis_message_id``, enqueue hooks) but
    queues the dispatch script calls on one pipeline.
    """
    if not messages:
        return 0
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return len(messages)
    dispatch = broker.scripts["dispatch"]
    prepared = []
    with broker.client.pipeline(transaction=False) as pipe:
        for message in messages:
            message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
            broker.emit_before("enqueue", message, None)
            args = [
                "enqueue",
                current_millis(),
                message.queue_name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                0,  # no maintenance inside a pipeline; single enqueues still do it
                broker._max_unpack_size(),
                message.options["redis_message_id"],
                message.encode(),
            ]
            dispatch(keys=[broker.namespace], args=args, client=pipe)
            prepared.append(message)
        pipe.execute()
    for message in prepared:
        broker.emit_after("enqueue", message, None)
    return len(prepared)
