"""What ``nurture scheduler --once`` and ``nurture run`` print (workers/cli/runreport.py):
with the in-process broker, how many were sent, deferred by reason and skipped or failed,
not only "enqueued N"; times in UTC whatever offset ``--now`` had; with Redis, that the
workers have them (and ``--now`` refused). ``track``'s line: tests/e2e/test_event_receiver.py.

Each test runs on the throwaway win_back project (this folder's conftest.py) with a pinned
``--now``, or on a manual campaign whose audience does not depend on the date."""

from __future__ import annotations

import json

import sqlalchemy as sa

from campaigns.store.models import Customer, Delivery
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

BROADCAST = """
[[campaigns]]
name = "promo"
trigger = { manual = true }
channels = ["email"]
  [campaigns.audience]
  min_orders = 1
  [[campaigns.steps]]
  template = "win_back/miss_you"
"""


def with_quiet_hours(project: Project) -> None:
    text = project.config.read_text()
    project.config.write_text(text.replace('quiet_hours = ""', 'quiet_hours = "21:00-08:00"'))


def test_scheduler_once_says_what_was_sent_and_what_quiet_hours_deferred(project, engine):
    with_quiet_hours(project)
    seed_lapsed(engine)
    with engine.begin() as conn:  # 21:05 the evening before in New York: inside its quiet hours
        conn.execute(sa.update(Customer).where(Customer.external_id == "C00000").values(timezone="America/New_York"))

    text = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config)
    as_json = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config, "--json")

    assert_no_crash(text)
    assert text.exit_code == 0, text.output
    assert "enqueued 4 deliveries in 2 jobs" in text.output
    assert "3 sent, 1 deferred (quiet hours 1), 0 skipped, 0 failed" in flat(text.output)
    # A second tick enqueues nothing (the deferred row waits for 08:00 in New York).
    assert json.loads(as_json.stdout)["outcome"]["deliveries"] == 0


def test_scheduler_prints_a_now_given_with_an_offset_in_utc(project, engine):
    seed_lapsed(engine)

    result = invoke("scheduler", "--once", "--now", "2026-03-02T10:05+08:00", "-c", project.config)
    as_json = invoke("scheduler", "--once", "--now", "2026-03-02T10:05+08:00", "-c", project.config, "--json")

    assert result.exit_code == 0, result.output
    assert "run win_back @ 2026-03-02 02:00 UTC: 4 new deliveries" in result.output
    assert "tick 2026-03-02 02:05:00 UTC: enqueued 4 deliveries" in result.output
    assert "10:05:00 UTC" not in result.output
    assert json.loads(as_json.stdout)["now"] == "2026-03-02T02:05:00+00:00"


def test_a_second_run_reaches_customers_imported_since_and_nobody_twice(project, engine):
    project.config.write_text(project.config.read_text() + BROADCAST)
    seed_customers(engine, count=4, now=TICK_NOW, lapsed_share=0.5)

    first = invoke("run", "promo", "-c", project.config)
    # Imported between two runs of the same minute: they were not reached ("nothing more
    # to send") while a manual run was claimed per minute.
    seed_customers(engine, count=2, now=TICK_NOW, prefix="N", seed=2)
    second = invoke("run", "promo", "-c", project.config, "--json")
    third = invoke("run", "promo", "-c", project.config)

    assert_no_crash(first)
    assert "4 sent, 0 deferred, 0 skipped, 0 failed" in flat(first.output)
    report = json.loads(second.stdout)
    assert report["runs"][0]["planned"] == 2
    assert report["outcome"]["sent"] == 2 and report["outcome"]["deliveries"] == 2
    assert "nothing more to send" in third.output
    emails, _ = outbox_files(project)
    assert len(emails) == 6
    with engine.connect() as conn:
        keys = conn.execute(sa.select(Delivery.send_key)).scalars().all()
    assert len(keys) == len(set(keys)) == 6


def test_now_is_refused_with_a_redis_broker_whose_workers_keep_the_real_clock(make_project, sqlite_url):
    project = make_project(sqlite_url, broker_url="redis://127.0.0.1:6399/0")  # never contacted

    result = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 1
    assert "--now needs the in-process broker" in flat(result.output)
    assert "workers send on the real clock" in flat(result.output)


def test_with_redis_run_says_the_workers_have_the_messages(make_project, sqlite_url, redis_url):
    project = make_project(sqlite_url, broker_url=redis_url)
    project.config.write_text(project.config.read_text() + BROADCAST)
    engine = project.engine()
    seed_customers(engine, count=2, now=TICK_NOW)
    engine.dispose()

    result = invoke("run", "promo", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert "enqueued 2 deliveries" in result.output
    assert "handed to the workers: `nurture status` shows what was sent" in flat(result.output)
