"""The sending commands of workers/cli/sending.py through the Typer app: scheduler, status,
worker, run and serve (resume: test_campaigns.py), each on a throwaway project in
``tmp_path`` (SQLite file, stub broker, outbox channels writing into ``tmp_path``)."""

from __future__ import annotations

import json
import textwrap
from email import policy
from email.parser import BytesParser

import pytest
import sqlalchemy as sa

from campaigns.store.models import Delivery
from tests.conftest import TICK_NOW, seed_customers
from tests.workers.cli.win_back import (
    NOW_ARG,
    Project,
    assert_no_crash,
    flat,
    invoke,
    outbox_files,
    seed_lapsed,
)

# --------------------------------------------------------------------------- scheduler and status


def test_scheduler_once_writes_one_file_per_targeted_customer_and_a_second_run_nothing(project, engine):
    seed_lapsed(engine)

    first = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config)

    assert_no_crash(first)
    assert first.exit_code == 0, first.output
    assert "run win_back @ 2026-03-02 02:00 UTC: 4 new deliveries" in first.output
    assert "enqueued 4 deliveries" in first.output
    emails, texts = outbox_files(project)
    assert len(emails) == 3 and len(texts) == 1
    assert {path.parent.name for path in emails + texts} == {"win_back"}
    parsed = [BytesParser(policy=policy.default).parsebytes(path.read_bytes()) for path in emails]
    assert sorted(message["To"] for message in parsed) == ["p0@example.com", "p1@example.com", "p2@example.com"]
    for message in parsed:
        number = message["To"].removeprefix("p").split("@")[0]
        assert message["Subject"] == f"We miss you, Test Person{number}"
        assert message["From"] == "Test Shop <shop@example.com>"
        assert "you ordered 1 time(s)" in message.get_content()
    sms = texts[0].read_text(encoding="utf-8")
    assert sms.startswith("To: +8613800000003\n")
    assert "Test Person3: 15% off" in sms

    second = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config, "--json")

    assert_no_crash(second)
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert report["runs"] == []
    assert report["enqueued_deliveries"] == 0 and report["enqueued_jobs"] == 0
    assert outbox_files(project) == (emails, texts)
    with engine.connect() as conn:
        assert conn.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)).all() == [
            ("sent", 4)
        ]


def test_scheduler_json_reports_the_run_it_planned(project, engine):
    seed_lapsed(engine)

    result = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config, "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["now"] == NOW_ARG
    assert report["runs"] == [{"campaign": "win_back", "scheduled_at": "2026-03-02T02:00:00+00:00", "planned": 4}]
    assert report["enqueued_deliveries"] == 4
    assert report["enqueued_jobs"] == 2  # batch_size = 3


def test_scheduler_rejects_a_now_that_is_not_iso_8601(project):
    result = invoke("scheduler", "--once", "--now", "yesterday-ish", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 2  # a usage error
    assert "'yesterday-ish' is not an ISO 8601 time" in flat(result.output)
    assert outbox_files(project) == ([], [])


def test_status_json_reports_sent_counts_per_campaign_and_channel(project, engine):
    seed_lapsed(engine)
    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0

    result = invoke("status", "-c", project.config, "--json")

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "deliveries": [
            {"campaign": "win_back", "channel": "email", "status": "sent", "count": 3},
            {"campaign": "win_back", "channel": "sms", "status": "sent", "count": 1},
        ],
        "held_back": [],
        "paused": [],
    }
    table = invoke("status", "-c", project.config)
    assert table.exit_code == 0
    rows = [" ".join(flat(line).split()) for line in table.output.splitlines() if "win_back" in line]
    assert rows == ["win_back email sent 3", "win_back sms sent 1"]


def test_status_on_an_empty_database_reports_nothing(project):
    result = invoke("status", "-c", project.config, "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"deliveries": [], "held_back": [], "paused": []}


# --------------------------------------------------------------------------- worker, errors, resume


def test_worker_with_the_stub_broker_explains_that_it_is_in_process(project):
    result = invoke("worker", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 1
    text = flat(result.output)
    assert "stub://" in text and "in-process" in text
    assert "nurture scheduler" in text and "redis://" in text


def test_worker_with_a_missing_config_says_so(tmp_path):
    result = invoke("worker", "-c", tmp_path / "absent.toml")

    assert_no_crash(result)
    assert result.exit_code == 1
    assert "absent.toml: file not found" in result.output


@pytest.mark.parametrize("command", [
    ["status"],
    ["status", "--json"],
    ["scheduler", "--once", "--now", NOW_ARG],
    ["resume", "win_back"],
])
def test_an_unreachable_database_is_exit_2_and_a_message(make_project, command):
    project = make_project("postgresql://postgres@127.0.0.1:1/x")

    result = invoke(*command, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 2, result.output
    assert "database error" in result.output
    assert "127.0.0.1" in result.output
    assert outbox_files(project) == ([], [])


# --------------------------------------------------------------------------- run and serve


def add_broadcast(project: Project) -> None:
    """Append a manual one-off broadcast to everyone with an order."""
    with project.config.open("a") as handle:
        handle.write(textwrap.dedent("""
            [[campaigns]]
            name = "spring_sale"
            trigger = { manual = true }
            channels = ["email", "sms"]
            holdout = 0.5
              [campaigns.audience]
              min_orders = 1
              [[campaigns.steps]]
              template = "win_back/miss_you"
            """))


def test_run_sends_a_manual_broadcast_once_and_report_shows_the_holdout(project, engine):
    seed_customers(engine, count=10, now=TICK_NOW, lapsed_share=0.4)
    add_broadcast(project)

    first = invoke("run", "spring_sale", "-c", project.config, "--json")
    again = invoke("run", "spring_sale", "-c", project.config)
    report = invoke("report", "campaign", "spring_sale", "-c", project.config, "--json")
    unknown = invoke("run", "nope", "-c", project.config)

    assert_no_crash(first)
    assert first.exit_code == 0, first.output
    planned = json.loads(first.stdout)["runs"][0]["planned"]
    data = json.loads(report.stdout)
    assert data["enrolled"] + data["held_out"] == 10
    assert 0 < data["held_out"] < 10  # half, deterministically, of ten
    assert planned == data["enrolled"] == data["sent"]
    assert "nothing more to send" in again.output
    emails, texts = outbox_files(project)
    assert len(emails) + len(texts) == data["sent"]
    assert unknown.exit_code == 1 and "no campaign named 'nope'" in flat(unknown.output)


def test_serve_refuses_several_processes_with_the_in_process_broker(project):
    # With stub:// the server's own threads send; a second process would have no workers.
    result = invoke("serve", "-c", project.config, "--workers", "2")
    assert result.exit_code == 1
    assert "--workers above 1 needs broker.url" in " ".join(result.output.split())
    assert "Traceback" not in result.output
