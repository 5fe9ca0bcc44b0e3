"""What a merge promises the person, checked with the real planning, policy and workers
(tests/campaigns/sending/policy_world.py), on SQLite and PostgreSQL: no second welcome,
no step of a running series twice, frequency caps over both former records, and nobody
moved from holdout to treated."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns.customers.identity.merging import merge_customers
from campaigns.sending.assignment import BUCKETS, bucket
from campaigns.store.models import Consent, Customer, Delivery, Enrollment
from tests.campaigns.sending.policy_world import DEFAULT_CAMPAIGNS, MORNING, World


def series(name: str, *, extra: str = "") -> str:
    """A manual two-step campaign: the second step two days after the first."""
    return f"""
[[campaigns]]
name = "{name}"
timezone = "Asia/Shanghai"
trigger = {{ manual = true }}
channels = ["mail"]
{extra}
  [[campaigns.steps]]
  template = "m"
  [[campaigns.steps]]
  template = "m"
  delay = "2d"
"""


def holdout_campaign() -> str:
    """A campaign name whose 50 % holdout takes customer 1 and not customer 2 (the hash is
    deterministic, so the name is found, not hoped for)."""
    for number in range(1000):
        name = f"hold{number}"
        if bucket(1, name, "holdout") < BUCKETS // 2 <= bucket(2, name, "holdout"):
            return name
    raise AssertionError("no such campaign name")


HOLD = holdout_campaign()


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    made = World(tmp_path, url, campaigns=DEFAULT_CAMPAIGNS + series("welcome") + series(HOLD, extra="holdout = 0.5"))
    with made.workers.running():
        yield made
    made.runtime.close()


def merge(world: World, survivor: int, merged: int) -> None:
    with world.engine.begin() as conn:
        merge_customers(conn, survivor_id=survivor, merged_id=merged, reason="test", actor="test", now=world.now)


def sent(world: World, campaign: str) -> list[tuple[int, int]]:
    """(customer row id, step) of every message of ``campaign`` sent."""
    with world.engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(
            sa.select(Delivery.customer_id, Delivery.step).where(Delivery.campaign == campaign,
                                                                  Delivery.status == "sent")))


def test_no_second_welcome_and_no_step_twice_after_a_merge_of_two_enrolled_records(world):
    ann = world.add("ann", email="ann@x.cn")
    other = world.add("ann-online", email="ann.online@x.cn")
    world.run("welcome")
    assert sent(world, "welcome") == [(ann, 0), (other, 0)]
    merge(world, ann, other)
    world.run("welcome", at=MORNING + timedelta(hours=1))
    world.tick(MORNING + timedelta(days=2, hours=1))
    world.workers.join()
    # The two first messages went before anyone knew; the person gets the second step once.
    assert sent(world, "welcome") == [(ann, 0), (ann, 0), (ann, 1)]


def test_no_second_welcome_for_a_survivor_who_takes_over_the_merged_records_series(world):
    ann = world.add("ann", email="ann@x.cn", consent=())  # not messaged yet: no consent on this record
    other = world.add("ann-online", email="ann.online@x.cn")
    world.run("welcome")
    assert sent(world, "welcome") == [(other, 0)]
    merge(world, ann, other)  # the online record's consent moves: the person may be messaged
    world.run("welcome", at=MORNING + timedelta(hours=1))
    world.tick(MORNING + timedelta(days=2, hours=1))
    world.workers.join()
    assert sent(world, "welcome") == [(ann, 0), (ann, 1)]


def test_a_frequency_cap_counts_what_both_former_records_were_sent(world):
    ann = world.add("ann", email="ann@x.cn")
    other = world.add("ann-online", email="ann.online@x.cn", consent=())
    with world.engine.begin() as conn:
        conn.execute(sa.insert(Consent.__table__).values(customer_id=other, channel="email", status="granted",
                                                         source="shop", recorded_at=MORNING - timedelta(days=1)))
        conn.execute(sa.update(Consent.__table__).where(Consent.customer_id == ann)
                     .values(status="withdrawn"))
    world.run("promo_a")  # only the online record may be messaged: it gets today's email
    assert world.rows("promo_a")["ann-online"].status == "sent"
    with world.engine.begin() as conn:  # the store record opts in again; then the two are one
        conn.execute(sa.update(Consent.__table__).where(Consent.customer_id == ann).values(status="granted"))
    merge(world, ann, other)
    world.run("promo_b", at=MORNING + timedelta(hours=2))
    capped = world.rows("promo_b")["ann"]
    assert capped.status == "queued" and capped.last_error.startswith("frequency cap reached: 1 email per day")


def test_nobody_moves_from_holdout_to_treated_by_merging(world):
    ann = world.add("ann", email="ann@x.cn")
    other = world.add("ann-online", email="ann.online@x.cn")
    assert (ann, other) == (1, 2)  # what HOLD was chosen for
    world.run(HOLD)
    assert sent(world, HOLD) == [(other, 0)]
    merge(world, ann, other)
    world.run(HOLD, at=MORNING + timedelta(hours=1))
    world.tick(MORNING + timedelta(days=2, hours=1))
    world.workers.join()
    assert sent(world, HOLD) == [(ann, 0)]  # sent before the merge, to the other record; nothing since
    with world.engine.connect() as conn:
        enrolments = conn.execute(sa.select(Enrollment.customer_id, Enrollment.holdout, Enrollment.state)
                                  .where(Enrollment.campaign == HOLD)).all()
        left = conn.execute(sa.select(sa.func.count()).select_from(Customer)).scalar()
    assert enrolments == [(ann, True, "held_out")] and left == 1
