"""Which message a frequency cap keeps when several campaigns want the same slot
(campaigns/sending/caps.py, through the send-time policy): transactional first, then the
campaign's priority, then the earlier due time, whatever order the worker jobs run in."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns.sending.caps import RECHECK
from campaigns.sending.planning import claim_run, plan_run
from campaigns.store.models import Delivery
from tests.campaigns.sending.policy_world import MORNING, campaign, world_with
from workers.jobs.delivery import deliver_batch

#: Three marketing campaigns for one email slot a day; planned low first, so the lowest
#: priority holds the lowest delivery id (first come, it would win).
COMPETING = (campaign("low", extra="priority = 1") + campaign("mid", extra="priority = 5")
             + campaign("high", extra="priority = 10"))


@pytest.fixture
def competing(tmp_path, sqlite_url):
    made = world_with(tmp_path, sqlite_url, campaigns=COMPETING + campaign("same_a") + campaign("same_b"),
                      compliance="[compliance.frequency]\nper_channel_per_day = 1\nper_week = 10")
    with made.workers.running():
        yield made
    made.runtime.close()


def plan(world, *names: str, at=MORNING) -> dict[str, int]:
    """Plan each campaign's run at ``at`` without sending; their delivery ids by campaign."""
    for name in names:
        run_id = claim_run(world.engine, name, at, lease=timedelta(minutes=5))
        plan_run(world.engine, world.config, world.config.campaign(name), run_id=run_id, scheduled_at=at, now=at)
    with world.engine.connect() as conn:
        return {row.campaign: row.id for row in conn.execute(sa.select(Delivery.campaign, Delivery.id))}


@pytest.mark.parametrize("jobs", [
    [["low", "mid", "high"]],          # one job holds all three
    [["low"], ["mid"], ["high"]],      # one job each, the lowest priority first
    [["high"], ["mid"], ["low"]],      # one job each, the highest priority first
    [["mid", "low"], ["high"]],        # the two lower ones together, first
])
def test_the_highest_priority_takes_the_slot_and_the_others_follow_a_day_apart_in_order(competing, jobs):
    world = competing
    world.add("ann", email="ann@x.cn")
    ids = plan(world, "low", "mid", "high")
    for job in jobs:
        deliver_batch(world.runtime, [ids[name] for name in job])
    # Messages held back for one still to go look again shortly after it was due.
    world.tick(MORNING + RECHECK + timedelta(seconds=1))
    assert world.rows("high")["ann"].status == "sent"
    assert {world.rows(name)["ann"].status for name in ("mid", "low")} == {"queued"}

    for day in (1, 2):
        world.tick(world.rows("high")["ann"].sent_at + timedelta(days=day, seconds=day))
    sent = {name: world.rows(name)["ann"].sent_at for name in ("low", "mid", "high")}
    assert sent["high"] == MORNING
    assert sent["mid"] == MORNING + timedelta(days=1, seconds=1)
    assert sent["low"] == MORNING + timedelta(days=2, seconds=2)


@pytest.mark.parametrize("together", [True, False])
def test_equal_priority_the_message_due_earlier_wins(competing, together):
    world = competing
    world.add("ann", email="ann@x.cn")
    ids = plan(world, "same_a", "same_b")
    with world.engine.begin() as conn:  # same_b (the higher id) has waited since an hour ago
        conn.execute(sa.update(Delivery.__table__).where(Delivery.id == ids["same_b"])
                     .values(due_at=MORNING - timedelta(hours=1), dispatch_after=MORNING - timedelta(hours=1)))
    if together:
        deliver_batch(world.runtime, [ids["same_a"], ids["same_b"]])
    else:
        deliver_batch(world.runtime, [ids["same_a"]])
        deliver_batch(world.runtime, [ids["same_b"]])
    assert world.rows("same_b")["ann"].status == "sent"
    assert world.rows("same_a")["ann"].status == "queued"


def test_a_lower_priority_message_another_job_holds_does_not_hold_back_a_higher_one(competing):
    world = competing
    customer_id = world.add("ann", email="ann@x.cn")
    ids = plan(world, "low", "high")
    with world.engine.begin() as conn:  # low's row: claimed by a worker elsewhere, not yet checked
        conn.execute(sa.update(Delivery.__table__)
                     .where(Delivery.campaign == "low", Delivery.customer_id == customer_id)
                     .values(status="sending", claim_token="elsewhere", lease_until=MORNING + timedelta(minutes=5)))
    assert deliver_batch(world.runtime, [ids["high"]]).counts == {"ok": 1}


def test_a_higher_priority_message_that_is_then_dropped_holds_nothing_back(competing):
    world = competing
    world.add("ann", email="ann@x.cn")
    ids = plan(world, "low", "high")
    deliver_batch(world.runtime, [ids["low"]])
    assert "kept for a higher-priority message" in world.rows("low")["ann"].last_error
    with world.engine.begin() as conn:  # high's step given up before it was sent
        conn.execute(sa.update(Delivery.__table__).where(Delivery.id == ids["high"]).values(status="skipped"))
    world.tick(MORNING + RECHECK + timedelta(seconds=1))
    assert world.rows("low")["ann"].status == "sent"


def test_a_paused_campaigns_waiting_message_takes_no_slot(competing):
    world = competing
    world.add("ann", email="ann@x.cn")
    ids = plan(world, "low", "high")
    from campaigns.store.models import CampaignState

    with world.engine.begin() as conn:
        conn.execute(sa.insert(CampaignState.__table__).values(campaign="high", paused=True, paused_reason="test",
                                                               updated_at=MORNING))
    assert deliver_batch(world.runtime, [ids["low"]]).counts == {"ok": 1}
