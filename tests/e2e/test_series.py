"""Series over simulated days through the real scheduler and worker path: delays, goals
that stop a series, unsubscribes, step conditions, holdout and A/B assignment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.project.loading import load_config
from campaigns.sending.assignment import BUCKETS, bucket, variant_of
from campaigns.store.models import Consent, Customer, Delivery, Enrollment, Order
from tests.conftest import grant_consent
from workers.jobs.inprocess import InProcessWorkers
from workers.jobs.runtime import Runtime

DAY0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: the win-back's cron slot


class Clock:
    """The one clock scheduler and workers read; tests move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def project(tmp_path, sqlite_url):
    for name in ("hello", "tips", "coupon_a", "coupon_b", "miss_you", "last_call"):
        folder = tmp_path / "templates" / "s"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.txt.j2").write_text(f"{name} for {{{{ customer.external_id }}}}")
    (tmp_path / "config.toml").write_text(f"""
[database]
url = "{sqlite_url}"
[profiles]
cron = ""
[worker]
lease = "1m"
[channels.mail]
kind = "outbox"
dir = "out"

[[campaigns]]
name = "win_back"
timezone = "Asia/Shanghai"
trigger = {{ cron = "0 10 * * *" }}
channels = ["mail"]
holdout = 0.2
goal = {{ event = "order", within = "14d" }}
  [campaigns.audience]
  min_orders = 1
  last_order_more_than_days = 90
  [[campaigns.steps]]
  template = "s/miss_you"
  [[campaigns.steps]]
  template = "s/last_call"
  delay = "3d"

[[campaigns]]
name = "welcome"
timezone = "Asia/Shanghai"
trigger = {{ event = "signup" }}
channels = ["mail"]
  [[campaigns.steps]]
  template = "s/hello"
  [[campaigns.steps]]
  template = "s/tips"
  delay = "2d"
  when = "orders_count == 0"
  [[campaigns.steps]]
  delay = "5d"
    [[campaigns.steps.variants]]
    template = "s/coupon_a"
    weight = 1
    [[campaigns.steps.variants]]
    template = "s/coupon_b"
    weight = 1
""")
    return tmp_path


@pytest.fixture
def world(project):
    config = load_config(project / "config.toml")
    clock = Clock(DAY0 + timedelta(minutes=5))
    runtime = Runtime.from_config(config, clock=clock)
    workers = InProcessWorkers(runtime=runtime)
    with workers.running():
        yield runtime, workers, clock
    runtime.close()


def add_customers(engine, count: int, *, last_order_days_ago: int | None) -> dict[str, int]:
    with engine.begin() as conn:
        ids = {}
        for n in range(count):
            external_id = f"C{n:04d}"
            ids[external_id] = conn.execute(sa.insert(Customer.__table__).values(
                external_id=external_id, email=f"c{n}@x.cn", created_at=DAY0 - timedelta(days=500),
                updated_at=DAY0, attributes={}).returning(Customer.__table__.c.id)).scalar_one()
            if last_order_days_ago is not None:
                conn.execute(sa.insert(Order.__table__).values(
                    order_id=f"O{n}", customer_id=ids[external_id], amount=50,
                    ordered_at=DAY0 - timedelta(days=last_order_days_ago)))
    grant_consent(engine, now=DAY0)
    return ids


def statuses(engine, campaign: str) -> dict[tuple[int, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Delivery.step, Delivery.status, sa.func.count())
                            .where(Delivery.campaign == campaign).group_by(Delivery.step, Delivery.status)).all()
    return {(step, status): count for step, status, count in rows}


def advance(workers, clock, days: float) -> None:
    clock.now += timedelta(days=days)
    workers.tick(clock.now)


def test_win_back_holds_out_a_deterministic_share_and_stops_for_those_who_buy(world):
    runtime, workers, clock = world
    engine = runtime.engine
    ids = add_customers(engine, 200, last_order_days_ago=120)
    expected_holdout = {cid for cid in ids.values() if bucket(cid, "win_back", "holdout") < 0.2 * BUCKETS}

    workers.tick(clock.now)
    with engine.connect() as conn:
        held = set(conn.execute(sa.select(Enrollment.customer_id).where(Enrollment.holdout)).scalars())
        states = dict(conn.execute(sa.select(Enrollment.state, sa.func.count()).group_by(Enrollment.state)).all())
    treated = 200 - len(expected_holdout)
    assert held == expected_holdout and 20 < len(held) < 60
    assert states == {"held_out": len(held), "active": treated}
    assert statuses(engine, "win_back") == {(0, "sent"): treated, (1, "queued"): treated}

    # Ten treated customers buy on day 1: their "last call" on day 3 is skipped.
    buyers = sorted(set(ids.values()) - expected_holdout)[:10]
    with engine.begin() as conn:
        for cid in buyers:
            conn.execute(sa.insert(Order.__table__).values(order_id=f"back-{cid}", customer_id=cid, amount=80,
                                                           ordered_at=clock.now + timedelta(days=1)))
    advance(workers, clock, 3)

    assert statuses(engine, "win_back") == {(0, "sent"): treated, (1, "sent"): treated - 10, (1, "skipped"): 10}
    with engine.connect() as conn:
        ended = dict(conn.execute(sa.select(Enrollment.state, sa.func.count()).group_by(Enrollment.state)).all())
        reasons = set(conn.execute(sa.select(Delivery.last_error).where(Delivery.status == "skipped")).scalars())
    assert ended == {"held_out": len(held), "exited_goal": 10, "completed": treated - 10}
    assert reasons == {"goal reached (order)"}

    # The report: the ten buyers converted, nobody in the holdout did; their orders are
    # credited to the only message they were sent (step 0), by last touch.
    from campaigns.reports.campaign import campaign_report

    report = campaign_report(engine, runtime.config, "win_back", now=clock.now)
    assert (report["enrolled"], report["held_out"]) == (treated, len(held))
    assert report["converted"] == {"treated": 10, "holdout": 0}
    assert report["conversion_rate"]["treated"] == pytest.approx(10 / treated)
    assert report["lift"]["absolute"] == pytest.approx(10 / treated)
    assert (report["attributed_orders"], report["attributed_revenue"]) == (10, 800.0)
    assert report["sent"] == 2 * treated - 10 and report["skipped"] == 10
    step0 = next(row for row in report["steps"] if row["step"] == 0)
    assert step0["attributed_orders"] == 10


def test_welcome_series_runs_over_simulated_days_with_a_condition_and_an_ab_split(world):
    runtime, workers, clock = world
    engine = runtime.engine
    ids = add_customers(engine, 40, last_order_days_ago=None)
    from campaigns.customers.events import record_events

    result = record_events(engine, [{"customer_id": ext, "name": "signup", "occurred_at": clock.now.isoformat(),
                                     "event_id": f"su-{ext}"} for ext in ids])
    assert len(result.accepted_ids) == 40
    workers.tick(clock.now)
    assert statuses(engine, "welcome") == {(0, "sent"): 40, (1, "queued"): 40, (2, "queued"): 40}

    # Day 1: five of them buy; on day 2 the tips step (when orders_count == 0) skips them.
    buyers = list(ids.values())[:5]
    with engine.begin() as conn:
        for cid in buyers:
            conn.execute(sa.insert(Order.__table__).values(order_id=f"first-{cid}", customer_id=cid, amount=30,
                                                           ordered_at=clock.now + timedelta(days=1)))
    from campaigns.customers.profiles import recompute_profiles

    recompute_profiles(engine, runtime.config, as_of=clock.now + timedelta(days=1, hours=1))
    advance(workers, clock, 2)
    assert statuses(engine, "welcome")[(1, "sent")] == 35
    assert statuses(engine, "welcome")[(1, "skipped")] == 5

    # One customer unsubscribes on day 3: the day-5 coupon is skipped and the series ends.
    quitter = list(ids.values())[-1]
    with engine.begin() as conn:
        conn.execute(sa.update(Consent.__table__)
                     .where(Consent.customer_id == quitter, Consent.channel == "email")
                     .values(status="withdrawn", source="unsubscribe", recorded_at=clock.now))
    advance(workers, clock, 3)
    steps = statuses(engine, "welcome")
    assert steps[(2, "sent")] == 39 and steps[(2, "skipped")] == 1
    with engine.connect() as conn:
        variants = dict(conn.execute(sa.select(Delivery.customer_id, Delivery.variant)
                                     .where(Delivery.campaign == "welcome", Delivery.step == 2)).all())
        quitter_state = conn.execute(sa.select(Enrollment.state).where(Enrollment.customer_id == quitter)).scalar()
    assert variants == {cid: variant_of(cid, "welcome", 2, [1, 1]) for cid in ids.values()}
    assert set(variants.values()) == {0, 1}
    assert quitter_state == "exited_unsubscribe"
    files = sorted(p.name for p in (runtime.config.channels["mail"].dir / "welcome").iterdir())
    assert len(files) == 40 + 35 + 39
