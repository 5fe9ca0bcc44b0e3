"""The scheduler runs the loyalty daily job once per ``[loyalty] cron`` slot (claimed like a
profile recompute, so two ticks or two schedulers in one slot run it once), before it
plans the loyalty triggers, which therefore see the day's tiers and refunds; on SQLite and
PostgreSQL, with pinned times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.daily import LOYALTY_RUN
from campaigns.project.loading import parse_config
from campaigns.store.models import CampaignRun, Customer, Enrollment, LoyaltyMember, Order, PointsLot
from tests.campaigns.conftest import engine  # noqa: F401 (the fixture: SQLite, then PostgreSQL)
from tests.conftest import grant_consent
from workers.jobs.broker import make_broker
from workers.jobs.scheduler import tick

#: 02:30 in Shanghai on 2 June 2026 (the default ``[loyalty] cron`` slot), in UTC.
SLOT = datetime(2026, 6, 1, 18, 30, tzinfo=UTC)


def config_for(tmp_path: Path, loyalty: str = "enabled = true"):
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "t.txt.j2").write_text("{{ loyalty.tier }}")
    return parse_config(f"""
[profiles]
cron = ""
[compliance]
quiet_hours = ""
[loyalty]
{loyalty}
[channels.mail]
kind = "outbox"
[[campaigns]]
name = "gold"
trigger = {{ tier_entered = "gold" }}
channels = ["mail"]
[[campaigns.steps]]
template = "t"
[[campaigns]]
name = "remind"
trigger = {{ points_expiring = "7d" }}
channels = ["mail"]
[[campaigns.steps]]
template = "t"
""", base=tmp_path)


def shopper(engine: sa.Engine) -> int:
    """ann: a paid order of 6,000 the day before the slot (gold once earned); an order of a
    year ago whose 360 points expire in five days, refunded since (the job takes them
    back); a review's 40 points expiring in three days."""
    with engine.begin() as conn:
        ann = conn.execute(sa.insert(Customer.__table__).values(
            external_id="ann", email="ann@x.cn", timezone="Asia/Shanghai", created_at=SLOT - timedelta(days=400),
            updated_at=SLOT, attributes={}).returning(Customer.__table__.c.id)).scalar_one()
        conn.execute(sa.insert(Order.__table__).values(order_id="O-old", customer_id=ann, amount=360,
                                                       ordered_at=SLOT - timedelta(days=360), status="refunded"))
        conn.execute(sa.insert(Order.__table__).values(order_id="O-1", customer_id=ann, amount=6000,
                                                       ordered_at=SLOT - timedelta(days=1), status="paid"))
        for source, ref, points, days in (("order", "O-old", 360, 5), ("event", "rv", 40, 3)):
            conn.execute(sa.insert(PointsLot.__table__).values(
                customer_id=ann, source=source, source_ref=ref, rule="purchase" if source == "order" else "review",
                points=points, remaining=points, spent=0, kinds=",goods,", earned_at=SLOT - timedelta(days=360),
                expires_at=SLOT + timedelta(days=days)))
    grant_consent(engine, now=SLOT - timedelta(days=2))
    return ann


def loyalty_runs(engine: sa.Engine) -> list[tuple[datetime, str, int]]:
    with engine.connect() as conn:
        return [(row.scheduled_at, row.status, row.planned_count) for row in conn.execute(
            sa.select(CampaignRun).where(CampaignRun.campaign == LOYALTY_RUN).order_by(CampaignRun.scheduled_at))]


def test_the_daily_job_runs_once_per_slot_before_the_loyalty_triggers_are_planned(tmp_path, engine):
    config = config_for(tmp_path)
    broker = make_broker(config.broker)
    ann = shopper(engine)

    first = tick(config=config, engine=engine, broker=broker, now=SLOT + timedelta(seconds=20))
    second = tick(config=config, engine=engine, broker=broker, now=SLOT + timedelta(minutes=40))

    assert first.loyalty is not None and second.loyalty is None
    job = first.loyalty
    # The 6,000 earned (ann is gold), the refunded order's 360 taken back.
    assert (job.earned.lots, job.earned.points, job.refunds.lots, job.tiers.entered) == (1, 6000, 1, {"gold": 1})
    # The same tick planned the tier entry the job had just recorded, and reminded of the
    # review's points only: the refunded order's were gone before reminders were planned.
    assert first.entries == {"gold": 1, "remind": 1} and second.entries == {"gold": 0, "remind": 0}
    with engine.connect() as conn:
        tier = conn.execute(sa.select(LoyaltyMember.tier).where(LoyaltyMember.customer_id == ann)).scalar_one()
        reminded = conn.execute(sa.select(PointsLot.source_ref).join(
            Enrollment, Enrollment.occurrence == sa.literal("lot") + sa.cast(PointsLot.id, sa.String))
            .where(Enrollment.campaign == "remind")).scalars().all()
    assert tier == "gold" and reminded == ["rv"]
    # The slot is claimed and done: 3 changes (a lot earned, one reversed, an upgrade).
    assert loyalty_runs(engine) == [(SLOT, "planned", 3)]

    # The next day's slot runs it again, once.
    day_two = [tick(config=config, engine=engine, broker=broker, now=SLOT + timedelta(days=1, seconds=s)).loyalty
               for s in (5, 35)]
    assert day_two[0] is not None and day_two[1] is None
    assert [at for at, _, _ in loyalty_runs(engine)] == [SLOT, SLOT + timedelta(days=1)]
    broker.close()


def test_a_slot_missed_by_more_than_max_lateness_is_not_run_late(tmp_path, engine):
    config = config_for(tmp_path)
    broker = make_broker(config.broker)
    shopper(engine)
    # A minute before the slot, the day before's is just within max_lateness (a day): it runs.
    assert tick(config=config, engine=engine, broker=broker, now=SLOT - timedelta(minutes=1)).loyalty is not None
    late = config.model_copy(update={"scheduler": config.scheduler.model_copy(
        update={"max_lateness": timedelta(hours=1)})})
    assert tick(config=late, engine=engine, broker=broker, now=SLOT + timedelta(hours=2)).loyalty is None
    assert [at for at, _, _ in loyalty_runs(engine)] == [SLOT - timedelta(days=1)]
    broker.close()


def test_without_the_programme_or_its_cron_the_job_never_runs(tmp_path, engine):
    broker = make_broker(config_for(tmp_path).broker)
    shopper(engine)
    by_hand = config_for(tmp_path, 'enabled = true\ncron = ""')
    report = tick(config=by_hand, engine=engine, broker=broker, now=SLOT + timedelta(seconds=20))
    assert report.loyalty is None and loyalty_runs(engine) == []
    # The triggers still plan (nothing earned, nobody moved tier; both lots expire within 7 days).
    assert report.entries == {"gold": 0, "remind": 2}

    off = by_hand.model_copy(update={"loyalty": LoyaltyConfig(), "campaigns": []})  # the default: off
    assert tick(config=off, engine=engine, broker=broker, now=SLOT + timedelta(days=1, seconds=20)).loyalty is None
    assert loyalty_runs(engine) == []
    broker.close()
