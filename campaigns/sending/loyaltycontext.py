"""The ``loyalty`` template variable of a batch of messages, read in a few set-based queries.

Every message a campaign sends while ``[loyalty] enabled`` is true sees its customer's
standing (:meth:`~campaigns.customers.loyalty.balances.Standing.as_context`): balance, the
balance per redeemable kind, the next points to expire, tier, next tier and what it takes.
A worker renders a batch at a time, so the batch's standings are read together
(:func:`~campaigns.customers.loyalty.balances.standings`), never one query per message.

An expiry reminder (a ``points_expiring`` campaign) names the lots it reminds of:
``loyalty.expiring`` is what is left of the lots its occurrence (``lot<id>``) stands for,
rather than the customer's earliest expiring points, which may be lots reminded of
before, or lie beyond the 30 days ``loyalty.expiring`` looks ahead for other campaigns.
Once those points are spent or expired the reminder has nothing to say: the batch
reports it in :attr:`LoyaltyContexts.spent` and the worker skips it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.config.schema import AppConfig
from campaigns.config.triggers import PointsExpiringTrigger
from campaigns.customers.loyalty.balances import standings
from campaigns.sending.planning import reminded_lot
from campaigns.store.chunks import chunks
from campaigns.store.models import PointsLot


@dataclass
class LoyaltyContexts:
    """The ``loyalty`` variable of each message of a batch, by delivery id (empty while
    the programme is off), and the expiry reminders whose points are gone."""

    contexts: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Reminders (by delivery id) whose lots were spent or expired since they were planned.
    spent: set[int] = field(default_factory=set)


def loyalty_contexts(conn: sa.Connection, config: AppConfig, deliveries: Sequence[Any], *,
                     now: datetime) -> LoyaltyContexts:
    """The ``loyalty`` variables of ``deliveries`` at ``now``.

    ``deliveries`` are :class:`~campaigns.sending.ledger.ClaimedDelivery` rows, or
    anything with their ``id``, ``campaign``, ``send_key``, ``customer`` (``{"id": ...}``)
    and ``is_test``. Two queries per 500 customers, one more for the reminders' lots.
    A test send or a preview of a reminder, which reminds of no lot of its own, shows the
    first points the reminder would name now: those expiring within its lead time.
    """
    found = LoyaltyContexts()
    loyalty = config.loyalty
    if not loyalty.enabled or not deliveries:
        return found
    leads = {c.name: c.trigger.points_expiring for c in config.campaigns
             if isinstance(c.trigger, PointsExpiringTrigger)}
    by_customer = standings(conn, loyalty, {d.customer["id"] for d in deliveries}, now=now)
    reminders = {d.id: reminded_lot(d.send_key) for d in deliveries
                 if d.campaign in leads and not getattr(d, "is_test", False)}
    expiries: dict[int, datetime] = {}
    lot_ids = sorted({lot for lot in reminders.values() if lot is not None})
    lots = PointsLot.__table__
    for chunk in chunks(lot_ids):
        expiries.update(conn.execute(sa.select(lots.c.id, lots.c.expires_at).where(lots.c.id.in_(chunk))).all())
    for delivery in deliveries:
        standing = by_customer.get(delivery.customer["id"])
        if standing is None:
            continue  # no such customer any more (erased): nothing to render with
        if delivery.campaign in leads:
            expires_at = expiries.get(reminders.get(delivery.id) or 0)
            if expires_at is not None:
                expiring = standing.expiring_at(expires_at)
                if expiring.points <= 0:
                    found.spent.add(delivery.id)
            else:
                expiring = standing.next_expiring(now=now, within=leads[delivery.campaign])
            standing = standing.with_expiring(expiring)
        found.contexts[delivery.id] = standing.as_context()
    return found


__all__ = ["LoyaltyContexts", "loyalty_contexts"]
