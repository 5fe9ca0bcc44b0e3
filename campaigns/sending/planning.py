"""Turning triggers into enrolments and delivery rows, exactly once.

A cron run is claimed by inserting ``campaign_run(campaign, scheduled_at)``, which is
UNIQUE: of two schedulers ticking at once, one wins. Each trigger then picks its targets
(customer, channel, occurrence): the audience of a cron run (:func:`plan_run`), recorded
stage, segment or tier entries (:func:`plan_entries`), events (:func:`plan_events`), dates
(:func:`plan_dates`) or points about to expire (:func:`plan_points_expiring`), and
:func:`campaigns.sending.enrolment.enrol` enrols them and writes their deliveries,
set-based and idempotent.

Planning the same occurrence again, from a second scheduler, a retried tick or the event
fast path, adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.audience.selection import audience_select
from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.config.triggers import (
    DateTrigger,
    EventTrigger,
    PointsExpiringTrigger,
    SegmentEnteredTrigger,
    StageEnteredTrigger,
    TierEnteredTrigger,
)
from campaigns.config.values import zone_named
from campaigns.sending.enrolment import enrol, occurrence_column
from campaigns.store.db import dialect_insert
from campaigns.store.jsonattr import typed_attribute
from campaigns.store.models import (
    CampaignRun,
    Customer,
    CustomerProfile,
    Delivery,
    Enrollment,
    Event,
    PointsLot,
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
        enrol(conn, config, campaign, targets, base=scheduled_at, now=now, run_id=run_id, hand_over_due=True)
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
    """Deliveries for a ``stage_entered`` / ``segment_entered`` / ``tier_entered`` campaign:
    one enrolment per recorded entry (``profile_transition`` row of kind ``stage``,
    ``rfm_segment`` or ``tier``) in ``(now - window, now]`` whose customer is
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
    elif isinstance(trigger, TierEnteredTrigger):
        # Written by the tier recompute of the loyalty daily job (and by earning, which
        # upgrades at once), dated when it moved the member.
        kind, value = "tier", trigger.tier_entered
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
        sa.select(audience.c.customer_id, audience.c.channel, occurrence_column(campaign, "e", entry.c.id))
        .select_from(entry)
        .join(audience, audience.c.customer_id == entry.c.customer_id)
        .subquery("targets")
    )
    with engine.begin() as conn:
        return enrol(conn, config, campaign, targets, base=now, now=now)


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
            occurrence_column(campaign, "ev", event.c.id),
            event.c.occurred_at.label("base"),
        )
        .select_from(event)
        .join(audience, audience.c.customer_id == event.c.customer_id)
        .subquery("targets")
    )
    with engine.begin() as conn:
        return enrol(conn, config, campaign, targets, base=targets.c.base, now=now)


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
        zone = (zone_name and zone_named(zone_name)) or campaign.zone
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
            planned += enrol(conn, config, campaign, targets, base=now, now=now)
    return planned


#: The occurrence prefix of an expiry reminder: ``lot<id>``.
REMINDER_PREFIX = "lot"

# PostgreSQL: the reminder targets of one planning call (lot groups not enrolled at an
# earlier call, in the audience), written once, read by each statement of enrol.
_REMINDER_TARGETS = sa.Table(
    "reminder_targets",
    sa.MetaData(),
    sa.Column("customer_id", sa.Integer),
    sa.Column("channel", sa.String),
    sa.Column("occurrence", sa.String),
    prefixes=["TEMPORARY"],
)


def plan_points_expiring(engine: Engine, config: AppConfig, campaign: CampaignConfig, *, now: datetime) -> int:
    """Deliveries for a ``points_expiring`` campaign (the expiry reminder): customers in the
    audience with an open lot (points left) expiring in ``(now, now + lead time]``, one
    enrolment per lot, all of a customer's lots expiring at the same moment counting as
    one. Returns how many deliveries are new.

    The occurrence is ``lot<id>``, the smallest id among the customer's lots expiring at
    that moment (spent ones too, so the key stays the same when that lot is spent before
    the others): every tick that sees the lots again finds the enrolment written, and a
    lot is reminded once whatever ``reentry`` says; ``reentry_after`` still spaces a
    customer's reminders. Spent, expired and reversed lots have no points left and
    remind nobody. The first step is due at the first tick that sees the lots, later
    steps count from there.

    Only the groups not enrolled at an earlier call are joined to the audience and
    enrolled: at a million members a 7-day window holds ~97k groups, of which a day adds
    ~14k. A group enrolled earlier keeps the steps it was planned with.
    """
    trigger = campaign.trigger
    if not isinstance(trigger, PointsExpiringTrigger):
        raise ValueError(f"campaign {campaign.name} is not triggered by expiring points")
    lots = PointsLot.__table__
    # Open lots by expiry: what the partial index ix_points_lot_open_expires holds.
    expiring = (
        sa.select(lots.c.customer_id, lots.c.expires_at)
        .where(lots.c.remaining > 0, lots.c.expires_at > now, lots.c.expires_at <= now + trigger.points_expiring)
        .group_by(lots.c.customer_id, lots.c.expires_at)
        .subquery("expiring")
    )
    same = lots.alias("same_moment")
    first_lot = (
        sa.select(sa.func.min(same.c.id))
        .where(same.c.customer_id == expiring.c.customer_id, same.c.expires_at == expiring.c.expires_at)
        .scalar_subquery()
    )
    groups = sa.select(
        expiring.c.customer_id,
        (sa.literal(REMINDER_PREFIX) + sa.cast(first_lot, sa.String)).label("occurrence"),
    ).subquery("groups")
    enrollment = Enrollment.__table__
    # "Not enrolled at an earlier call", not "not enrolled": enrol reads its targets once
    # per statement, and the groups this call enrols (enrolled_at = now) must still be
    # there when each step's deliveries are written after the enrolments.
    new_groups = (
        sa.select(groups.c.customer_id, groups.c.occurrence)
        .where(~sa.exists().where(
            enrollment.c.campaign == campaign.name,
            enrollment.c.customer_id == groups.c.customer_id,
            enrollment.c.occurrence == groups.c.occurrence,
            enrollment.c.enrolled_at < now,
        ))
        .subquery("new_groups")
    )
    audience = audience_select(config, campaign, now=now).subquery("audience")
    new_targets = (
        sa.select(audience.c.customer_id, audience.c.channel, new_groups.c.occurrence)
        .select_from(new_groups)
        .join(audience, audience.c.customer_id == new_groups.c.customer_id)
    )
    with engine.begin() as conn:
        if conn.dialect.name != "postgresql":
            # The first statement must write: a SQLite transaction that read first (into a
            # temporary table, say) cannot take the write lock once another connection (the
            # in-process worker threads) has committed, busy timeout or not.
            return enrol(conn, config, campaign, new_targets.subquery("targets"), base=now, now=now)
        # Worked out once, not once per statement of enrol (the enrolments, then each
        # step's deliveries): at 1M members that halves the planning (3.7 s, not 7-8 s).
        _REMINDER_TARGETS.drop(conn, checkfirst=True)
        _REMINDER_TARGETS.create(conn)
        conn.execute(_REMINDER_TARGETS.insert().from_select(["customer_id", "channel", "occurrence"], new_targets))
        planned = enrol(conn, config, campaign, sa.select(_REMINDER_TARGETS).subquery("targets"), base=now, now=now)
        # On an error the rollback takes the table away with the rest.
        _REMINDER_TARGETS.drop(conn)
    return planned


def reminded_lot(send_key: str) -> int | None:
    """The lot id in the occurrence of an expiry reminder's send key
    (``campaign:step:customer:lot<id>``), None for any other key."""
    parts = send_key.split(":")
    if len(parts) != 4 or not parts[3].startswith(REMINDER_PREFIX):
        return None
    digits = parts[3][len(REMINDER_PREFIX):]
    return int(digits) if digits.isdigit() else None
