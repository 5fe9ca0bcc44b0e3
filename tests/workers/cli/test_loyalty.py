"""The loyalty commands of workers/cli/loyalty.py through the Typer app, on a throwaway
project with ``[loyalty]`` on: ``nurture import redemptions`` (a bad row, a refused
redemption, a replay), ``nurture points`` and ``points adjust``, ``nurture loyalty run``,
and the points the order and event imports, ``nurture track`` and ``nurture customer`` show.
Every command runs with ``--now``."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.workers.cli.win_back import Project, assert_no_crash, flat, invoke

CUSTOMERS = """
customer_id,name,email,timezone
ann,Ann,ann@example.com,Asia/Shanghai
bo,Bo,bo@example.com,Europe/Paris
"""
# ann: 120 paid of which none is shipping -> 120 points (goods, coupons, services).
ORDERS = """
order_id,customer_id,ordered_at,amount
O-1,ann,2026-03-01T10:00:00+08:00,120
O-2,bo,2026-03-01T10:00:00+08:00,30
"""
EARN_AT = "2026-03-02T00:00:00+00:00"
LATER = "2026-03-10T00:00:00+00:00"
REDEMPTIONS = """
redemption_id,customer_id,points,kind,redeemed_at,note
R-1,ann,20,goods,2026-03-05T10:00:00+08:00,mug
R-2,bo,31,coupons,2026-03-05T10:00:00+08:00,
R-3,ann,0,goods,2026-03-05T10:00:00+08:00,
R-1,ann,20,goods,2026-03-05T10:00:00+08:00,mug
"""


def loyal(project: Project, *, enabled: bool = True) -> Project:
    """The project with ``[loyalty]`` on (or stated off)."""
    with project.config.open("a", encoding="utf-8") as config:
        config.write(f"\n[loyalty]\nenabled = {str(enabled).lower()}\n")
    return project


@pytest.fixture
def shop(project: Project) -> Project:
    """ann with 120 points and bo with 30, earned by the order import."""
    loyal(project)
    assert invoke("import", "customers", project.write("customers.csv", CUSTOMERS), "-c", project.config).exit_code == 0
    result = invoke("import", "orders", project.write("orders.csv", ORDERS), "-c", project.config, "--now", EARN_AT)
    assert result.exit_code == 0, result.output
    assert "loyalty: 150 points earned in 2 lot(s) by 2 customer(s)" in result.output
    return project


def test_the_order_import_reports_the_points_it_earned_in_json(project):
    loyal(project)
    invoke("import", "customers", project.write("customers.csv", CUSTOMERS), "-c", project.config)
    orders = project.write("orders.csv", ORDERS)
    first = invoke("import", "orders", orders, "-c", project.config, "--now", EARN_AT, "--json")
    assert json.loads(first.output)["loyalty"] == {"points": 150, "lots": 2, "customers": 2}
    # Imported again: every order earned already.
    again = invoke("import", "orders", orders, "-c", project.config, "--now", EARN_AT, "--json")
    assert json.loads(again.output)["loyalty"] == {"points": 0, "lots": 0, "customers": 0}


def test_imports_say_nothing_of_points_while_loyalty_is_off(project):
    invoke("import", "customers", project.write("customers.csv", CUSTOMERS), "-c", project.config)
    result = invoke("import", "orders", project.write("orders.csv", ORDERS), "-c", project.config, "--json")
    assert "loyalty" not in json.loads(result.output)


def test_import_redemptions_lists_bad_and_refused_rows_and_a_replay_changes_nothing(shop):
    file = shop.write("redemptions.csv", REDEMPTIONS)

    result = invoke("import", "redemptions", file, "-c", shop.config, "--now", LATER)

    assert_no_crash(result)
    assert result.exit_code == 3, result.output
    assert "1 redeemed (20 points), 1 duplicate(s), 1 refused, 1 rejected of 4 rows" in flat(result.output)
    assert f"{file}:3: refused: not enough points: 30 redeemable for coupons, 31 asked" in result.output
    assert f"{file}:4: points: a whole number of points from 1 to" in result.output

    replay = invoke("import", "redemptions", file, "-c", shop.config, "--now", LATER, "--json")
    assert replay.exit_code == 3  # the refused and bad rows are still refused and bad
    data = json.loads(replay.output)
    assert (data["redeemed"], data["duplicates"], data["refused_count"], data["rejected_count"]) == (0, 2, 1, 1)
    assert data["refused"] == [{"line": 3, "redemption_id": "R-2", "balance": 30,
                                "reason": "not enough points: 30 redeemable for coupons, 31 asked"}]
    shown = json.loads(invoke("points", "ann", "-c", shop.config, "--now", LATER, "--json").output)
    assert shown["balance"] == 100


def test_a_clean_file_exits_0_and_so_does_its_replay(shop):
    file = shop.write("redemptions.jsonl", '{"redemption_id": "J-1", "customer_id": "bo", "points": 30, '
                                           '"kind": "services", "redeemed_at": "2026-03-05T12:00:00+01:00"}\n')
    first = invoke("import", "redemptions", file, "-c", shop.config, "--now", LATER)
    assert first.exit_code == 0, first.output
    assert "1 redeemed (30 points)" in first.output
    again = invoke("import", "redemptions", file, "-c", shop.config, "--now", LATER)
    assert again.exit_code == 0 and "0 redeemed (0 points), 1 duplicate(s)" in again.output


def test_import_redemptions_needs_loyalty_on_and_a_readable_file(project):
    loyal(project, enabled=False)
    file = project.write("redemptions.csv", REDEMPTIONS)
    off = invoke("import", "redemptions", file, "-c", project.config)
    assert off.exit_code == 1 and "enabled = true under [loyalty]" in flat(off.output)
    missing = invoke("import", "redemptions", project.root / "nope.csv", "-c", project.config)
    assert missing.exit_code == 1 and "file not found" in missing.output


def test_points_shows_balance_tier_lots_and_history(shop):
    shop_file = shop.write("redemptions.csv", REDEMPTIONS)
    invoke("import", "redemptions", shop_file, "-c", shop.config, "--now", LATER)

    result = invoke("points", "ann", "-c", shop.config, "--now", LATER)

    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "balance 100" in text
    assert "tier member" in text and "next tier silver (880 to go)" in text
    assert "next expiry 100 valid through 2027-02-28" in text
    assert "order O-1 purchase 2026-03-01 2027-02-28 120 100 coupons, goods, services" in text
    assert "redeem -20 redemption R-1 goods: mug" in text

    data = json.loads(invoke("points", "show", "ann", "-c", shop.config, "--now", LATER, "--json",
                             "--limit", "1").output)
    assert data["by_kind"] == {"goods": 100, "coupons": 100, "services": 100}
    assert [entry["kind"] for entry in data["history"]] == ["redeem"] and data["history_total"] == 2
    assert data["lots"][0]["valid_through"] == "2027-02-28"
    # bo's lot is dated in bo's own zone (Paris): 10:00 in Shanghai is 03:00 in Paris, the same day.
    bo = json.loads(invoke("points", "bo", "-c", shop.config, "--now", LATER, "--json").output)
    assert bo["timezone"] == "Europe/Paris" and bo["lots"][0]["earned_on"] == "2026-03-01"


def test_points_of_an_unknown_customer_is_an_error(shop):
    result = invoke("points", "nobody", "-c", shop.config)
    assert_no_crash(result)
    assert result.exit_code == 1 and "nobody" in result.output


def test_points_adjust_adds_takes_and_refuses(shop):
    added = invoke("points", "adjust", "bo", "50", "--reason", "goodwill", "-c", shop.config, "--now", LATER)
    assert added.exit_code == 0, added.output
    assert "adjusted bo: +50 points (adjustment id adj-20260310000000-" in added.output

    taken = invoke("points", "adjust", "bo", "-70", "--reason", "correction", "--id", "A-1", "-c", shop.config,
                   "--now", LATER, "--json")
    assert json.loads(taken.output) == {"customer": "bo", "adjustment_id": "A-1", "status": "adjusted",
                                        "points": -70, "reason": None}
    again = invoke("points", "adjust", "bo", "-70", "--reason", "correction", "--id", "A-1", "-c", shop.config,
                   "--now", LATER)
    assert again.exit_code == 0 and "duplicate" in again.output

    refused = invoke("points", "adjust", "bo", "-11", "--reason", "too much", "-c", shop.config, "--now", LATER)
    assert refused.exit_code == 3
    assert "not enough points: 10 redeemable in all, 11 asked" in flat(refused.output)
    history = json.loads(invoke("points", "bo", "-c", shop.config, "--now", LATER, "--json").output)
    assert history["balance"] == 10
    assert [(e["kind"], e["points"], e["detail"]) for e in history["history"][:2]] == [
        ("adjust", -70, "correction"), ("adjust", 50, "goodwill")]


def test_points_adjust_needs_a_reason(shop):
    missing = invoke("points", "adjust", "bo", "5", "-c", shop.config)
    assert missing.exit_code == 2 and "--reason" in missing.output
    blank = invoke("points", "adjust", "bo", "5", "--reason", " ", "-c", shop.config)
    assert blank.exit_code == 2 and "must say why" in blank.output


def test_loyalty_run_prints_each_step_and_how_long_it_took(shop):
    result = invoke("loyalty", "run", "-c", shop.config, "--now", "2027-03-05T00:00:00+00:00")
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    for step in ("earn", "refunds", "settle", "expire", "tiers"):
        assert f" {step} " in text, step
    # ann's and bo's order lots (valid 1 year from 1 March local) are gone by 5 March 2027.
    assert "150 points expired from 2 lots" in text
    data = json.loads(invoke("loyalty", "run", "-c", shop.config, "--now", "2027-03-05T00:00:00+00:00",
                             "--json").output)
    assert data["expired"] == {"lots": 0, "points": 0}  # nothing expires twice
    assert {"earn", "refunds", "settle", "expire", "tiers"} <= set(data["seconds"])


def test_loyalty_run_refuses_while_loyalty_is_off(project):
    loyal(project, enabled=False)
    result = invoke("loyalty", "run", "-c", project.config)
    assert_no_crash(result)
    assert result.exit_code == 1 and "enabled = true under [loyalty]" in flat(result.output)


def test_track_earns_at_once(shop):
    result = invoke("track", "ann", "review", "--at", "2026-03-03T10:00:00+08:00", "--event-id", "rv-1",
                    "-c", shop.config, "--now", "2026-03-03T03:00:00+00:00")
    assert result.exit_code == 0, result.output
    assert "loyalty: 10 points earned" in result.output
    again = invoke("track", "ann", "review", "--at", "2026-03-03T10:00:00+08:00", "--event-id", "rv-1",
                   "-c", shop.config, "--json")
    assert "loyalty" not in json.loads(again.output)  # a duplicate earns nothing
    assert json.loads(invoke("points", "ann", "-c", shop.config, "--now", LATER, "--json").output)["balance"] == 130


def test_the_event_import_earns_at_once(shop):
    events = shop.write("events.csv", "event_id,customer_id,name,occurred_at\n"
                                      "s-1,bo,share,2026-03-03T10:00:00+01:00\nv-1,bo,page_view,2026-03-03\n")
    result = invoke("import", "events", events, "-c", shop.config, "--now", "2026-03-04T00:00:00+00:00")
    assert result.exit_code == 0, result.output
    assert "loyalty: 5 points earned in 1 lot(s) by 1 customer(s)" in result.output


def test_the_customer_view_shows_points_when_loyalty_is_on(shop):
    view = json.loads(invoke("customer", "ann", "-c", shop.config, "--now", LATER, "--json").output)
    assert view["loyalty"]["balance"] == 120 and view["loyalty"]["tier"] == "member"
    assert view["loyalty"]["next_expiry"]["valid_through"] == "2027-02-28"
    table = flat(invoke("customer", "ann", "-c", shop.config, "--now", LATER).output)
    assert "balance 120" in table and "next expiry 120 valid through 2027-02-28" in table


def test_the_customer_view_has_no_points_while_loyalty_is_off(project):
    invoke("import", "customers", project.write("customers.csv", CUSTOMERS), "-c", project.config)
    view = json.loads(invoke("customer", "ann", "-c", project.config, "--json").output)
    assert "loyalty" not in view


def test_redemptions_and_points_on_postgresql(make_project: Callable[..., Project], postgres_url: str):
    pg = loyal(make_project(postgres_url))
    invoke("import", "customers", pg.write("customers.csv", CUSTOMERS), "-c", pg.config)
    invoke("import", "orders", pg.write("orders.csv", ORDERS), "-c", pg.config, "--now", EARN_AT)
    file = pg.write("redemptions.csv", REDEMPTIONS)
    first = invoke("import", "redemptions", file, "-c", pg.config, "--now", LATER, "--json")
    assert first.exit_code == 3
    data = json.loads(first.output)
    assert (data["redeemed"], data["duplicates"], data["refused_count"], data["rejected_count"]) == (1, 1, 1, 1)
    replay = json.loads(invoke("import", "redemptions", file, "-c", pg.config, "--now", LATER, "--json").output)
    assert (replay["redeemed"], replay["duplicates"]) == (0, 2)
    assert json.loads(invoke("points", "ann", "-c", pg.config, "--now", LATER, "--json").output)["balance"] == 100
