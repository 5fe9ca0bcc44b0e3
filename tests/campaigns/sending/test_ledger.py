"""The ledger (campaigns.sending.ledger) on a real SQLite database, against hand-built
data: a row is claimed by one job only, leases expire back to the queue, and the
dispatcher skips paused campaigns."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns.sending.ledger import (
    claim,
    dispatchable_batches,
    requeue_expired_leases,
    run_batches,
)
from campaigns.sending.planning import claim_run, plan_run
from campaigns.store.models import CampaignState
from tests.campaigns.five_customers import NOW, config_with, people  # noqa: F401 (people: fixture)


def test_a_row_is_claimed_by_one_job_only_and_expired_leases_return_to_the_queue(people):
    config = config_with("min_orders = 1")
    lease = timedelta(minutes=5)
    run_id = claim_run(people, "c", NOW, lease=lease)
    plan_run(people, config, config.campaigns[0], run_id=run_id, scheduled_at=NOW, now=NOW)
    # The fresh run's due rows are streamed once, read-only; the scheduler enqueues them.
    ids = [i for batch in run_batches(people, run_id, now=NOW, batch_size=2) for i in batch]
    assert len(ids) == 3  # step 0 only: step 1 is due in two days
    # They count as handed over: the generic dispatch leaves them alone during the lease...
    assert list(dispatchable_batches(people, now=NOW, lease=lease, batch_size=2)) == []
    # ...and picks them up again once it has passed, as it would if the broker lost the job.
    again = [i for b in dispatchable_batches(people, now=NOW + lease, lease=lease, batch_size=2) for i in b]
    assert sorted(again) == sorted(ids)
    # Step 1 becomes dispatchable on its due date (beside step 0, still unsent here).
    later = [i for b in dispatchable_batches(people, now=NOW + timedelta(days=2), lease=lease, batch_size=10)
             for i in b]
    assert len(set(later) - set(ids)) == 3 and set(ids) <= set(later)

    first = claim(people, ids, now=NOW, lease=lease)
    second = claim(people, ids, now=NOW, lease=lease)
    assert len(first.deliveries) == 3 and second.deliveries == []
    assert {d.customer["external_id"] for d in first.deliveries} == {"ann", "bob", "dan"}
    dan = next(d for d in first.deliveries if d.customer["external_id"] == "dan")
    assert dan.stats["orders_count"] == 3 and dan.stats["total_spent"] == pytest.approx(1905.0)

    # The worker died: after the lease the rows are queued again and can be claimed anew.
    assert requeue_expired_leases(people, now=NOW + timedelta(minutes=4)) == 0
    assert requeue_expired_leases(people, now=NOW + timedelta(minutes=6)) == 3
    third = claim(people, ids, now=NOW + timedelta(minutes=6), lease=lease)
    assert len(third.deliveries) == 3 and all(d.attempts == 2 for d in third.deliveries)


def test_the_dispatcher_skips_paused_campaigns_without_looping_on_them(people):
    config = config_with("min_orders = 1")
    run_id = claim_run(people, "c", NOW, lease=timedelta(minutes=5))
    plan_run(people, config, config.campaigns[0], run_id=run_id, scheduled_at=NOW, now=NOW - timedelta(days=1))
    with people.begin() as conn:
        conn.execute(sa.insert(CampaignState.__table__).values(campaign="c", paused=True, paused_reason="x",
                                                             updated_at=NOW))
    # page_size 1 forces several pages over rows that must all be skipped.
    assert list(dispatchable_batches(people, now=NOW, lease=timedelta(minutes=5), batch_size=5, page_size=1)) == []


def test_a_pause_recorded_while_the_dispatcher_pages_holds_the_rest_of_the_campaign(people):
    # A job's 401 pauses the campaign and puts its row back in the queue in one
    # transaction, while the tick is still paging: the pages after it must see the pause,
    # or the row goes out again at once (CI saw a delivery 'sent' after its campaign paused).
    config = config_with("min_orders = 1")
    run_id = claim_run(people, "c", NOW, lease=timedelta(minutes=5))
    plan_run(people, config, config.campaigns[0], run_id=run_id, scheduled_at=NOW, now=NOW - timedelta(days=1))
    pages = dispatchable_batches(people, now=NOW, lease=timedelta(minutes=5), batch_size=1, page_size=1)
    assert len(next(pages)) == 1
    with people.begin() as conn:
        conn.execute(sa.insert(CampaignState.__table__).values(campaign="c", paused=True, paused_reason="401",
                                                             updated_at=NOW))
    assert list(pages) == []
