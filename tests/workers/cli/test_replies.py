"""``nurture replies`` (workers/cli/replies.py): the replies the scheduler's tick labelled,
filtered by label and time, as a table or JSON; a wrong label is a clear error.

The project is this folder's win_back one (tests/workers/cli/win_back.py)."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.conftest import TICK_NOW
from tests.workers.cli.win_back import NOW_ARG, assert_no_crash, invoke, seed_lapsed

LATER = TICK_NOW + timedelta(hours=1)


def run(project, *args: str):
    result = invoke(*args, "-c", project.config)
    assert_no_crash(result)
    return result


def test_replies_lists_what_the_tick_labelled(project, engine):
    seed_lapsed(engine)
    assert run(project, "scheduler", "--once", "--now", NOW_ARG).exit_code == 0
    for address, text, minutes in [("+8613800000003", "太差了，我要投诉", 1), ("p0@example.com", "How much is it?", 2),
                                   ("p1@example.com", "TD", 3), ("p2@example.com", "thanks, love it", 4)]:
        at = (LATER + timedelta(minutes=minutes)).isoformat()
        assert run(project, "reply", address, text, "--at", at).exit_code == 0
    tick = (LATER + timedelta(minutes=5)).isoformat()
    labelled = run(project, "scheduler", "--once", "--now", tick)
    assert labelled.exit_code == 0
    assert "replies labelled: 1 complaint, 1 positive, 1 question" in labelled.stdout

    listed = json.loads(run(project, "replies", "--json").stdout)
    assert listed["total"] == 3  # the opt-out is not classified
    assert [(r["label"], r["customer"], r["text"], r["campaign"]) for r in listed["replies"]] == [
        ("positive", "C00002", "thanks, love it", "win_back"),
        ("question", "C00000", "How much is it?", "win_back"),
        ("complaint", "C00003", "太差了，我要投诉", "win_back"),
    ]
    complaints = json.loads(run(project, "replies", "--label", "complaint", "--json").stdout)
    assert [r["text"] for r in complaints["replies"]] == ["太差了，我要投诉"]
    since = (LATER + timedelta(minutes=2)).isoformat()
    recent = json.loads(run(project, "replies", "--since", since, "--json").stdout)
    assert [r["label"] for r in recent["replies"]] == ["positive", "question"]

    table = run(project, "replies", "-n", "1")
    assert table.exit_code == 0 and "1 of 3" in table.stdout and "thanks, love it" in table.stdout

    wrong = run(project, "replies", "--label", "angry")
    assert wrong.exit_code != 0 and "unknown label(s) angry" in wrong.output
    wrong = run(project, "replies", "--since", "last week")
    assert wrong.exit_code != 0 and "neither a duration" in wrong.output


def test_alerts_lists_staff_alerts_and_queues_failed_ones_again(project, engine):
    from campaigns.feedback.alerts import queue_staff_alert, settle_alert, take_due_alerts

    with engine.begin() as conn:
        for key in ("reply:1", "feedback:2"):
            queue_staff_alert(conn, channel="care", key=key, kind="complaint" if key.startswith("reply") else "detractor",
                              customer_id=None, payload={}, now=TICK_NOW)
    first, second = take_due_alerts(engine, now=TICK_NOW, lease=timedelta(minutes=5))
    settle_alert(engine, first.id, status="failed", now=TICK_NOW, error="wecom errcode 93000: invalid webhook url")
    settle_alert(engine, second.id, status="sent", now=TICK_NOW)

    failed = json.loads(run(project, "alerts", "list", "--status", "failed", "--json").stdout)
    assert failed["total"] == 1 and [(a["key"], a["error"]) for a in failed["alerts"]] == [
        ("reply:1", "wecom errcode 93000: invalid webhook url")]
    table = run(project, "alerts", "list")
    assert table.exit_code == 0 and "feedback:2" in table.stdout and "invalid webhook url" in table.stdout
    assert json.loads(run(project, "alerts", "retry", "--json").stdout) == {"queued": 1}
    listed = json.loads(run(project, "alerts", "list", "--json").stdout)
    assert [(a["key"], a["status"], a["attempts"]) for a in listed["alerts"]] == [
        ("feedback:2", "sent", 1), ("reply:1", "queued", 0)]
    wrong = run(project, "alerts", "list", "--status", "lost")
    assert wrong.exit_code != 0 and "unknown status(es) lost" in wrong.output
