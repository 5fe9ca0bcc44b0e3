"""Where the deliveries stand: counts per campaign, channel and status, why messages were
held back, which campaigns are paused, and what was sent to one customer.

Plain dicts and tuples out, no presentation (``nurture status`` and ``nurture demo`` draw them).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.store.models import CampaignState, Delivery


def delivery_summary(engine: Engine) -> list[dict[str, Any]]:
    """Deliveries per campaign, channel and status."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Delivery.campaign, Delivery.channel, Delivery.status, sa.func.count())
            .where(Delivery.is_test.is_(False))  # test sends are not the campaign's messages
            .group_by(Delivery.campaign, Delivery.channel, Delivery.status)
            .order_by(Delivery.campaign, Delivery.channel, Delivery.status)
        ).all()
    return [{"campaign": r[0], "channel": r[1], "status": r[2], "count": r[3]} for r in rows]


def held_back_summary(engine: Engine) -> list[dict[str, Any]]:
    """Why messages were skipped, or wait queued, per campaign: policy decisions (consent,
    caps, quiet hours, windows, conditions) and provider errors awaiting a retry. Reasons
    are grouped without their per-customer detail (the time zone in parentheses)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Delivery.campaign, Delivery.status, Delivery.last_error, sa.func.count())
            .where(Delivery.status.in_(["skipped", "queued"]), Delivery.last_error.is_not(None),
                   Delivery.is_test.is_(False))
            .group_by(Delivery.campaign, Delivery.status, Delivery.last_error)
        ).all()
    counts: dict[tuple[str, str, str], int] = {}
    for campaign, status, reason, count in rows:
        key = (campaign, status, reason.split(" (")[0] if reason.endswith(")") else reason)
        counts[key] = counts.get(key, 0) + count
    return [{"campaign": c, "status": s, "reason": r, "count": n}
            for (c, s, r), n in sorted(counts.items(), key=lambda item: (item[0][0], -item[1], item[0][2]))]


def paused_campaigns_summary(engine: Engine) -> list[dict[str, Any]]:
    """The campaigns a provider's halt answer paused, with the reason recorded."""
    with engine.connect() as conn:
        return [{"campaign": r[0], "reason": r[1]} for r in conn.execute(
            sa.select(CampaignState.campaign, CampaignState.paused_reason).where(CampaignState.paused))]


def customer_send_keys(engine: Engine, customer_id: int) -> list[tuple[str, str, str]]:
    """``(channel, campaign, send_key)`` of every delivery to one customer (by row id): what
    names the files an outbox channel wrote for them."""
    with engine.connect() as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute(
            sa.select(Delivery.channel, Delivery.campaign, Delivery.send_key)
            .where(Delivery.customer_id == customer_id))]
