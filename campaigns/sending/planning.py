"""Turning triggers into enrolments and delivery rows, exactly once.

A cron run is claimed by inserting ``campaign_run(campaign, scheduled_at)``, which is
UNIQUE: of two schedulers ticking at once, one wins. Every trigger (cron slot, stage or
segment entry, event) then goes through the same two set-based steps:

1. enrol the targeted customers: one ``enrollment`` row per (campaign, customer,
   occurrence), UNIQUE, with the holdout decided by a deterministic hash
   (:mod:`campaigns.sending.assignment`) and recorded;
2. for each step, one ``INSERT ... SELECT`` of deliveries for the active, not held out
   enrolments, ignoring existing send keys (``campaign:step:customer:occurrence``), with
   the A/B variant assigned the same way and recorded on the delivery.

Planning the same occurrence again, from a second scheduler, a retried tick or the event
fast path, adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.sending.assignment import in_holdout_sql, variant_sql
from campaigns.audience.selection import audience_select
from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.config.triggers import DateTrigger, EventTrigger, SegmentEnteredTrigger, StageEnteredTrigger
from campaigns.store.db import COUNT_ROWS, dialect_insert
from campaigns.store.sqltime import plus_interval
from campaigns.store.jsonattr import typed_attribute
from campaigns.store.models import (
    CampaignRun,
    Customer,
    CustomerProfile,
    Delivery,
    Enrollment,
    Event,
    ProfileTransition,
    utcnow,
)


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
        # RETURNING yields the id only when this insert won.
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
    """Enrol the audience of one cron run and write its deliveries; returns the run's count.

    Rows due now are marked as handed to the broker (the caller streams them with
    :func:`~campaigns.sending.ledger.run_batches`); later steps wait for their due time.
    """
    now = now or utcnow()
    audience = audience_select(config, campaign, now=scheduled_at).subquery("audience")
    targets = sa.select(
        audience.c.customer_id,
        audience.c.channel,
        sa.literal(occurrence_key(campaign, scheduled_at)).label("occurrence"),
    ).subquery("targets")
    with engine.begin() as conn:
        _plan(conn, config, campaign, targets, base=scheduled_at, now=now, run_id=run_id, hand_over_due=True)
        # The run's rows, including any that a scheduler which died mid-run had written.
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
    """Deliveries for a ``stage_entered`` / ``segment_entered`` campaign: one enrolment per
    recorded entry (``profile_transition`` row) in ``(now - window, now]`` whose customer is
    in the audience. The entry id is the occurrence (``e<id>``), so each entry sends once
    however many ticks see it; with ``reentry = "never"`` it is ``once``: one series per
    customer, ever. Returns how many deliveries are new.

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
    audience = audience_select(config, campaign, now=now).subquery("audience")
    entries = sa.select(ProfileTransition.id, ProfileTransition.customer_id).where(
        ProfileTransition.kind == kind,
        ProfileTransition.value == value,
        ProfileTransition.entered_at > now - window,
        ProfileTransition.entered_at <= now,
    )
    if kind == "rfm_segment":
        entries = entries.where(ProfileTransition.previous.is_not(None))
    entry = entries.subquery("entries")
    targets = (
        sa.select(audience.c.customer_id, audience.c.channel, _occurrence(campaign, "e", entry.c.id))
        .select_from(entry)
        .join(audience, audience.c.customer_id == entry.c.customer_id)
        .subquery("targets")
    )
    with engine.begin() as conn:
        return _plan(conn, config, campaign, targets, base=now, now=now)


def plan_events(
    engine: Engine,
    config: AppConfig,
    campaign: CampaignConfig,
    *,
    now: datetime,
    window: timedelta,
    event_ids: Sequence[int] | None = None,
) -> int:
    """Deliveries for an ``event`` campaign: one enrolment per matching event (its name,
    occurred in ``(now - window, now]``) whose customer is in the audience; returns how
    many deliveries are new.

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
    audience = audience_select(config, campaign, now=now).subquery("audience")
    events = sa.select(Event.id, Event.customer_id, Event.occurred_at).where(
        Event.name == trigger.event, Event.occurred_at > now - window, Event.occurred_at <= now
    )
    if event_ids is not None:
        events = events.where(Event.id.in_(list(event_ids)))
    event = events.subquery("events")
    targets = (
        sa.select(
            audience.c.customer_id,
            audience.c.channel,
            _occurrence(campaign, "ev", event.c.id),
            event.c.occurred_at.label("base"),
        )
        .select_from(event)
        .join(audience, audience.c.customer_id == event.c.customer_id)
        .subquery("targets")
    )
    with engine.begin() as conn:
        return _plan(conn, config, campaign, targets, base=targets.c.base, now=now)


def plan_dates(engine: Engine, config: AppConfig, campaign: CampaignConfig, *, now: datetime) -> int:
    """Deliveries for a ``date`` campaign: customers whose date (an attribute, or the first
    order's anniversary) is ``days_before`` days after their local today, once their local
    clock has passed ``at``. Customers are taken per time zone (one query per distinct zone,
    never per customer); the occurrence is the date (``d20260608``), so each date fires once.
    Returns how many deliveries are new.
    """
    trigger = campaign.trigger
    if not isinstance(trigger, DateTrigger):
        raise ValueError(f"campaign {campaign.name} is not triggered by dates")
    with engine.connect() as conn:
        zones = list(conn.execute(sa.select(Customer.timezone).distinct()).scalars())
    at = time.fromisoformat(trigger.at)
    planned = 0
    for zone_name in zones:
        zone = _zone_or(zone_name, campaign.zone)
        local = now.astimezone(zone)
        if local.time() < at:
            continue
        target = local.date() + timedelta(days=trigger.days_before)
        if trigger.date == "first_order":
            first = CustomerProfile.__table__.c.first_order_at
            # The UTC calendar date of the first order, whatever the session's time zone.
            stored = (
                sa.func.to_char(sa.func.timezone("UTC", first), "YYYY-MM-DD")
                if engine.dialect.name == "postgresql" else sa.cast(first, sa.String)
            )
        else:
            stored = typed_attribute(Customer.__table__.c.attributes, trigger.date.split(".", 1)[1], "str")
        # Dates are compared as 'YYYY-MM-DD' text (month-day only for annual dates), which
        # both databases produce from an ISO attribute or a timestamp cast to text.
        matches = (
            sa.func.substr(stored, 6, 5) == target.strftime("%m-%d")
            if trigger.annual else sa.func.substr(stored, 1, 10) == target.isoformat()
        )
        in_zone = Customer.timezone.is_(None) if zone_name is None else Customer.timezone == zone_name
        audience = audience_select(config, campaign, now=now).subquery("audience")
        occurrence = "once" if campaign.reentry == "never" else f"d{target:%Y%m%d}"
        targets = (
            sa.select(audience.c.customer_id, audience.c.channel, sa.literal(occurrence).label("occurrence"))
            .select_from(audience)
            .join(Customer, Customer.id == audience.c.customer_id)
            .outerjoin(CustomerProfile, CustomerProfile.customer_id == Customer.id)
            .where(in_zone, matches)
            .subquery("targets")
        )
        with engine.begin() as conn:
            planned += _plan(conn, config, campaign, targets, base=now, now=now)
    return planned


def _zone_or(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def _occurrence(campaign: CampaignConfig, prefix: str, entity_id: sa.ColumnElement[int]) -> sa.ColumnElement[str]:
    if campaign.reentry == "never":
        return sa.literal("once").label("occurrence")
    return (sa.literal(prefix) + sa.cast(entity_id, sa.String)).label("occurrence")


_DELIVERY_COLUMNS = [
    "send_key", "run_id", "campaign", "step", "customer_id", "channel", "template", "variant",
    "enrollment_id", "status", "attempts", "due_at", "dispatch_after", "created_at", "updated_at",
]


def _plan(
    conn: sa.Connection,
    config: AppConfig,
    campaign: CampaignConfig,
    targets: sa.Subquery,
    *,
    base: datetime | sa.ColumnElement[datetime],
    now: datetime,
    run_id: int | None = None,
    hand_over_due: bool = False,
) -> int:
    """Enrol ``targets`` (customer_id, channel, occurrence) and write their deliveries;
    returns how many deliveries are new.

    ``base`` is when the occurrence happened (a constant, or a column of ``targets``):
    enrolment time and the origin of step delays. With ``hand_over_due`` rows already due
    are marked as handed to the broker, for the caller to enqueue at once.
    """
    time_type = Delivery.__table__.c.due_at.type
    created = utcnow()
    base_value = sa.literal(base, type_=time_type) if isinstance(base, datetime) else base
    held_out = (
        in_holdout_sql(targets.c.customer_id, campaign.name, campaign.holdout) if campaign.holdout else sa.false()
    )
    enrol = sa.select(
        sa.literal(campaign.name),
        targets.c.customer_id,
        targets.c.occurrence,
        base_value,
        held_out,
        sa.case((held_out, sa.literal("held_out")), else_=sa.literal("active")),
    ).where(sa.literal_column("1") == 1)  # SQLite needs a WHERE before ON CONFLICT
    if campaign.reentry_after is not None:
        # Re-entry only once the previous enrolment is old enough.
        earlier = Enrollment.__table__.alias("earlier")
        since = (
            sa.literal(base - campaign.reentry_after, type_=time_type)
            if isinstance(base, datetime)
            else plus_interval(conn.dialect.name, base, -campaign.reentry_after, time_type)
        )
        enrol = enrol.where(~sa.exists().where(
            earlier.c.campaign == campaign.name,
            earlier.c.customer_id == targets.c.customer_id,
            earlier.c.occurrence != targets.c.occurrence,
            earlier.c.enrolled_at > since,
        ))
    conn.execute(
        dialect_insert(conn, Enrollment.__table__)
        .from_select(["campaign", "customer_id", "occurrence", "enrolled_at", "holdout", "state"], enrol)
        .on_conflict_do_nothing(index_elements=["campaign", "customer_id", "occurrence"])
    )
    enrollment = Enrollment.__table__
    joined = targets.join(
        enrollment,
        sa.and_(
            enrollment.c.campaign == campaign.name,
            enrollment.c.customer_id == targets.c.customer_id,
            enrollment.c.occurrence == targets.c.occurrence,
        ),
    )
    inserted = 0
    for step_index, step in enumerate(campaign.steps):
        if isinstance(base, datetime):
            due_value = base + step.delay
            due: sa.ColumnElement[datetime] = sa.literal(due_value, type_=time_type)
            handed = hand_over_due and due_value <= now
            dispatch = sa.literal(now + config.worker.lease if handed else due_value, type_=time_type)
        else:
            due = dispatch = plus_interval(conn.dialect.name, base, step.delay, time_type)
        if step.variants:
            variant: sa.ColumnElement[int] = variant_sql(
                targets.c.customer_id, campaign.name, step_index, [v.weight for v in step.variants]
            )
            template: sa.ColumnElement[str] = sa.case(
                *[(variant == index, sa.literal(v.template)) for index, v in enumerate(step.variants)]
            )
        else:
            variant, template = sa.null(), sa.literal(step.template)
        send_key = (
            sa.literal(f"{campaign.name}:{step_index}:")
            + sa.cast(targets.c.customer_id, sa.String)
            + sa.literal(":")
            + targets.c.occurrence
        )
        rows = (
            sa.select(
                send_key,
                sa.literal(run_id, type_=sa.Integer),
                sa.literal(campaign.name),
                sa.literal(step_index),
                targets.c.customer_id,
                targets.c.channel,
                template,
                variant,
                enrollment.c.id,
                sa.literal("queued"),
                sa.literal(0),
                due,
                dispatch,
                sa.literal(created, type_=time_type),
                sa.literal(created, type_=time_type),
            )
            .select_from(joined)
            .where(enrollment.c.holdout.is_(sa.false()), enrollment.c.state == "active")
        )
        inserted += conn.execute(
            dialect_insert(conn, Delivery.__table__)
            .from_select(_DELIVERY_COLUMNS, rows)
            .on_conflict_do_nothing(index_elements=["send_key"]),
            execution_options=COUNT_ROWS,
        ).rowcount
    return inserted
