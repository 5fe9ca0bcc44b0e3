"""``report feedback`` on a small hand-made set of answers, on SQLite and PostgreSQL: NPS,
CSAT, their counts by campaign, channel, stage, segment and week, the response counts and
the share of detractors answered in time, each figure worked out by hand below."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaigns.feedback.followups import answer_feedback
from campaigns.feedback.scores import read_survey_replies, record_click
from campaigns.reports.feedback import feedback_report, list_answers
from campaigns.responses.replies import record_reply
from tests.campaigns.feedback.survey_world import NOW, SurveyWorld

WEEK_1 = NOW  # Wednesday 2026-06-10, ISO week 24
WEEK_2 = NOW + timedelta(days=7)  # ISO week 25
SINCE = datetime(2026, 6, 8, tzinfo=UTC)
UNTIL = datetime(2026, 6, 22, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest.fixture
def report(tmp_path: Path, database_url: str) -> dict:
    # Customers alternate: even ones active/champions, odd ones at_risk/hibernating.
    world = SurveyWorld(tmp_path, database_url, customers=10)
    ids: dict[str, int] = {}

    def click(external_id: str, score: int, at: datetime, *, campaign: str = "nps", channel: str = "sms") -> None:
        world.now = at
        _, send_key = world.send(external_id, campaign=campaign, step=1 if campaign == "nps" else 0,
                                 channel=channel)
        answer = record_click(world.engine, world.config, send_key=send_key, score=score, now=at)
        assert answer is not None
        ids[external_id] = answer.feedback_id

    click("C0", 10, WEEK_1)                    # promoter, sms, active
    click("C1", 3, WEEK_1)                     # detractor, sms, at_risk
    click("C2", 8, WEEK_1, channel="mail")     # passive, mail, active
    click("C3", 9, WEEK_1, channel="mail")     # promoter, mail, at_risk
    world.now = WEEK_2
    world.send("C4")                           # a reply without a score, sms, active
    record_reply(world.engine, world.config, family="sms", address="+8613800000004", text="who is this?",
                 at=WEEK_2, now=WEEK_2)
    read_survey_replies(world.engine, world.config, now=WEEK_2 + timedelta(minutes=1), window=timedelta(days=2))
    world.send("C8")                           # asked, never answered
    click("C5", 2, WEEK_2, campaign="csat", channel="mail")  # detractor, at_risk
    click("C6", 5, WEEK_2, campaign="csat", channel="mail")  # satisfied, active
    click("C7", 4, WEEK_2, campaign="csat", channel="mail")  # satisfied, at_risk
    click("C9", 0, UNTIL + timedelta(hours=1))               # after the range: not counted
    # C1 answered by staff 2 hours after the score (in time), C5 after 30 hours (late)
    answer_feedback(world.engine, world.config, ids["C1"], by="Li Na", now=WEEK_1 + timedelta(hours=2))
    answer_feedback(world.engine, world.config, ids["C5"], by="Wang", now=WEEK_2 + timedelta(hours=30))
    total, unanswered = list_answers(world.engine, world.config, band="detractor", unanswered=True)
    assert (total, [row.customer for row in unanswered]) == (1, ["C9"])
    return feedback_report(world.engine, world.config, since=SINCE, until=UNTIL, by="week",
                           zone=ZoneInfo("UTC")).to_dict()


def figures(rows: list[dict], key: str, value: str, question: str) -> dict:
    [row] = [row for row in rows if row[key] == value and row["question"] == question]
    return row


def check_totals(report: dict) -> None:
    nps, csat = report["totals"]["nps"], report["totals"]["csat"]
    # NPS: 4 scored (10, 3, 8, 9): 2 promoters - 1 detractor of 4 = +25; 5 answers with C4's text
    assert (nps["answers"], nps["scored"], nps["promoters"], nps["passives"], nps["detractors"], nps["nps"]) == (
        5, 4, 2, 1, 1, 25.0)
    # CSAT: 2, 5, 4: mean 11/3, 2 of 3 satisfied
    assert (csat["scored"], csat["mean"], csat["satisfied_share"]) == (3, 3.67, pytest.approx(2 / 3))


def check_by_channel_stage_segment_campaign(report: dict) -> None:
    assert figures(report["by_channel"], "channel", "sms", "nps")["nps"] == 0.0  # 10 and 3
    assert figures(report["by_channel"], "channel", "sms", "nps")["answers"] == 3
    assert figures(report["by_channel"], "channel", "mail", "nps")["nps"] == 50.0  # 8 and 9
    assert figures(report["by_stage"], "stage", "active", "nps")["nps"] == 50.0  # 10 and 8
    assert figures(report["by_stage"], "stage", "at_risk", "nps")["nps"] == 0.0  # 3 and 9
    assert figures(report["by_stage"], "stage", "active", "csat")["mean"] == 5.0
    at_risk = figures(report["by_segment"], "segment", "hibernating", "csat")
    assert (at_risk["mean"], at_risk["satisfied_share"]) == (3.0, 0.5)  # 2 and 4
    assert figures(report["by_campaign"], "campaign", "csat", "csat")["scored"] == 3


def check_over_time(report: dict) -> None:
    assert report["periods"] == ["2026-W24", "2026-W25"]
    week_1 = figures(report["by_period"], "period", "2026-W24", "nps")
    week_2 = figures(report["by_period"], "period", "2026-W25", "nps")
    assert (week_1["scored"], week_1["nps"]) == (4, 25.0)
    assert (week_2["answers"], week_2["scored"], week_2["nps"]) == (1, 0, None)


def check_responses_and_detractors_answered_in_time(report: dict) -> None:
    assert report["responses"] == [
        {"campaign": "csat", "channel": "mail", "asked": 3, "answers": 3, "scored": 3, "response_rate": 1.0},
        {"campaign": "nps", "channel": "mail", "asked": 2, "answers": 2, "scored": 2, "response_rate": 1.0},
        {"campaign": "nps", "channel": "sms", "asked": 4, "answers": 3, "scored": 2, "response_rate": 0.75},
    ]
    assert report["detractors"] == {"count": 2, "answered": 2, "answered_in_time": 1, "share_answered_in_time": 0.5}


def test_the_report_of_a_hand_made_set(report: dict) -> None:
    # One set of answers (built once per database: it is the slow part) and every figure.
    check_totals(report)
    check_by_channel_stage_segment_campaign(report)
    check_over_time(report)
    check_responses_and_detractors_answered_in_time(report)
