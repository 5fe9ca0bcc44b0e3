"""P1 fan-out: one scheduler tick plans and enqueues a campaign for N customers.

    .venv/bin/python -m bench.fanout --customers 100000 1000000

For each audience size this

1. creates a throwaway PostgreSQL database ``nurture_bench_<hex>`` on 127.0.0.1:5432,
   migrates it and seeds N customers with one order each, 100-400 days old, with
   set-based SQL (``INSERT ... SELECT FROM generate_series``; not measured), then
   ``VACUUM ANALYZE`` + ``CHECKPOINT`` so the measurement starts from a quiet server;
2. measures the raw baseline in the same run: Dramatiq ``actor.send()`` one message at a
   time on a ``RedisBroker`` (Redis 127.0.0.1:6379 db 14, its own namespace) for a sample
   of M messages;
3. runs the project's figure in a fresh subprocess (so its peak RSS is per size): one real
   ``workers.jobs.scheduler.tick()`` just after the campaign's cron slot, which claims the run,
   plans N deliveries (``INSERT ... SELECT``) and enqueues them as jobs of
   ``broker.batch_size`` ids through Redis pipelines. The tick's internal steps are timed by
   wrapping the functions ``workers.jobs.scheduler`` calls (nothing is replicated);
4. verifies the result: N delivery rows, all marked enqueued; ceil(N / batch_size)
   messages in the Redis queue; the ids carried by the jobs are exactly the ledger's ids,
   each once;
5. drops the database (``WITH (FORCE)``) and flushes Redis db 14, even on error.

Timings are printed, never asserted: benchmarks are not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_COMPLIANCE,
    CONFIG_OVERRIDES,
    PROJECT_ROOT,
    QUEUE,
    REDIS_URL,
    flush_redis,
    grant_consent,
    logger,
    throwaway_database,
    tick_moment,
)

log = logger("fanout")

CAMPAIGN_CRON_HOUR = 10  # the campaign runs "0 10 * * *" UTC

#: Targets from BENCHMARKS.md (P1).
TARGET_RATIO = 4.0
TARGET_SECONDS_1M = 90.0
TARGET_RSS_GROWTH = 1.5

#: Environment variables that would override the bench's config file.


def max_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- setup


def seed(url: str, customers: int, now: datetime) -> None:
    """N customers with an email and one order 100-400 days before ``now``: all lapsed."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(
                """
                INSERT INTO customer (external_id, name, email, acquisition_channel,
                                      created_at, updated_at, attributes)
                SELECT 'B' || g, 'Bench Person ' || g, 'p' || g || '@example.com', 'ecommerce',
                       %(now)s - interval '500 days', %(now)s, '{}'::json
                FROM generate_series(1, %(n)s) AS g
                """,
                {"now": now, "n": customers},
            )
            conn.execute(
                """
                INSERT INTO orders (order_id, customer_id, ordered_at, amount, channel)
                SELECT 'O-' || c.id, c.id,
                       %(now)s - make_interval(days => (100 + (c.id::bigint * 7919) %% 301)::int),
                       20 + (c.id %% 50), 'ecommerce'
                FROM customer c
                """,
                {"now": now},
            )
            grant_consent(conn, now=now)
        # A production database has statistics and a visibility map; so should this one,
        # and the seeding's dirty pages should not be flushed during the measurement.
        conn.execute("VACUUM ANALYZE customer")
        conn.execute("VACUUM ANALYZE orders")
        conn.execute("VACUUM ANALYZE consent")
        conn.execute("CHECKPOINT")


def write_project(directory: Path, *, database_url: str, namespace: str, batch_size: int,
                  with_profiles: bool = False) -> Path:
    """A config.toml with one win-back campaign on an outbox channel, and its template."""
    templates = directory / "templates" / "win_back"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "miss_you.subject.j2").write_text("We miss you, {{ customer.name }}\n")
    (templates / "miss_you.txt.j2").write_text(
        "Hello {{ customer.name }},\n\nyour last order was on {{ stats.last_order_at }}."
        " Come back for 10% off.\n"
    )
    # Profile recomputation (P5) also runs inside a tick when its cron slot is due; P1
    # measures the fan-out alone unless --with-profiles keeps the project's default cron.
    profiles = "" if with_profiles else '[profiles]\ncron = ""\n'
    config = directory / "config.toml"
    config.write_text(f"""{profiles}
[database]
url = "{database_url}"

[broker]
url = "{REDIS_URL}"
queue = "{QUEUE}"
batch_size = {batch_size}
namespace = "{namespace}"

[templates]
dir = "templates"

{BENCH_COMPLIANCE}
[channels.email]
kind = "outbox"
dir = "outbox"
recipient = "email"

[[campaigns]]
name = "win_back"
timezone = "UTC"
trigger = {{ cron = "0 {CAMPAIGN_CRON_HOUR} * * *" }}
channels = ["email"]
reentry = "never"

  [campaigns.audience]
  min_orders = 1
  last_order_more_than_days = 90

  [[campaigns.steps]]
  template = "win_back/miss_you"
""")
    return config


# --------------------------------------------------------------------------- baseline


def baseline(sample: int) -> dict[str, Any]:
    """Dramatiq's own ``actor.send()``, one message per delivery, to the same Redis."""
    import dramatiq
    import redis
    from dramatiq.brokers.redis import RedisBroker

    namespace = f"nurture-bench-baseline-{secrets.token_hex(4)}"
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)

    def bench_noop(delivery_id: int) -> None:
        """Never run: only its enqueue is measured."""

    actor = dramatiq.actor(bench_noop, broker=broker, queue_name="baseline")
    broker.client.ping()
    started = time.perf_counter()
    for delivery_id in range(1, sample + 1):
        actor.send(delivery_id)
    seconds = time.perf_counter() - started
    client = redis.Redis.from_url(REDIS_URL)
    queued = client.llen(f"{namespace}:baseline")
    client.close()
    broker.close()
    return {"sample": sample, "seconds": seconds, "rate": sample / seconds, "queued": queued}


# --------------------------------------------------------------------------- the tick (child)


def child_tick(config_path: str, now_iso: str) -> None:
    """Run one real scheduler tick in this (fresh) process; print a JSON report on stdout."""
    import sqlalchemy as sa

    from campaigns.project.loading import load_config
    from campaigns.store.db import make_engine
    from workers.jobs import scheduler
    from workers.jobs.broker import make_broker

    phases: dict[str, float] = {}
    calls: dict[str, int] = {}

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
                calls[name] = calls.get(name, 0) + 1

        return wrapper

    def timed_generator(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            iterator = function(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
                yield item

        return wrapper

    # Time tick()'s own steps by wrapping the names it looks up in its module.
    scheduler.requeue_expired_leases = timed("requeue", scheduler.requeue_expired_leases)
    if hasattr(scheduler, "_recompute_when_due"):
        scheduler._recompute_when_due = timed("profiles", scheduler._recompute_when_due)
    if hasattr(scheduler, "plan_entries"):
        scheduler.plan_entries = timed("entries", scheduler.plan_entries)
    scheduler.claim_run = timed("claim", scheduler.claim_run)
    scheduler.plan_run = timed("plan", scheduler.plan_run)
    scheduler.dispatchable_batches = timed_generator("dispatch_db", scheduler.dispatchable_batches)
    scheduler.run_batches = timed_generator("dispatch_db", scheduler.run_batches)
    scheduler.enqueue_many = timed("enqueue_redis", scheduler.enqueue_many)

    now = datetime.fromisoformat(now_iso)
    config = load_config(config_path)
    engine = make_engine(config.database.url)
    broker = make_broker(config.broker)
    broker.client.ping()  # type: ignore[attr-defined]
    with engine.connect() as conn:  # as `nurture scheduler` does (it migrates first)
        conn.execute(sa.text("SELECT 1"))
    rss_before = max_rss_mb()

    started = time.perf_counter()
    report = scheduler.tick(config=config, engine=engine, broker=broker, now=now)
    seconds = time.perf_counter() - started

    result = {
        "seconds": seconds,
        "phases": phases,
        "pipelines": calls.get("enqueue_redis", 0),
        "planned": sum(run.planned for run in report.runs),
        "runs": len(report.runs),
        "enqueued_jobs": report.enqueued_jobs,
        "enqueued_deliveries": report.enqueued_deliveries,
        "rss_before_mb": rss_before,
        "rss_peak_mb": max_rss_mb(),
    }
    engine.dispose()
    broker.close()
    print(json.dumps(result))


def run_tick_subprocess(config: Path, now: datetime) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key not in CONFIG_OVERRIDES}
    completed = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--child-tick", str(config), "--now", now.isoformat()],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"tick subprocess failed with exit code {completed.returncode}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- verification


def verify(url: str, namespace: str, customers: int, batch_size: int) -> dict[str, Any]:
    """Ledger rows vs Redis messages: every delivery enqueued exactly once."""
    import psycopg
    import redis

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows, enqueued, customers_hit = conn.execute(
            # A row handed to the broker has dispatch_after past the tick (planning marks it).
            "SELECT count(*), count(*) FILTER (WHERE dispatch_after > due_at), count(DISTINCT customer_id)"
            " FROM delivery"
        ).fetchone()
        ledger_ids = {row[0] for row in conn.execute("SELECT id FROM delivery")}
    client = redis.Redis.from_url(REDIS_URL)
    queue_key = f"{namespace}:{QUEUE}"
    queue_length = client.llen(queue_key)
    stored = client.hlen(f"{queue_key}.msgs")
    job_ids: list[int] = []
    actors = set()
    for _, raw in client.hscan_iter(f"{queue_key}.msgs", count=1000):
        message = json.loads(raw)
        actors.add(message["actor_name"])
        job_ids.extend(message["args"][0])
    client.close()
    expected_jobs = math.ceil(customers / batch_size)
    ok = (
        rows == customers
        and enqueued == customers
        and customers_hit == customers
        and queue_length == expected_jobs
        and stored == expected_jobs
        and len(job_ids) == customers
        and set(job_ids) == ledger_ids
        and actors == {"send_deliveries"}
    )
    return {
        "delivery_rows": rows,
        "enqueued_rows": enqueued,
        "queue_length": queue_length,
        "stored_messages": stored,
        "expected_jobs": expected_jobs,
        "ids_in_jobs": len(job_ids),
        "unique_ids_in_jobs": len(set(job_ids)),
        "ok": ok,
    }


# --------------------------------------------------------------------------- one size


def run_size(customers: int, *, sample: int, batch_size: int, with_profiles: bool) -> dict[str, Any]:
    namespace = f"nurture-bench-{secrets.token_hex(4)}"
    now = tick_moment(CAMPAIGN_CRON_HOUR)
    with throwaway_database(log=log) as database:
        name, url = database.name, database.dsn
        flush_redis()
        try:
            log(f"{customers:,} customers: seeding {name} ...")
            started = time.perf_counter()
            seed(url, customers, now)
            seed_seconds = time.perf_counter() - started
            log(f"{customers:,} customers: seeded in {seed_seconds:.1f} s; baseline actor.send() x {sample:,} ...")

            base = baseline(sample)
            flush_redis()
            log(f"{customers:,} customers: baseline {base['rate']:,.0f} msg/s; running tick() in a fresh process ...")

            with tempfile.TemporaryDirectory(prefix="nurture-bench-") as directory:
                config = write_project(Path(directory), database_url=url, namespace=namespace, batch_size=batch_size,
                                       with_profiles=with_profiles)
                from campaigns.project.loading import load_config

                load_config(config)  # fail here, clearly, if the bench's config is invalid
                tick_result = run_tick_subprocess(config, now)
            log(f"{customers:,} customers: tick took {tick_result['seconds']:.1f} s; verifying ...")
            checks = verify(url, namespace, customers, batch_size)
            return {
                "customers": customers,
                "database": name,
                "now": now.isoformat(),
                "batch_size": batch_size,
                "seed_seconds": seed_seconds,
                "tick": tick_result,
                "deliveries_per_s": tick_result["enqueued_deliveries"] / tick_result["seconds"],
                "baseline": base,
                "ratio": (tick_result["enqueued_deliveries"] / tick_result["seconds"]) / base["rate"],
                "naive_seconds": customers / base["rate"],
                "verify": checks,
            }
        finally:
            flush_redis()


# --------------------------------------------------------------------------- output


def print_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    table = Table(title="P1 fan-out: one scheduler tick (PostgreSQL + Redis) vs actor.send() one by one")
    table.add_column("", style="bold")
    for result in results:
        table.add_column(f"{result['customers']:,} customers", justify="right")

    def row(label: str, render: Any) -> None:
        table.add_row(label, *[render(result) for result in results])

    row("tick() total", lambda r: f"{r['tick']['seconds']:.2f} s")
    row("  plan (INSERT ... SELECT)", lambda r: f"{r['tick']['phases'].get('plan', 0):.2f} s")
    row("  dispatch: select + mark enqueued (DB)", lambda r: f"{r['tick']['phases'].get('dispatch_db', 0):.2f} s")
    row("  enqueue: Redis pipelines", lambda r: f"{r['tick']['phases'].get('enqueue_redis', 0):.2f} s")
    if any("profiles" in r["tick"]["phases"] and r["tick"]["phases"]["profiles"] > 0.05 for r in results):
        row("  profiles recompute (--with-profiles)", lambda r: f"{r['tick']['phases'].get('profiles', 0):.2f} s")
    row("  other (claim, requeue, messages)", lambda r: "{:.2f} s".format(
        r["tick"]["seconds"] - sum(r["tick"]["phases"].get(k, 0) for k in ("plan", "dispatch_db", "enqueue_redis", "profiles"))))
    row("deliveries/s (ledger + enqueue)", lambda r: f"{r['deliveries_per_s']:,.0f}")
    row("jobs enqueued / pipelines", lambda r: f"{r['tick']['enqueued_jobs']:,} / {r['tick']['pipelines']:,}")
    row("scheduler RSS before tick / peak", lambda r: f"{r['tick']['rss_before_mb']:.0f} / {r['tick']['rss_peak_mb']:.0f} MiB")
    row("baseline actor.send() one by one", lambda r: f"{r['baseline']['rate']:,.0f} msg/s ({r['baseline']['sample']:,})")
    row("  same N one by one would take", lambda r: f"{r['naive_seconds']:.1f} s")
    row("ratio project / baseline", lambda r: f"{r['ratio']:.1f}x")
    row("delivery rows (expected N)", lambda r: f"{r['verify']['delivery_rows']:,}")
    row("Redis queue msgs (expected)", lambda r: f"{r['verify']['queue_length']:,} ({r['verify']['expected_jobs']:,})")
    row("ids in jobs / unique", lambda r: f"{r['verify']['ids_in_jobs']:,} / {r['verify']['unique_ids_in_jobs']:,}")
    row("result correct", lambda r: "yes" if r["verify"]["ok"] else "[red]NO[/]")
    row("seeding (not measured)", lambda r: f"{r['seed_seconds']:.1f} s")
    console.print(table)

    console.print("Targets (BENCHMARKS.md P1):")
    for result in results:
        verdict = "meets" if result["ratio"] >= TARGET_RATIO else "misses"
        console.print(f"  {result['customers']:>9,}: ratio {result['ratio']:.1f}x vs >= {TARGET_RATIO:g}x: {verdict}")
    for result in results:
        if result["customers"] == 1_000_000:
            seconds = result["tick"]["seconds"]
            verdict = "meets" if seconds <= TARGET_SECONDS_1M else "misses"
            console.print(f"  1,000,000 fan-out {seconds:.1f} s vs <= {TARGET_SECONDS_1M:g} s: {verdict}")
    sizes = {result["customers"]: result for result in results}
    if 100_000 in sizes and 1_000_000 in sizes:
        growth = sizes[1_000_000]["tick"]["rss_peak_mb"] / sizes[100_000]["tick"]["rss_peak_mb"]
        verdict = "meets" if growth <= TARGET_RSS_GROWTH else "misses"
        console.print(f"  peak RSS 1M / 100k = {growth:.2f}x vs <= {TARGET_RSS_GROWTH:g}x: {verdict}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000],
                        help="audience sizes, each run in its own database and process (default 100000)")
    parser.add_argument("--baseline-sample", type=int, default=20_000,
                        help="messages sent one by one with actor.send() for the baseline (default 20000)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="broker.batch_size (default: the project's default)")
    parser.add_argument("--with-profiles", action="store_true",
                        help="keep the default [profiles] cron, so the tick also recomputes profiles (P5's work)")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    parser.add_argument("--child-tick", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_tick:
        child_tick(args.child_tick, args.now)
        return 0

    for key in CONFIG_OVERRIDES:
        os.environ.pop(key, None)
    from campaigns.config.runtime import BrokerConfig

    batch_size = args.batch_size or BrokerConfig().batch_size
    results = []
    for customers in args.customers:
        results.append(run_size(customers, sample=args.baseline_sample, batch_size=batch_size,
                                with_profiles=args.with_profiles))
    print_table(results)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
