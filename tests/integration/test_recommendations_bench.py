"""The recommendations benchmark (``bench/recommendations.py``, issue #17 must-have 6) at
tiny scale, on PostgreSQL: its seed is deterministic and of the documented shape, and its
report has every figure docs/benchmarks.md shows, with the checks passing. Nothing is timed.
"""

from __future__ import annotations

import argparse

import psycopg
import pytest

from bench import recommendations
from bench.common import throwaway_database
from tests.conftest import POSTGRES_ADMIN_URL, missing_service

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def postgres():
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")


def fingerprint(dsn: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT md5(string_agg(concat_ws('|', sku, category, in_stock), ',' ORDER BY id)) FROM product),"
            " (SELECT md5(string_agg(concat_ws('|', order_id, customer_id, ordered_at, channel, status), ','"
            "  ORDER BY id)) FROM orders),"
            " (SELECT md5(string_agg(concat_ws('|', order_pk, sku), ',' ORDER BY id)) FROM order_item)"
        ).fetchone()


def test_the_seed_is_deterministic_and_shaped_as_documented():
    prints, seeds = [], []
    for _ in range(2):
        with throwaway_database(prefix="nurture_test_recs_bench") as database:
            seeds.append(recommendations.seed(database.dsn, 200, 2000, 500))
            prints.append(fingerprint(database.dsn))
    assert prints[0] == prints[1]
    seeded = seeds[0]
    assert (seeded["customers"], seeded["orders"], seeded["items"], seeded["products"]) == (200, 2000, 6000, 500)
    assert 0 < seeded["out_of_stock"] < 500 * 0.1


@pytest.mark.parametrize("warm_up", [True, False])
def test_a_tiny_run_reports_every_figure_and_passes_its_checks(capsys, warm_up):
    args = argparse.Namespace(customers=300, orders=3000, products=500, repeat=1, keep=False, json=False,
                              warm_up=warm_up)
    result = recommendations.run(args)
    assert result["warm_up"] is warm_up
    assert result["ok"] and set(result["checks"]) == {
        "every buyer has recommendations", "ranks are 1..n, n <= top_n", "nothing out of stock",
        "nothing already bought", "associations >= min_support"}
    assert all(result["checks"].values())
    assert result["baseline"]["pairs"] > 0 and len(result["baseline"]["rounds"]) == 1
    refresh = result["refresh"]
    assert set(refresh["seconds"]) == {"purchases", "associations", "affinity", "candidates", "ranking", "replace"}
    assert refresh["customers"] == result["seeded"]["buyers"] and refresh["associations"] > 0
    assert refresh["recommendations"] == sum(refresh["by_reason"].values())
    assert result["ratio"] is not None and result["target"] == 2.0

    recommendations.print_report(result)
    printed = capsys.readouterr().out
    for line in ("baseline (bare co-occurrence self-join)", "refresh:", "ratio refresh / baseline:",
                 "check nothing already bought: ok"):
        assert line in printed
