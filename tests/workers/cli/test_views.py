"""``nurture segments`` and ``nurture customer`` (workers/cli/views.py) through the Typer app,
on a throwaway project in ``tmp_path`` holding the hand-computed shop of
tests/campaigns/reports/test_customers.py (its docstring has the arithmetic; the project:
shop.py)."""

from __future__ import annotations

import json

import sqlalchemy as sa

from campaigns.config.schema import AppConfig
from campaigns.reports.customers import customer_view, segment_counts
from campaigns.store.models import Customer, Delivery, Order
from tests.campaigns.reports.test_customers import build_shop
from tests.workers.cli.shop import config, engine, flat, round_trip, shop, table_rows  # noqa: F401 (fixtures)
from tests.workers.cli.win_back import assert_no_crash, invoke

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
    # The shop's rows are written without identifiers (as before issue #15), and no merge formed a1.
    assert data == round_trip(customer_view(shop, "a1") | {"identifiers": [], "merges": []})
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
