"""Reply classification (campaigns/feedback/classification.py): the [replies] rules in
Chinese and English, one label per reply however often it runs, opt-outs and test
sends' replies never labelled, one alert per complaint, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.config.replies import RepliesConfig, ReplyRule
from campaigns.feedback.classification import Classifier, classify_replies
from campaigns.responses.recording import InboundResponse, record_responses
from campaigns.store.models import Customer, Delivery, ReplyLabel, Response, StaffAlert

NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)
DEFAULTS = Classifier(rules=RepliesConfig().rules)


@pytest.mark.parametrize(("text", "label"), [
    ("怎么还没退款？", "complaint"),          # a complaint that asks: complaints come first
    ("质量太差了，我要投诉", "complaint"),
    ("不满意", "complaint"),                  # not praise, though it contains 满意
    ("I want a REFUND", "complaint"),
    ("ｒｅｆｕｎｄｅｄ yet?", "complaint"),      # full-width letters, and refund* takes refunded
    ("The zipper arrived broken", "complaint"),
    ("这个有货吗", "question"),
    ("多少钱", "question"),
    ("When does the sale end", "question"),
    ("还有红色的？", "question"),              # full-width question mark
    ("谢谢，很喜欢", "positive"),
    ("Thanks, love it!", "positive"),
    ("Show me", "other"),                     # "how" is a word, not part of "show"
    ("9", "other"),                           # a survey score: labelled other, scored elsewhere
    ("", "other"),
])
def test_default_rules_label_chinese_and_english(text: str, label: str) -> None:
    assert DEFAULTS.label(text)[0] == label


def test_the_first_matching_rule_wins_and_names_itself() -> None:
    classifier = Classifier(rules=[
        ReplyRule(name="late", label="complaint", keywords=["还没到", "where is my order"]),
        ReplyRule(name="ask", label="question", keywords=["?"]),
    ])
    assert classifier.label("Where is my order?") == ("complaint", "late")
    assert classifier.label("包裹还没到？") == ("complaint", "late")
    assert classifier.label("red?") == ("question", "ask")
    assert classifier.label("ok") == ("other", None)


@pytest.fixture
def world(engine: sa.Engine) -> sa.Engine:
    """Ann, with a sent SMS of campaign promo (provider id SM1) and a test send (SMT)."""
    with engine.begin() as conn:
        ann = conn.execute(sa.insert(Customer.__table__).values(
            external_id="ann", name="Ann", phone="+8613800000001", attributes={}, created_at=NOW,
            updated_at=NOW).returning(Customer.__table__.c.id)).scalar_one()
        common = {"campaign": "promo", "customer_id": ann, "channel": "text", "template": "t", "due_at": NOW,
                  "dispatch_after": NOW, "status": "sent", "sent_at": NOW, "step": 1}
        conn.execute(sa.insert(Delivery.__table__), [
            {**common, "send_key": "promo:1:1:once", "provider_message_id": "SM1", "is_test": False},
            {**common, "send_key": "test:promo:1", "provider_message_id": "SMT", "is_test": True},
        ])
    return engine


def reply(ref: str, text: str, *, message: str = "SM1", at: datetime = NOW) -> InboundResponse:
    return InboundResponse(kind="replied", provider="twilio", provider_ref=ref, occurred_at=at,
                           provider_message_id=message, address="+8613800000001", family="sms", text=text)


def labels(engine: sa.Engine) -> list[tuple[str, str, str | None]]:
    """(reply text, label, rule) of every label, in response order."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Response.payload, ReplyLabel.label, ReplyLabel.rule)
                            .join(Response, Response.id == ReplyLabel.response_id)
                            .order_by(ReplyLabel.response_id)).all()
    return [(payload["text"], label, rule) for payload, label, rule in rows]


def alerts(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.select(StaffAlert.__table__)).mappings()]


def test_each_reply_is_labelled_once_and_complaints_alert_once(world: sa.Engine) -> None:
    config = RepliesConfig(alert_channel="care")
    record_responses(world, [reply("r1", "东西坏了，我要退款"), reply("r2", "有红色的吗"),
                             reply("r3", "Thanks!"), reply("r4", "9"),
                             reply("r5", "TD"),                      # an opt-out: never labelled
                             reply("r6", "太差了", message="SMT")],   # a reply to a test send
                     now=NOW)
    first = classify_replies(world, config, now=NOW)
    again = classify_replies(world, config, now=NOW + timedelta(minutes=1))

    assert first.labelled == {"complaint": 1, "question": 1, "positive": 1, "other": 1}
    assert (first.opt_outs, first.alerts) == (1, 1)
    assert (again.total, again.alerts) == (0, 0)
    assert labels(world) == [("东西坏了，我要退款", "complaint", "complaint"), ("有红色的吗", "question", "question"),
                             ("Thanks!", "positive", "positive"), ("9", "other", None)]
    [alert] = alerts(world)
    with world.connect() as conn:
        complaint_id = conn.execute(sa.select(ReplyLabel.response_id).where(ReplyLabel.label == "complaint")).scalar()
        ann = conn.execute(sa.select(Customer.id)).scalar()
    assert (alert["alert_key"], alert["kind"], alert["channel"], alert["status"]) == (
        f"reply:{complaint_id}", "complaint", "care", "queued")
    assert alert["customer_id"] == ann
    payload = alert["payload"]
    assert payload["customer"] == {"id": ann, "external_id": "ann", "name": "Ann"}
    assert (payload["text"], payload["campaign"], payload["step"], payload["channel"]) == (
        "东西坏了，我要退款", "promo", 1, "text")

    # A reply recorded later is labelled by the next pass, and only it.
    record_responses(world, [reply("r7", "投诉!")], now=NOW)
    later = classify_replies(world, config, now=NOW + timedelta(minutes=2))
    assert (later.labelled, later.alerts) == ({"complaint": 1}, 1)
    assert len(alerts(world)) == 2


def test_old_complaints_are_labelled_without_alerting_and_no_channel_no_alert(world: sa.Engine) -> None:
    record_responses(world, [reply("old", "refund please", at=NOW - timedelta(days=3)),
                             reply("new", "refund please")], now=NOW)
    report = classify_replies(world, RepliesConfig(), now=NOW)  # no alert_channel
    assert (report.labelled, report.alerts) == ({"complaint": 2}, 0)
    assert alerts(world) == []

    record_responses(world, [reply("old2", "refund now", at=NOW - timedelta(days=3)),
                             reply("new2", "refund now")], now=NOW)
    report = classify_replies(world, RepliesConfig(alert_channel="care"), now=NOW)
    assert (report.labelled, report.alerts) == ({"complaint": 2}, 1)
    assert [a["payload"]["replied_at"] for a in alerts(world)] == [NOW.isoformat()]


def test_small_batches_reach_every_reply_and_disabled_labels_nothing(world: sa.Engine) -> None:
    record_responses(world, [reply(f"r{n}", "STOP" if n % 3 == 0 else "how much?") for n in range(10)], now=NOW)
    assert classify_replies(world, RepliesConfig(enabled=False), now=NOW).total == 0
    report = classify_replies(world, RepliesConfig(), now=NOW, batch_size=2)
    assert (report.labelled, report.opt_outs) == ({"question": 6}, 4)
