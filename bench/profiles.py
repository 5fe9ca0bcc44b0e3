"""P5 profiles: lifecycle stage + RFM for N customers / M orders, vs the bare GROUP BY.

    .venv/bin/python -m bench.profiles --customers 1000000 --orders 10000000

This

1. creates a throwaway PostgreSQL database ``nurture_bench_<hex>`` on 127.0.0.1:5432,
   migrates it (``campaigns.store.db.upgrade``) and seeds it with set-based SQL (not measured):
   N customers, 10 % of them without orders; the others with a skewed number of orders
   (``1 + floor(K * u**4)``, u uniform per customer, K chosen so the total is ~M: ~37 %
   one-time buyers, at most ~K+1 orders) spread over the last 2 years, amounts
   exponential-ish (5 + 80 * Exp(1)), and for one customer in five orders going in pairs
   on the same day; then ``VACUUM ANALYZE`` + ``CHECKPOINT``;
2. measures the raw baseline in the same run: the bare
   ``SELECT customer_id, max(ordered_at), count(*), sum(amount) FROM orders GROUP BY
   customer_id``, fully consumed on the server by an outer aggregate over *all* of its
   columns (an outer ``count(*)`` alone would let PostgreSQL drop the unused max/sum; a
   ``CREATE TEMP TABLE AS`` would add a write the bare query does not do). One warm-up
   run, then the best of ``--repeat`` runs; once as the server runs it by default
   (parallel workers allowed) and once serial (``max_parallel_workers_per_gather = 0``:
   PostgreSQL never runs the SELECT of an ``INSERT ... SELECT`` in parallel);
3. runs the project's figure: ``campaigns.customers.profiles.recompute_profiles(engine,
   AppConfig(), as_of=now)`` on the same data, first on an empty ``customer_profile``
   (inserts; the table is truncated between repeats) and then in the steady state (every
   row exists: upserts), as of one more day each time, with ``VACUUM ANALYZE
   customer_profile`` before each steady-state run as autovacuum would have done in the
   day between. Each SQL statement recompute_profiles issues is timed with SQLAlchemy
   cursor events (nothing is replicated);
4. optionally (``--try-set work_mem=256MB`` ...) one more steady-state run per setting,
   with it applied to the session, to measure batch-job settings;
5. optionally (``--explain``) replays the steady-state statements one day later under
   ``EXPLAIN (ANALYZE, BUFFERS)`` in a transaction that is rolled back, and prints the
   plans;
6. verifies the result: one profile per customer, stage counts sum to N, every customer
   with orders has scores and a segment, order counts and totals match ``orders``; prints
   the R/F/M score distributions;
7. drops the database (``WITH (FORCE)``), even on error (unless ``--keep``).

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

log = logger("profiles")


#: Target from BENCHMARKS.md (P5): recompute <= 1.5x the bare GROUP BY.
TARGET_RATIO = 1.5

#: Environment variables that would override the bench's database.

BASELINE_GROUP_BY = "SELECT customer_id, max(ordered_at) AS last_order_at, count(*) AS orders_count, " \
    "sum(amount) AS total_spent FROM orders GROUP BY customer_id"
BASELINE_CONSUMED = (
    "SELECT count(*), max(t.last_order_at), sum(t.orders_count), sum(t.total_spent) "
    f"FROM ({BASELINE_GROUP_BY}) AS t"
)


def dsn_of(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# --------------------------------------------------------------------------- setup


def seed(url: str, customers: int, orders: int, now: datetime) -> dict[str, Any]:
    """Customers and orders with a realistic spread, set-based; returns what was seeded."""
    import psycopg

    buyers = customers - customers // 10  # ids with id % 10 = 0 never order
    # n = 1 + floor(K * u^4) has mean ~ 1 + K / 5 - 1/2 (the floor loses ~1/2 on average).
    k = max(0.0, 5.0 * (orders / max(buyers, 1) - 0.5))
    with psycopg.connect(dsn_of(url), autocommit=True) as conn:
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("SELECT setseed(0.42)")
            conn.execute(
                """
                INSERT INTO customer (external_id, name, email, acquisition_channel,
                                      created_at, updated_at, attributes)
                SELECT 'B' || g, 'Bench Person ' || g, 'p' || g || '@example.com',
                       (ARRAY['ecommerce', 'store', 'social'])[1 + g %% 3],
                       %(now)s - make_interval(days => (CASE WHEN g %% 10 = 0
                                                             THEN (g::bigint * 7919) %% 1095
                                                             ELSE 731 + (g::bigint * 7919) %% 365 END)::int,
                                               secs => ((g::bigint * 104729) %% 86400)::float8),
                       %(now)s, '{}'::json
                FROM generate_series(1, %(n)s) AS g
                """,
                {"now": now, "n": customers},
            )
        customers_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with conn.transaction():
            # The rows are valid by construction; skip the per-row FK trigger while seeding.
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            conn.execute("SELECT setseed(0.42)")
            conn.execute(
                """
                INSERT INTO orders (order_id, customer_id, ordered_at, amount, channel)
                SELECT 'O-' || c.id || '-' || s.i, c.id,
                       %(now)s - make_interval(
                           days => (abs(hashint8(c.id::bigint * 1000
                                    + CASE WHEN c.id %% 5 = 1 THEN s.i / 2 ELSE s.i END)) %% 730)::int,
                           secs => floor(random() * 86400)),
                       round((5 + 80 * -ln(1 - random()))::numeric, 2),
                       (ARRAY['ecommerce', 'store', 'social'])[1 + s.i %% 3]
                FROM customer AS c
                CROSS JOIN LATERAL generate_series(
                    1, 1 + floor(%(k)s * power((abs(hashint8(c.id::bigint)) %% 1000003) / 1000003.0, 4))::int
                ) AS s(i)
                WHERE c.id %% 10 <> 0
                """,
                {"now": now, "k": k},
            )
        orders_seconds = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE customer")
        conn.execute("VACUUM ANALYZE orders")
        conn.execute("CHECKPOINT")
        vacuum_seconds = time.perf_counter() - started
        n_customers, = conn.execute("SELECT count(*) FROM customer").fetchone()
        n_orders, n_buyers, max_per = conn.execute(
            "SELECT sum(n), count(*), max(n) FROM (SELECT count(*) AS n FROM orders GROUP BY customer_id) t"
        ).fetchone()
        one_timers, = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM orders GROUP BY customer_id HAVING count(*) = 1) t"
        ).fetchone()
        same_day, = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM orders GROUP BY customer_id, ordered_at::date "
            "HAVING count(*) > 1) t"
        ).fetchone()
        size, = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('orders'))").fetchone()
    return {
        "customers": n_customers,
        "orders": int(n_orders or 0),
        "buyers": n_buyers,
        "one_time_buyers": one_timers,
        "max_orders_per_customer": max_per,
        "customer_days_with_several_orders": same_day,
        "orders_size": size,
        "k": k,
        "seconds": {"customers": customers_seconds, "orders": orders_seconds, "vacuum": vacuum_seconds},
    }


# --------------------------------------------------------------------------- baseline


def baseline(url: str, repeat: int) -> dict[str, Any]:
    """The bare GROUP BY, fully consumed server-side; warm-up, then best of ``repeat``."""
    import psycopg

    result: dict[str, Any] = {}
    with psycopg.connect(dsn_of(url), autocommit=True) as conn:
        for variant, setting in (("default", None), ("serial", "0")):
            if setting is not None:
                conn.execute(f"SET max_parallel_workers_per_gather = {setting}")
            conn.execute(BASELINE_CONSUMED).fetchone()  # warm-up
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                row = conn.execute(BASELINE_CONSUMED).fetchone()
                times.append(time.perf_counter() - started)
            plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {BASELINE_CONSUMED}"))
            result[variant] = {"best": min(times), "times": times, "groups": row[0],
                               "parallel": "Gather" in plan}
        conn.execute("RESET max_parallel_workers_per_gather")
    return result


# --------------------------------------------------------------------------- the project's figure


class StatementTimer:
    """Times every statement an engine executes, grouped by what it is."""

    LABELS = (
        ("INSERT INTO customer_profile", "upsert customer_profile"),
        ("INSERT INTO profile_transition", "INSERT profile_transition"),
        ("UPDATE customer_profile", "UPDATE mark consumed"),
        ("SELECT count", "SELECT count(*) x3"),
    )

    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self.current: dict[str, float] | None = None
        self.captured: list[tuple[str, Any]] = []
        self._started = 0.0

        @sa.event.listens_for(engine, "before_cursor_execute")
        def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
            self._started = time.perf_counter()
            if self.current is not None:
                self.captured.append((statement, parameters))

        @sa.event.listens_for(engine, "after_cursor_execute")
        def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
            if self.current is None:
                return
            label = self.label(statement)
            self.current[label] = self.current.get(label, 0.0) + time.perf_counter() - self._started

    @classmethod
    def label(cls, statement: str) -> str:
        head = " ".join(statement.split())[:60]
        for prefix, label in cls.LABELS:
            if head.startswith(prefix):
                return label
        return "other"

    def start(self) -> None:
        self.current = {}
        self.captured = []

    def stop(self) -> dict[str, float]:
        phases, self.current = self.current or {}, None
        return phases


def make_bench_engine(url: str, settings: dict[str, str]) -> Any:
    import sqlalchemy as sa

    from campaigns.store.db import make_engine

    engine = make_engine(url)
    if settings:
        @sa.event.listens_for(engine, "connect")
        def _settings(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cursor:
                for key, value in settings.items():
                    cursor.execute(f"SET {key} = '{value}'")
            dbapi_conn.commit()

    return engine


def one_recompute(url: str, as_of: datetime, *, settings: dict[str, str], prepare: str | None) -> dict[str, Any]:
    """One timed recompute_profiles on a fresh engine (so session settings apply)."""
    import psycopg

    from campaigns.config.schema import AppConfig
    from campaigns.customers.profiles import recompute_profiles

    if prepare:
        with psycopg.connect(dsn_of(url), autocommit=True) as conn:
            for statement in prepare.split(";"):
                if statement.strip():
                    conn.execute(statement)
    engine = make_bench_engine(url, settings)
    timer = StatementTimer(engine)
    with engine.connect():
        pass  # open the pooled connection before timing, as a running scheduler has one
    timer.start()
    started = time.perf_counter()
    report = recompute_profiles(engine, AppConfig(), as_of=as_of)
    seconds = time.perf_counter() - started
    phases = timer.stop()
    engine.dispose()
    return {
        "seconds": seconds,
        "as_of": as_of.isoformat(),
        "phases": phases,
        "customers": report.customers,
        "stage_entries": report.stage_entries,
        "segment_entries": report.segment_entries,
        "settings": settings,
        "captured": timer.captured,
    }


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda run: run["seconds"])


def explain_replay(url: str, captured: list[tuple[str, Any]], settings: dict[str, str],
                   shift: timedelta) -> list[tuple[str, str]]:
    """Replay a steady-state recompute ``shift`` later under EXPLAIN ANALYZE; roll back."""
    import psycopg

    plans = []
    with psycopg.connect(dsn_of(url)) as conn:  # one transaction, rolled back at the end
        for key, value in settings.items():
            conn.execute(f"SET LOCAL {key} = '{value}'")
        for statement, parameters in captured:
            shifted = {key: value + shift if isinstance(value, datetime) else value
                       for key, value in (parameters or {}).items()}
            rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, VERBOSE OFF) {statement}", shifted).fetchall()
            plans.append((StatementTimer.label(statement), "\n".join(row[0] for row in rows)))
        conn.rollback()
    return plans


# --------------------------------------------------------------------------- verification


def verify(url: str, customers: int) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(dsn_of(url)) as conn:
        rows, = conn.execute("SELECT count(*) FROM customer_profile").fetchone()
        stages = dict(conn.execute("SELECT stage, count(*) FROM customer_profile GROUP BY stage ORDER BY 1").fetchall())
        segments = dict(conn.execute(
            "SELECT coalesce(rfm_segment, '(none)'), count(*) FROM customer_profile GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall())
        buyers, = conn.execute("SELECT count(DISTINCT customer_id) FROM orders").fetchone()
        with_orders, unsegmented, unscored = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE rfm_segment IS NULL), "
            "count(*) FILTER (WHERE r_score IS NULL OR f_score IS NULL OR m_score IS NULL) "
            "FROM customer_profile WHERE orders_count > 0"
        ).fetchone()
        profile_orders, profile_total = conn.execute(
            "SELECT sum(orders_count), sum(total_spent) FROM customer_profile"
        ).fetchone()
        order_rows, order_total = conn.execute("SELECT count(*), sum(amount) FROM orders").fetchone()
        scores = {}
        for column in ("r_score", "f_score", "m_score"):
            scores[column] = dict(conn.execute(
                f"SELECT {column}, count(*) FROM customer_profile WHERE {column} IS NOT NULL GROUP BY 1 ORDER BY 1"
            ).fetchall())
        transitions = dict(conn.execute("SELECT kind, count(*) FROM profile_transition GROUP BY 1").fetchall())
    ok = (
        rows == customers
        and sum(stages.values()) == customers
        and with_orders == buyers
        and unsegmented == 0
        and unscored == 0
        and profile_orders == order_rows
        and float(profile_total) == float(order_total)
    )
    return {
        "profile_rows": rows, "stages": stages, "segments": segments, "buyers": buyers,
        "profiles_with_orders": with_orders, "unsegmented_buyers": unsegmented, "unscored_buyers": unscored,
        "orders_match": profile_orders == order_rows, "totals_match": float(profile_total) == float(order_total),
        "scores": scores, "transitions": transitions, "ok": ok,
    }


# --------------------------------------------------------------------------- run


def parse_settings(values: list[str]) -> dict[str, str]:
    settings = {}
    for value in values:
        key, _, setting = value.partition("=")
        if not key or not setting or not key.replace("_", "").replace(".", "").isalnum():
            raise SystemExit(f"bad setting {value!r}: expected name=value, e.g. work_mem=256MB")
        settings[key.strip()] = setting.strip()
    return settings


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    now = datetime.now(UTC).replace(microsecond=0)
    settings = parse_settings(args.set)
    with throwaway_database(keep=args.keep, log=log) as database:
        name, url = database.name, database.dsn
        log(f"seeding {name}: {args.customers:,} customers, ~{args.orders:,} orders ...")
        started = time.perf_counter()
        seeded = seed(url, args.customers, args.orders, now)
        seeded["total_seconds"] = time.perf_counter() - started
        log(f"seeded {seeded['customers']:,} customers / {seeded['orders']:,} orders in "
            f"{seeded['total_seconds']:.1f} s; baseline GROUP BY ...")

        base = baseline(url, args.repeat)
        log(f"baseline best {base['default']['best']:.2f} s (default), {base['serial']['best']:.2f} s (serial)")

        day = timedelta(days=1)
        inserts = []
        for attempt in range(args.repeat):
            prepare = "TRUNCATE customer_profile, profile_transition" if attempt else None
            inserts.append(one_recompute(url, now, settings=settings, prepare=prepare))
            log(f"first recompute (inserts) #{attempt + 1}: {inserts[-1]['seconds']:.1f} s")
        upserts = []
        offset = 1
        for attempt in range(args.repeat):
            upserts.append(one_recompute(url, now + offset * day, settings=settings,
                                         prepare="VACUUM ANALYZE customer_profile"))
            log(f"steady-state recompute (upserts) #{attempt + 1}: {upserts[-1]['seconds']:.1f} s")
            offset += 1
        tries = []
        for value in args.try_set:
            extra = {**settings, **parse_settings([value])}
            tries.append(one_recompute(url, now + offset * day, settings=extra,
                                       prepare="VACUUM ANALYZE customer_profile"))
            log(f"steady-state recompute with {value}: {tries[-1]['seconds']:.1f} s")
            offset += 1

        checks = verify(url, seeded["customers"])
        plans = []
        if args.explain:
            log("replaying the steady-state statements under EXPLAIN ANALYZE (rolled back) ...")
            with psycopg.connect(dsn_of(url), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE customer_profile")
            # The captured run was as of now + args.repeat days; replay as of the next
            # day after the last run, so the day's stage changes are recorded too.
            plans = explain_replay(url, upserts[-1]["captured"], settings,
                                   shift=(offset - args.repeat) * day)
        for run_ in inserts + upserts + tries:
            run_.pop("captured")
        return {
            "database": name, "now": now.isoformat(), "seed": seeded, "baseline": base,
            "inserts": inserts, "upserts": upserts, "tries": tries, "settings": settings,
            "verify": checks, "plans": plans,
        }


# --------------------------------------------------------------------------- output


def print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=130)
    seed_ = result["seed"]
    base = result["baseline"]
    first, steady = best(result["inserts"]), best(result["upserts"])
    b_default, b_serial = base["default"]["best"], base["serial"]["best"]

    table = Table(title=f"P5 profiles: recompute_profiles vs the bare GROUP BY "
                        f"({seed_['customers']:,} customers / {seed_['orders']:,} orders)")
    table.add_column("", style="bold")
    table.add_column("seconds (best)", justify="right")
    table.add_column("all runs", justify="right")
    table.add_column("/ baseline", justify="right")
    table.add_column("/ serial GROUP BY", justify="right")

    def runs(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    para = "parallel" if base["default"]["parallel"] else "no parallel plan"
    table.add_row(f"baseline: bare GROUP BY, default ({para})", f"{b_default:.2f}",
                  runs(base["default"]["times"]), "1.00x", f"{b_default / b_serial:.2f}x")
    table.add_row("bare GROUP BY, serial", f"{b_serial:.2f}", runs(base["serial"]["times"]),
                  f"{b_serial / b_default:.2f}x", "1.00x")
    for label, group in (("recompute, first run (inserts)", result["inserts"]),
                         ("recompute, steady state (upserts)", result["upserts"])):
        chosen = best(group)
        table.add_row(label, f"{chosen['seconds']:.2f}", runs([r["seconds"] for r in group]),
                      f"{chosen['seconds'] / b_default:.2f}x", f"{chosen['seconds'] / b_serial:.2f}x")
        for phase, seconds in sorted(chosen["phases"].items(), key=lambda item: -item[1]):
            table.add_row(f"  {phase}", f"{seconds:.2f}", "", "", "")
        table.add_row("  stage / segment entries", f"{chosen['stage_entries']:,} / {chosen['segment_entries']:,}",
                      "", "", "")
    for tried in result["tries"]:
        setting = ", ".join(f"{k}={v}" for k, v in tried["settings"].items() if k not in result["settings"]
                            or result["settings"][k] != v)
        table.add_row(f"steady state with {setting}", f"{tried['seconds']:.2f}", "",
                      f"{tried['seconds'] / b_default:.2f}x", f"{tried['seconds'] / b_serial:.2f}x")
        upsert = tried["phases"].get("upsert customer_profile", 0.0)
        table.add_row("  upsert customer_profile", f"{upsert:.2f}", "", "", "")
    console.print(table)
    if result["settings"]:
        console.print(f"Session settings for every recompute: {result['settings']}")

    checks = result["verify"]
    console.print(
        f"Seeded in {seed_['total_seconds']:.1f} s (customers {seed_['seconds']['customers']:.1f} s, orders "
        f"{seed_['seconds']['orders']:.1f} s, VACUUM ANALYZE + CHECKPOINT {seed_['seconds']['vacuum']:.1f} s; "
        f"orders table {seed_['orders_size']}): {seed_['buyers']:,} customers with orders, "
        f"{seed_['one_time_buyers']:,} one-time buyers, at most {seed_['max_orders_per_customer']} orders each, "
        f"{seed_['customer_days_with_several_orders']:,} customer-days with several orders."
    )
    console.print(
        f"Correctness: profiles {checks['profile_rows']:,} (customers {seed_['customers']:,}); stages "
        f"{checks['stages']} sum {sum(checks['stages'].values()):,}; customers with orders "
        f"{checks['profiles_with_orders']:,} of {checks['buyers']:,}, without segment {checks['unsegmented_buyers']}, "
        f"without scores {checks['unscored_buyers']}; order counts match {checks['orders_match']}, totals match "
        f"{checks['totals_match']}: " + ("[green]correct[/]" if checks["ok"] else "[red]NOT CORRECT[/]")
    )
    for column, distribution in checks["scores"].items():
        console.print(f"  {column}: " + "  ".join(f"{k}: {v:,}" for k, v in distribution.items()))
    console.print("  segments: " + ", ".join(f"{k} {v:,}" for k, v in checks["segments"].items()))
    console.print(f"  transitions recorded (all runs): {checks['transitions']}")

    console.print("Target (BENCHMARKS.md P5): recompute <= 1.5x the bare GROUP BY")
    for label, chosen in (("first run", first), ("steady state", steady)):
        ratio = chosen["seconds"] / b_default
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        console.print(f"  {label}: {ratio:.2f}x (vs serial GROUP BY {chosen['seconds'] / b_serial:.2f}x): {verdict}")
    for label, plan in result["plans"]:
        console.print(f"\n[bold]EXPLAIN (ANALYZE, BUFFERS), steady state, {label}:[/]")
        console.print(plan, markup=False, highlight=False)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers (default 1000000)")
    parser.add_argument("--orders", type=int, default=10_000_000, help="orders, approximately (default 10000000)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="timed runs of the baseline and of each recompute kind; best is reported (default 2)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="session setting for every recompute, e.g. work_mem=256MB (repeatable)")
    parser.add_argument("--try-set", action="append", default=[], metavar="NAME=VALUE",
                        help="one extra steady-state recompute with this session setting (repeatable)")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN (ANALYZE, BUFFERS) of a steady-state recompute (rolled back)")
    parser.add_argument("--keep", action="store_true", help="keep the database for inspection (default: drop)")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    for key in CONFIG_OVERRIDES:
        os.environ.pop(key, None)
    result = run(args)
    print_report(result)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
