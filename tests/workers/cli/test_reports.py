"""``nurture report campaign`` (workers/cli/reports.py) through the Typer app on the throwaway
win_back project. (``report channels``, on the hand-computed shop: test_reports_channels.py.)"""

from __future__ import annotations

from tests.workers.cli.win_back import NOW_ARG, assert_no_crash, flat, invoke, seed_lapsed


def test_report_campaign_table_shows_lift_as_not_available_without_a_holdout(project, engine):
    seed_lapsed(engine)
    invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config)

    result = invoke("report", "campaign", "win_back", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "enrolled (treated) 4" in text and "held out 0" in text and "n/a (no holdout)" in text
