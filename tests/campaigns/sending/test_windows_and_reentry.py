"""Send windows (local time, never dropped) and re-entry after N days."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.store.models import Customer, Delivery, Enrollment, Order
from campaigns.sending.policy import next_opening
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime
from tests.conftest import grant_consent

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def test_next_opening_inside_before_after_and_across_midnight():
    nine, nine_pm = time(9), time(21)
    at = lambda text, zone: datetime.fromisoformat(text).replace(tzinfo=zone)  # noqa: E731
    assert next_opening(at("2026-06-01T12:00", SHANGHAI), SHANGHAI, nine, nine_pm) is None
    assert next_opening(at("2026-06-01T07:30", SHANGHAI), SHANGHAI, nine, nine_pm) == at("2026-06-01T09:00", SHANGHAI)
    assert next_opening(at("2026-06-01T22:00", SHANGHAI), SHANGHAI, nine, nine_pm) == at("2026-06-02T09:00", SHANGHAI)
    # A window spanning midnight.
    assert next_opening(at("2026-06-01T01:00", SHANGHAI), SHANGHAI, time(20), time(2)) is None
    assert next_opening(at("2026-06-01T03:00", SHANGHAI), SHANGHAI, time(20), time(2)) == at("2026-06-01T20:00", SHANGHAI)
    # Across the March 2026 DST change in New York: 09:00 local is 13:00 UTC after it.
    opening = next_opening(datetime(2026, 3, 8, 3, 0, tzinfo=UTC), NEW_YORK, nine, nine_pm)
    assert opening == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


def test_a_step_due_outside_its_window_waits_for_the_customers_local_opening(tmp_path, sqlite_url):
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
name = "nightly"
timezone = "UTC"
trigger = {{ cron = "0 23 * * *" }}
channels = ["mail"]
  [[campaigns.steps]]
  template = "m"
  window = "09:00-21:00"
""")
    config = load_config(tmp_path / "config.toml")
    slot = datetime(2026, 6, 1, 23, 0, tzinfo=UTC)  # 07:00 next day in Shanghai, 23:00 in London
    now = [slot + timedelta(minutes=1)]
    runtime = Runtime.from_config(config, clock=lambda: now[0])
    with runtime.engine.begin() as conn:
        for name, zone in (("sh", "Asia/Shanghai"), ("ld", "Europe/London")):
            conn.execute(sa.insert(Customer.__table__).values(external_id=name, email=f"{name}@x.cn", timezone=zone,
                                                             created_at=slot, updated_at=slot, attributes={}))
    grant_consent(runtime.engine, now=slot)
    with InProcessWorkers(runtime=runtime).running() as workers:
        workers.tick(now[0])
        with runtime.engine.connect() as conn:
            rows = {r.external_id: r for r in conn.execute(
                sa.select(Customer.external_id, Delivery.status, Delivery.due_at)
                .join(Delivery, Delivery.customer_id == Customer.id))}
        # Both are outside 09-21 local: Shanghai opens at 01:00 UTC, London at 08:00 UTC.
        assert rows["sh"].status == rows["ld"].status == "queued"
        assert rows["sh"].due_at == datetime(2026, 6, 2, 1, 0, tzinfo=UTC)
        assert rows["ld"].due_at == datetime(2026, 6, 2, 8, 0, tzinfo=UTC)
        now[0] = datetime(2026, 6, 2, 1, 0, tzinfo=UTC)
        workers.tick(now[0])
        with runtime.engine.connect() as conn:
            sent = set(conn.execute(sa.select(Customer.external_id).join(Delivery, Delivery.customer_id == Customer.id)
                                    .where(Delivery.status == "sent")).scalars())
        assert sent == {"sh"}
    runtime.close()


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
