"""The loyalty benchmark (``bench/loyalty.py``, issue #16 must-have 9) at tiny scale, on
PostgreSQL: its data is what it claims (deterministic, mostly Asia/Shanghai, a few %
refunded), its report has every figure the docs table shows, and the daily job's numbers
agree with the bare SQL of the same rows (lots expired, points earned, reversals, tiers,
reminders). Nothing is timed.
"""

from __future__ import annotations

import argparse

import psycopg
import pytest

from bench import loyalty
from bench.common import POSTGRES_ADMIN_URL as BENCH_ADMIN_URL
from bench.common import throwaway_database
from tests.conftest import POSTGRES_ADMIN_URL, missing_service

pytestmark = pytest.mark.integration

#: The daily job's steps the docs table shows, in order (others, e.g. referrals, may sit between).
STEPS = ["earn", "refunds", "settle", "expire", "tiers"]


@pytest.fixture(autouse=True)
def postgres():
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")


def args(**overrides) -> argparse.Namespace:
    values = {"customers": 2000, "orders": 20000, "events": 6000, "days": 1, "repeat": 1, "analyze_every": 0.5,
              "keep": False, "reuse": None, "json": False}
    return argparse.Namespace(**{**values, **overrides})


def fingerprint(dsn: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT md5(string_agg(concat_ws('|', external_id, phone, timezone), ',' ORDER BY id)) FROM customer),"
            " (SELECT md5(string_agg(concat_ws('|', order_id, customer_id, ordered_at, amount, status, shipping), ','"
            "  ORDER BY id)) FROM orders),"
            " (SELECT md5(string_agg(concat_ws('|', dedupe_key, customer_id, name, occurred_at), ',' ORDER BY id))"
            "  FROM event)"
        ).fetchone()


def test_the_seed_is_deterministic_and_shaped_as_documented():
    prints, seeds = [], []
    for _ in range(2):
        with throwaway_database(prefix="nurture_test_loyalty_bench") as database:
            seeds.append(loyalty.seed(database.dsn, 1000, 10000, 3000))
            prints.append(fingerprint(database.dsn))
    assert prints[0] == prints[1]
    seeded = seeds[0]
    assert seeded["customers"] == 1000 and seeded["events"] == 3000
    assert 9000 <= seeded["orders"] <= 11000
    assert 0.02 < seeded["orders_not_paid"] / seeded["orders"] < 0.06
    assert 0.2 < seeded["rewarded_events"] / seeded["events"] < 0.3
    assert 0.8 < seeded["shanghai_customers"] / seeded["customers"] < 0.95


def test_a_tiny_run_reports_every_figure_and_agrees_with_the_bare_sql():
    result = loyalty.run(args())

    assert result["ok"], result
    assert result["reused"] is False
    first = result["first_earn"]
    assert first["lots"] > 0 and first["seconds"] > 0
    for day in (result["first_daily"], *result["days"]):
        steps = list(day["run"]["report"]["seconds"])
        assert [step for step in steps if step in STEPS] == STEPS, steps
        assert set(day["baseline"]["default"]["parts"]) == {"balances", "tier points"}
        assert day["baseline"]["default"]["best"] > 0 and day["baseline"]["serial"]["best"] > 0
        assert day["total_seconds"] == pytest.approx(day["run"]["seconds"] + day["reminders"]["seconds"])
        assert all(item["ok"] for item in day["checks"]["items"].values()), day["checks"]
        # The bare balance aggregate sees what the ledger holds.
        assert day["after"]["ledger_sum"] == day["after"]["lots_remaining"]
    first_daily = result["first_daily"]
    # The first daily run expires the history's year of lots past their validity, and
    # earns nothing more (earn already read the history).
    assert first_daily["run"]["report"]["expired"]["lots"] == first_daily["before"]["due_lots"] > 0
    assert first_daily["run"]["report"]["earned"]["lots"] == 0
    assert first_daily["run"]["report"]["tiers"]["upgraded"] > 0
    [day] = result["days"]
    assert day["added"]["orders"] == 20000 // loyalty.DAY_SHARE
    assert day["run"]["report"]["earned"]["lots"] == day["before"]["lots_to_earn"] > 0
    assert day["run"]["report"]["refunds"]["lots"] == day["added"]["refunds"] > 0
    assert loyalty.steady(result) is day


def test_a_kept_database_runs_its_next_day_on_reuse():
    result = loyalty.run(args(customers=600, orders=6000, events=1800, keep=True))
    name = result["database"]
    try:
        again = loyalty.run(args(reuse=name, days=1))
        assert again["reused"] is True and again["ok"], again
        assert [day["day"] for day in again["days"]] == [2]
        assert again["first_earn"] == result["first_earn"]
        assert again["params"] == {"customers": 600, "orders": 6000, "events": 1800}
    finally:
        with psycopg.connect(BENCH_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
