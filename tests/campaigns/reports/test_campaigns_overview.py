"""campaigns.reports.campaigns_overview on SQLite, over hand-built ledger rows and a
pinned ``now``: trigger and next run per kind, state (active, paused and why, disabled),
enrolled and held out, sent today in each campaign's own time zone, waiting and failed
rows, and the latest error; test sends count nowhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
import sqlalchemy as sa

from campaigns.project.loading import parse_config
from campaigns.reports.campaigns_overview import campaigns_overview, local_day
from campaigns.sending.control import pause_campaign
from campaigns.store.models import Customer, Delivery, DeliveryAttempt, Enrollment

#: 02:00 on 4 December in Shanghai, still 3 December in UTC.
NOW = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)

CONFIG = """
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "daily_sh"
timezone = "Asia/Shanghai"
trigger = { cron = "0 10 * * *" }
channels = ["mail"]
holdout = 0.2
[[campaigns.steps]]
template = "t"
[[campaigns]]
name = "daily_utc"
trigger = { cron = "30 9 * * MON" }
channels = ["mail"]
[[campaigns.steps]]
template = "t"
[[campaigns]]
name = "welcome"
trigger = { event = "signup" }
channels = ["mail"]
[[campaigns.steps]]
template = "t"
[[campaigns]]
name = "promo"
trigger = { manual = true }
channels = ["mail"]
[[campaigns.steps]]
template = "t"
[[campaigns]]
name = "birthday"
enabled = false
trigger = { date = "attributes.birthday", annual = true }
channels = ["mail"]
[[campaigns.steps]]
template = "t"
"""

KEYS = count()


@pytest.fixture
def config(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.txt.j2").write_text("hi")
    return parse_config(CONFIG, base=tmp_path)


@pytest.fixture
def customer(sqlite_engine) -> int:
    with sqlite_engine.begin() as conn:
        return conn.execute(sa.insert(Customer.__table__).values(
            external_id="c1", email="c1@example.com", created_at=NOW, updated_at=NOW, attributes={},
        ).returning(Customer.__table__.c.id)).scalar_one()


def add_delivery(engine, customer: int, campaign: str, status: str, *, sent_at: datetime | None = None,
                 is_test: bool = False) -> int:
    with engine.begin() as conn:
        return conn.execute(sa.insert(Delivery.__table__).values(
            send_key=f"{campaign}:{next(KEYS)}", campaign=campaign, customer_id=customer, channel="mail",
            template="t", status=status, due_at=NOW - timedelta(days=1), dispatch_after=NOW - timedelta(days=1),
            sent_at=sent_at, is_test=is_test,
        ).returning(Delivery.__table__.c.id)).scalar_one()


def add_attempt(engine, delivery: int, outcome: str, error: str | None, finished_at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(DeliveryAttempt.__table__).values(
            delivery_id=delivery, attempt=1, outcome=outcome, error=error, started_at=finished_at,
            finished_at=finished_at))


def by_name(engine, config, now=NOW):
    return {row.name: row for row in campaigns_overview(engine, config, now=now)}


def test_sent_today_is_the_campaigns_own_local_day(sqlite_engine, config, customer):
    # 23:59 on 3 December and 00:01 on 4 December in Shanghai; both 3 December in UTC.
    before_midnight = datetime(2026, 12, 3, 15, 59, tzinfo=UTC)
    after_midnight = datetime(2026, 12, 3, 16, 1, tzinfo=UTC)
    for campaign in ("daily_sh", "daily_utc"):
        add_delivery(sqlite_engine, customer, campaign, "sent", sent_at=before_midnight)
        add_delivery(sqlite_engine, customer, campaign, "sent", sent_at=after_midnight)
    # A test send "sent" today is the marketer's, not the campaign's.
    add_delivery(sqlite_engine, customer, "daily_sh", "sent", sent_at=after_midnight, is_test=True)

    rows = by_name(sqlite_engine, config)

    assert rows["daily_sh"].sent_today == 1  # Shanghai's 4 December began at 16:00 UTC
    assert rows["daily_utc"].sent_today == 2  # UTC's 3 December holds both
    assert local_day(config.campaign("daily_sh"), NOW) == (
        datetime(2026, 12, 3, 16, 0, tzinfo=UTC), datetime(2026, 12, 4, 16, 0, tzinfo=UTC))
    # A day later in Shanghai, neither counts any more.
    assert by_name(sqlite_engine, config, NOW + timedelta(days=1))["daily_sh"].sent_today == 0


def test_trigger_next_run_and_state_of_each_kind(sqlite_engine, config):
    pause_campaign(sqlite_engine, "welcome", reason="fixing the coupon", now=NOW)

    rows = by_name(sqlite_engine, config)

    assert list(rows) == ["daily_sh", "daily_utc", "welcome", "promo", "birthday"]  # config order
    daily = rows["daily_sh"]
    assert (daily.trigger, daily.state, daily.paused_reason) == ("cron 0 10 * * * (Asia/Shanghai)", "active", None)
    # The next slot in the campaign's zone: 10:00 Shanghai on 4 December, 8 hours ahead.
    assert daily.next_run == datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
    assert daily.next_run.utcoffset() == timedelta(hours=8) and daily.next == "2026-12-04 10:00 Asia/Shanghai"
    # 3 December 2026 is a Thursday: the next Monday 09:30 UTC is 7 December.
    assert rows["daily_utc"].next == "2026-12-07 09:30 UTC"
    welcome = rows["welcome"]
    assert (welcome.state, welcome.paused_reason) == ("paused", "by hand: fixing the coupon")
    assert (welcome.next_run, welcome.next) == (None, "nothing until resumed")
    assert (rows["promo"].trigger, rows["promo"].next) == ("manual (nurture run)", "by hand (nurture run promo)")
    birthday = rows["birthday"]
    assert (birthday.state, birthday.next, birthday.trigger) == (
        "disabled", "never (disabled)", "attributes.birthday (yearly) at 09:00")


def test_enrolled_waiting_failed_and_the_latest_error(sqlite_engine, config, customer):
    with sqlite_engine.begin() as conn:
        conn.execute(sa.insert(Enrollment.__table__), [
            {"campaign": "daily_sh", "customer_id": customer, "occurrence": f"o{n}", "enrolled_at": NOW,
             "holdout": n < 2, "state": "held_out" if n < 2 else "active"} for n in range(7)])
    add_delivery(sqlite_engine, customer, "daily_sh", "queued")
    old = add_delivery(sqlite_engine, customer, "daily_sh", "failed")
    new = add_delivery(sqlite_engine, customer, "daily_sh", "failed")
    add_attempt(sqlite_engine, old, "permanent", "render failed: t: 'None' has no attribute 'strftime'",
                NOW - timedelta(hours=3))
    add_attempt(sqlite_engine, new, "retry", "HTTP 503", NOW - timedelta(hours=1))
    # Neither a send, a deferral nor a test send's failure is the campaign's last error.
    sent = add_delivery(sqlite_engine, customer, "daily_sh", "sent", sent_at=NOW)
    add_attempt(sqlite_engine, sent, "ok", None, NOW)
    add_attempt(sqlite_engine, sent, "defer", "quota", NOW)
    test = add_delivery(sqlite_engine, customer, "daily_sh", "failed", is_test=True)
    add_attempt(sqlite_engine, test, "permanent", "bad test address", NOW)

    daily = by_name(sqlite_engine, config)["daily_sh"]

    assert (daily.enrolled, daily.held_out, daily.queued, daily.failed) == (7, 2, 1, 2)
    assert (daily.last_error, daily.last_error_at) == ("HTTP 503", NOW - timedelta(hours=1))
    quiet = by_name(sqlite_engine, config)["daily_utc"]
    assert (quiet.enrolled, quiet.sent_today, quiet.failed, quiet.last_error) == (0, 0, 0, None)
