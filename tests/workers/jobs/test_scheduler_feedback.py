"""The scheduler tick and survey answers, on SQLite and PostgreSQL: a tick reads the
replies to survey messages into scores, follows each detractor up once and queues one
alert, and the follow-up's first message sent answers the detractor; later ticks add
nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.responses.replies import record_reply
from campaigns.store.models import Delivery, Enrollment
from tests.campaigns.feedback.survey_world import SurveyWorld
from workers.jobs.broker import make_broker
from workers.jobs.scheduler import tick


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


def test_a_tick_scores_replies_follows_detractors_up_and_alerts_once(tmp_path: Path, database_url: str) -> None:
    world = SurveyWorld(tmp_path, database_url)
    broker = make_broker(world.config.broker)
    for external_id, text in (("C0", "2分 太慢了"), ("C1", "9")):
        world.send(external_id)
        record_reply(world.engine, world.config, family="sms", address=f"+8613800000{int(external_id[1:]):03d}",
                     text=text, at=world.now - timedelta(minutes=5), now=world.now)

    first = tick(config=world.config, engine=world.engine, broker=broker, now=world.now)
    later = [tick(config=world.config, engine=world.engine, broker=broker, now=world.now + timedelta(minutes=m))
             for m in (1, 2)]

    assert first.survey_replies is not None and (first.survey_replies.read, first.survey_replies.scored) == (2, 2)
    assert first.entries["sorry"] == 2  # the detractor's two follow-up steps
    assert all(report.survey_replies.read == 0 and report.entries["sorry"] == 0 for report in later)
    answers = world.answers()
    assert [(row.score, row.band, row.text) for row in answers] == [(2, "detractor", "太慢了"), (9, "promoter", None)]
    [alert] = world.alerts()
    assert (alert.alert_key, alert.payload["score"], alert.payload["text"]) == (
        f"feedback:{answers[0].id}", 2, "太慢了")
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(Enrollment.customer_id, Enrollment.occurrence)
                            .where(Enrollment.campaign == "sorry")).all() == [(world.ids["C0"], f"fb{answers[0].id}")]

    # The follow-up's first message goes out: the next tick marks the detractor answered.
    sent_at = world.now + timedelta(minutes=3)
    with world.engine.begin() as conn:
        conn.execute(sa.update(Delivery).where(Delivery.campaign == "sorry", Delivery.step == 0)
                     .values(status="sent", sent_at=sent_at))
    tick(config=world.config, engine=world.engine, broker=broker, now=world.now + timedelta(minutes=4))
    detractor = world.answers()[0]
    assert (detractor.answered_at, detractor.answered_by) == (sent_at, "campaign sorry")
