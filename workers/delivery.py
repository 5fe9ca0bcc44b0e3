"""One job's work: claim a batch of ledger rows, render, send, record.

The ledger row exists before this runs (the scheduler wrote it); the claim guarantees no
other job sends the same row; the record step writes every attempt and status change
of the batch in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from campaigns.errors import RenderError
from campaigns.ledger import Recorded, claim, record
from campaigns.messages import OutboundMessage, Outcome, SendResult
from campaigns.policy import send_time_skips
from campaigns.rendering import build_context
from workers.runtime import Runtime

logger = logging.getLogger("nurture.delivery")

#: Share of the lease a job may spend sending; the rest is margin for recording.
LEASE_USABLE_SHARE = 0.8


def deliver_batch(runtime: Runtime, delivery_ids: Sequence[int]) -> Recorded:
    """Deliver the still-queued rows among ``delivery_ids``; returns what was recorded."""
    config = runtime.config
    now = runtime.clock()
    claimed = claim(runtime.engine, delivery_ids, now=now, lease=config.worker.lease)
    # Stop sending well before the lease ends: past it, the scheduler may hand the rows to
    # another worker, and a row sent by both would be a duplicate.
    stop_at = now + config.worker.lease * LEASE_USABLE_SHARE
    results: dict[int, tuple[SendResult, datetime, datetime]] = {}
    skips = {}
    if claimed.deliveries:
        with runtime.engine.connect() as conn:
            skips = send_time_skips(conn, config, claimed.deliveries, now=now)
    for delivery in claimed.deliveries:
        if delivery.id in skips:
            continue
        started = runtime.clock()
        channel = runtime.channels.get(delivery.channel)
        options = config.channels.get(delivery.channel)
        if runtime.clock() >= stop_at:
            result = SendResult(Outcome.DEFER, error="lease nearly over before this row was sent; requeued",
                                defer_until=now)
        elif channel is None or options is None:
            result = SendResult(Outcome.HALT, error=f"channel {delivery.channel!r} is not configured")
        else:
            recipient = delivery.customer.get(options.recipient)
            if not recipient:
                result = SendResult(Outcome.PERMANENT, error=f"customer has no {options.recipient}")
            else:
                result = _render_and_send(runtime, channel, delivery, str(recipient), now)
        results[delivery.id] = (result, started, runtime.clock())
    recorded = record(runtime.engine, config, claimed, results, skips=skips, now=now)
    for campaign, reason in recorded.halted.items():
        logger.error("campaign %s paused: %s", campaign, reason)
    return recorded


def _render_and_send(runtime: Runtime, channel, delivery, recipient: str, now: datetime) -> SendResult:  # type: ignore[no-untyped-def]
    campaign = next((c for c in runtime.config.campaigns if c.name == delivery.campaign), None)
    purpose = campaign.purpose if campaign is not None else "marketing"
    try:
        context = build_context(
            customer=delivery.customer,
            stats=delivery.stats,
            campaign=delivery.campaign,
            step=delivery.step,
            send_key=delivery.send_key,
            now=now,
        )
        parts = runtime.renderer.render(delivery.template, context)
    except RenderError as exc:
        return SendResult(Outcome.PERMANENT, error=f"render failed: {exc}", code="render")
    message = OutboundMessage(
        send_key=delivery.send_key,
        delivery_id=delivery.id,
        campaign=delivery.campaign,
        step=delivery.step,
        channel=delivery.channel,
        recipient=recipient,
        customer_external_id=delivery.customer["external_id"],
        parts=parts,
        # Channels apply compliance rules by purpose (opt-out text on marketing SMS,
        # no marketing over WeChat template messages).
        metadata={"purpose": purpose},
    )
    try:
        return channel.send(message)
    except Exception as exc:  # a channel bug must not strand the rest of the batch
        logger.exception("channel %s raised on delivery %s", delivery.channel, delivery.id)
        return SendResult(Outcome.RETRY, error=f"internal error: {type(exc).__name__}: {exc}", code="internal")
