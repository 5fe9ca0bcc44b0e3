"""Turning a due campaign run into delivery rows, exactly once.

A run is claimed by inserting ``campaign_run(campaign, scheduled_at)``, which is UNIQUE:
of two schedulers ticking at once, one wins. Planning is one ``INSERT ... SELECT`` per step
that ignores existing send keys, so replanning a run (after a crash) adds nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.audience import audience_select
from campaigns.config import (
    AppConfig,
    CampaignConfig,
    EventTrigger,
    SegmentEnteredTrigger,
    StageEnteredTrigger,
)
from campaigns.db import dialect_insert
from campaigns.models import CampaignRun, Delivery, Event, ProfileTransition, utcnow


@dataclass(frozen=True)
class PlannedRun:
    """What planning one run did."""

    campaign: str
    run_id: int
    scheduled_at: datetime
    planned: int


def claim_run(engine: Engine, campaign: str, scheduled_at: datetime, *, lease: timedelta) -> int | None:
    """Claim the run of ``campaign`` at ``scheduled_at``; its id if this caller now owns it.

    A run left in ``planning`` by a scheduler that died is taken over once its lease ends.
    """
    now = utcnow()
    with engine.begin() as conn:
        insert = (
            dialect_insert(conn, CampaignRun.__table__)
            .values(campaign=campaign, scheduled_at=scheduled_at, status="planning", claimed_at=now, planned_count=0)
            .on_conflict_do_nothing(index_elements=["campaign", "scheduled_at"])
            .returning(CampaignRun.id)
        )
        # RETURNING yields the id only when this insert won (rowcount is not reliable here).
        claimed = conn.execute(insert).scalar_one_or_none()
        if claimed is not None:
            return claimed
        takeover = (
            sa.update(CampaignRun)
            .where(
                CampaignRun.campaign == campaign,
                CampaignRun.scheduled_at == scheduled_at,
                CampaignRun.status == "planning",
                CampaignRun.claimed_at < now - lease,
            )
            .values(claimed_at=now)
            .returning(CampaignRun.id)
        )
        return conn.execute(takeover).scalar_one_or_none()


def complete_run(engine: Engine, run_id: int, *, planned: int) -> None:
    """Mark a claimed run done (for runs that are not campaign plans, e.g. profile recomputes)."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(CampaignRun).where(CampaignRun.id == run_id).values(status="planned", planned_count=planned)
        )


def occurrence_key(campaign: CampaignConfig, scheduled_at: datetime) -> str:
    """The part of the send key that tells occurrences apart ("once" unless re-entry allowed)."""
    if campaign.reentry == "every_run":
        return scheduled_at.strftime("%Y%m%dT%H%M")
    return "once"


def plan_run(
    engine: Engine,
    config: AppConfig,
    campaign: CampaignConfig,
    *,
    run_id: int,
    scheduled_at: datetime,
    now: datetime | None = None,
) -> PlannedRun:
    """Write one queued delivery per targeted customer and step; returns the run's count.

    The send key is ``campaign:step:customer:occurrence``; the channel is not part of it,
    so a customer whose preferred channel changed between runs still gets one message.
    """
    occurrence = occurrence_key(campaign, scheduled_at)
    created = utcnow()
    now = now or created
    with engine.begin() as conn:
        for step_index, step in enumerate(campaign.steps):
            due_at = scheduled_at + step.delay
            # Rows due now are enqueued by the caller straight after planning (run_batches),
            # so they are marked as handed over; later steps wait for their due time.
            dispatch_after = now + config.worker.lease if due_at <= now else due_at
            audience = audience_select(config, campaign, now=scheduled_at).subquery("targets")
            prefix = f"{campaign.name}:{step_index}:"
            send_key = sa.literal(prefix) + sa.cast(audience.c.customer_id, sa.String) + sa.literal(f":{occurrence}")
            rows = sa.select(
                send_key,
                sa.literal(run_id),
                sa.literal(campaign.name),
                sa.literal(step_index),
                audience.c.customer_id,
                audience.c.channel,
                sa.literal(step.template),
                sa.literal("queued"),
                sa.literal(0),
                sa.literal(due_at, type_=Delivery.__table__.c.due_at.type),
                sa.literal(dispatch_after, type_=Delivery.__table__.c.dispatch_after.type),
                sa.literal(created, type_=Delivery.__table__.c.created_at.type),
                sa.literal(created, type_=Delivery.__table__.c.updated_at.type),
            ).where(sa.literal_column("1") == 1)  # SQLite needs a WHERE before ON CONFLICT
            insert = (
                dialect_insert(conn, Delivery.__table__)
                .from_select(
                    [
                        "send_key", "run_id", "campaign", "step", "customer_id", "channel", "template",
                        "status", "attempts", "due_at", "dispatch_after", "created_at", "updated_at",
                    ],
                    rows,
                )
                .on_conflict_do_nothing(index_elements=["send_key"])
            )
            conn.execute(insert)
        # rowcount of INSERT ... SELECT is not reported by every driver; count the run's rows.
        planned = conn.execute(
            sa.select(sa.func.count()).select_from(Delivery).where(Delivery.run_id == run_id)
        ).scalar_one()
        conn.execute(
            sa.update(CampaignRun)
            .where(CampaignRun.id == run_id)
            .values(status="planned", planned_count=planned)
        )
    return PlannedRun(campaign=campaign.name, run_id=run_id, scheduled_at=scheduled_at, planned=planned)


def plan_entries(
    engine: Engine, config: AppConfig, campaign: CampaignConfig, *, now: datetime, window: timedelta
) -> int:
    """Deliveries for a ``stage_entered`` / ``segment_entered`` campaign: one per recorded
    entry (``profile_transition`` row) in ``(now - window, now]`` whose customer is in the
    audience. The transition id is the occurrence, so each entry sends once however many
    ticks see it; with ``reentry = "never"`` a customer gets the campaign once, ever.

    Segment entries from a customer's very first profile (no previous segment) are not
    entries: a score is relative, and the first computation is a baseline.
    """
    trigger = campaign.trigger
    if isinstance(trigger, StageEnteredTrigger):
        kind, value = "stage", trigger.stage_entered
    elif isinstance(trigger, SegmentEnteredTrigger):
        kind, value = "rfm_segment", trigger.segment_entered
    else:
        raise ValueError(f"campaign {campaign.name} is not triggered by entries")
    audience = audience_select(config, campaign, now=now).subquery("targets")
    entries = (
        sa.select(ProfileTransition.id.label("entry_id"), ProfileTransition.customer_id.label("customer_id"))
        .where(
            ProfileTransition.kind == kind,
            ProfileTransition.value == value,
            ProfileTransition.entered_at > now - window,
            ProfileTransition.entered_at <= now,
        )
    )
    if kind == "rfm_segment":
        entries = entries.where(ProfileTransition.previous.is_not(None))
    entries_q = entries.subquery("entries")
    created = utcnow()
    before = _count_campaign(engine, campaign.name)
    with engine.begin() as conn:
        for step_index, step in enumerate(campaign.steps):
            occurrence: sa.ColumnElement[str] = (
                sa.literal(":once")
                if campaign.reentry == "never"
                else sa.literal(":e") + sa.cast(entries_q.c.entry_id, sa.String)
            )
            send_key = (
                sa.literal(f"{campaign.name}:{step_index}:")
                + sa.cast(audience.c.customer_id, sa.String)
                + occurrence
            )
            rows = (
                sa.select(
                    send_key,
                    sa.literal(campaign.name),
                    sa.literal(step_index),
                    audience.c.customer_id,
                    audience.c.channel,
                    sa.literal(step.template),
                    sa.literal("queued"),
                    sa.literal(0),
                    sa.literal(now + step.delay, type_=Delivery.__table__.c.due_at.type),
                    sa.literal(now + step.delay, type_=Delivery.__table__.c.dispatch_after.type),
                    sa.literal(created, type_=Delivery.__table__.c.created_at.type),
                    sa.literal(created, type_=Delivery.__table__.c.updated_at.type),
                )
                .select_from(entries_q)
                .join(audience, audience.c.customer_id == entries_q.c.customer_id)
                .where(sa.literal_column("1") == 1)  # SQLite needs a WHERE before ON CONFLICT
            )
            conn.execute(
                dialect_insert(conn, Delivery.__table__)
                .from_select(
                    ["send_key", "campaign", "step", "customer_id", "channel", "template", "status",
                     "attempts", "due_at", "dispatch_after", "created_at", "updated_at"],
                    rows,
                )
                .on_conflict_do_nothing(index_elements=["send_key"])
            )
    return _count_campaign(engine, campaign.name) - before


def plan_events(
    engine: Engine,
    config: AppConfig,
    campaign: CampaignConfig,
    *,
    now: datetime,
    window: timedelta,
    event_ids: Sequence[int] | None = None,
) -> int:
    """Deliveries for an ``event`` campaign: one per matching event (its name, occurred in
    ``(now - window, now]``) whose customer is in the audience; returns how many are new.

    Step ``n`` is due at the event's ``occurred_at`` plus the step's delay, so a series'
    later steps wait. The occurrence is ``once`` with ``reentry = "never"`` (one series per
    customer, ever) and ``ev<event id>`` otherwise (one series per event); either way
    planning the same event again, from the fast path and from a tick, adds nothing.
    ``event_ids`` restricts planning to those events (the fast path after receiving them).
    """
    trigger = campaign.trigger
    if not isinstance(trigger, EventTrigger):
        raise ValueError(f"campaign {campaign.name} is not triggered by events")
    if event_ids is not None and not event_ids:
        return 0
    audience = audience_select(config, campaign, now=now).subquery("targets")
    events = sa.select(
        Event.id.label("event_id"), Event.customer_id.label("customer_id"), Event.occurred_at.label("occurred_at")
    ).where(Event.name == trigger.event, Event.occurred_at > now - window, Event.occurred_at <= now)
    if event_ids is not None:
        events = events.where(Event.id.in_(list(event_ids)))
    events_q = events.subquery("events")
    created = utcnow()
    due_type = Delivery.__table__.c.due_at.type
    before = _count_campaign(engine, campaign.name)
    with engine.begin() as conn:
        for step_index, step in enumerate(campaign.steps):
            occurrence: sa.ColumnElement[str] = (
                sa.literal(":once")
                if campaign.reentry == "never"
                else sa.literal(":ev") + sa.cast(events_q.c.event_id, sa.String)
            )
            send_key = (
                sa.literal(f"{campaign.name}:{step_index}:")
                + sa.cast(audience.c.customer_id, sa.String)
                + occurrence
            )
            due_at = _plus(conn.dialect.name, events_q.c.occurred_at, step.delay, due_type)
            rows = (
                sa.select(
                    send_key,
                    sa.literal(campaign.name),
                    sa.literal(step_index),
                    audience.c.customer_id,
                    audience.c.channel,
                    sa.literal(step.template),
                    sa.literal("queued"),
                    sa.literal(0),
                    due_at,
                    due_at,
                    sa.literal(created, type_=Delivery.__table__.c.created_at.type),
                    sa.literal(created, type_=Delivery.__table__.c.updated_at.type),
                )
                .select_from(events_q)
                .join(audience, audience.c.customer_id == events_q.c.customer_id)
                .where(sa.literal_column("1") == 1)  # SQLite needs a WHERE before ON CONFLICT
            )
            conn.execute(
                dialect_insert(conn, Delivery.__table__)
                .from_select(
                    ["send_key", "campaign", "step", "customer_id", "channel", "template", "status",
                     "attempts", "due_at", "dispatch_after", "created_at", "updated_at"],
                    rows,
                )
                .on_conflict_do_nothing(index_elements=["send_key"])
            )
    return _count_campaign(engine, campaign.name) - before


def _plus(dialect: str, column: sa.ColumnElement[datetime], delay: timedelta, type_: sa.types.TypeEngine) -> sa.ColumnElement[datetime]:
    """``column + delay`` in SQL, typed as ``type_``.

    SQLite stores timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` text (compared as text), so
    the sum keeps exactly that format: seconds shifted by ``datetime()``, the fraction kept.
    """
    if not delay:
        return column
    if dialect == "sqlite":
        seconds = int(delay.total_seconds())  # durations are whole seconds
        shifted = sa.func.strftime(
            "%Y-%m-%d %H:%M:%S", column, f"{seconds:+d} seconds", type_=sa.String
        ).concat(sa.func.substr(column, 20, type_=sa.String))
        return sa.type_coerce(shifted, type_)
    return sa.type_coerce(column + sa.literal(delay, type_=sa.Interval()), type_)


def _count_campaign(engine: Engine, campaign: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(Delivery).where(Delivery.campaign == campaign)
        ).scalar_one()
