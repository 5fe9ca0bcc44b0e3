"""``nurture segments``, ``nurture customer`` and ``nurture report channels`` through the
Typer app, on a throwaway project in ``tmp_path`` holding the hand-computed shop of
tests/campaigns/reports/test_customers.py (its docstring has the arithmetic)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from campaigns.config.schema import AppConfig
from campaigns.store.db import make_engine
from campaigns.store.models import Customer, Delivery, Order
from campaigns.customers.profiles import recompute_profiles
from campaigns.reports.customers import channel_report, customer_view, segment_counts
from tests.campaigns.reports.test_customers import AS_OF, add_ledger, build_shop
from workers.cli.main import app


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def assert_no_crash(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def flat(text: str) -> str:
    return " ".join(text.split())


def table_rows(output: str, start: str = "", end: str | None = None) -> dict[str, list[str]]:
    """Rows of the rich tables in ``output`` between the titles ``start`` and ``end``: first
    cell -> the other cells (a later table wins)."""
    output = output[output.index(start):]
    if end is not None:
        output = output[:output.index(end)]
    rows = {}
    for line in output.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


def round_trip(data: object) -> object:
    """What --json should print: the report with times in ISO 8601."""
    return json.loads(json.dumps(data, default=lambda value: value.isoformat()))


@pytest.fixture(autouse=True)
def _no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NURTURE_DATABASE_URL", "NURTURE_BROKER_URL", "NURTURE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A minimal project: just a SQLite database (no channels or campaigns needed)."""
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "nurture.db"}"\n', encoding="utf-8")
    return path


@pytest.fixture
def engine(config: Path, tmp_path: Path):
    assert invoke("db", "upgrade", "-c", config).exit_code == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'nurture.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def shop(engine: sa.Engine) -> sa.Engine:
    ids = build_shop(engine)
    add_ledger(engine, ids)
    recompute_profiles(engine, AppConfig(), as_of=AS_OF)
    return engine


# --------------------------------------------------------------------------- segments


def test_segments_before_any_recompute_prints_the_hint(engine, config):
    build_shop(engine)

    result = invoke("segments", "-c", config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert "run `nurture profiles`" in flat(result.output)
    rows = table_rows(result.output)
    # Everyone is unprofiled: ecommerce 2, social 2, store 2, (unknown) 1, total 7.
    assert rows["unprofiled"] == ["2", "2", "2", "1", "7"]
    assert rows["(none)"] == ["7", "100.0%"]


def test_segments_json_matches_the_database(shop, config):
    result = invoke("segments", "-c", config, "--json")

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == round_trip(segment_counts(shop, AppConfig()))
    assert data["as_of"] == "2026-06-01T12:00:00+00:00"
    assert data["matrix"]["new"] == {"ecommerce": 1, "social": 0, "store": 0, "(unknown)": 1}
    assert data["channel_totals"] == {"ecommerce": 2, "social": 2, "store": 2, "(unknown)": 1}


def test_segments_tables_show_the_counts_totals_and_shares(shop, config):
    result = invoke("segments", "-c", config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert "nurture profiles" not in result.output  # everyone has a profile: no hint
    rows = table_rows(result.output, "Lifecycle stage", "RFM segment")
    # Matrix columns: ecommerce, social, store, (unknown), total.
    assert rows["prospect"] == ["0", "1", "1", "0", "2"]
    assert rows["new"] == ["1", "0", "0", "1", "2"]
    assert rows["active"] == ["1", "0", "0", "0", "1"]
    assert rows["churned"] == ["0", "0", "1", "0", "1"]
    assert "unprofiled" not in rows
    assert rows["total"] == ["2", "2", "2", "1", "7"]  # column totals
    rows = table_rows(result.output, "RFM segment")
    # RFM: count and share of 7 (2 / 7 = 28.6%, 1 / 7 = 14.3%).
    assert rows["potential_loyalist"] == ["2", "28.6%"]
    assert rows["loyal"] == ["1", "14.3%"]
    assert rows["champions"] == ["0", "0.0%"]
    assert rows["(none)"] == ["2", "28.6%"]
    assert rows["new"] == ["0", "0.0%"]  # the RFM segment, not the stage
    assert rows["total"] == ["7", "100.0%"]


# --------------------------------------------------------------------------- customer


def test_customer_json_matches_the_database_unmasked(shop, config):
    result = invoke("customer", "a1", "-c", config, "--json")

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == round_trip(customer_view(shop, "a1"))
    assert data["customer"]["email"] == "a1@example.com" and data["customer"]["phone"] == "+86000"
    assert data["profile"]["stage"] == "new" and data["orders_total"] == 2
    assert data["suppressed"] is True


def test_customer_view_shows_the_record(shop, config):
    result = invoke("customer", "a1", "-c", config)

    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "customer a1" in text
    assert "a1@example.com" in text and "+86000" in text  # shown in full
    assert "email: a1@example.com (hard bounce)" in text  # suppressed
    assert "new since 2026-05-20 12:00" in text
    assert "potential_loyalist" in text and "R4 F3 M3" in text
    assert "150.00" in text and "75.00" in text  # total spent, average order
    rows = table_rows(result.output, "orders:")
    assert rows["2026-05-20 12:00"][:3] == ["a1-0", "ecommerce", "100.00"]
    assert rows["2026-05-20 12:00"][3].startswith("TEA×2, CUP×1")
    assert rows["2026-05-25 12:00"] == ["a1-1", "store", "50.00", "-"]
    assert rows["2026-06-03 09:00"] == ["welcome", "1", "sms", "failed", "3", "-", "timeout"]
    assert rows["sms"] == ["withdrawn", "unsubscribe", "2026-02-01 00:00"]


def test_unknown_customer_exits_1_without_a_traceback(shop, config):
    result = invoke("customer", "nobody", "-c", config)

    assert_no_crash(result)
    assert result.exit_code == 1
    assert "customer 'nobody' not found" in result.output
    json_result = invoke("customer", "nobody", "-c", config, "--json")
    assert json_result.exit_code == 1 and "customer 'nobody' not found" in json_result.output


# --------------------------------------------------------------------------- report channels


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


def test_stored_values_are_printed_as_text_not_as_rich_markup(shop, config):
    with shop.begin() as conn:
        conn.execute(sa.update(Customer).where(Customer.external_id == "a1").values(name="Ann [/b] [red]x"))
        conn.execute(sa.update(Delivery).where(Delivery.send_key == "k-failed").values(last_error="HTTP 500 [/api]"))
        conn.execute(sa.update(Order).where(Order.order_id == "a1-1").values(channel="[bold]pop-up"))

    view = invoke("customer", "a1", "-c", config)
    report = invoke("report", "channels", "-c", config)

    for result in (view, report):
        assert_no_crash(result)
        assert result.exit_code == 0, result.output
    assert "Ann [/b] [red]x" in view.output and "HTTP 500 [/api]" in view.output
    assert "[bold]pop-up" in report.output
