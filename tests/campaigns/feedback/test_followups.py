"""Detractor follow-ups on SQLite and PostgreSQL: one enrolment per detractor answer,
planned once however many ticks see it; an answer is answered by staff or by its
follow-up's first message sent, whichever came first."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.feedback.followups import FeedbackNotFound, answer_feedback, mark_followups_answered, plan_feedback
from campaigns.feedback.scores import record_click
from campaigns.store.models import Delivery, Enrollment, Feedback
from tests.campaigns.feedback.survey_world import SurveyWorld

WINDOW = timedelta(days=2)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> SurveyWorld:
    return SurveyWorld(tmp_path, database_url, customers=4)


def answer(world: SurveyWorld, external_id: str, score: int, *, campaign: str = "nps") -> int:
    _, send_key = world.send(external_id, campaign=campaign, step=1 if campaign == "nps" else 0,
                             channel="sms" if campaign == "nps" else "mail")
    recorded = record_click(world.engine, world.config, send_key=send_key, score=score, now=world.now)
    assert recorded is not None
    return recorded.feedback_id


def test_each_detractor_answer_is_followed_up_once(world: SurveyWorld) -> None:
    # Given two detractors (one NPS, one CSAT of the same customer), a passive, a promoter
    first = answer(world, "C0", 3)
    second = answer(world, "C0", 1, campaign="csat")
    answer(world, "C1", 8)
    answer(world, "C2", 10)
    sorry = world.config.campaign("sorry")
    # When ticks plan the follow-up, several times
    planned = [plan_feedback(world.engine, world.config, sorry, now=world.now + timedelta(minutes=minute),
                             window=WINDOW) for minute in (0, 1, 2)]
    # Then each detractor answer has one enrolment and its two steps, once
    assert planned == [4, 0, 0]
    with world.engine.connect() as conn:
        enrolments = conn.execute(sa.select(Enrollment.customer_id, Enrollment.occurrence)
                                  .where(Enrollment.campaign == "sorry").order_by(Enrollment.id)).all()
        steps = conn.execute(sa.select(Delivery.step, Delivery.due_at, Delivery.channel)
                             .where(Delivery.campaign == "sorry").order_by(Delivery.send_key)).all()
    assert sorted(enrolments) == sorted([(world.ids["C0"], f"fb{first}"), (world.ids["C0"], f"fb{second}")])
    # the delays count from the score
    assert sorted((step, due_at) for step, due_at, _ in steps) == [
        (0, world.now), (0, world.now), (1, world.now + timedelta(days=2)), (1, world.now + timedelta(days=2))]


def test_answers_outside_the_window_are_not_followed_up(world: SurveyWorld) -> None:
    answer(world, "C0", 2)
    sorry = world.config.campaign("sorry")
    assert plan_feedback(world.engine, world.config, sorry, now=world.now + WINDOW + timedelta(seconds=1),
                         window=WINDOW) == 0


def test_the_first_followup_sent_answers_the_detractor(world: SurveyWorld) -> None:
    feedback_id = answer(world, "C0", 2)
    sorry = world.config.campaign("sorry")
    plan_feedback(world.engine, world.config, sorry, now=world.now, window=WINDOW)
    assert mark_followups_answered(world.engine, world.config) == 0
    sent_at = world.now + timedelta(minutes=5)
    with world.engine.begin() as conn:
        conn.execute(sa.update(Delivery).where(Delivery.campaign == "sorry", Delivery.step == 0)
                     .values(status="sent", sent_at=sent_at))
    assert mark_followups_answered(world.engine, world.config) == 1
    assert mark_followups_answered(world.engine, world.config) == 0
    # staff marking it later changes nothing: the follow-up came first
    later = answer_feedback(world.engine, world.config, feedback_id, by="Li Na", now=world.now + timedelta(hours=1))
    assert not later.marked and (later.answered_at, later.answered_by) == (sent_at, "campaign sorry")


def test_staff_answer_first_and_once(world: SurveyWorld) -> None:
    feedback_id = answer(world, "C1", 0)
    marked = answer_feedback(world.engine, world.config, feedback_id, by="Li Na", now=world.now + timedelta(hours=2))
    again = answer_feedback(world.engine, world.config, feedback_id, by="Wang", now=world.now + timedelta(hours=3))
    assert marked.marked and not again.marked
    with world.engine.connect() as conn:
        row = conn.execute(sa.select(Feedback.answered_at, Feedback.answered_by)).one()
    assert tuple(row) == (world.now + timedelta(hours=2), "Li Na")
    with pytest.raises(FeedbackNotFound):
        answer_feedback(world.engine, world.config, feedback_id + 100, by="Li Na", now=world.now)
