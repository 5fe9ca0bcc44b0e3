"""Following survey answers up: the ``feedback`` trigger's planner, and when a detractor
counts as answered.

A campaign with ``trigger = { feedback = "detractor" }`` enrols the customer of every
answer scored in that band, one enrolment per answer (occurrence ``fb<feedback id>``,
whatever ``reentry`` says, as expiry reminders are per lot), planned set-based like the
other triggers (:func:`campaigns.sending.enrolment.enrol`): however many ticks see the
answer, it is followed up once. Step delays count from the moment the score was recorded.

An answer is **answered** (``answered_at``, ``answered_by``) when staff mark it
(``nurture feedback answer ID --by NAME``, :func:`answer_feedback`) or when its follow-up
campaign's first message to the customer is sent (:func:`mark_followups_answered`, run by
the scheduler tick and before every read of the answers), whichever came first: the
follow-up's send time is taken from the ledger, so a mark made later by staff does not
hide an earlier follow-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.audience.selection import audience_select
from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.config.triggers import FeedbackTrigger
from campaigns.errors import NurtureError
from campaigns.sending.enrolment import enrol
from campaigns.store.models import Delivery, Enrollment, Feedback

#: The occurrence prefix of a follow-up's enrolment: ``fb<feedback id>``.
FOLLOWUP_PREFIX = "fb"


def plan_feedback(engine: Engine, config: AppConfig, campaign: CampaignConfig, *, now: datetime,
                  window: timedelta) -> int:
    """Deliveries for a ``feedback`` campaign: one enrolment per answer in the trigger's
    band scored in ``(now - window, now]`` whose customer is in the audience; returns how
    many deliveries are new."""
    trigger = campaign.trigger
    if not isinstance(trigger, FeedbackTrigger):
        raise ValueError(f"campaign {campaign.name} is not triggered by survey answers")
    answers = (
        sa.select(Feedback.id, Feedback.customer_id, Feedback.scored_at)
        .where(Feedback.band == trigger.feedback, Feedback.scored_at > now - window, Feedback.scored_at <= now)
        .subquery("answers")
    )
    audience = audience_select(config, campaign, now=now).subquery("audience")
    targets = (
        sa.select(
            audience.c.customer_id,
            audience.c.channel,
            (sa.literal(FOLLOWUP_PREFIX) + sa.cast(answers.c.id, sa.String)).label("occurrence"),
            answers.c.scored_at.label("base"),
        )
        .select_from(answers)
        .join(audience, audience.c.customer_id == answers.c.customer_id)
        .subquery("targets")
    )
    with engine.begin() as conn:
        return enrol(conn, config, campaign, targets, base=targets.c.base, now=now)


def followup_campaigns(config: AppConfig) -> dict[str, str]:
    """The campaigns that follow answers up: name -> the band they follow."""
    return {campaign.name: campaign.trigger.feedback for campaign in config.campaigns
            if isinstance(campaign.trigger, FeedbackTrigger)}


def mark_followups_answered(engine: Engine, config: AppConfig) -> int:
    """Mark answered every unanswered answer whose follow-up's first message was sent:
    ``answered_at`` is that message's ``sent_at``, ``answered_by`` ``campaign <name>``.
    Returns how many answers were marked. One UPDATE per follow-up campaign."""
    marked = 0
    enrollment, delivery, feedback = Enrollment.__table__, Delivery.__table__, Feedback.__table__
    with engine.begin() as conn:
        for name, band in sorted(followup_campaigns(config).items()):
            first_sent = (
                sa.select(sa.func.min(delivery.c.sent_at))
                .select_from(enrollment.join(delivery, delivery.c.enrollment_id == enrollment.c.id))
                .where(enrollment.c.campaign == name,
                       enrollment.c.customer_id == feedback.c.customer_id,
                       enrollment.c.occurrence == sa.literal(FOLLOWUP_PREFIX) + sa.cast(feedback.c.id, sa.String),
                       delivery.c.sent_at.is_not(None))
                .scalar_subquery()
            )
            marked += conn.execute(
                sa.update(feedback)
                .where(feedback.c.answered_at.is_(None), feedback.c.band == band, first_sent.is_not(None))
                .values(answered_at=first_sent, answered_by=f"campaign {name}")
            ).rowcount
    return marked


class FeedbackNotFound(NurtureError):
    """``nurture feedback answer`` named an answer that does not exist."""


@dataclass(frozen=True)
class Answered:
    """What marking an answer did."""

    feedback_id: int
    #: False when it was answered before (by staff or its follow-up): nothing changed.
    marked: bool
    answered_at: datetime
    answered_by: str


def answer_feedback(engine: Engine, config: AppConfig, feedback_id: int, *, by: str, now: datetime) -> Answered:
    """Staff answered answer ``feedback_id`` (``nurture feedback answer ID --by NAME``),
    unless it was answered before: the first answer stands.

    Raises:
        FeedbackNotFound: no answer has that id.
    """
    by = by.strip()
    if not by:
        raise ValueError("say who answered (--by NAME)")
    # A follow-up sent before this mark answered it first.
    mark_followups_answered(engine, config)
    with engine.begin() as conn:
        marked = conn.execute(
            sa.update(Feedback).where(Feedback.id == feedback_id, Feedback.answered_at.is_(None))
            .values(answered_at=now, answered_by=by[:128])
        ).rowcount == 1
        row = conn.execute(sa.select(Feedback.answered_at, Feedback.answered_by)
                           .where(Feedback.id == feedback_id)).first()
    if row is None:
        raise FeedbackNotFound(f"no survey answer has id {feedback_id} (see nurture feedback list)")
    return Answered(feedback_id, marked, row.answered_at, row.answered_by)
