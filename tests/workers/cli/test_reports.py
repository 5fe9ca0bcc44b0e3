"""The report commands of workers/cli/reports.py: ``nurture report campaign`` through the
Typer app on the throwaway win_back project, and the CSV ``nurture report channels --csv``
writes. (``report channels`` on the hand-computed shop is in test_views.py, with its fixtures.)"""

from __future__ import annotations

import csv
from pathlib import Path

from tests.workers.cli.win_back import NOW_ARG, assert_no_crash, flat, invoke, seed_lapsed
from workers.cli.reports import CSV_METRICS, write_channel_csv


def test_report_campaign_table_shows_lift_as_not_available_without_a_holdout(project, engine):
    seed_lapsed(engine)
    invoke("scheduler", "--once", "--now", NOW_ARG, "-c", project.config)

    result = invoke("report", "campaign", "win_back", "-c", project.config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "enrolled (treated) 4" in text and "held out 0" in text and "n/a (no holdout)" in text


def test_channel_report_csv_neutralises_formula_channel_names(tmp_path: Path) -> None:
    row = {metric: 1 for metric in CSV_METRICS} | {"stages": {"new": 1}}
    data = {
        "stages": ["new"],
        "acquisition": [{**row, "channel": '=HYPERLINK("http://evil.example","x")'}, {**row, "channel": "store"}],
        "purchase": [{**row, "channel": "@SUM(A1:A2)"}, {**row, "channel": "+cmd|' /C calc'!A0"}],
    }
    target = tmp_path / "channels.csv"

    assert write_channel_csv(data, target) == 4

    with target.open(newline="", encoding="utf-8") as handle:
        channels = [line["channel"] for line in csv.DictReader(handle)]
    assert channels == ['\'=HYPERLINK("http://evil.example","x")', "store", "'@SUM(A1:A2)", "'+cmd\\|' /C calc'!A0"]
