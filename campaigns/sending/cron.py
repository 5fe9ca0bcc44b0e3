"""When cron-triggered campaigns are due: pure functions over croniter and zoneinfo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from campaigns.config.campaigns import CampaignConfig
from campaigns.config.triggers import CronTrigger


def latest_slot(campaign: CampaignConfig, now: datetime) -> datetime | None:
    """The most recent cron slot at or before ``now``, evaluated in the campaign's time zone
    (so ``0 10 * * *`` means 10:00 local, across DST changes), returned in UTC; None when
    there is none within croniter's 50-year search."""
    assert isinstance(campaign.trigger, CronTrigger)
    return latest_cron_slot(campaign.trigger.cron, campaign.zone, now)


def latest_cron_slot(cron: str, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The most recent slot of ``cron`` in ``zone`` at or before ``now``, in UTC, or None
    when there is none within croniter's 50-year search.

    ``nurture check`` refuses crons that never fire; None keeps a scheduler running on an
    unchecked config (the error used to end the scheduler, every tick).
    """
    local_now = now.astimezone(zone)
    try:
        itr = croniter(cron, local_now + timedelta(microseconds=1))
        previous = itr.get_prev(datetime)
    except (CroniterError, OverflowError):
        return None
    return previous.astimezone(UTC)


def next_cron_slot(cron: str, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The first slot of ``cron`` in ``zone`` strictly after ``now``, in UTC, or None when
    there is none within croniter's 50-year search (what ``nurture campaigns`` shows as
    the next run)."""
    try:
        following = croniter(cron, now.astimezone(zone)).get_next(datetime)
    except (CroniterError, OverflowError):
        return None
    return following.astimezone(UTC)


def due_slot(campaign: CampaignConfig, now: datetime, *, max_lateness: timedelta) -> datetime | None:
    """The slot the scheduler should run now, or None when the latest one is too late.

    Only the latest slot is considered: a scheduler that was down for a week sends one
    run, not seven.
    """
    if not campaign.enabled or not isinstance(campaign.trigger, CronTrigger):
        return None
    slot = latest_slot(campaign, now)
    if slot is None or now - slot > max_lateness:
        return None
    return slot
