"""A tick plans every due cron run before it hands any row to the workers (workers/jobs/
scheduler.py): a frequency cap keeps a customer's slot for the highest-ranked message
(campaigns/sending/caps.py), and it can rank only the rows that exist. A run enqueued
before the next one was planned would win the slot by coming first (the demo's
vip_thanks and win_back raced that way: 135 sent one run, 134 the next)."""

from __future__ import annotations

from pathlib import Path

import dramatiq
import sqlalchemy as sa

from campaigns.project.loading import parse_config
from campaigns.store.models import Delivery
from tests.campaigns.five_customers import NOW, people  # noqa: F401 (people: fixture)
from workers.jobs.broker import make_broker
from workers.jobs.scheduler import tick

AFTER_SLOTS = NOW.replace(hour=10, minute=0, second=30)


def two_cron_campaigns(base: Path):
    campaigns = "".join(f"""
[[campaigns]]
name = "{name}"
trigger = {{ cron = "{cron}" }}
channels = ["mail"]
priority = {priority}
[campaigns.audience]
min_orders = 1
[[campaigns.steps]]
template = "t"
""" for name, cron, priority in (("first_listed", "0 10 * * *", 0), ("outranks", "30 9 * * *", 5)))
    (base / "templates").mkdir()
    (base / "templates" / "t.txt.j2").write_text("hi")
    return parse_config('[channels.mail]\nkind = "outbox"\nrecipient = "email"\n' + campaigns, base=base)


class SeenAtEnqueue(dramatiq.Middleware):
    """Which campaigns had rows in the ledger each time a job was enqueued."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.seen: list[set[str]] = []

    def before_enqueue(self, broker, message, delay) -> None:
        with self.engine.connect() as conn:
            self.seen.append(set(conn.execute(sa.select(Delivery.campaign).distinct()).scalars()))


def test_every_due_run_is_planned_before_any_job_is_enqueued(people, tmp_path):
    config = two_cron_campaigns(tmp_path)
    broker = make_broker(config.broker)
    spy = SeenAtEnqueue(people)
    broker.add_middleware(spy)

    report = tick(config=config, engine=people, broker=broker, now=AFTER_SLOTS)

    assert sorted(run.campaign for run in report.runs) == ["first_listed", "outranks"]
    assert report.enqueued_jobs == 2
    assert spy.seen == [{"first_listed", "outranks"}] * 2
    broker.close()
