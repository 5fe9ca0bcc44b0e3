"""Campaign control through the Typer app (workers/cli/campaigns.py): ``nurture campaigns``,
``pause``, ``resume`` and ``retry`` on the throwaway win_back project (SQLite file, stub
broker, outbox channels), every clock pinned with ``--now``."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from campaigns.store.models import CampaignState, Delivery
from tests.workers.cli.win_back import (
    NOW_ARG,
    assert_no_crash,
    flat,
    invoke,
    outbox_files,
    seed_lapsed,
)


def statuses(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)).all())


def overview(project) -> dict:
    result = invoke("campaigns", "--now", NOW_ARG, "--json", "-c", project.config)
    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["campaigns"]
    return row


def test_campaigns_lists_trigger_next_run_state_and_counts(project, engine):
    seed_lapsed(engine)
    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0

    row = overview(project)

    assert (row["name"], row["trigger"], row["state"]) == ("win_back", "cron 0 10 * * * (Asia/Shanghai)", "active")
    # NOW_ARG is 10:05 in Shanghai on 2 March: the next slot is 10:00 the day after.
    assert row["next_run"] == "2026-03-03T10:00:00+08:00"
    assert (row["enrolled"], row["sent_today"], row["queued"], row["failed"], row["last_error"]) == (4, 4, 0, 0, None)
    table = invoke("campaigns", "--now", NOW_ARG, "-c", project.config)
    assert table.exit_code == 0, table.output
    text = flat(table.output)
    assert "win_back" in text and "2026-03-03 10:00 Asia/Shanghai" in text and "active" in text


def test_pause_holds_the_campaign_and_resume_lets_it_go(project, engine):
    seed_lapsed(engine)

    paused = invoke("pause", "win_back", "--reason", "new coupon tomorrow", "--now", NOW_ARG, "-c", project.config)

    assert_no_crash(paused)
    assert paused.exit_code == 0, paused.output
    assert "paused win_back" in paused.output and "nurture resume win_back" in flat(paused.output)
    tick = invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config)
    assert tick.exit_code == 0, tick.output
    assert outbox_files(project) == ([], []) and statuses(engine) == {}
    row = overview(project)
    assert (row["state"], row["paused_reason"]) == ("paused", "by hand: new coupon tomorrow")
    assert "paused: by hand: new coupon tomorrow" in flat(invoke("campaigns", "--now", NOW_ARG,
                                                                       "-c", project.config).output)
    refused = invoke("run", "win_back", "-c", project.config)
    assert_no_crash(refused)
    assert refused.exit_code == 1 and "paused" in refused.output and "nurture resume win_back" in refused.output
    again = invoke("pause", "win_back", "-c", project.config)
    assert again.exit_code == 0 and "already paused (by hand: new coupon tomorrow)" in flat(again.output)

    resumed = invoke("resume", "win_back", "--now", NOW_ARG, "-c", project.config)

    assert resumed.exit_code == 0 and "resumed win_back" in resumed.output
    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0
    emails, texts = outbox_files(project)
    assert (len(emails), len(texts)) == (3, 1)
    assert overview(project)["state"] == "active"


def test_retry_requeues_the_failed_messages_once_their_template_is_fixed(project, engine):
    seed_lapsed(engine)
    template = project.root / "templates" / "win_back" / "miss_you.txt.j2"
    good = template.read_text()
    template.write_text("Your code: {{ customer.attributes.coupon.upper() }}\n")  # nobody has one: render fails
    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0
    assert statuses(engine) == {"failed": 4}  # every part of a message is rendered, the SMS's too
    assert "render failed" in overview(project)["last_error"]

    template.write_text(good)
    retried = invoke("retry", "win_back", "--now", NOW_ARG, "-c", project.config)

    assert_no_crash(retried)
    assert retried.exit_code == 0, retried.output
    assert "win_back: re-queued 4 failed deliveries; they go out on the next scheduler tick" in flat(retried.output)
    assert statuses(engine) == {"queued": 4}
    assert invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config).exit_code == 0
    emails, texts = outbox_files(project)
    assert (len(emails), len(texts)) == (3, 1) and statuses(engine) == {"sent": 4}
    again = invoke("retry", "win_back", "--now", NOW_ARG, "--json", "-c", project.config)
    assert json.loads(again.stdout) == {"campaign": "win_back", "requeued": 0, "not_retried": {}, "paused": None}
    assert "win_back: no failed deliveries to re-queue" in invoke("retry", "win_back", "-c", project.config).output


@pytest.mark.parametrize("command", [
    ["pause", "nope"], ["resume", "nope"], ["retry", "nope"],
])
def test_an_unknown_campaign_is_exit_1_naming_those_there_are(project, command):
    result = invoke(*command, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 1
    assert "no campaign named 'nope' (campaigns: win_back)" in result.output


@pytest.mark.parametrize("command", [
    ["campaigns", "--now", "yesterday"], ["retry", "win_back", "--since", "last week"],
])
def test_a_time_that_is_not_iso_8601_is_exit_2_with_an_example(project, command):
    result = invoke(*command, "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 2
    assert "is not an ISO 8601 time" in flat(result.output)


def test_resume_of_a_campaign_that_is_not_paused_says_so(project, engine):
    result = invoke("resume", "win_back", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0
    assert "win_back was not paused" in result.output
    assert "resumed" not in result.output


def test_resume_of_a_campaign_paused_by_a_provider_unpauses_it(project, engine):
    with engine.begin() as conn:
        conn.execute(sa.insert(CampaignState).values(
            campaign="win_back", paused=True, paused_reason="provider said halt: account suspended"))
    status = json.loads(invoke("status", "-c", project.config, "--json").stdout)
    assert status["paused"] == [{"campaign": "win_back", "reason": "provider said halt: account suspended"}]

    result = invoke("resume", "win_back", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0
    assert "resumed win_back" in result.output
    assert json.loads(invoke("status", "-c", project.config, "--json").stdout)["paused"] == []
    again = invoke("resume", "win_back", "-c", project.config)
    assert "win_back was not paused" in again.output
