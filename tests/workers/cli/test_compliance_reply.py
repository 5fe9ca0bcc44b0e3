"""``nurture reply`` (workers/cli/compliance.py, campaigns/responses/replies.py): a reply fed in
by hand is recorded like a provider's, credited to the last message sent to the customer on
that channel family, so ``nurture report campaign`` counts it under "replied" (issue #14).

The project is this folder's win_back one: C00000-C00002 get an email, C00003 (no email) an
SMS, from one scheduler tick at TICK_NOW."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from campaigns.store.models import Consent, Customer, Response, Suppression
from tests.conftest import TICK_NOW
from tests.workers.cli.win_back import NOW_ARG, assert_no_crash, flat, invoke, seed_lapsed

LATER = (TICK_NOW + timedelta(hours=1)).isoformat()
BEFORE = (TICK_NOW - timedelta(days=1)).isoformat()


def replied(project) -> tuple[int, dict[str, int]]:
    """The campaign report's "replied": overall, and per channel."""
    result = invoke("report", "campaign", "win_back", "--now", LATER, "--json", "-c", project.config)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return data["engagement"]["replied"], {c["channel"]: c["engagement"]["replied"] for c in data["channels"]}


def reply(project, *args: str) -> dict:
    result = invoke("reply", *args, "--json", "-c", project.config)
    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_reply_by_hand_counts_as_replied_in_the_campaign_report(project, engine):
    seed_lapsed(engine)
    tick = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config)
    assert tick.exit_code == 0, tick.output
    assert replied(project) == (0, {"email": 0, "sms": 0})

    sms = reply(project, "+8613800000003", "好的，谢谢", "--at", LATER)
    mail = reply(project, "p0@example.com", "When does the offer end?", "--at", LATER)

    assert sms == {"recorded": True, "family": "sms", "customer": "C00003", "campaign": "win_back", "step": 0,
                   "send_key": sms["send_key"], "opt_out": False, "added": False, "customers": 0}
    assert sms["send_key"].startswith("win_back:0:")
    assert (mail["customer"], mail["campaign"], mail["opt_out"]) == ("C00000", "win_back", False)
    assert replied(project) == (2, {"email": 1, "sms": 1})
    with engine.connect() as conn:
        stored = conn.execute(sa.select(Response.kind, Response.provider, Response.payload)
                              .order_by(Response.id)).all()
    assert [(kind, provider, payload["text"]) for kind, provider, payload in stored] == [
        ("replied", "operator", "好的，谢谢"), ("replied", "operator", "When does the offer end?")]

    # The same reply fed in again (an export imported twice) is one reply, not two.
    again = reply(project, "+8613800000003", "好的，谢谢", "--at", LATER)
    assert again["recorded"] is False
    assert replied(project) == (2, {"email": 1, "sms": 1})


def test_an_opt_out_reply_is_recorded_and_suppresses_at_once(project, engine):
    seed_lapsed(engine)
    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0

    result = invoke("reply", "p1@example.com", " STOP ", "--at", LATER, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "reply from p1@example.com recorded (customer C00001); credited to win_back step 0" in text
    assert "opt-out: email p1@example.com suppressed; consent withdrawn for 1 customer(s)" in text
    assert replied(project) == (1, {"email": 1, "sms": 0})
    with engine.connect() as conn:
        customer_id = conn.execute(sa.select(Customer.id).where(Customer.external_id == "C00001")).scalar_one()
        assert conn.execute(sa.select(Suppression.channel, Suppression.address)).all() == [
            ("email", "p1@example.com")]
        assert conn.execute(sa.select(Consent.status).where(Consent.customer_id == customer_id,
                                                            Consent.channel == "email")).scalar_one() == "withdrawn"


def test_a_reply_is_credited_only_to_a_message_sent_before_it_on_its_channel_family(project, engine):
    seed_lapsed(engine)
    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0

    # Before the win-back went out: nothing to credit it to, still kept against the customer.
    early = reply(project, "p2@example.com", "hello?", "--at", BEFORE)
    # C00000 got an email, no SMS: a text message from their phone answers no message.
    text_message = reply(project, "+8613800000000", "hi", "--at", LATER)
    # Nobody has this address: kept, credited to nothing.
    stranger = reply(project, "+8613999999999", "who is this?", "--at", LATER)

    assert (early["customer"], early["campaign"]) == ("C00002", None)
    assert (text_message["customer"], text_message["campaign"]) == ("C00000", None)
    assert (stranger["customer"], stranger["campaign"]) == (None, None)
    assert replied(project) == (0, {"email": 0, "sms": 0})
    shown = invoke("customer", "C00002", "-c", project.config)
    assert "replied" in shown.output and "operator" in shown.output


def test_reply_refuses_a_bad_time_and_an_unknown_family(project):
    bad_time = invoke("reply", "+8613800000003", "hi", "--at", "yesterday", "-c", project.config)
    bad_family = invoke("reply", "+8613800000003", "hi", "--channel", "fax", "-c", project.config)

    for result in (bad_time, bad_family):
        assert_no_crash(result)
        assert result.exit_code != 0
    assert "ISO 8601" in flat(bad_time.output)
    assert "unknown channel family 'fax'" in bad_family.output
