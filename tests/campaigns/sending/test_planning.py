"""Planning (campaigns.sending.planning): a run is claimed once, planning writes one
delivery row per customer and step however often it runs, re-entry after N days, and
date triggers (birthdays, N days before an attribute date, first-order anniversaries,
each at the configured hour of the customer's own local day)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.customers.profiles import recompute_profiles
from campaigns.project.loading import load_config
from campaigns.sending.planning import claim_run, plan_dates, plan_run
from campaigns.store.models import Customer, Delivery, Enrollment, Order
from tests.campaigns.five_customers import NOW, config_with, people  # noqa: F401 (people: fixture)
from tests.conftest import grant_consent
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime


def test_planning_writes_one_row_per_customer_and_step_and_replanning_adds_nothing(people):
    config = config_with("min_orders = 1")
    campaign = config.campaigns[0]
    run_id = claim_run(people, "c", NOW, lease=timedelta(minutes=5))
    assert run_id is not None
    assert claim_run(people, "c", NOW, lease=timedelta(minutes=5)) is None  # already claimed

    first = plan_run(people, config, campaign, run_id=run_id, scheduled_at=NOW)
    second = plan_run(people, config, campaign, run_id=run_id, scheduled_at=NOW)

    with people.connect() as conn:
        rows = conn.execute(sa.select(Delivery.send_key, Delivery.step, Delivery.due_at)).all()
    assert first.planned == second.planned == len(rows) == 6  # ann, bob, dan x 2 steps
    assert {row.due_at for row in rows if row.step == 1} == {NOW + timedelta(days=2)}
    assert len({row.send_key for row in rows}) == 6


def test_a_run_left_in_planning_is_taken_over_after_its_lease(people):
    first = claim_run(people, "c", NOW, lease=timedelta(seconds=0))
    # With a zero lease the abandoned claim is immediately stale and can be taken over once.
    taken = claim_run(people, "c", NOW, lease=timedelta(seconds=0))
    assert first is not None and taken == first


def test_reentry_after_lets_a_customer_back_in_only_once_enough_time_has_passed(tmp_path, sqlite_url):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "m.txt.j2").write_text("hi")
    (tmp_path / "config.toml").write_text(f"""
[database]
url = "{sqlite_url}"
[profiles]
cron = ""
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "lapsed"
trigger = {{ cron = "0 10 * * *" }}
channels = ["mail"]
reentry = "every_run"
reentry_after = "30d"
  [campaigns.audience]
  last_order_more_than_days = 90
  [[campaigns.steps]]
  template = "m"
""")
    config = load_config(tmp_path / "config.toml")
    day0 = datetime(2026, 6, 1, 10, 1, tzinfo=UTC)
    now = [day0]
    runtime = Runtime.from_config(config, clock=lambda: now[0])
    with runtime.engine.begin() as conn:
        cid = conn.execute(sa.insert(Customer.__table__).values(external_id="x", email="x@x.cn", created_at=day0,
                                                               updated_at=day0, attributes={})
                           .returning(Customer.__table__.c.id)).scalar_one()
        conn.execute(sa.insert(Order.__table__).values(order_id="o", customer_id=cid, amount=1,
                                                       ordered_at=day0 - timedelta(days=200)))
    grant_consent(runtime.engine, now=day0)
    with InProcessWorkers(runtime=runtime).running() as workers:
        for days in (0, 1, 29, 31):
            now[0] = day0 + timedelta(days=days)
            workers.tick(now[0])
    with runtime.engine.connect() as conn:
        enrolled = [row.enrolled_at.date().isoformat() for row in conn.execute(
            sa.select(Enrollment.enrolled_at).order_by(Enrollment.enrolled_at))]
        sent = conn.execute(sa.select(sa.func.count()).select_from(Delivery).where(Delivery.status == "sent")).scalar()
    runtime.close()
    assert enrolled == ["2026-06-01", "2026-07-02"]
    assert sent == 2


# Date triggers


def project(tmp_path, sqlite_url, trigger: str):
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "m.txt.j2").write_text("hi")
    (tmp_path / "config.toml").write_text(f"""
[database]
url = "{sqlite_url}"
[channels.mail]
kind = "outbox"
[[campaigns]]
name = "dated"
timezone = "UTC"
trigger = {trigger}
channels = ["mail"]
reentry = "every_run"
  [[campaigns.steps]]
  template = "m"
""")
    return load_config(tmp_path / "config.toml")


def add(engine, name: str, *, zone: str | None, **attributes) -> int:
    with engine.begin() as conn:
        customer_id = conn.execute(sa.insert(Customer.__table__).values(
            external_id=name, email=f"{name}@x.cn", timezone=zone, attributes=attributes,
            created_at=datetime(2024, 1, 1, tzinfo=UTC), updated_at=datetime(2024, 1, 1, tzinfo=UTC),
        ).returning(Customer.__table__.c.id)).scalar_one()
    grant_consent(engine, now=datetime(2024, 1, 1, tzinfo=UTC), external_ids=[name])
    return customer_id


def targeted(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(Customer.external_id).join(Delivery, Delivery.customer_id == Customer.id))
                   .scalars())


def test_birthdays_fire_at_nine_local_once_per_year(tmp_path, sqlite_url, sqlite_engine):
    config = project(tmp_path, sqlite_url, '{ date = "attributes.birthday", annual = true, at = "09:00" }')
    add(sqlite_engine, "sh", zone="Asia/Shanghai", birthday="1990-06-02")
    add(sqlite_engine, "ny", zone="America/New_York", birthday="1985-06-02")
    add(sqlite_engine, "other_day", zone="Asia/Shanghai", birthday="1990-06-03")
    add(sqlite_engine, "no_birthday", zone=None)
    add(sqlite_engine, "not_a_date", zone=None, birthday=19900602)

    # 01:30 UTC on 2 June: 09:30 in Shanghai (fires), 21:30 on 1 June in New York (not yet).
    first = plan_dates(sqlite_engine, config, config.campaigns[0], now=datetime(2026, 6, 2, 1, 30, tzinfo=UTC))
    assert targeted(sqlite_engine) == {"sh"} and first == 1
    # 13:30 UTC: 09:30 in New York on 2 June; Shanghai's delivery is not repeated.
    second = plan_dates(sqlite_engine, config, config.campaigns[0], now=datetime(2026, 6, 2, 13, 30, tzinfo=UTC))
    assert targeted(sqlite_engine) == {"sh", "ny"} and second == 1
    assert plan_dates(sqlite_engine, config, config.campaigns[0], now=datetime(2026, 6, 2, 14, 0, tzinfo=UTC)) == 0


def test_points_expiry_reminder_fires_seven_days_before_the_date(tmp_path, sqlite_url, sqlite_engine):
    config = project(tmp_path, sqlite_url, '{ date = "attributes.points_expire_on", days_before = 7 }')
    add(sqlite_engine, "soon", zone=None, points_expire_on="2026-06-09")
    add(sqlite_engine, "later", zone=None, points_expire_on="2026-06-10")
    add(sqlite_engine, "last_year", zone=None, points_expire_on="2025-06-09")

    plan_dates(sqlite_engine, config, config.campaigns[0], now=datetime(2026, 6, 2, 9, 5, tzinfo=UTC))

    assert targeted(sqlite_engine) == {"soon"}


def test_first_order_anniversary(tmp_path, sqlite_url, sqlite_engine):
    config = project(tmp_path, sqlite_url, '{ date = "first_order", annual = true }')
    now = datetime(2026, 6, 2, 10, 0, tzinfo=UTC)
    for name, first in (("a", datetime(2024, 6, 2, 15, 0, tzinfo=UTC)), ("b", datetime(2024, 6, 3, 8, 0, tzinfo=UTC))):
        customer = add(sqlite_engine, name, zone=None)
        with sqlite_engine.begin() as conn:
            conn.execute(sa.insert(Order.__table__).values(order_id=name, customer_id=customer, amount=5,
                                                           ordered_at=first))
    recompute_profiles(sqlite_engine, config, as_of=now)

    plan_dates(sqlite_engine, config, config.campaigns[0], now=now)

    assert targeted(sqlite_engine) == {"a"}


@pytest.mark.parametrize("bad", ['{ date = "birthday" }', '{ date = "attributes.b", at = "9am" }'])
def test_bad_date_triggers_are_config_errors(tmp_path, sqlite_url, bad):
    from campaigns.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        project(tmp_path, sqlite_url, bad)
    assert "campaigns[0].trigger" in str(caught.value)
