"""The WeChat 48-hour rule's input: which channels may only message customers who
interacted recently, and when each customer of a batch last did.

WeChat customer-service messages reach only a follower who interacted with the official
account within the last 48 hours. The rule itself is WeChat's (the channel passes
``last_interaction_at`` along and maps the refusal); what counts as an interaction is
configured per channel (``interaction_events``), and is looked up here once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.config.options.wechat import WeChatOAChannelConfig
from campaigns.config.schema import AppConfig
from campaigns.store.models import Event


def interaction_channels(config: AppConfig) -> set[str]:
    """Channels that may only message customers who interacted recently (WeChat
    customer-service messages)."""
    return {
        name for name, options in config.channels.items()
        if isinstance(options, WeChatOAChannelConfig) and options.message_type == "customer_service"
    }


def last_interactions(conn: sa.Connection, config: AppConfig, deliveries: Sequence[Any]) -> dict[int, datetime | None]:
    """The latest interaction event per customer of the batch, for the channels that need it
    (one query per batch); ``deliveries`` are claimed ledger rows
    (:class:`~campaigns.sending.ledger.ClaimedDelivery`)."""
    channels = interaction_channels(config)
    names: set[str] = set()
    customers: set[int] = set()
    for delivery in deliveries:
        options = config.channels.get(delivery.channel)
        if delivery.channel in channels and isinstance(options, WeChatOAChannelConfig):
            names.update(options.interaction_events)
            customers.add(delivery.customer["id"])
    if not customers:
        return {}
    rows = conn.execute(
        sa.select(Event.customer_id, sa.func.max(Event.occurred_at))
        .where(Event.customer_id.in_(sorted(customers)), Event.name.in_(sorted(names)))
        .group_by(Event.customer_id)
    ).all()
    found: dict[int, datetime | None] = dict.fromkeys(customers)
    found.update({customer_id: moment for customer_id, moment in rows})
    return found
