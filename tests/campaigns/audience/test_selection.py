"""Audience selection (campaigns.audience.selection) on a real SQLite database, against
hand-built data: structured filters, the channel each customer is reached on, consent,
suppression and the dry run's breakdown."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from campaigns.audience.selection import audience_breakdown, audience_select
from campaigns.store.models import Consent, Customer, Suppression
from tests.campaigns.five_customers import NOW, config_with, people, withdraw  # noqa: F401 (people: fixture)


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


def test_a_suppressed_address_is_excluded_as_suppressed_not_as_consent_withdrawn(people):
    from campaigns.responses.optout import opt_out

    # `nurture suppress add` (and a bounce, an opt-out reply) suppresses the address and
    # withdraws consent with it: the dry run read "consent withdrawn" for it.
    opt_out(people, family="email", address="ann@x.cn", reason="operator", source="operator", now=NOW)
    with people.begin() as conn:
        withdraw(conn, sa.select(Customer.id).where(Customer.external_id == "dan").scalar_subquery(), "email")
    config = config_with("")

    result = audience_breakdown(people, config, config.campaigns[0], now=NOW, sample_size=0)

    # ann (suppressed, consent withdrawn with it), dan (withdrew, not suppressed)
    assert result["excluded"] == {"no_address": 1, "no_consent": 0, "consent_withdrawn": 1, "suppressed": 1}


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
