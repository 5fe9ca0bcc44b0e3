"""Test sends (campaigns.sending.testsends) in the ledger, on a real SQLite database: the
row is written as a test, workers never claim it, and whatever the provider answers it
ends once, suppressing nothing and pausing nothing (the CLI and the real channels:
tests/e2e/test_test_send.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns.errors import NurtureError
from campaigns.sending.ledger import claim, record, requeue_expired_leases
from campaigns.sending.messages import Outcome, SendResult
from campaigns.sending.testsends import create_test_delivery, recorded_outcome, sample_customer
from campaigns.store.models import CampaignState, Delivery, Enrollment, Suppression
from tests.campaigns.five_customers import NOW, config_with, people  # noqa: F401 (people: fixture)

LEASE = timedelta(minutes=5)


def test_the_row_is_a_test_of_its_own_with_a_sample_customer_when_none_is_named(people):
    config = config_with("min_orders = 1")

    first = create_test_delivery(people, config, campaign="c", channel="mail", now=NOW)
    second = create_test_delivery(people, config, campaign="c", channel="text", step=1, customer="bob", now=NOW)

    # The sample is the first customer who has ordered (cat, with no order, never is).
    assert sample_customer(people) == "ann"
    assert (first.customer, first.sample, first.template, first.variant) == ("ann", True, "t", None)
    assert (second.customer, second.sample, second.template, second.step) == ("bob", False, "t2", 1)
    assert first.send_key.startswith("test:c:0:") and second.send_key.startswith("test:c:1:")
    assert first.send_key != second.send_key
    with people.connect() as conn:
        rows = conn.execute(sa.select(Delivery.is_test, Delivery.status, Delivery.enrollment_id, Delivery.run_id)
                            .order_by(Delivery.id)).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(Enrollment)).scalar_one() == 0
    assert rows == [(True, "queued", None, None)] * 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"campaign": "nope"}, "no campaign named 'nope' (campaigns: c)"),
    ({"channel": "fax"}, "no channel named 'fax' in config.toml (channels: mail, text)"),
    ({"step": 2}, "has steps 0 to 1, not 2"),
    ({"variant": 0}, "has no variants"),
    ({"customer": "zed"}, "no customer with customer_id 'zed'"),
])
def test_what_config_or_data_lack_is_refused_before_anything_is_written(people, kwargs, message):
    arguments = {"campaign": "c", "channel": "mail", "now": NOW, **kwargs}
    with pytest.raises(NurtureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_test_delivery(people, config_with("min_orders = 1"), **arguments)
    with people.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one() == 0


def test_workers_never_claim_a_test_row_and_its_sender_claims_nothing_else(people):
    config = config_with("min_orders = 1")
    test = create_test_delivery(people, config, campaign="c", channel="mail", customer="ann", now=NOW)

    # A worker holding the id (a dispatcher that enqueued it) gets nothing: queued, it
    # would send the message to ann's own address.
    assert claim(people, [test.id], now=NOW, lease=LEASE).deliveries == []
    held = claim(people, [test.id], now=NOW, lease=LEASE, tests=True)
    assert [(d.id, d.is_test, d.customer["external_id"]) for d in held.deliveries] == [(test.id, True, "ann")]


@pytest.mark.parametrize(("result", "error"), [
    (SendResult(Outcome.SUPPRESS, error="550 5.1.1 unknown user", code="550"), "550 5.1.1 unknown user"),
    (SendResult(Outcome.RETRY, error="421 try later"), "421 try later"),
    (SendResult(Outcome.HALT, error="535 authentication failed"), "535 authentication failed"),
    (SendResult(Outcome.DEFER, error="rate limited"), "rate limited"),
])
def test_a_refused_test_send_fails_once_and_suppresses_or_pauses_nothing(people, result, error):
    config = config_with("min_orders = 1")
    test = create_test_delivery(people, config, campaign="c", channel="mail", customer="ann", now=NOW)
    held = claim(people, [test.id], now=NOW, lease=LEASE, tests=True)

    recorded = record(people, config, held, {test.id: (result, NOW, NOW)}, now=NOW)

    assert recorded.retries == [] and recorded.halted == {}
    outcome = recorded_outcome(people, test.id)
    assert (outcome.status, outcome.last_error) == ("failed", error)
    with people.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Suppression)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(CampaignState)).scalar_one() == 0


def test_a_test_send_whose_sender_died_is_failed_not_queued_again(people):
    config = config_with("min_orders = 1")
    test = create_test_delivery(people, config, campaign="c", channel="mail", customer="ann", now=NOW)
    claim(people, [test.id], now=NOW, lease=LEASE, tests=True)

    assert requeue_expired_leases(people, now=NOW + LEASE + timedelta(seconds=1)) == 1

    outcome = recorded_outcome(people, test.id)
    assert outcome.status == "failed" and "lease expired" in (outcome.last_error or "")
