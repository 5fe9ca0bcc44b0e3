"""``nurture report channels`` (workers/cli/reports.py) through the Typer app on the
hand-computed shop of tests/campaigns/reports/test_customers.py (the project: shop.py), and
the CSV it writes, formula cells neutralised."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from campaigns.reports.customers import channel_report
from tests.workers.cli.shop import config, engine, flat, round_trip, shop  # noqa: F401 (fixtures)
from tests.workers.cli.win_back import assert_no_crash, invoke
from workers.cli.reports import CSV_METRICS, write_channel_csv


def test_report_channels_json_matches_the_database(shop, config):
    result = invoke("report", "channels", "-c", config, "--json")

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == round_trip(channel_report(shop))
    assert data["totals"] == {"customers": 7, "buyers": 5, "orders": 9, "revenue": 960.0}
    assert [row["channel"] for row in data["purchase"]] == ["ecommerce", "store", "social", "(unknown)"]


def test_report_channels_tables_show_the_numbers(shop, config):
    result = invoke("report", "channels", "-c", config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "By acquisition channel" in text and "By purchase channel" in text
    assert "7 customers, 5 buyers, 9 orders, revenue 960.00, AOV 106.67" in flat(text)  # 960 / 9
    lines = [flat(line.replace("│", " ")) for line in text.splitlines()]
    # channel, customers, buyers, repeat, orders, revenue, AOV, share (510 / 960 = 53.1%)
    assert "ecommerce 2 2 100.0% 5 510.00 102.00 53.1%" in lines
    assert "(unknown) 1 1 100.0% 2 70.00 35.00 7.3%" in lines  # acquisition: c2
    assert "ecommerce 2 2 50.0% 4 460.00 115.00 47.9%" in lines  # purchase: 460 / 960
    assert "(unknown) 1 1 0.0% 1 80.00 80.00 8.3%" in lines  # purchase: c1's order
    # Stage tables: prospect, new, active, at_risk, churned.
    assert "store 1 0 0 0 1" in lines  # acquisition: b2 prospect, b1 churned
    assert "store 0 1 0 0 1" in lines  # purchase: a1 new, b1 churned


def test_report_channels_csv_writes_one_row_per_dimension_and_channel(shop, config, tmp_path):
    target = tmp_path / "channels.csv"

    result = invoke("report", "channels", "-c", config, "--csv", target)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert f"wrote 8 rows to {target}" in flat(result.output)
    with target.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == [
        "dimension", "channel", "customers", "buyers", "repeat_buyers", "repeat_rate", "orders", "revenue",
        "avg_order_value", "revenue_share", "stage_prospect", "stage_new", "stage_active", "stage_at_risk",
        "stage_churned",
    ]
    assert [(row["dimension"], row["channel"]) for row in rows] == [
        ("acquisition", "ecommerce"), ("acquisition", "store"), ("acquisition", "social"),
        ("acquisition", "(unknown)"),
        ("purchase", "ecommerce"), ("purchase", "store"), ("purchase", "social"), ("purchase", "(unknown)"),
    ]
    by_key = {(row["dimension"], row["channel"]): row for row in rows}
    assert by_key[("acquisition", "store")] == {
        "dimension": "acquisition", "channel": "store", "customers": "2", "buyers": "1", "repeat_buyers": "0",
        "repeat_rate": "0.0", "orders": "1", "revenue": "300.00", "avg_order_value": "300.00",
        "revenue_share": "0.3125",  # 300 / 960
        "stage_prospect": "1", "stage_new": "0", "stage_active": "0", "stage_at_risk": "0", "stage_churned": "1",
    }
    purchase_ecommerce = by_key[("purchase", "ecommerce")]
    assert (purchase_ecommerce["repeat_rate"], purchase_ecommerce["revenue"], purchase_ecommerce["revenue_share"]) == (
        "0.5", "460.00", "0.4792")  # 460 / 960 = 0.47917
    assert by_key[("purchase", "social")]["avg_order_value"] == "35.00"  # (40.25 + 29.75) / 2


def test_report_channels_csv_into_a_missing_folder_is_a_clear_error(shop, config, tmp_path):
    result = invoke("report", "channels", "-c", config, "--csv", tmp_path / "nope" / "x.csv")

    assert_no_crash(result)
    assert result.exit_code == 1
    assert "cannot write" in flat(result.output)


def test_report_is_a_group_with_a_channels_command():
    result = invoke("report", "--help")

    assert result.exit_code == 0
    text = flat(result.output.replace("│", " "))
    assert "channels Customers, repeat purchase, orders, revenue and stages per acquisition and purchase channel." \
        in text
    top = flat(invoke("--help").output.replace("│", " "))
    assert "segments Customers per lifecycle stage and acquisition channel, and per RFM segment." in top
    assert "customer One customer:" in top and "report Reports over customers, orders and profiles." in top


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
