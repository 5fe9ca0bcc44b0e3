"""Survey answers on SQLite and PostgreSQL: every accepted reply form gives the right score
once, a link click records once and nothing later re-scores, free text is kept, band,
stage and segment are those at the time, and a detractor queues one staff alert."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from campaigns.feedback.scores import add_comment, read_survey_replies, record_click
from campaigns.responses.replies import record_reply
from tests.campaigns.feedback.survey_world import SurveyWorld

WINDOW = timedelta(days=2)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> SurveyWorld:
    return SurveyWorld(tmp_path, database_url, customers=12)


def reply(world: SurveyWorld, external_id: str, text: str, *, minutes: int = 0) -> None:
    """``text`` from the customer's phone, as ``nurture reply`` (and a provider push) records it."""
    phone = f"+8613800000{int(external_id[1:]):03d}"
    record_reply(world.engine, world.config, family="sms", address=phone, text=text,
                 at=world.now - timedelta(minutes=30 - minutes), now=world.now)


#: Reply forms and the NPS score each must give.
FORMS = [("9", 9), ("９", 9), ("9分", 9), ("10/10", 10), ("score: 7", 7), (" 8 ", 8), ("十分", 10),
         ("九分", 9), ("０", 0), ("3 - late again", 3), ("１０／１０", 10), ("NPS：6", 6)]


def test_every_accepted_reply_form_gives_its_score_once(world: SurveyWorld) -> None:
    # Given one survey message per form, each answered with it
    for number, (text, _) in enumerate(FORMS):
        world.send(f"C{number}")
        reply(world, f"C{number}", text)
    # When the replies are read, twice (every tick reads the recent ones)
    first = read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    second = read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    # Then each message has its form's score, recorded once
    answers = world.answers()
    assert [(row.customer_id, row.score) for row in answers] == [
        (world.ids[f"C{number}"], score) for number, (_, score) in enumerate(FORMS)]
    assert (first.read, first.scored) == (len(FORMS), len(FORMS))
    assert (second.read, second.scored) == (0, 0)
    assert all(row.source == "reply" and row.question == "nps" for row in answers)
    assert answers[9].text == "late again"
    assert [row.text for row in answers if row.text] == ["late again"]


def test_off_scale_and_ambiguous_replies_are_text_without_a_score(world: SurveyWorld) -> None:
    texts = ["11", "7 or 8", "8.5", "十分满意", "great service", "9 but 3 days late"]
    for number, text in enumerate(texts):
        world.send(f"C{number}")
        reply(world, f"C{number}", text)
    read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    answers = world.answers()
    assert [(row.score, row.band, row.text) for row in answers] == [(None, None, text) for text in texts]
    # and no alert for text alone
    assert world.alerts() == []


def test_first_score_wins_and_later_replies_keep_their_text(world: SurveyWorld) -> None:
    world.send("C1")
    reply(world, "C1", "the courier was rude", minutes=0)
    reply(world, "C1", "3", minutes=1)
    reply(world, "C1", "actually 8, they called back", minutes=2)
    read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    # a reply arriving after the pass: still not a score
    reply(world, "C1", "10", minutes=3)
    read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    [answer] = world.answers()
    assert (answer.score, answer.band, answer.source) == (3, "detractor", "reply")
    # what holds no score, and a score after the first, are kept as text
    assert answer.text.splitlines() == ["the courier was rude", "actually 8, they called back", "10"]
    # stage and segment of the customer when the score was recorded
    assert (answer.stage, answer.segment) == ("at_risk", "hibernating")
    assert len(answer.reply_ids) == 4


def test_a_link_click_records_once_and_nothing_later_rescores(world: SurveyWorld) -> None:
    _, send_key = world.send("C2")
    first = record_click(world.engine, world.config, send_key=send_key, score=9, now=world.now)
    again = record_click(world.engine, world.config, send_key=send_key, score=2, now=world.now)
    reply(world, "C2", "4")
    read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    assert first is not None and first.scored and (first.score, first.band) == (9, "promoter")
    assert again is not None and not again.scored and again.score == 9
    [answer] = world.answers()
    assert (answer.score, answer.band, answer.source, answer.stage) == (9, "promoter", "click", "active")
    # the later reply is kept as text, the second click is not writing
    assert answer.text == "4"
    assert add_comment(world.engine, world.config, send_key=send_key, text="Fast delivery", now=world.now)
    assert world.answers()[0].text == "4\nFast delivery"


def test_a_reply_then_a_click_counts_once(world: SurveyWorld) -> None:
    _, send_key = world.send("C3")
    reply(world, "C3", "2")
    read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    clicked = record_click(world.engine, world.config, send_key=send_key, score=10, now=world.now)
    assert clicked is not None and not clicked.scored
    assert [(row.score, row.source) for row in world.answers()] == [(2, "reply")]


def test_a_click_off_the_scale_or_on_another_step_records_nothing(world: SurveyWorld) -> None:
    _, csat_key = world.send("C4", campaign="csat", step=0, channel="mail")
    _, other_key = world.send("C5", step=0)
    assert record_click(world.engine, world.config, send_key=csat_key, score=9, now=world.now) is None
    assert record_click(world.engine, world.config, send_key=other_key, score=9, now=world.now) is None
    assert record_click(world.engine, world.config, send_key="nps:1:999:once", score=9, now=world.now) is None
    csat = record_click(world.engine, world.config, send_key=csat_key, score=2, now=world.now)
    assert csat is not None and (csat.score, csat.band) == (2, "detractor")
    assert [(row.question, row.score) for row in world.answers()] == [("csat", 2)]


def test_replies_to_other_messages_and_test_sends_are_not_answers(world: SurveyWorld) -> None:
    world.send("C6", step=0)  # the thank-you step asks nothing
    reply(world, "C6", "9")
    result = read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    assert result.read == 0 and world.answers() == []


def test_a_detractor_queues_one_alert_with_customer_score_and_text(world: SurveyWorld) -> None:
    _, send_key = world.send("C7")
    reply(world, "C7", "2，太慢了")
    read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    read_survey_replies(world.engine, world.config, now=world.now + timedelta(minutes=1), window=WINDOW)
    record_click(world.engine, world.config, send_key=send_key, score=1, now=world.now)
    # a passive and a promoter alert nobody
    world.send("C8")
    reply(world, "C8", "8")
    world.send("C9")
    reply(world, "C9", "10")
    read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    [alert] = world.alerts()
    feedback_id = world.answers()[0].id
    assert (alert.alert_key, alert.kind, alert.channel, alert.status) == (
        f"feedback:{feedback_id}", "detractor", "support", "queued")
    assert alert.customer_id == world.ids["C7"]
    assert {key: alert.payload[key] for key in ("customer", "score", "text", "campaign", "question")} == {
        "customer": "C7", "score": 2, "text": "太慢了", "campaign": "nps", "question": "nps"}


def test_without_an_alert_channel_a_detractor_alerts_nobody(tmp_path: Path, database_url: str) -> None:
    world = SurveyWorld(tmp_path, database_url)
    world.config = world.config.model_copy(update={
        "feedback": world.config.feedback.model_copy(update={"alert_channel": None})})
    _, send_key = world.send("C1")
    answer = record_click(world.engine, world.config, send_key=send_key, score=0, now=world.now)
    assert answer is not None and answer.band == "detractor" and not answer.alerted
    assert world.alerts() == []


def test_bands_follow_the_configured_thresholds(tmp_path: Path, database_url: str) -> None:
    world = SurveyWorld(tmp_path, database_url, extra="")
    config = world.config
    world.config = config.model_copy(update={"feedback": config.feedback.model_copy(update={
        "nps": config.feedback.nps.model_copy(update={"detractor_max": 4, "passive_max": 7})})})
    bands = []
    for number, score in enumerate((4, 5, 8)):
        _, send_key = world.send(f"C{number}")
        answer = record_click(world.engine, world.config, send_key=send_key, score=score, now=world.now)
        assert answer is not None
        bands.append(answer.band)
    assert bands == ["detractor", "passive", "promoter"]


def test_a_provider_reply_naming_only_its_sender_answers_the_last_message(world: SurveyWorld) -> None:
    from campaigns.responses.recording import InboundResponse, record_responses

    # Given a survey SMS to C1 and C2, then a later non-survey SMS to C2
    world.send("C1", sent_at=world.now - timedelta(hours=2))
    world.send("C2", sent_at=world.now - timedelta(hours=2))
    world.send("C2", step=0, sent_at=world.now - timedelta(hours=1))

    def push(external_id: str, ref: str, text: str) -> None:
        record_responses(world.engine, [InboundResponse(
            kind="replied", provider="aliyun", provider_ref=ref, occurred_at=world.now - timedelta(minutes=30),
            address=f"+8613800000{int(external_id[1:]):03d}", family="sms", text=text)], now=world.now)

    # When each replies through the provider (no send key, no message id)
    push("C1", "seq-1", "９分")
    push("C2", "seq-2", "10")
    first = read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    again = read_survey_replies(world.engine, world.config, now=world.now, window=WINDOW)
    # Then C1's reply answers its survey, once; C2's answers the later message, not the survey
    assert (first.read, first.scored, again.read) == (1, 1, 0)
    assert [(row.customer_id, row.score, row.source) for row in world.answers()] == [(world.ids["C1"], 9, "reply")]
