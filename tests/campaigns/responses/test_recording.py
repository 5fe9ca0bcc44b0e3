"""Recording responses: matched to their delivery or customer, written once however often
a provider retries, and applied (receipt status, suppression, consent) the first time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.responses.recording import InboundResponse, record_responses
from campaigns.sending.ledger import claim
from campaigns.sending.policy import send_time_skips
from campaigns.store.models import Consent, Customer, Delivery, Response, Suppression

NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


@pytest.fixture
def world(sqlite_engine):
    """One customer with consent, one sent SMS (provider id SM1) and one queued SMS."""
    with sqlite_engine.begin() as conn:
        customer_id = conn.execute(sa.insert(Customer.__table__).values(
            external_id="ann", email="ann@x.cn", phone="+8613800000001", timezone="Asia/Shanghai", attributes={},
            created_at=NOW, updated_at=NOW).returning(Customer.__table__.c.id)).scalar_one()
        for family in ("sms", "email"):
            conn.execute(sa.insert(Consent.__table__).values(customer_id=customer_id, channel=family,
                                                             status="granted", source="form", recorded_at=NOW))
        common = {"campaign": "promo", "customer_id": customer_id, "channel": "text", "template": "t",
                  "due_at": NOW, "dispatch_after": NOW}
        conn.execute(sa.insert(Delivery.__table__), [
            {**common, "send_key": "promo:0:1:once", "step": 0, "status": "sent", "provider_message_id": "SM1",
             "sent_at": NOW},
            {**common, "send_key": "promo:1:1:once", "step": 1, "status": "queued", "provider_message_id": None,
             "sent_at": None},
        ])
    return sqlite_engine


def receipt(kind: str, ref: str, *, at: datetime = NOW, **extra) -> InboundResponse:
    return InboundResponse(kind=kind, provider="twilio", provider_ref=ref, occurred_at=at, provider_message_id="SM1",
                           family="sms", **extra)


def rows(engine, model, *columns):
    with engine.connect() as conn:
        return conn.execute(sa.select(*[getattr(model, c) for c in columns])).all()


def test_a_receipt_updates_its_delivery_once_however_often_it_is_pushed(world):
    first = record_responses(world, [receipt("delivered", "SM1:delivered")], now=NOW)
    again = record_responses(world, [receipt("delivered", "SM1:delivered")], now=NOW)

    assert (first[0].duplicate, again[0].duplicate) == (False, True)
    assert first[0].delivery_id is not None and first[0].customer_id is not None
    assert len(rows(world, Response, "id")) == 1
    assert rows(world, Delivery, "receipt_status", "receipt_at")[0] == ("delivered", NOW)


def test_receipts_out_of_order_keep_the_latest(world):
    record_responses(world, [receipt("delivered", "SM1:delivered", at=NOW + timedelta(minutes=2))], now=NOW)
    record_responses(world, [receipt("undelivered", "SM1:undelivered", at=NOW + timedelta(minutes=1))], now=NOW)
    assert rows(world, Delivery, "receipt_status")[0] == ("delivered",)
    assert len(rows(world, Response, "id")) == 2  # both kept, for the record


def test_a_permanent_failure_suppresses_the_customers_number(world):
    [result] = record_responses(world, [receipt("undelivered", "SM1:undelivered", permanent=True,
                                                error="30006 landline or unreachable carrier")], now=NOW)
    assert result.suppressed
    assert rows(world, Suppression, "channel", "address") == [("sms", "+8613800000001")]


def test_an_opt_out_reply_stops_the_queued_message_before_it_fires(world):
    reply = InboundResponse(kind="replied", provider="aliyun", provider_ref="seq-42", occurred_at=NOW,
                            address="+8613800000001", family="sms", text=" 退订 ")
    [result] = record_responses(world, [reply], now=NOW)

    assert result.opted_out and result.suppressed and result.customer_id is not None
    assert rows(world, Consent, "channel", "status", "source") == [
        ("sms", "withdrawn", "aliyun reply"), ("email", "granted", "form")]
    # The queued step, claimed by a worker now, is skipped by the send-time policy.
    with world.connect() as conn:
        queued = conn.execute(sa.select(Delivery.id).where(Delivery.status == "queued")).scalar_one()
    claimed = claim(world, [queued], now=NOW, lease=timedelta(minutes=5))
    skips = send_time_skips_for(world, claimed.deliveries)
    assert skips[queued].reason == "consent withdrawn (sms)"


def send_time_skips_for(engine, deliveries):
    from campaigns.config.schema import AppConfig

    config = AppConfig.model_validate({
        "channels": {"text": {"kind": "outbox", "dir": "out", "recipient": "phone"}},
    })
    with engine.connect() as conn:
        return send_time_skips(conn, config, deliveries, now=NOW)


def test_a_reply_that_is_not_an_opt_out_is_recorded_and_changes_nothing(world):
    reply = InboundResponse(kind="replied", provider="twilio", provider_ref="SMreply1", occurred_at=NOW,
                            address="+8613800000001", family="sms", text="When does the sale end?")
    [result] = record_responses(world, [reply], now=NOW)
    assert not result.opted_out and not result.suppressed
    assert rows(world, Suppression, "id") == []
    assert rows(world, Response, "kind", "payload") == [("replied", {"text": "When does the sale end?"})]


def test_an_unsubscribe_withdraws_consent_on_that_family_only(world):
    click = InboundResponse(kind="unsubscribed", provider="web", provider_ref="promo:0:1:once", occurred_at=NOW,
                            send_key="promo:0:1:once", family="email")
    [result] = record_responses(world, [click], now=NOW)
    assert result.opted_out and not result.suppressed
    assert dict((c, s) for c, s in rows(world, Consent, "channel", "status")) == {"sms": "granted",
                                                                                  "email": "withdrawn"}


def test_a_complaint_suppresses_and_errors_are_stored_masked(world):
    complaint = InboundResponse(kind="complained", provider="email", provider_ref="fbl-1", occurred_at=NOW,
                                send_key="promo:0:1:once", family="email", error="abuse report from ann@x.cn")
    [result] = record_responses(world, [complaint], now=NOW)
    assert result.suppressed and result.opted_out
    assert rows(world, Suppression, "channel", "address") == [("email", "ann@x.cn")]
    assert "ann@x.cn" not in str(rows(world, Response, "payload"))


def test_an_unknown_kind_is_refused_before_anything_is_written(world):
    with pytest.raises(ValueError, match="unknown response kind"):
        record_responses(world, [receipt("delivered", "a"), receipt("read", "b")], now=NOW)
    assert rows(world, Response, "id") == []


def test_one_call_with_new_repeated_and_already_recorded_items_keeps_each_once(world):
    """A receiver hands in what many requests brought: results follow the items' order."""
    record_responses(world, [receipt("delivered", "SM1:delivered")], now=NOW)
    hello = InboundResponse(kind="replied", provider="twilio", provider_ref="SMreply1", occurred_at=NOW,
                            address="+8613800000001", family="sms", text="hello")
    stranger = InboundResponse(kind="delivered", provider="twilio", provider_ref="SM404:delivered", occurred_at=NOW,
                               provider_message_id="SM404", family="sms")
    results = record_responses(world, [
        receipt("delivered", "SM1:delivered"),  # recorded by an earlier call
        hello,
        hello,  # the same push twice within one batch
        stranger,  # a message we never sent: stored, matched to nothing
        receipt("undelivered", "SM1:undelivered", at=NOW + timedelta(minutes=1)),
    ], now=NOW)

    assert [r.duplicate for r in results] == [True, False, True, False, False]
    assert results[1].customer_id is not None and results[1].response_id is not None
    assert results[3].delivery_id is None and results[3].customer_id is None
    assert len({r.response_id for r in results if not r.duplicate}) == 3
    assert sorted(rows(world, Response, "provider_ref")) == [
        ("SM1:delivered",), ("SM1:undelivered",), ("SM404:delivered",), ("SMreply1",)]
    assert rows(world, Delivery, "receipt_status")[0] == ("undelivered",)


@pytest.mark.parametrize("order", ["latest first", "latest last"])
def test_two_receipts_of_one_message_in_one_call_keep_the_latest(world, order):
    later = receipt("delivered", "SM1:delivered", at=NOW + timedelta(minutes=2))
    earlier = receipt("undelivered", "SM1:undelivered", at=NOW + timedelta(minutes=1))
    batch = [later, earlier] if order == "latest first" else [earlier, later]
    assert [r.duplicate for r in record_responses(world, batch, now=NOW)] == [False, False]
    assert rows(world, Delivery, "receipt_status", "receipt_at")[0] == ("delivered", NOW + timedelta(minutes=2))


def test_an_opt_out_in_a_batch_of_receipts_still_suppresses(world):
    reply = InboundResponse(kind="replied", provider="twilio", provider_ref="SMstop", occurred_at=NOW,
                            address="+8613800000001", family="sms", text="STOP")
    results = record_responses(world, [receipt("delivered", "SM1:delivered"), reply], now=NOW)
    assert [(r.suppressed, r.opted_out) for r in results] == [(False, False), (True, True)]
    assert rows(world, Suppression, "channel", "address") == [("sms", "+8613800000001")]
