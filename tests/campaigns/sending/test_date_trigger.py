"""Date triggers: birthdays (annual), N days before an attribute date, first-order
anniversaries, each at the configured hour of the customer's own local day."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.store.models import Customer, Delivery, Order
from campaigns.sending.planning import plan_dates
from campaigns.customers.profiles import recompute_profiles
from tests.conftest import grant_consent


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
