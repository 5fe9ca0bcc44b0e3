"""``nurture feedback list``, ``nurture feedback answer`` and ``nurture report feedback``
over the survey project of tests/campaigns/feedback/survey_world.py (SQLite): the staff
see a detractor, mark it once, and the report counts it; mistakes are clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from campaigns.feedback.scores import record_click
from tests.campaigns.feedback.survey_world import SurveyWorld
from tests.workers.cli.win_back import assert_no_crash, flat, invoke


def run(config: Path, *args: str):
    result = invoke(*args, "-c", config)
    assert_no_crash(result)
    return result


def test_staff_list_answer_and_report(tmp_path: Path, sqlite_url: str) -> None:
    world = SurveyWorld(tmp_path, sqlite_url)
    config = tmp_path / "config.toml"
    for external_id, score in (("C0", 2), ("C1", 9)):
        _, send_key = world.send(external_id)
        assert record_click(world.engine, world.config, send_key=send_key, score=score, now=world.now)

    listed = json.loads(run(config, "feedback", "list", "--band", "detractor", "--unanswered", "--json").stdout)
    assert listed["total"] == 1
    [row] = listed["answers"]
    assert (row["customer"], row["score"], row["band"], row["answered_at"]) == ("C0", 2, "detractor", None)
    assert row["answer_due"] == "2026-06-11T09:00:00+00:00"  # [feedback] answer_within = 24h
    table = flat(run(config, "feedback", "list").stdout)
    assert "survey answers" in table and "C0" in table and "due 2026-06-11 09:00" in table

    marked = run(config, "feedback", "answer", str(row["id"]), "--by", "Li Na", "--at", "2026-06-10T10:00:00Z")
    assert marked.exit_code == 0 and "marked answered by Li Na" in marked.stdout
    again = run(config, "feedback", "answer", str(row["id"]), "--by", "Wang")
    assert again.exit_code == 0 and "already answered by Li Na" in again.stdout
    assert json.loads(run(config, "feedback", "list", "--unanswered", "--band", "detractor", "--json").stdout
                      )["total"] == 0

    report = json.loads(run(config, "report", "feedback", "--since", "2026-06-01", "--until", "2026-06-10",
                            "--by", "month", "--timezone", "UTC", "--json").stdout)
    assert report["totals"]["nps"]["nps"] == 0.0 and report["periods"] == ["2026-06"]
    assert report["detractors"] == {"count": 1, "answered": 1, "answered_in_time": 1, "share_answered_in_time": 1.0}
    text = flat(run(config, "report", "feedback", "--since", "2026-06-01", "--until", "2026-06-10").stdout)
    assert "answered within 24h 1 of 1 (100.0%)" in text and "by campaign" in text


def test_mistakes_are_clear_errors(tmp_path: Path, sqlite_url: str) -> None:
    SurveyWorld(tmp_path, sqlite_url)
    config = tmp_path / "config.toml"
    missing = run(config, "feedback", "answer", "999", "--by", "Li Na")
    assert missing.exit_code == 1 and "no survey answer has id 999" in flat(missing.output)
    nobody = run(config, "feedback", "answer", "1", "--by", " ")
    assert nobody.exit_code == 1 and "--by names who answered" in flat(nobody.output)
    backwards = run(config, "report", "feedback", "--since", "2026-06-10", "--until", "2026-06-01")
    assert backwards.exit_code == 1 and "is not before" in flat(backwards.output)
    zone = run(config, "report", "feedback", "--timezone", "Mars/Base")
    assert zone.exit_code == 1 and "unknown time zone" in flat(zone.output)
