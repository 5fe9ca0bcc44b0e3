"""stage_entered and segment_entered campaigns through the real scheduler and worker path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.customers.profiles import recompute_profiles
from campaigns.project.loading import load_config
from campaigns.store.models import Customer, Delivery, Order
from tests.conftest import grant_consent
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime

DAY0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def runtime(tmp_path, sqlite_url):
    (tmp_path / "templates" / "wb").mkdir(parents=True)
    (tmp_path / "templates" / "wb" / "m.txt.j2").write_text("We miss you, {{ customer.external_id }}")
    (tmp_path / "config.toml").write_text(f"""
[database]
url = "{sqlite_url}"
[profiles]
cron = ""
[channels.mail]
kind = "outbox"
dir = "out"
[[campaigns]]
name = "win_back"
trigger = {{ stage_entered = "at_risk" }}
channels = ["mail"]
reentry = "every_run"
[[campaigns.steps]]
template = "wb/m"
""")
    config = load_config(tmp_path / "config.toml")
    rt = Runtime.from_config(config)
    yield rt
    rt.close()


def add(engine, external_id: str, *order_days_before_day0: int) -> int:
    with engine.begin() as conn:
        customer_id = conn.execute(sa.insert(Customer.__table__).values(
            external_id=external_id, email=f"{external_id}@x.cn", created_at=DAY0 - timedelta(days=400),
            updated_at=DAY0, attributes={}).returning(Customer.__table__.c.id)).scalar_one()
        for n, days in enumerate(order_days_before_day0):
            conn.execute(sa.insert(Order.__table__).values(order_id=f"{external_id}{n}", customer_id=customer_id,
                                                           ordered_at=DAY0 - timedelta(days=days), amount=10))
    grant_consent(engine, now=DAY0, external_ids=[external_id])
    return customer_id


def tick(workers, moment) -> None:
    """A scheduler tick at ``moment``, with the workers' clock at the same moment."""
    workers.runtime.clock = lambda: moment
    workers.tick(moment)


def sent_to(engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(Customer.external_id).join(Delivery, Delivery.customer_id == Customer.id)
                                   .where(Delivery.status == "sent")).scalars())


def test_each_entry_into_at_risk_sends_once_and_old_lapses_do_not_fire(runtime):
    engine, config = runtime.engine, runtime.config
    add(engine, "long_gone", 300)        # at risk long ago, churned now: must not fire
    add(engine, "lapsing", 89)           # crosses the 90-day line tomorrow
    add(engine, "fresh", 5)
    workers = InProcessWorkers(runtime=runtime)
    with workers.running():
        # Day 0: baseline profiles, nobody newly at risk.
        recompute_profiles(engine, config, as_of=DAY0)
        tick(workers, DAY0)
        assert sent_to(engine) == []
        # Day 1: "lapsing" enters at_risk; the campaign sends once, however often we tick.
        day1 = DAY0 + timedelta(days=1, hours=1)
        recompute_profiles(engine, config, as_of=day1)
        tick(workers, day1)
        tick(workers, day1 + timedelta(minutes=5))
        recompute_profiles(engine, config, as_of=day1 + timedelta(minutes=10))
        tick(workers, day1 + timedelta(minutes=10))
        assert sent_to(engine) == ["lapsing"]
        # The customer buys again (active), then lapses again: a new entry, a new message.
        with engine.begin() as conn:
            lapsing = conn.execute(sa.select(Customer.id).where(Customer.external_id == "lapsing")).scalar_one()
            conn.execute(sa.insert(Order.__table__).values(order_id="again", customer_id=lapsing,
                                                           ordered_at=day1 + timedelta(days=1), amount=5))
        recompute_profiles(engine, config, as_of=day1 + timedelta(days=2))
        back_at_risk = day1 + timedelta(days=92)  # entered at last order + 90 days = day1 + 91
        recompute_profiles(engine, config, as_of=back_at_risk)
        tick(workers, back_at_risk)
    assert sent_to(engine) == ["lapsing", "lapsing"]


def test_with_reentry_never_a_customer_gets_the_campaign_once_ever(runtime):
    engine = runtime.engine
    config = runtime.config.model_copy(update={"campaigns": [
        runtime.config.campaigns[0].model_copy(update={"reentry": "never"})]})
    runtime.config = config
    customer = add(engine, "lapsing", 89)
    with InProcessWorkers(runtime=runtime).running() as workers:
        recompute_profiles(engine, config, as_of=DAY0)
        day1 = DAY0 + timedelta(days=1, hours=1)
        recompute_profiles(engine, config, as_of=day1)
        tick(workers, day1)
        with engine.begin() as conn:
            conn.execute(sa.insert(Order.__table__).values(order_id="again", customer_id=customer,
                                                           ordered_at=day1 + timedelta(days=1), amount=5))
        recompute_profiles(engine, config, as_of=day1 + timedelta(days=2))
        later = day1 + timedelta(days=92)
        recompute_profiles(engine, config, as_of=later)
        tick(workers, later)
    assert sent_to(engine) == ["lapsing"]
