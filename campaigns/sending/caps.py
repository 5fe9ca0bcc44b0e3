"""Frequency caps at send time, and which message keeps a slot when several want it.

Marketing messages count against ``[compliance.frequency]`` (per channel family per day,
across channels per week); transactional ones neither count nor are capped. When several
campaigns want the same customer's slot, the slot goes by rank, never by which worker
thread happens to check first:

1. transactional messages (never capped at all);
2. the campaign's ``priority``, higher first;
3. the earlier due time;
4. the lower delivery id (a stable last word).

A message is checked against what took a slot already (marketing sent in the past
week) and against the messages that outrank it and are still to go: queued and due
within the cap's period, or being sent right now by another job. Those take their slots
at their due time (now, if already due), so a lower-ranked message defers while a
higher-ranked one waits for its turn. A higher-ranked message never defers for a
lower-ranked one another job holds: that one saw it queued and defers itself. (The one
case this cannot see: a higher-ranked row planned while a lower-ranked one is already
being sent; both may then go out, and the next message waits a period longer.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns.config.compliance import FrequencyCapsConfig
from campaigns.config.schema import AppConfig
from campaigns.config.vocabulary import CHANNEL_FAMILY
from campaigns.store.models import CampaignState, Delivery

DAY = timedelta(days=1)
WEEK = timedelta(days=7)

#: Sort key of a message competing for a slot: smaller goes first (-priority, due, id).
Rank = tuple[int, datetime, int]


def rank(priority: int, due_at: datetime, delivery_id: int) -> Rank:
    """The rank of a marketing message: higher priority, then earlier due, then lower id."""
    return (-priority, due_at, delivery_id)


@dataclass(frozen=True)
class Slot:
    """A slot of a customer's caps taken, or about to be: the channel family, the moment
    it counts at, and the rank of the message still to go (None once sent: it counts
    whatever the rank of the message being checked)."""

    family: str
    moment: datetime
    rank: Rank | None = None


def batch_ranks(config: AppConfig, deliveries: Sequence[Any], *, now: datetime) -> dict[int, Rank]:
    """The rank of each claimed delivery of the batch, from the due time the claim read
    (a delivery not in the ledger, as a preview's, is due ``now``)."""
    priorities = {c.name: c.priority for c in config.campaigns}
    return {d.id: rank(priorities.get(d.campaign, 0), d.due_at or now, d.id) for d in deliveries}


def taken_slots(conn: sa.Connection, config: AppConfig, deliveries: Sequence[Any], *,
                now: datetime) -> dict[int, list[Slot]]:
    """Per customer of the batch, the slots of the caps taken by other messages: marketing
    sent in the past week, being sent now by another job, or queued and due within a week
    (the longest cap period; :func:`cap_reached` keeps those that outrank the message)."""
    customer_ids = sorted({d.customer["id"] for d in deliveries})
    if not customer_ids:
        return {}
    transactional = sorted(c.name for c in config.campaigns if c.purpose == "transactional")
    waiting = sorted(c.name for c in config.campaigns if c.purpose == "marketing" and c.enabled)
    priorities = {c.name: c.priority for c in config.campaigns}
    paused = sa.select(CampaignState.campaign).where(CampaignState.paused)
    query = sa.select(Delivery.id, Delivery.customer_id, Delivery.campaign, Delivery.channel, Delivery.status,
                      Delivery.sent_at, Delivery.due_at).where(
        Delivery.customer_id.in_(customer_ids),
        Delivery.id.not_in(sorted(d.id for d in deliveries)),
        # Transactional messages take no slot.
        Delivery.campaign.not_in(transactional),
        # A test send went to the marketer's address, not the customer's: it takes no slot.
        Delivery.is_test.is_(False),
        sa.or_(
            sa.and_(Delivery.status == "sent", Delivery.sent_at > now - WEEK),
            sa.and_(Delivery.status == "sending", Delivery.lease_until > now),
            # Rows of a paused or disabled campaign wait without planning: they take no slot.
            sa.and_(Delivery.status == "queued", Delivery.due_at < now + WEEK,
                    Delivery.campaign.in_(waiting), Delivery.campaign.not_in(paused)),
        ),
    )
    slots: dict[int, list[Slot]] = {}
    for row in conn.execute(query):
        channel = config.channels.get(row.channel)
        family = (CHANNEL_FAMILY.get(channel.recipient) if channel else None) or row.channel
        if row.status == "sent" and row.sent_at is not None:
            slot = Slot(family, row.sent_at)
        else:
            slot = Slot(family, max(row.due_at, now), rank(priorities.get(row.campaign, 0), row.due_at, row.id))
        slots.setdefault(row.customer_id, []).append(slot)
    return slots


def cap_reached(caps: FrequencyCapsConfig, slots: Sequence[Slot], family: str, *, own: Rank,
                now: datetime) -> tuple[str, datetime] | None:
    """Why a marketing message of rank ``own`` on ``family`` cannot go out at ``now``, and
    when to look again; None if it may go.

    Over the cap with sent messages alone, it waits until the oldest of them leaves its
    period (and a second). Over it only because outranking messages are still to go, it
    looks again shortly after the first of them is due: that one is then sent (and the
    wait is counted from it) or dropped (a skipped step, a withdrawn consent), and never
    holds a slot it did not take.
    """
    counted = [s for s in slots if s.rank is None or s.rank < own]
    over = _over(caps, counted, family, now=now)
    if over is None:
        return None
    reason, frees = over
    waiting = [s.moment for s in counted if s.rank is not None]
    if waiting and _over(caps, [s for s in counted if s.rank is None], family, now=now) is None:
        return f"{reason}, kept for a higher-priority message", min(waiting) + RECHECK
    return reason, frees


#: How long after an outranking message is due a message it holds back looks again.
RECHECK = timedelta(minutes=5)


def _over(caps: FrequencyCapsConfig, counted: Sequence[Slot], family: str, *,
          now: datetime) -> tuple[str, datetime] | None:
    """The caps ``counted`` reach at ``now``: (reason, a second after the oldest counted
    message leaves its period), or None."""
    same_day = sorted(s.moment for s in counted if s.family == family and now - DAY < s.moment < now + DAY)
    same_week = sorted(s.moment for s in counted if now - WEEK < s.moment < now + WEEK)
    frees: list[datetime] = []
    reasons: list[str] = []
    if len(same_day) >= caps.per_channel_per_day:
        frees.append(same_day[len(same_day) - caps.per_channel_per_day] + DAY)
        reasons.append(f"{caps.per_channel_per_day} {family} per day")
    if len(same_week) >= caps.per_week:
        frees.append(same_week[len(same_week) - caps.per_week] + WEEK)
        reasons.append(f"{caps.per_week} per week across channels")
    if not reasons:
        return None
    return "frequency cap reached: " + " and ".join(reasons), max(frees) + timedelta(seconds=1)
