"""``nurture audience`` (workers/cli/views.py) through the Typer app, on the throwaway
win_back project of tests/workers/cli/win_back.py: a dry run that counts and sends nothing.

Apart from test_views.py, whose own ``engine`` and ``config`` fixtures hold the shop of
tests/campaigns/reports/test_customers.py instead of this project."""

from __future__ import annotations

import json

import sqlalchemy as sa

from campaigns.store.models import Delivery
from tests.conftest import TICK_NOW, seed_customers
from tests.workers.cli.win_back import (
    NOW_ARG,
    assert_no_crash,
    flat,
    invoke,
    outbox_files,
    seed_lapsed,
)


def test_audience_dry_run_counts_and_sends_nothing(project, engine):
    lapsed = seed_lapsed(engine)

    result = invoke("audience", "win_back", "--now", NOW_ARG, "-c", project.config, "--json")

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["matched"] == report["reachable"] == len(lapsed)
    assert report["by_channel"] == {"email": 3, "sms": 1}
    assert sorted(row["external_id"] for row in report["sample"]) == lapsed
    assert outbox_files(project) == ([], [])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar() == 0


def test_audience_where_takes_an_expression_and_reports_its_errors(project, engine):
    seed_lapsed(engine)
    invoke("profiles", "--as-of", NOW_ARG, "-c", project.config)

    ok = invoke("audience", "--where", 'stage == "churned" or stage == "at_risk"', "-c", project.config, "--json")
    bad = invoke("audience", "--where", "stagee == 1", "-c", project.config)

    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["matched"] == 4  # the lapsed ones: last order 120-400 days ago
    assert_no_crash(bad)
    assert bad.exit_code == 1
    assert "unknown field 'stagee' at column 1 (did you mean 'stage'?)" in flat(bad.output)


def test_audience_shows_whom_the_holdout_would_take(project, engine):
    # It always said "held out 0".
    project.config.write_text(project.config.read_text().replace('channels = ["email", "sms"]',
                                                                 'channels = ["email", "sms"]\nholdout = 0.5'))
    seed_customers(engine, count=40, now=TICK_NOW, lapsed_share=0.5)

    as_json = invoke("audience", "win_back", "--now", NOW_ARG, "-c", project.config, "--json", "--sample", "20")
    table = invoke("audience", "win_back", "--now", NOW_ARG, "-c", project.config)

    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    held = report["holdout"]
    assert report["reachable"] == 20 and 0 < held < 20 and report["would_send"] == 20 - held
    assert sum(row["held_out"] for row in report["sample"]) == held
    text = flat(table.output)
    assert f"held out (50% of the reachable, kept out to measure lift) {held}" in text
    assert f"would be messaged {20 - held}" in text
