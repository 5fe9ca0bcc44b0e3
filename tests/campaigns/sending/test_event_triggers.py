"""Event triggers: the config key, planning (window, audience, re-entry, series delays) and
the fast path planning just the events recorded (recording itself: tests/campaigns/customers/test_events.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.config.triggers import EventTrigger
from campaigns.errors import ConfigError
from campaigns.project.loading import parse_config
from campaigns.sending.event_triggers import plan_for_events
from campaigns.sending.planning import plan_events
from campaigns.store.models import Customer, Delivery, Event
from tests.conftest import grant_consent

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

CONFIG = """
[database]
url = "{url}"
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "welcome"
trigger = {trigger}
channels = ["mail"]
reentry = "{reentry}"
{audience}
[[campaigns.steps]]
template = "w/hello"
[[campaigns.steps]]
template = "w/tips"
delay = "3d"
"""


def config_for(tmp_path: Path, url: str = "sqlite:///x.db", *, trigger: str = '{ event = "signup" }',
               reentry: str = "never", audience: str = ""):
    (tmp_path / "templates" / "w").mkdir(parents=True, exist_ok=True)
    for name in ("hello", "tips"):
        (tmp_path / "templates" / "w" / f"{name}.txt.j2").write_text("Hi {{ customer.external_id }}")
    text = CONFIG.format(url=url, trigger=trigger, reentry=reentry, audience=audience)
    return parse_config(text, base=tmp_path)


def add_customer(engine, external_id: str, *, email: str | None = "x@example.com", vip: bool = False) -> int:
    with engine.begin() as conn:
        customer_id = conn.execute(sa.insert(Customer.__table__).values(
            external_id=external_id, email=email, created_at=NOW - timedelta(days=1), updated_at=NOW,
            attributes={"vip": vip}).returning(Customer.__table__.c.id)).scalar_one()
    grant_consent(engine, now=NOW, external_ids=[external_id])
    return customer_id


def deliveries(engine) -> list[tuple[str, int, datetime]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(Delivery.send_key, Delivery.step, Delivery.due_at).order_by(Delivery.send_key))]


# --------------------------------------------------------------------------- config


def test_event_trigger_is_accepted(tmp_path):
    config = config_for(tmp_path)
    assert config.campaigns[0].trigger == EventTrigger(event="signup")
    assert config.api.key_env == "NURTURE_API_KEY"
    assert parse_config('[api]\nkey_env = "MY_KEY"\n').api.key_env == "MY_KEY"


def test_empty_event_name_is_rejected(tmp_path):
    with pytest.raises(ConfigError) as error:
        config_for(tmp_path, trigger='{ event = " " }')
    [issue] = error.value.issues
    assert issue.key_path == "campaigns[0].trigger.event"
    assert "event name must not be empty" in issue.message


def test_unknown_trigger_message_lists_every_kind(tmp_path):
    with pytest.raises(ConfigError) as error:
        config_for(tmp_path, trigger='{ when = "signup" }')
    [issue] = error.value.issues
    assert issue.key_path == "campaigns[0].trigger"
    for example in ('cron = "0 10 * * *"', 'stage_entered = "at_risk"', 'segment_entered = "cant_lose"',
                    'event = "signup"'):
        assert example in issue.message


# --------------------------------------------------------------------------- planning


def store(engine, customer_id: int, name: str, occurred_at: datetime, key: str) -> int:
    with engine.begin() as conn:
        return conn.execute(sa.insert(Event.__table__).values(
            customer_id=customer_id, name=name, occurred_at=occurred_at, properties={},
            dedupe_key=key).returning(Event.__table__.c.id)).scalar_one()


def test_plans_events_in_the_window_with_series_delays(tmp_path, sqlite_engine):
    config = config_for(tmp_path)
    campaign = config.campaigns[0]
    ann = add_customer(sqlite_engine, "ann")
    bob = add_customer(sqlite_engine, "bob")
    old = add_customer(sqlite_engine, "old")
    late = add_customer(sqlite_engine, "late")
    at = NOW - timedelta(hours=1)
    store(sqlite_engine, ann, "signup", at, "e1")
    store(sqlite_engine, bob, "review", at, "e2")                              # other event
    store(sqlite_engine, old, "signup", NOW - timedelta(days=2), "e3")         # window edge: excluded
    store(sqlite_engine, late, "signup", NOW + timedelta(seconds=1), "e4")     # after now: not yet
    planned = plan_events(sqlite_engine, config, campaign, now=NOW, window=timedelta(days=2))
    assert planned == 2
    assert deliveries(sqlite_engine) == [
        (f"welcome:0:{ann}:once", 0, at),
        (f"welcome:1:{ann}:once", 1, at + timedelta(days=3)),
    ]
    # A minute later "late" is in the window; planning "ann" again adds nothing.
    assert plan_events(sqlite_engine, config, campaign, now=NOW + timedelta(minutes=1), window=timedelta(days=2)) == 2
    assert {key.split(":")[2] for key, _, _ in deliveries(sqlite_engine)} == {str(ann), str(late)}
    assert plan_events(sqlite_engine, config, campaign, now=NOW + timedelta(minutes=2), window=timedelta(days=2)) == 0


def test_audience_filters_event_customers(tmp_path, sqlite_engine):
    config = config_for(tmp_path, audience="[campaigns.audience]\nattributes = { vip = true }")
    vip = add_customer(sqlite_engine, "vip", vip=True)
    plain = add_customer(sqlite_engine, "plain")
    unreachable = add_customer(sqlite_engine, "nomail", email=None, vip=True)
    for number, customer in enumerate((vip, plain, unreachable)):
        store(sqlite_engine, customer, "signup", NOW - timedelta(minutes=5), f"e{number}")
    plan_events(sqlite_engine, config, config.campaigns[0], now=NOW, window=timedelta(days=1))
    assert {key.split(":")[2] for key, _, _ in deliveries(sqlite_engine)} == {str(vip)}


@pytest.mark.parametrize(("reentry", "expected"), [("never", 2), ("every_run", 4)])
def test_reentry_never_sends_once_every_run_once_per_event(tmp_path, sqlite_engine, reentry, expected):
    config = config_for(tmp_path, reentry=reentry)
    ann = add_customer(sqlite_engine, "ann")
    first = store(sqlite_engine, ann, "signup", NOW - timedelta(hours=2), "e1")
    second = store(sqlite_engine, ann, "signup", NOW - timedelta(hours=1), "e2")
    assert plan_events(sqlite_engine, config, config.campaigns[0], now=NOW, window=timedelta(days=1)) == expected
    keys = [key for key, _, _ in deliveries(sqlite_engine)]
    if reentry == "every_run":
        assert f"welcome:0:{ann}:ev{first}" in keys and f"welcome:0:{ann}:ev{second}" in keys


def test_event_ids_restrict_planning_and_fast_path_returns_due_rows_once(tmp_path, sqlite_engine):
    config = config_for(tmp_path, reentry="every_run")
    ann = add_customer(sqlite_engine, "ann")
    bob = add_customer(sqlite_engine, "bob")
    mine = store(sqlite_engine, ann, "signup", NOW - timedelta(seconds=5), "e1")
    store(sqlite_engine, bob, "signup", NOW - timedelta(seconds=5), "e2")
    due = plan_for_events(sqlite_engine, config, [mine], now=NOW)
    with sqlite_engine.connect() as conn:
        rows = conn.execute(sa.select(Delivery.id, Delivery.customer_id, Delivery.step, Delivery.dispatch_after)
                            .order_by(Delivery.step)).all()
    assert [(r.customer_id, r.step) for r in rows] == [(ann, 0), (ann, 1)]
    assert due == [rows[0].id]                      # only the first step is due now
    assert rows[0].dispatch_after == NOW + config.worker.lease   # handed over: a tick skips it
    assert plan_for_events(sqlite_engine, config, [mine], now=NOW) == []
