"""Every campaign at a glance (``nurture campaigns``): what starts it and when it next
runs, whether it is active, paused (and why) or disabled, how many are enrolled, what it
sent today in its own time zone, what waits or failed, and its last error.

A few grouped queries whatever the number of campaigns or rows; test sends are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.config.triggers import (
    CronTrigger,
    DateTrigger,
    EventTrigger,
    FeedbackTrigger,
    PointsExpiringTrigger,
    SegmentEnteredTrigger,
    StageEnteredTrigger,
    TierEnteredTrigger,
)
from campaigns.sending.control import PAUSED_BY_HAND
from campaigns.sending.cron import next_cron_slot
from campaigns.sending.messages import Outcome
from campaigns.store.models import CampaignState, Delivery, DeliveryAttempt, Enrollment

#: Attempt outcomes that are errors of the campaign (not of one customer's address, and
#: not a deferral): what "last error" shows.
ERROR_OUTCOMES = (Outcome.RETRY.value, Outcome.PERMANENT.value, Outcome.HALT.value)


@dataclass(frozen=True)
class CampaignOverview:
    """One campaign's line in ``nurture campaigns``."""

    name: str
    purpose: str
    #: What starts it, in a few words (``cron 0 10 * * * (Asia/Shanghai)``).
    trigger: str
    #: active, paused or disabled.
    state: str
    #: Why it is paused (a provider's halt answer, or the reason given by hand).
    paused_reason: str | None
    #: The next cron slot, in the campaign's time zone; None for other triggers and while
    #: the campaign is paused or disabled.
    next_run: datetime | None
    #: When it next plans, in words: the slot, "on each signup event", "never (disabled)" ...
    next: str
    #: Customers enrolled (every occurrence), and of those held out of every message.
    enrolled: int
    held_out: int
    #: Messages sent during the campaign's local day that holds ``now``.
    sent_today: int
    #: Messages waiting (due later, deferred, or held by a pause) and failed for good.
    queued: int
    failed: int
    #: The latest provider or render error of its sends, and when it happened.
    last_error: str | None
    last_error_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict (times stay datetimes; the caller formats them)."""
        return asdict(self)


def describe_trigger(campaign: CampaignConfig) -> str:
    """What starts ``campaign``, in a few words."""
    trigger = campaign.trigger
    if isinstance(trigger, CronTrigger):
        return f"cron {trigger.cron} ({campaign.timezone})"
    if isinstance(trigger, StageEnteredTrigger):
        return f"enters stage {trigger.stage_entered}"
    if isinstance(trigger, SegmentEnteredTrigger):
        return f"enters segment {trigger.segment_entered}"
    if isinstance(trigger, TierEnteredTrigger):
        return f"enters tier {trigger.tier_entered}"
    if isinstance(trigger, PointsExpiringTrigger):
        lead = trigger.points_expiring
        days = f"{lead.days} days" if lead == timedelta(days=lead.days) else str(lead)
        return f"points expiring within {days}"
    if isinstance(trigger, EventTrigger):
        return f"event {trigger.event}"
    if isinstance(trigger, FeedbackTrigger):
        return f"survey answer of a {trigger.feedback}"
    if isinstance(trigger, DateTrigger):
        before = f"{trigger.days_before} days before " if trigger.days_before else ""
        return f"{before}{trigger.date}{' (yearly)' if trigger.annual else ''} at {trigger.at}"
    return "manual (nurture run)"


def local_day(campaign: CampaignConfig, now: datetime) -> tuple[datetime, datetime]:
    """The campaign's local day holding ``now``, as a UTC [start, end) pair (23 or 25
    hours long across a DST change)."""
    zone = campaign.zone
    today = now.astimezone(zone).date()
    start = datetime.combine(today, time(0), tzinfo=zone)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _next(campaign: CampaignConfig, state: str, now: datetime) -> tuple[datetime | None, str]:
    if state == "disabled":
        return None, "never (disabled)"
    if state == "paused":
        return None, "nothing until resumed"
    trigger = campaign.trigger
    if isinstance(trigger, CronTrigger):
        slot = next_cron_slot(trigger.cron, campaign.zone, now)
        if slot is None:
            return None, "no slot within 50 years"
        local = slot.astimezone(campaign.zone)
        return local, f"{local:%Y-%m-%d %H:%M} {campaign.timezone}"
    if isinstance(trigger, StageEnteredTrigger):
        return None, "at each profile recompute"
    if isinstance(trigger, SegmentEnteredTrigger):
        return None, "at each profile recompute"
    if isinstance(trigger, TierEnteredTrigger):
        return None, "at each tier recompute (the loyalty daily job)"
    if isinstance(trigger, PointsExpiringTrigger):
        return None, "at each scheduler tick, once per lot"
    if isinstance(trigger, EventTrigger):
        return None, f"on each {trigger.event} event"
    if isinstance(trigger, FeedbackTrigger):
        return None, f"at each scheduler tick, once per {trigger.feedback}'s answer"
    if isinstance(trigger, DateTrigger):
        return None, f"daily, from {trigger.at} customer time"
    return None, f"by hand (nurture run {campaign.name})"


def campaigns_overview(engine: Engine, config: AppConfig, *, now: datetime) -> list[CampaignOverview]:
    """Every campaign of ``config``, in config order, as seen at ``now``."""
    names = [campaign.name for campaign in config.campaigns]
    if not names:
        return []
    real = sa.not_(Delivery.is_test)  # test sends are the marketer's, not the campaign's
    with engine.connect() as conn:
        paused = dict(conn.execute(
            sa.select(CampaignState.campaign, CampaignState.paused_reason)
            .where(CampaignState.paused, CampaignState.campaign.in_(names))
        ).all())
        enrolled: dict[tuple[str, bool], int] = {
            (row[0], bool(row[1])): row[2] for row in conn.execute(
                sa.select(Enrollment.campaign, Enrollment.holdout, sa.func.count())
                .where(Enrollment.campaign.in_(names))
                .group_by(Enrollment.campaign, Enrollment.holdout))
        }
        statuses: dict[tuple[str, str], int] = {
            (row[0], row[1]): row[2] for row in conn.execute(
                sa.select(Delivery.campaign, Delivery.status, sa.func.count())
                .where(Delivery.campaign.in_(names), Delivery.status.in_(["queued", "failed"]), real)
                .group_by(Delivery.campaign, Delivery.status))
        }
        # Each campaign has its own local day: one condition per campaign, one query.
        days = [
            sa.and_(Delivery.campaign == campaign.name, Delivery.sent_at >= start, Delivery.sent_at < end)
            for campaign in config.campaigns
            for start, end in [local_day(campaign, now)]
        ]
        sent_today = dict(conn.execute(
            sa.select(Delivery.campaign, sa.func.count())
            .where(Delivery.status == "sent", real, sa.or_(*days))
            .group_by(Delivery.campaign)
        ).all())
        errors = _last_errors(conn, names)
    overview = []
    for campaign in config.campaigns:
        name = campaign.name
        state = "disabled" if not campaign.enabled else "paused" if name in paused else "active"
        next_run, next_text = _next(campaign, state, now)
        error, error_at = errors.get(name, (None, None))
        overview.append(CampaignOverview(
            name=name,
            purpose=campaign.purpose,
            trigger=describe_trigger(campaign),
            state=state,
            paused_reason=(paused[name] or PAUSED_BY_HAND) if name in paused else None,
            next_run=next_run,
            next=next_text,
            enrolled=enrolled.get((name, False), 0) + enrolled.get((name, True), 0),
            held_out=enrolled.get((name, True), 0),
            sent_today=sent_today.get(name, 0),
            queued=statuses.get((name, "queued"), 0),
            failed=statuses.get((name, "failed"), 0),
            last_error=error,
            last_error_at=error_at,
        ))
    return overview


def _last_errors(conn: sa.Connection, names: list[str]) -> dict[str, tuple[str, datetime]]:
    """The latest error attempt of each campaign: its text and when it ended."""
    attempt = DeliveryAttempt.__table__
    delivery = Delivery.__table__
    joined = attempt.join(delivery, delivery.c.id == attempt.c.delivery_id)
    failing = [delivery.c.campaign.in_(names), attempt.c.outcome.in_(ERROR_OUTCOMES), sa.not_(delivery.c.is_test)]
    latest = (
        sa.select(delivery.c.campaign, sa.func.max(attempt.c.finished_at).label("at"))
        .select_from(joined).where(*failing).group_by(delivery.c.campaign).subquery("latest")
    )
    rows = conn.execute(
        sa.select(delivery.c.campaign, attempt.c.error, attempt.c.code, attempt.c.finished_at)
        .select_from(joined.join(latest, sa.and_(latest.c.campaign == delivery.c.campaign,
                                                 latest.c.at == attempt.c.finished_at)))
        .where(*failing)
        .order_by(attempt.c.id.desc())
    ).all()
    errors: dict[str, tuple[str, datetime]] = {}
    for campaign, error, code, finished_at in rows:
        # Ties at the same moment: the latest attempt written wins (rows come newest first).
        errors.setdefault(campaign, (error or f"code {code}", _aware(finished_at)))
    return errors


def _aware(moment: datetime) -> datetime:
    # SQLite hands back what it stored; a naive value there is UTC (see store.models).
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


__all__ = ["ERROR_OUTCOMES", "CampaignOverview", "campaigns_overview", "describe_trigger", "local_day"]
