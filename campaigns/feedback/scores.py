"""Recording survey answers: one ``feedback`` row per survey message, its first score kept.

An answer reaches us two ways, both ending in :func:`record_answer_in`:

* a click on a signed score link (``GET /s/{token}``, ``workers/http/surveys.py``), at once;
* a reply (SMS, WeChat, email, or ``nurture reply``), recorded as a ``replied`` response
  by :mod:`campaigns.responses.recording` like any other. :func:`read_survey_replies`,
  run by every scheduler tick, reads the recent replies to survey messages into their
  answers, each reply once (``feedback.reply_ids``), oldest first.

``feedback.delivery_id`` is UNIQUE: the first answer inserts the row. Its score, once
there is one, never changes: a second click, a later reply with a number, a click after
a reply all leave it (the UPDATE only fills a row whose score is still NULL, under the
row's lock). Text is kept whatever happens: a reply that holds no score, or comes after
the score, is added to the row's text, so nothing the customer wrote is lost.

When a score is recorded the row gets its band (``[feedback]`` thresholds), and the
customer's lifecycle stage and RFM segment at that moment (``customer_profile``), which
the report groups by. A detractor's score queues one alert to ``[feedback]
alert_channel`` (:func:`campaigns.feedback.alerts.queue_staff_alert`, key
``feedback:<id>``) in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.feedback import SCALES
from campaigns.config.schema import AppConfig
from campaigns.customers.masking import mask_text
from campaigns.feedback.alerts import queue_staff_alert
from campaigns.feedback.surveys import parse_score
from campaigns.responses.replies import family_channels
from campaigns.store.db import dialect_insert
from campaigns.store.models import Customer, CustomerProfile, Delivery, Feedback, Response

#: Where a score came from (``feedback.source``).
SOURCES = ("reply", "click")
#: Longest text kept on one answer (replies and comments together).
MAX_TEXT_CHARS = 4000
#: How far below the highest reply id already read new replies are looked for.
LOOKBACK_IDS = 10_000


def survey_steps(config: AppConfig) -> dict[tuple[str, int], str]:
    """Every step that asks a question: (campaign, step index) -> ``nps`` or ``csat``."""
    return {(campaign.name, index): step.survey
            for campaign in config.campaigns for index, step in enumerate(campaign.steps) if step.survey}


@dataclass(frozen=True)
class RecordedAnswer:
    """What recording one answer did."""

    feedback_id: int
    #: This answer's score was recorded (False: none given, or the row had one already).
    scored: bool
    #: The row's score and band after this answer (the first score, whoever gave it).
    score: int | None
    band: str | None
    #: A detractor alert was queued by this answer.
    alerted: bool
    #: The question answered: nps or csat.
    question: str = "nps"
    #: False when this reply had been read into the answer before (nothing changed).
    new: bool = True


def record_answer_in(conn: sa.Connection, config: AppConfig, *, delivery_id: int, score: int | None,
                     text: str | None, source: str, at: datetime, now: datetime,
                     reply_id: int | None = None) -> RecordedAnswer | None:
    """Record an answer to the survey message ``delivery_id``, in the caller's transaction.

    ``score`` must already be on the question's scale (links carry only those; replies
    go through :func:`~campaigns.feedback.surveys.parse_score`); ``text`` is free text to
    keep. ``reply_id`` is the ``replied`` response the answer was read from. Returns None
    when the delivery is not a survey message (another step, a test send, unknown).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown feedback source {source!r}")
    delivery = conn.execute(
        sa.select(Delivery.id, Delivery.customer_id, Delivery.campaign, Delivery.step, Delivery.channel,
                  Delivery.is_test).where(Delivery.id == delivery_id)
    ).first()
    question = survey_steps(config).get((delivery.campaign, delivery.step)) if delivery is not None else None
    if delivery is None or delivery.is_test or question is None:
        return None
    text = mask_text(text.strip())[:MAX_TEXT_CHARS] if text and text.strip() else None
    table = Feedback.__table__
    # Lock the row if it exists: two answers to one message (a click during the reply
    # pass) then take turns, and the second sees the first's score and text.
    row = conn.execute(sa.select(table).where(table.c.delivery_id == delivery_id).with_for_update()).first()
    if row is None:
        profile = conn.execute(sa.select(CustomerProfile.stage, CustomerProfile.rfm_segment)
                               .where(CustomerProfile.customer_id == delivery.customer_id)).first()
        band = config.feedback.band(question, score) if score is not None else None
        values = {
            "delivery_id": delivery_id, "customer_id": delivery.customer_id, "campaign": delivery.campaign,
            "channel": delivery.channel, "question": question, "score": score, "band": band, "text": text,
            "source": source if score is not None else None,
            "stage": profile.stage if profile else None, "segment": profile.rfm_segment if profile else None,
            "received_at": at, "scored_at": now if score is not None else None,
            "reply_ids": [reply_id] if reply_id is not None else [],
            "last_reply_id": reply_id,
        }
        inserted = conn.execute(
            dialect_insert(conn, table).values(**values)
            .on_conflict_do_nothing(index_elements=["delivery_id"]).returning(table.c.id)
        ).scalar_one_or_none()
        if inserted is not None:
            alerted = _alert(conn, config, inserted, delivery, values, now=now) if band == "detractor" else False
            return RecordedAnswer(inserted, score is not None, score, band, alerted, question)
        # Another transaction inserted it meanwhile: add to its row like any later answer.
        row = conn.execute(sa.select(table).where(table.c.delivery_id == delivery_id).with_for_update()).first()
        assert row is not None
    if reply_id is not None and reply_id in (row.reply_ids or []):
        return RecordedAnswer(row.id, False, row.score, row.band, False, question, new=False)
    update: dict[str, Any] = {}
    scored = row.score is None and score is not None
    if scored:
        profile = conn.execute(sa.select(CustomerProfile.stage, CustomerProfile.rfm_segment)
                               .where(CustomerProfile.customer_id == delivery.customer_id)).first()
        update.update(score=score, band=config.feedback.band(question, score), source=source, scored_at=now,
                      stage=profile.stage if profile else None, segment=profile.rfm_segment if profile else None)
    elif score is not None and source == "reply":
        # A later score is not a score, but what the customer wrote is kept, number and all
        # (a second click is no writing: nothing to keep).
        text = f"{score} {text}" if text else str(score)
    if text:
        update["text"] = (f"{row.text}\n{text}" if row.text else text)[:MAX_TEXT_CHARS]
    if reply_id is not None:
        update["reply_ids"] = [*(row.reply_ids or []), reply_id]
        update["last_reply_id"] = max(reply_id, row.last_reply_id or 0)
    if update:
        conn.execute(sa.update(table).where(table.c.id == row.id).values(**update))
    band = update.get("band", row.band)
    alerted = False
    if scored and band == "detractor":
        alerted = _alert(conn, config, row.id, delivery,
                         {"score": score, "text": update.get("text", row.text), "question": question}, now=now)
    return RecordedAnswer(row.id, scored, update.get("score", row.score), band, alerted, question)


def _alert(conn: sa.Connection, config: AppConfig, feedback_id: int, delivery: Any, values: dict[str, Any], *,
           now: datetime) -> bool:
    """Queue the detractor alert of answer ``feedback_id`` (once: its key is the answer's)."""
    channel = config.feedback.alert_channel
    if channel is None:
        return False
    customer = conn.execute(sa.select(Customer.external_id, Customer.name)
                            .where(Customer.id == delivery.customer_id)).first()
    payload = {
        "feedback_id": feedback_id,
        "customer": customer.external_id if customer else None,
        "name": customer.name if customer else None,
        "question": values["question"], "score": values["score"], "text": values.get("text"),
        "campaign": delivery.campaign, "channel": delivery.channel,
    }
    return queue_staff_alert(conn, channel=channel, key=f"feedback:{feedback_id}", kind="detractor",
                             customer_id=delivery.customer_id, payload=payload, now=now)


def record_click(engine: Engine, config: AppConfig, *, send_key: str, score: int, now: datetime
                 ) -> RecordedAnswer | None:
    """A click on the score link ``score`` of the message ``send_key`` (the token was
    verified by the caller); None when that message asks no question or the score is off
    its scale (a link of another question's scale cannot be made, but a step's question
    may have changed since the message went out)."""
    with engine.begin() as conn:
        delivery = conn.execute(sa.select(Delivery.id, Delivery.campaign, Delivery.step)
                                .where(Delivery.send_key == send_key)).first()
        if delivery is None:
            return None
        question = survey_steps(config).get((delivery.campaign, delivery.step))
        if question is None or not SCALES[question][0] <= score <= SCALES[question][1]:
            return None
        return record_answer_in(conn, config, delivery_id=delivery.id, score=score, text=None, source="click",
                                at=now, now=now)


def add_comment(engine: Engine, config: AppConfig, *, send_key: str, text: str, now: datetime) -> bool:
    """Keep ``text`` (the thank-you page's comment box) with the answer to ``send_key``;
    False when that message has no answer to add it to."""
    with engine.begin() as conn:
        delivery_id = conn.execute(sa.select(Delivery.id).where(Delivery.send_key == send_key)).scalar()
        if delivery_id is None or not text.strip():
            return False
        exists = conn.execute(sa.select(Feedback.id).where(Feedback.delivery_id == delivery_id)).scalar()
        if exists is None:
            return False
        record_answer_in(conn, config, delivery_id=delivery_id, score=None, text=text, source="click", at=now, now=now)
        return True


@dataclass(frozen=True)
class RepliesRead:
    """What one pass over the recent replies did."""

    #: Replies read into an answer (each once, ever).
    read: int
    #: Of those, the ones whose score was recorded.
    scored: int
    #: Detractor alerts queued.
    alerted: int


def read_survey_replies(engine: Engine, config: AppConfig, *, now: datetime, window: timedelta,
                        batch: int = 500) -> RepliesRead:
    """Read the ``replied`` responses to survey messages, received in ``(now - window,
    now]`` and not read yet, into their answers, oldest first (so the first score given is
    the one kept). Safe to run any number of times, in several processes: each reply is
    read once (``feedback.reply_ids``, under the row's lock).

    A reply names its survey message when its receiver matched one (``nurture reply``, a
    push carrying a send key or message id); an SMS or WeChat reply pushed by the provider
    names only its sender, and answers the survey when the last message sent to the
    customer on that channel family, at or before the reply, is a survey message."""
    steps = survey_steps(config)
    if not steps:
        return RepliesRead(0, 0, 0)
    survey_step = sa.or_(*[sa.and_(Delivery.campaign == campaign, Delivery.step == step)
                           for campaign, step in sorted(steps)])
    # Replies are looked for by primary key above the last one read, less a margin (one
    # committed late, with a lower id than one read since, is still found); the window
    # bounds the first pass of an old database and what a quiet spell leaves to read.
    with engine.connect() as conn:
        highest = conn.execute(sa.select(sa.func.max(Feedback.last_reply_id))).scalar()
    after = max(0, int(highest or 0) - LOOKBACK_IDS)
    replies = (
        sa.select(Response.id, Response.delivery_id, Response.occurred_at, Response.payload)
        .join(Delivery, Delivery.id == Response.delivery_id)
        .outerjoin(Feedback, Feedback.delivery_id == Response.delivery_id)
        .where(Response.id > after, Response.kind == "replied", Response.occurred_at > now - window,
               Response.occurred_at <= now,
               Response.customer_id.is_not(None), survey_step)
        .add_columns(Feedback.reply_ids)
        .order_by(Response.occurred_at, Response.id)
    )
    read = scored = alerted = 0
    with engine.connect() as conn:
        pending = [row for row in conn.execute(replies) if row.id not in (row.reply_ids or [])]
        pending += _credited_replies(conn, config, steps, after=after, now=now, window=window)
    pending.sort(key=lambda row: (row.occurred_at, row.id))
    for start in range(0, len(pending), batch):
        with engine.begin() as conn:
            for row in pending[start:start + batch]:
                question = _question_of(conn, steps, row.delivery_id)
                text = (row.payload or {}).get("text")
                parsed = parse_score(text if isinstance(text, str) else "", question)
                answer = record_answer_in(conn, config, delivery_id=row.delivery_id, score=parsed.score,
                                          text=parsed.text, source="reply", at=row.occurred_at, now=now,
                                          reply_id=row.id)
                if answer is None or not answer.new:
                    continue
                read += 1
                scored += answer.scored
                alerted += answer.alerted
    return RepliesRead(read, scored, alerted)


#: The channel family of the replies each provider pushes (``nurture reply`` credits its
#: replies itself, as the receivers of a send key or message id do).
REPLY_FAMILIES = {"twilio": "sms", "aliyun": "sms", "tencent": "sms", "wechat": "wechat"}


def _credited_replies(conn: sa.Connection, config: AppConfig, steps: dict[tuple[str, int], str], *, after: int,
                      now: datetime, window: timedelta) -> list[Any]:
    """Replies that name no message (an SMS or WeChat reply pushed by the provider names
    only its sender) credited as ``nurture reply`` credits them: to the last message sent
    to the customer, at or before the reply, on a channel of the reply's family; those
    whose message is a survey message, as rows like the matched ones. One statement per
    family, the last message found by a correlated subquery on the customer's deliveries."""
    found: list[Any] = []
    for family in sorted(set(REPLY_FAMILIES.values())):
        channels = family_channels(config, family)
        providers = sorted(p for p, f in REPLY_FAMILIES.items() if f == family)
        if not channels:
            continue
        last = (
            sa.select(Delivery.id)
            .where(Delivery.customer_id == Response.customer_id, Delivery.channel.in_(channels),
                   Delivery.sent_at.is_not(None), Delivery.sent_at <= Response.occurred_at,
                   Delivery.is_test.is_(False))
            .order_by(Delivery.sent_at.desc(), Delivery.id.desc()).limit(1)
            .correlate(Response).scalar_subquery()
        )
        replies = (
            sa.select(Response.id, last.label("delivery_id"), Response.occurred_at, Response.payload)
            .where(Response.id > after, Response.kind == "replied", Response.delivery_id.is_(None),
                   Response.customer_id.is_not(None), Response.provider.in_(providers),
                   Response.occurred_at > now - window, Response.occurred_at <= now)
            .subquery("credited")
        )
        survey_step = sa.or_(*[sa.and_(Delivery.campaign == campaign, Delivery.step == step)
                               for campaign, step in sorted(steps)])
        found += conn.execute(
            sa.select(replies.c.id, replies.c.delivery_id, replies.c.occurred_at, replies.c.payload)
            .join(Delivery, Delivery.id == replies.c.delivery_id).where(survey_step)
        ).all()
    return found


def _question_of(conn: sa.Connection, steps: dict[tuple[str, int], str], delivery_id: int) -> str:
    delivery = conn.execute(sa.select(Delivery.campaign, Delivery.step).where(Delivery.id == delivery_id)).one()
    return steps[(delivery.campaign, delivery.step)]

