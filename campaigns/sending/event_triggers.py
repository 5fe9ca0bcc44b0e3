"""Event triggers: planning event campaigns for events just recorded.

The fast path after ``POST /events`` or ``nurture track`` stored new events
(:func:`campaigns.customers.events.record_events`): the ``handle_events`` job plans every
enabled event campaign for just those events and sends what is due now, so a welcome
message goes out within seconds rather than at the next scheduler tick. With ``[loyalty]``
on, the points those events earn (a review, a share) are earned first, tier upgrades
included, so the messages planned here already see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.config.triggers import EventTrigger
from campaigns.customers.loyalty.daily import earn_now
from campaigns.sending.ledger import paused_campaigns
from campaigns.sending.planning import plan_events
from campaigns.store.chunks import chunks
from campaigns.store.models import Delivery, Event


def plan_for_events(engine: Engine, config: AppConfig, event_ids: Sequence[int], *, now: datetime) -> list[int]:
    """The fast path after events are recorded: plan every enabled event campaign that is
    not paused for just ``event_ids`` and return the ids of the deliveries now due, marked
    as handed to the broker (``dispatch_after = now + lease``, as a tick does), for the
    caller to enqueue.

    Later steps of a series stay queued until their due time; the scheduler sends them.
    Running this twice for the same events plans and returns nothing new.
    """
    if config.loyalty.enabled and event_ids:
        # Whatever arrived since the last earning (these events and any import): a lot
        # exists once per source, so earning again here, or in the daily job, adds nothing.
        earn_now(engine, config.loyalty, now=now)
    ids = sorted(set(event_ids))
    campaigns = [c for c in config.campaigns if c.enabled and isinstance(c.trigger, EventTrigger)]
    if not ids or not campaigns:
        return []
    # A paused campaign plans nothing (campaigns.sending.control): its events are planned
    # by the first tick after resume, while still within the entry window.
    paused = paused_campaigns(engine)
    names = [c.name for c in campaigns if c.name not in paused]
    if not names:
        return []
    for campaign in campaigns:
        if campaign.name in names:
            plan_events(engine, config, campaign, now=now, window=config.scheduler.entry_window, event_ids=ids)
    with engine.connect() as conn:
        customers: set[int] = set()
        for chunk in chunks(ids):
            customers.update(conn.execute(sa.select(Event.customer_id).where(Event.id.in_(chunk))).scalars())
    # A transaction of its own that starts with the write (see ledger.dispatchable_batches:
    # on SQLite a read-then-write transaction can fail once a worker has written).
    due: list[int] = []
    with engine.begin() as conn:
        for chunk in chunks(sorted(customers)):
            claim = (
                sa.update(Delivery)
                .where(
                    Delivery.campaign.in_(names),
                    Delivery.customer_id.in_(chunk),
                    Delivery.status == "queued",
                    Delivery.dispatch_after <= now,
                )
                .values(dispatch_after=now + config.worker.lease)
                .returning(Delivery.id)
            )
            due.extend(conn.execute(claim).scalars())
    return sorted(due)


__all__ = ["plan_for_events"]
