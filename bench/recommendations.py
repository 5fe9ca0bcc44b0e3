"""Recommendations refresh (issue #17 must-have 6): the set-based refresh for N customers /
M orders / 3M items / P products, vs a bare co-occurrence self-join of the same items.

    .venv/bin/python -m bench.recommendations --customers 1000000 --orders 10000000 --products 50000

The defaults are small (20k customers / 200k orders / 600k items / 5k products) so it runs
in a few minutes; the issue's size is the command above. This

1. creates a throwaway PostgreSQL database ``nurture_bench_recs_<hex>`` on 127.0.0.1:5432,
   migrates it and seeds it with set-based SQL (``INSERT ... SELECT generate_series``;
   deterministic: every value is a hash of its row number; not measured): P catalogue
   products in categories of 50 (5 % out of stock), N customers, M orders over the year
   before the anchor (each of a customer picked by hash; three channels; 3 % refunded),
   three items per order: 60 % from the customer's home category (skewed towards its
   first products), the rest from the whole catalogue with a strong skew (best-sellers);
   then ``VACUUM ANALYZE``;
2. measures, alternating, one warm-up (unless ``--no-warm-up``) then best of ``--repeat``:
   * the **baseline**: what a hand-written co-occurrence count of the same items costs,
     consumed server-side: the distinct (customer, product) of the paid orders before the
     anchor, self-joined on the customer (each unordered pair of distinct products once,
     ``a.sku < b.sku``), grouped by pair and counted;
   * the **project's figure**: ``refresh_recommendations(engine, RecommendationsConfig(
     enabled=True), now=anchor)``: the whole refresh (purchases, associations with lift,
     affinity and popularity, candidates, ranking, the atomic replacement of both tables),
     with its seconds per step;
3. checks the tables it wrote: every customer with a paid order has recommendations, at
   most ``top_n`` each ranked 1..n, none out of stock, none already bought (the default
   ``exclude_bought = "always"``), every association at least ``min_support``;
4. drops the database (``WITH (FORCE)``), even on error, unless ``--keep``.

Timings are printed, never asserted: benchmarks are not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import CONFIG_OVERRIDES, logger, throwaway_database

log = logger("recommendations")

#: Target (issue #17 must-have 6): the refresh within 2x of the bare co-occurrence self-join.
TARGET_RATIO = 2.0
#: The history ends here (a fixed date: a run's data and results do not depend on the clock).
ANCHOR = datetime(2026, 12, 1, tzinfo=UTC)
HISTORY_DAYS = 365
ITEMS_PER_ORDER = 3
#: Products per category.
CATEGORY_SIZE = 50
#: Share (%) of the items from the customer's home category.
HOME_SHARE = 60

#: Distinct (customer, product) of the paid orders before the anchor, self-joined on the
#: customer, each unordered pair once: the co-occurrence counts, consumed server-side.
BASELINE = """
    WITH bought AS (
        SELECT DISTINCT o.customer_id, i.sku
        FROM order_item AS i JOIN orders AS o ON o.id = i.order_pk
        WHERE o.status = 'paid' AND o.ordered_at < %(anchor)s
    )
    SELECT count(*), sum(t.n) FROM (
        SELECT a.sku AS x, b.sku AS y, count(*) AS n
        FROM bought AS a JOIN bought AS b ON b.customer_id = a.customer_id AND a.sku < b.sku
        GROUP BY a.sku, b.sku
    ) AS t
"""


def _unit(expression: str) -> str:
    # A uniform (0, 1) value from a bigint expression: deterministic, unlike random().
    return f"((abs(hashint8({expression})) %% 1000003) + 0.5) / 1000003.0"


def seed(dsn: str, customers: int, orders: int, products: int) -> dict[str, Any]:
    """The catalogue, customers, orders and their items (see the module docstring)."""
    import psycopg

    start = ANCHOR - timedelta(days=HISTORY_DAYS)
    categories = max(1, products // CATEGORY_SIZE)
    seconds = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(
                """
                INSERT INTO product (sku, name, category, price, url, image_url, in_stock, attributes,
                                     created_at, updated_at)
                SELECT 'P' || g, 'Product ' || g, 'C' || ((g - 1) / %(size)s),
                       round((5 + abs(hashint8(g::bigint * 13)) %% 500)::numeric, 2),
                       'https://shop.example/p/' || g, 'https://shop.example/i/' || g || '.jpg',
                       abs(hashint8(g::bigint * 17)) %% 100 >= 5, '{}'::json, %(start)s, %(start)s
                FROM generate_series(1, %(products)s) AS g
                """, {"size": CATEGORY_SIZE, "products": products, "start": start})
            conn.execute(
                """
                INSERT INTO customer (external_id, name, email, created_at, updated_at, attributes)
                SELECT 'R' || g, 'Buyer ' || g, 'r' || g || '@example.com', %(start)s, %(start)s, '{}'::json
                FROM generate_series(1, %(customers)s) AS g
                """, {"customers": customers, "start": start})
        seconds["customers"] = time.perf_counter() - started
        first_id, = conn.execute("SELECT min(id) FROM customer").fetchone()
        started = time.perf_counter()
        with conn.transaction():
            # Valid by construction: skip the per-row foreign key triggers while seeding.
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(
                f"""
                INSERT INTO orders (order_id, customer_id, ordered_at, amount, channel, status)
                SELECT 'O' || g, %(first)s + abs(hashint8(g::bigint * 7)) %% %(customers)s,
                       %(start)s + make_interval(secs => (abs(hashint8(g::bigint * 7 + 1)) %% %(span)s)::float8),
                       round((5 + 80 * -ln(1 - {_unit('g::bigint * 7 + 2')}))::numeric, 2),
                       (ARRAY['ecommerce', 'store', 'social'])[1 + (abs(hashint8(g::bigint * 7 + 3)) %% 3)::int],
                       CASE WHEN abs(hashint8(g::bigint * 7 + 4)) %% 100 < 3 THEN 'refunded' ELSE 'paid' END
                FROM generate_series(1, %(orders)s) AS g
                """, {"first": first_id, "customers": customers, "start": start, "span": HISTORY_DAYS * 86400,
                      "orders": orders})
        seconds["orders"] = time.perf_counter() - started
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            # The customer's home category is a hash of their id; within it the first
            # products sell most (u^2), across the catalogue a few sell hugely (u^4).
            home = f"(abs(hashint8(o.customer_id::bigint * 11)) %% {categories})"
            x = "(o.id::bigint * 10 + s.i)"
            conn.execute(
                f"""
                INSERT INTO order_item (order_pk, sku, category, quantity, price)
                SELECT o.id, 'P' || CASE
                           WHEN abs(hashint8({x} * 3)) %% 100 < {HOME_SHARE}
                           THEN least({home} * {CATEGORY_SIZE} + 1 + floor({CATEGORY_SIZE} * power({_unit(x + ' * 3 + 1')}, 2))::int,
                                      %(products)s)
                           ELSE 1 + floor(%(products)s * power({_unit(x + ' * 3 + 2')}, 4))::int
                       END, NULL, 1, 10
                FROM orders AS o CROSS JOIN generate_series(1, {ITEMS_PER_ORDER}) AS s(i)
                """, {"products": products})
        seconds["items"] = time.perf_counter() - started
        started = time.perf_counter()
        for table in ("product", "customer", "orders", "order_item"):
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute("CHECKPOINT")
        seconds["vacuum"] = time.perf_counter() - started
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM customer), (SELECT count(*) FROM orders), "
            "(SELECT count(*) FROM order_item), (SELECT count(*) FROM product), "
            "(SELECT count(*) FROM product WHERE NOT in_stock), "
            "(SELECT count(DISTINCT customer_id) FROM orders WHERE status = 'paid')").fetchone()
        size, = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('order_item'))").fetchone()
    return {"customers": counts[0], "orders": counts[1], "items": counts[2], "products": counts[3],
            "out_of_stock": counts[4], "buyers": counts[5], "items_size": size, "seconds": seconds}


def baseline(dsn: str) -> tuple[float, tuple[int, int]]:
    """One run of the bare co-occurrence query: seconds, (pairs, pair-customers)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        # The same memory the refresh gives itself (SET LOCAL work_mem in compute).
        conn.execute("SET work_mem = '256MB'")
        started = time.perf_counter()
        pairs, total = conn.execute(BASELINE, {"anchor": ANCHOR}).fetchone()
        return time.perf_counter() - started, (int(pairs), int(total or 0))


def checks(dsn: str, *, top_n: int, min_support: int) -> dict[str, bool]:
    """What the refresh's tables must be (see the module docstring)."""
    import psycopg

    queries = {
        "every buyer has recommendations": (
            "SELECT count(*) = 0 FROM (SELECT DISTINCT customer_id FROM orders WHERE status = 'paid' "
            "AND ordered_at < %(anchor)s) AS b WHERE NOT EXISTS "
            "(SELECT 1 FROM recommendation AS r WHERE r.customer_id = b.customer_id)"),
        "ranks are 1..n, n <= top_n": (
            "SELECT bool_and(n = top AND n <= %(top_n)s) FROM "
            "(SELECT count(*) AS n, max(rank) AS top FROM recommendation GROUP BY customer_id) AS t"),
        "nothing out of stock": (
            "SELECT NOT EXISTS (SELECT 1 FROM recommendation AS r JOIN product AS p ON p.sku = r.sku "
            "WHERE NOT p.in_stock)"),
        "nothing already bought": (
            "SELECT NOT EXISTS (SELECT 1 FROM recommendation AS r JOIN orders AS o ON o.customer_id = r.customer_id "
            "JOIN order_item AS i ON i.order_pk = o.id AND i.sku = r.sku "
            "WHERE o.status = 'paid' AND o.ordered_at < %(anchor)s)"),
        "associations >= min_support": (
            "SELECT coalesce(min(support), %(min_support)s) >= %(min_support)s FROM product_association"),
    }
    with psycopg.connect(dsn) as conn:
        params = {"anchor": ANCHOR, "top_n": top_n, "min_support": min_support}
        return {name: bool(conn.execute(sql, params).fetchone()[0]) for name, sql in queries.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Seed, measure, check; the results as a dict."""
    from campaigns.config.recommendations import RecommendationsConfig
    from campaigns.recommendations.refresh import refresh_recommendations
    from campaigns.store.db import make_engine

    config = RecommendationsConfig(enabled=True)
    with throwaway_database(prefix="nurture_bench_recs", keep=args.keep, log=log) as database:
        log(f"seeding {args.customers:,} customers, {args.orders:,} orders, {args.orders * ITEMS_PER_ORDER:,} "
            f"items, {args.products:,} products into {database.name}")
        seeded = seed(database.dsn, args.customers, args.orders, args.products)
        log(f"seeded in {sum(seeded['seconds'].values()):.1f} s: {seeded}")
        engine = make_engine(database.url)
        bare: list[float] = []
        refreshes: list[dict[str, Any]] = []
        pairs: tuple[int, int] = (0, 0)
        try:
            # One warm-up of each, then alternating rounds: both see the same cache state.
            # (At the size a round takes tens of minutes and the data is far
            # larger than the cache: --no-warm-up measures the first round.)
            first = 0 if args.warm_up else 1
            for round_ in range(first, args.repeat + 1):
                seconds, pairs = baseline(database.dsn)
                report = refresh_recommendations(engine, config, now=ANCHOR)
                label = "warm-up" if round_ == 0 else f"round {round_}"
                log(f"{label}: baseline {seconds:.2f} s, refresh {report.total_seconds:.2f} s "
                    f"({', '.join(f'{k} {v:.2f}' for k, v in report.seconds.items())})")
                if round_:
                    bare.append(seconds)
                    refreshes.append(report.to_dict())
            checked = checks(database.dsn, top_n=config.top_n, min_support=config.min_support)
        finally:
            engine.dispose()
    best = min(refreshes, key=lambda item: item["total_seconds"])
    ratio = best["total_seconds"] / min(bare) if min(bare) > 0 else None
    return {
        "size": {"customers": args.customers, "orders": args.orders, "products": args.products},
        "warm_up": args.warm_up,
        "seeded": seeded,
        "baseline": {"seconds": min(bare), "rounds": bare, "pairs": pairs[0], "pair_customers": pairs[1]},
        "refresh": best,
        "refresh_rounds": [item["total_seconds"] for item in refreshes],
        "ratio": ratio,
        "target": TARGET_RATIO,
        "checks": checked,
        "ok": all(checked.values()),
    }


def print_report(result: dict[str, Any]) -> None:
    """The figures docs/benchmarks.md shows."""
    seeded, base, best = result["seeded"], result["baseline"], result["refresh"]
    print(f"recommendations refresh: {seeded['customers']:,} customers, {seeded['orders']:,} orders, "
          f"{seeded['items']:,} items ({seeded['items_size']}), {seeded['products']:,} products")
    print(f"  baseline (bare co-occurrence self-join): {base['seconds']:.2f} s "
          f"({base['pairs']:,} pairs from {base['pair_customers']:,} customer-pairs)")
    print(f"  refresh: {best['total_seconds']:.2f} s; " + ", ".join(
        f"{step} {seconds:.2f}" for step, seconds in best["seconds"].items()))
    print(f"  wrote {best['associations']:,} associations, {best['recommendations']:,} recommendations for "
          f"{best['customers']:,} customers (" + ", ".join(
              f"{reason} {count:,}" for reason, count in best["by_reason"].items()) + ")")
    ratio = result["ratio"]
    verdict = "-" if ratio is None else ("meets" if ratio <= result["target"] else "misses")
    shown = "-" if ratio is None else f"{ratio:.2f}x"
    print(f"  ratio refresh / baseline: {shown} ({verdict} the {result['target']:.0f}x target)")
    for name, passed in result["checks"].items():
        print(f"  check {name}: {'ok' if passed else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recommendations", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000, help="customers (default 20000)")
    parser.add_argument("--orders", type=int, default=200_000, help="orders, 3 items each (default 200000)")
    parser.add_argument("--products", type=int, default=5_000, help="catalogue products (default 5000)")
    parser.add_argument("--repeat", type=int, default=1, help="timed rounds after the warm-up; best is kept "
                                                                "(default 1)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                        help="no warm-up round of each before the timed ones (the issue's size: a round takes "
                             "tens of minutes and its data does not fit the cache anyway)")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if min(args.customers, args.orders) < 10 or args.products < CATEGORY_SIZE:
        parser.error(f"--customers and --orders must be at least 10, --products at least {CATEGORY_SIZE}")
    for key in CONFIG_OVERRIDES:
        os.environ.pop(key, None)
    result = run(args)
    print_report(result)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
