"""The dry runs of campaigns/reports/audience.py (``nurture audience``): a campaign's dry run
holds out exactly whom planning then holds out, by the same rule. (The breakdown by
channel and exclusion itself: tests/campaigns/audience/test_selection.py.)"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from campaigns.project.loading import parse_config
from campaigns.reports.audience import campaign_audience
from campaigns.sending.planning import claim_run, plan_run
from campaigns.store.models import Customer, Delivery, Enrollment
from tests.conftest import TICK_NOW, seed_customers

CONFIG = """
[channels.mail]
kind = "outbox"
recipient = "email"
[[campaigns]]
name = "spring"
trigger = {{ manual = true }}
channels = ["mail"]
holdout = {holdout}
  [campaigns.audience]
  min_orders = 1
  [[campaigns.steps]]
  template = "t"
"""


def config_with_holdout(tmp_path, holdout: float):
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "t.txt.j2").write_text("hi")
    return parse_config(CONFIG.format(holdout=holdout), base=tmp_path)


def test_the_dry_run_holds_out_whom_planning_holds_out(sqlite_engine, tmp_path):
    seed_customers(sqlite_engine, count=60, now=TICK_NOW)
    config = config_with_holdout(tmp_path, 0.3)
    campaign = config.campaigns[0]

    dry = campaign_audience(sqlite_engine, config, campaign, now=TICK_NOW, sample_size=60)
    run_id = claim_run(sqlite_engine, "spring", TICK_NOW, lease=timedelta(minutes=5))
    plan_run(sqlite_engine, config, campaign, run_id=run_id, scheduled_at=TICK_NOW, now=TICK_NOW)

    with sqlite_engine.connect() as conn:
        held = set(conn.execute(sa.select(Customer.external_id).join(Enrollment, Enrollment.customer_id == Customer.id)
                                .where(Enrollment.holdout.is_(True))).scalars())
        messaged = conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one()
    assert 0 < len(held) < 60
    assert dry["reachable"] == 60
    assert dry["holdout"] == len(held) and dry["would_send"] == messaged == 60 - len(held)
    assert {row["external_id"] for row in dry["sample"] if row["held_out"]} == held


def test_without_a_holdout_nobody_is_held_out(sqlite_engine, tmp_path):
    seed_customers(sqlite_engine, count=5, now=TICK_NOW)
    config = config_with_holdout(tmp_path, 0)

    dry = campaign_audience(sqlite_engine, config, config.campaigns[0], now=TICK_NOW, sample_size=5)

    assert (dry["holdout"], dry["would_send"]) == (0, 5)
    assert not any(row["held_out"] for row in dry["sample"])
