"""Tests for campaigns.sending.cron: cron slots in the campaign's time zone, across DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from campaigns.config.campaigns import CampaignConfig
from campaigns.sending.cron import due_slot, latest_slot

NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def campaign(cron: str = "0 10 * * *", timezone: str = "Asia/Shanghai", enabled: bool = True) -> CampaignConfig:
    return CampaignConfig(
        name="c",
        timezone=timezone,
        enabled=enabled,
        trigger={"cron": cron},
        channels=["email"],
        steps=[{"template": "t/x"}],
    )


def test_latest_slot_in_shanghai() -> None:
    c = campaign()
    # 10:05 Shanghai on 2 March 2026 is 02:05 UTC: the slot is 10:00 local = 02:00 UTC.
    slot = latest_slot(c, datetime(2026, 3, 2, 2, 5, tzinfo=UTC))
    assert slot == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    assert slot.utcoffset() == timedelta(0)
    assert slot.astimezone(SHANGHAI).hour == 10


def test_latest_slot_before_todays_slot_is_yesterdays() -> None:
    c = campaign()
    now = datetime(2026, 3, 2, 1, 59, 59, tzinfo=UTC)  # 09:59:59 Shanghai
    assert latest_slot(c, now) == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def test_latest_slot_exactly_at_the_slot_is_that_slot() -> None:
    c = campaign()
    now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    assert latest_slot(c, now) == now


def test_latest_slot_accepts_now_in_any_zone() -> None:
    c = campaign()
    now_local = datetime(2026, 3, 2, 10, 5, tzinfo=SHANGHAI)
    assert latest_slot(c, now_local) == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def test_weekly_cron_in_shanghai() -> None:
    c = campaign(cron="0 9 * * MON")
    # Thursday 5 March 2026; the previous Monday 09:00 Shanghai is 2 March 01:00 UTC.
    assert latest_slot(c, datetime(2026, 3, 5, 12, tzinfo=UTC)) == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected_utc", "expected_offset_h"),
    [
        # Spring forward: Sunday 8 March 2026, 02:00 EST -> 03:00 EDT.
        (datetime(2026, 3, 7, 20, tzinfo=UTC), datetime(2026, 3, 7, 15, tzinfo=UTC), -5),
        (datetime(2026, 3, 8, 16, tzinfo=UTC), datetime(2026, 3, 8, 14, tzinfo=UTC), -4),
        (datetime(2026, 3, 9, 16, tzinfo=UTC), datetime(2026, 3, 9, 14, tzinfo=UTC), -4),
        # 14:30 UTC on 8 March is 10:30 EDT: today's slot already passed (at 14:00 UTC).
        (datetime(2026, 3, 8, 14, 30, tzinfo=UTC), datetime(2026, 3, 8, 14, tzinfo=UTC), -4),
        # Fall back: Sunday 1 November 2026, 02:00 EDT -> 01:00 EST.
        (datetime(2026, 10, 31, 20, tzinfo=UTC), datetime(2026, 10, 31, 14, tzinfo=UTC), -4),
        (datetime(2026, 11, 1, 16, tzinfo=UTC), datetime(2026, 11, 1, 15, tzinfo=UTC), -5),
        (datetime(2026, 11, 2, 16, tzinfo=UTC), datetime(2026, 11, 2, 15, tzinfo=UTC), -5),
        # 14:30 UTC on 1 November is 09:30 EST: today's 10:00 has not come yet.
        (datetime(2026, 11, 1, 14, 30, tzinfo=UTC), datetime(2026, 10, 31, 14, tzinfo=UTC), -4),
    ],
)
def test_latest_slot_is_ten_local_across_dst(
    now: datetime, expected_utc: datetime, expected_offset_h: int
) -> None:
    c = campaign(timezone="America/New_York")
    slot = latest_slot(c, now)
    assert slot == expected_utc
    local = slot.astimezone(NEW_YORK)
    assert (local.hour, local.minute) == (10, 0)
    assert local.utcoffset() == timedelta(hours=expected_offset_h)


def test_consecutive_daily_slots_across_dst_are_23_and_25_hours_apart() -> None:
    c = campaign(timezone="America/New_York")
    spring_before = latest_slot(c, datetime(2026, 3, 7, 20, tzinfo=UTC))
    spring_after = latest_slot(c, datetime(2026, 3, 8, 20, tzinfo=UTC))
    assert spring_after - spring_before == timedelta(hours=23)
    fall_before = latest_slot(c, datetime(2026, 10, 31, 20, tzinfo=UTC))
    fall_after = latest_slot(c, datetime(2026, 11, 1, 20, tzinfo=UTC))
    assert fall_after - fall_before == timedelta(hours=25)


def test_due_slot_within_max_lateness() -> None:
    c = campaign()
    slot = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    assert due_slot(c, slot + timedelta(minutes=5), max_lateness=timedelta(hours=1)) == slot
    assert due_slot(c, slot + timedelta(hours=1), max_lateness=timedelta(hours=1)) == slot


def test_due_slot_is_none_past_max_lateness() -> None:
    c = campaign()
    slot = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    now = slot + timedelta(hours=1, seconds=1)
    assert latest_slot(c, now) == slot
    assert due_slot(c, now, max_lateness=timedelta(hours=1)) is None
    # A scheduler down for days: the latest slot is what counts, not the oldest missed one.
    assert due_slot(c, slot + timedelta(days=3, minutes=1), max_lateness=timedelta(hours=1)) == slot + timedelta(
        days=3
    )


def test_due_slot_is_none_for_a_disabled_campaign() -> None:
    c = campaign(enabled=False)
    now = datetime(2026, 3, 2, 2, 5, tzinfo=UTC)
    assert due_slot(c, now, max_lateness=timedelta(days=1)) is None
    assert due_slot(campaign(enabled=True), now, max_lateness=timedelta(days=1)) == datetime(
        2026, 3, 2, 2, 0, tzinfo=UTC
    )
