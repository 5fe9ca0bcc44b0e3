"""What became of a command's deliveries (campaigns/reports/outcomes.py): sent, deferred by
kind, skipped and failed by reason, waiting for a later step; in the send-time policy
world (real runs, in-process workers, a pinned clock), and over ledger rows written here
for the statuses a run rarely reaches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaigns.reports.outcomes import (
    customer_deliveries_after,
    deferral_kind,
    delivery_outcomes,
    newest_delivery_id,
    reason_label,
)
from campaigns.store.models import CampaignRun, Delivery
from tests.campaigns.sending.policy_world import world  # noqa: F401 (world: fixture)

NIGHT = datetime(2026, 6, 1, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai, 10:30 in New York


def run_ids(engine: sa.Engine, campaign: str) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(CampaignRun.id).where(CampaignRun.campaign == campaign)).scalars())


def test_a_run_is_told_as_sent_deferred_by_kind_and_skipped_by_reason(world):
    world.add("sh", email="sh@x.cn")  # in quiet hours
    world.add("ny", email="ny@x.cn", timezone="America/New_York")
    world.run("promo_a", at=NIGHT)  # ny's one email of the day
    world.run("promo_b", at=NIGHT + timedelta(minutes=1))  # ny: capped, waits for tomorrow
    world.run("promo_skip", at=NIGHT + timedelta(minutes=2))  # ny: capped, given up

    first = delivery_outcomes(world.engine, run_ids=run_ids(world.engine, "promo_a"))
    capped = delivery_outcomes(world.engine, run_ids=run_ids(world.engine, "promo_b"))
    skipped = delivery_outcomes(world.engine, run_ids=run_ids(world.engine, "promo_skip"))

    assert first == {"deliveries": 2, "sent": 1, "deferred": {"quiet hours": 1}, "skipped": {}, "failed": {},
                     "waiting": 0, "in_flight": 0}
    assert capped["sent"] == 0 and capped["deferred"] == {"frequency cap": 1, "quiet hours": 1}
    assert skipped["deferred"] == {"quiet hours": 1}
    assert skipped["skipped"] == {"frequency cap reached: 1 email per day": 1}


def test_every_status_is_counted_once_under_its_reason(world):
    customer = world.add("ann", email="ann@x.cn")
    before = newest_delivery_id(world.engine)
    rows = [  # status, last_error, run
        ("sent", None, 7), ("queued", None, 7), ("queued", "inside quiet hours 21:00-08:00 (Asia/Shanghai)", 7),
        ("queued", "outside the send window 11:30-13:30 (Asia/Shanghai)", None),
        ("queued", "SMTP 451 try again later", None), ("sending", None, None),
        ("skipped", "consent withdrawn (email)", None), ("skipped", "address suppressed", None),
        ("failed", "gave up after 3 attempts: SMTP 421", None), ("suppressed", "SMTP 550 no such user", None),
    ]
    with world.engine.begin() as conn:
        ids = [conn.execute(sa.insert(Delivery.__table__).values(
            send_key=f"x:{index}", run_id=run, campaign="promo_a", step=0, customer_id=customer, channel="mail",
            template="m", status=status, last_error=error, due_at=NIGHT, dispatch_after=NIGHT,
        ).returning(Delivery.__table__.c.id)).scalar_one() for index, (status, error, run) in enumerate(rows)]

    # The run's rows and the ids overlap: each row still counts once.
    outcome = delivery_outcomes(world.engine, ids=ids[2:], run_ids=[7])

    assert outcome == {
        "deliveries": 10, "sent": 1, "waiting": 1, "in_flight": 1,
        "deferred": {"quiet hours": 1, "send window": 1, "SMTP 451 try again later": 1},
        "skipped": {"address suppressed": 1, "consent withdrawn": 1},
        "failed": {"address suppressed: SMTP 550 no such user": 1, "gave up after 3 attempts: SMTP 421": 1},
    }
    assert customer_deliveries_after(world.engine, "ann", before) == ids
    assert customer_deliveries_after(world.engine, "ann", ids[-1]) == []


def test_reasons_lose_their_per_customer_detail_and_stay_short():
    assert reason_label("inside quiet hours 21:00-08:00 (Asia/Shanghai)") == "inside quiet hours 21:00-08:00"
    assert reason_label(None) == "no reason recorded"
    assert len(reason_label("x" * 500)) == 80
    assert deferral_kind("inside quiet hours 21:00-08:00 and outside the send window 10:00-11:00 (UTC)") == \
        "quiet hours"
    assert deferral_kind("frequency cap reached: 3 per week across channels") == "frequency cap"
