"""Audience SQL and ledger state changes on a real SQLite database, against hand-built data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.audience.selection import audience_breakdown, audience_select
from campaigns.project.loading import parse_config
from campaigns.sending.ledger import claim, dispatchable_batches, requeue_expired_leases, run_batches
from campaigns.store.models import CampaignState, Consent, Customer, Delivery, Order, Suppression
from campaigns.sending.planning import claim_run, plan_run
from tests.conftest import grant_consent

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def config_with(audience: str, channels: str = '["mail", "text"]'):
    return parse_config(f"""
[channels.mail]
kind = "outbox"
recipient = "email"
[channels.text]
kind = "outbox"
recipient = "phone"
[[campaigns]]
name = "c"
trigger = {{ cron = "0 10 * * *" }}
channels = {channels}
[campaigns.audience]
{audience}
[[campaigns.steps]]
template = "t"
[[campaigns.steps]]
template = "t2"
delay = "2d"
""", base=_templates())


def _templates():
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp())
    (base / "templates").mkdir()
    (base / "templates" / "t.txt.j2").write_text("hi")
    (base / "templates" / "t2.txt.j2").write_text("again")
    return base


@pytest.fixture
def people(sqlite_engine):
    """Five customers whose facts are spelled out here, so each filter's answer is known."""
    rows = [
        # external_id, channel, email, phone, orders (days ago, amount, purchase channel), attributes
        ("ann", "store", "ann@x.cn", None, [(200, 50.0, "store"), (150, 70.0, "store")], {"vip": True, "city": "Wuhan"}),
        ("bob", "ecommerce", None, "+8613800000001", [(10, 30.0, "ecommerce")], {"vip": False}),
        ("cat", "social", "cat@x.cn", "+8613800000002", [], {}),
        ("dan", "direct", "dan@x.cn", None, [(400, 900.0, "direct"), (100, 1000.0, "store"), (95, 5.0, "direct")], {"tier": 3}),
        ("eve", "store", None, None, [(300, 10.0, "store")], {}),
    ]
    with sqlite_engine.begin() as conn:
        for external_id, channel, email, phone, orders, attributes in rows:
            customer_id = conn.execute(sa.insert(Customer.__table__).values(
                external_id=external_id, acquisition_channel=channel, email=email, phone=phone,
                attributes=attributes, created_at=NOW - timedelta(days=500), updated_at=NOW,
            ).returning(Customer.__table__.c.id)).scalar_one()
            for index, (days, amount, purchase_channel) in enumerate(orders):
                conn.execute(sa.insert(Order.__table__).values(
                    order_id=f"{external_id}-{index}", customer_id=customer_id,
                    ordered_at=NOW - timedelta(days=days), amount=amount, channel=purchase_channel))
    grant_consent(sqlite_engine, now=NOW)
    return sqlite_engine


def withdraw(conn, customer_id: int, family: str) -> None:
    conn.execute(sa.update(Consent.__table__)
                 .where(Consent.customer_id == customer_id, Consent.channel == family)
                 .values(status="withdrawn", source="test", recorded_at=NOW))


def selected(engine, config) -> dict[str, str]:
    query = audience_select(config, config.campaigns[0], now=NOW).subquery()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Customer.external_id, query.c.channel)
                            .join(query, query.c.customer_id == Customer.id)).all()
    return dict(rows)


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        ("", {"ann": "mail", "bob": "text", "cat": "mail", "dan": "mail"}),  # eve has no address
        ("min_orders = 2", {"ann": "mail", "dan": "mail"}),
        ("max_orders = 0", {"cat": "mail"}),
        ("last_order_more_than_days = 90", {"ann": "mail", "dan": "mail"}),
        ("last_order_within_days = 30", {"bob": "text"}),
        ('acquisition_channel = ["store", "social"]', {"ann": "mail", "cat": "mail"}),
        ('purchase_channel = ["store"]', {"ann": "mail", "dan": "mail"}),
        ("min_total_spent = 1000", {"dan": "mail"}),
        ("attributes = { vip = true }", {"ann": "mail"}),
        ('attributes = { city = "Wuhan" }', {"ann": "mail"}),
        ("attributes = { tier = 3 }", {"dan": "mail"}),
    ],
)
def test_audience_filters_select_exactly_the_customers_they_describe(people, audience, expected):
    assert selected(people, config_with(audience)) == expected


def test_channel_falls_back_when_consent_is_withdrawn_or_the_address_is_suppressed(people):
    with people.begin() as conn:
        cat = conn.execute(sa.select(Customer.id).where(Customer.external_id == "cat")).scalar_one()
        withdraw(conn, cat, "email")
        conn.execute(sa.insert(Suppression.__table__).values(channel="email", address="ann@x.cn",
                                                             reason="hard bounce", created_at=NOW))
    chosen = selected(people, config_with(""))
    assert chosen["cat"] == "text"  # withdrew email consent, has a phone
    assert "ann" not in chosen  # suppressed email, no phone


def test_planning_writes_one_row_per_customer_and_step_and_replanning_adds_nothing(people):
    config = config_with("min_orders = 1")
    campaign = config.campaigns[0]
    run_id = claim_run(people, "c", NOW, lease=timedelta(minutes=5))
    assert run_id is not None
    assert claim_run(people, "c", NOW, lease=timedelta(minutes=5)) is None  # already claimed

    first = plan_run(people, config, campaign, run_id=run_id, scheduled_at=NOW)
    second = plan_run(people, config, campaign, run_id=run_id, scheduled_at=NOW)

    with people.connect() as conn:
        rows = conn.execute(sa.select(Delivery.send_key, Delivery.step, Delivery.due_at)).all()
    assert first.planned == second.planned == len(rows) == 6  # ann, bob, dan x 2 steps
    assert {row.due_at for row in rows if row.step == 1} == {NOW + timedelta(days=2)}
    assert len({row.send_key for row in rows}) == 6


def test_a_run_left_in_planning_is_taken_over_after_its_lease(people):
    first = claim_run(people, "c", NOW, lease=timedelta(seconds=0))
    # With a zero lease the abandoned claim is immediately stale and can be taken over once.
    taken = claim_run(people, "c", NOW, lease=timedelta(seconds=0))
    assert first is not None and taken == first


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


def test_the_dry_run_counts_reachable_customers_per_channel_and_exclusions_by_reason(people):
    with people.begin() as conn:
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        # dan (email only) withdrew email consent; ann's email (her only address) is suppressed.
        withdraw(conn, ids["dan"], "email")
        conn.execute(sa.insert(Suppression.__table__).values(channel="email", address="ann@x.cn",
                                                             reason="hard bounce", created_at=NOW))
    config = config_with("")

    result = audience_breakdown(people, config, config.campaigns[0], now=NOW, sample_size=2)

    # ann (suppressed), bob (text), cat (mail), dan (withdrawn), eve (no address)
    assert result["matched"] == 5
    assert result["reachable"] == 2
    assert result["by_channel"] == {"text": 1, "mail": 1}
    assert result["excluded"] == {"no_address": 1, "no_consent": 0, "consent_withdrawn": 1, "suppressed": 1}
    assert [row["external_id"] for row in result["sample"]] == ["bob", "cat"]


def _forget_consent(engine, external_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(Consent.__table__).where(
            Consent.customer_id == sa.select(Customer.id).where(Customer.external_id == external_id).scalar_subquery()))


def test_marketing_needs_recorded_consent_by_default(people):
    _forget_consent(people, "cat")  # cat has an email and a phone but never said yes
    config = config_with("")

    result = audience_breakdown(people, config, config.campaigns[0], now=NOW, sample_size=0)

    assert "cat" not in selected(people, config)
    assert result["excluded"]["no_consent"] == 1


def test_consent_unless_withdrawn_lets_customers_without_a_record_in(people):
    _forget_consent(people, "cat")
    config = config_with("").model_copy(update={"compliance": config_with("").compliance.model_copy(
        update={"consent": "unless_withdrawn"})})

    assert selected(people, config)["cat"] == "mail"


def test_transactional_messages_need_no_marketing_consent(people):
    _forget_consent(people, "cat")
    with people.begin() as conn:
        withdraw(conn, sa.select(Customer.id).where(Customer.external_id == "bob").scalar_subquery(), "sms")
    config = config_with("")
    transactional = config.campaigns[0].model_copy(update={"purpose": "transactional"})
    config = config.model_copy(update={"campaigns": [transactional]})

    chosen = selected(people, config)

    assert chosen["cat"] == "mail"  # no consent recorded
    assert chosen["bob"] == "text"  # marketing consent withdrawn: an order notice still goes
