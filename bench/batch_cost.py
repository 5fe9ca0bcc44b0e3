"""What ``recommendations(n=3)`` adds to the worker's own per-message cost, in one process.

    .venv/bin/python -m bench.batch_cost                     # 1,000 customers, 4 rounds
    .venv/bin/python -m bench.batch_cost --customers 2000 --rounds 6 --profile

The full P2 comparison (``bench.worker --recommendations``) runs Dramatiq workers, an HTTP
sink and PostgreSQL on the same two cores, and its rounds move by more than the 10 %
target. This measures the part the project owns without them: the worker's
``deliver_batch`` (claim, send-time policy, the batch's recommended products, render,
record) called in this process on 50-message batches, against a channel that accepts
every message at once (no HTTP). It

1. creates a throwaway PostgreSQL database (as the other benches), seeds the customers,
   a catalogue of ``--products`` products (every tenth out of stock) and five ranked
   recommendations per customer (``bench.worker``'s seeding; not measured);
2. runs ``--rounds`` rounds of two campaigns over the same customers, **without** (P2's
   template) and **with** (the same body plus ``recommendations(n=3) | tojson``), the
   pair's order swapped every round (ABBA: each campaign checks the caps against every
   earlier one, so later campaigns cost a little more); each plans its deliveries, warms
   up on its first batch and times the others;
3. checks every message was sent and the "with" campaign wrote one ``recommendation_sent``
   row per product shown;
4. prints ms per message of each round, the best and the mean of each variant and the
   cost added (with / without - 1), and with ``--profile`` the statements that took the
   most time (SQLAlchemy's cursor events) in the last round of each variant.

Timings are printed, never asserted: benchmarks are not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import BENCH_HOOK_SECRET_ENV, CONFIG_OVERRIDES, logger, throwaway_database, tick_moment
from bench.worker import CAMPAIGN_CRON_HOUR, seed, seed_recommendations, shown_count, write_project

log = logger("batch_cost")

#: Ids per job, as the scheduler hands them to a worker (``broker.batch_size``'s default).
BATCH = 50


def run_variant(database: Any, directory: Path, *, campaign: str, template: str | None, now: Any,
                profile: bool) -> dict[str, Any]:
    """Plan ``campaign`` and deliver it batch by batch in this process; ms per message."""
    import sqlalchemy as sa

    from campaigns.project.loading import load_config
    from campaigns.sending.ledger import run_batches
    from campaigns.sending.messages import Outcome, SendResult
    from campaigns.sending.planning import claim_run, plan_run
    from workers.jobs.delivery import deliver_batch
    from workers.jobs.runtime import Runtime

    path = write_project(directory, database_url=database.url, namespace="nurture-bench-batch-cost",
                         sink_url="http://127.0.0.1:9/unused", threads=8, processes=1, campaign=campaign,
                         recommendations=template)
    config = load_config(path)
    runtime = Runtime.from_config(config, clock=lambda: now)
    statements: dict[str, list[float]] = {}
    try:
        for channel in runtime.channels.values():
            # A provider that accepts at once: what is measured is the project's side.
            channel.send = lambda message: SendResult(Outcome.OK, provider_message_id="bench")  # type: ignore[method-assign]
        run_id = claim_run(runtime.engine, campaign, now, lease=timedelta(minutes=5))
        plan_run(runtime.engine, config, config.campaigns[0], run_id=run_id, scheduled_at=now, now=now)
        batches = list(run_batches(runtime.engine, run_id, now=now, batch_size=BATCH))
        deliver_batch(runtime, batches[0])  # compiles the template and the statements
        if profile:
            def before(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
                conn.info.setdefault("bench_started", []).append(time.perf_counter())

            def after(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
                spent = time.perf_counter() - conn.info["bench_started"].pop()
                statements.setdefault(" ".join(statement.split())[:100], []).append(spent)

            sa.event.listen(runtime.engine, "before_cursor_execute", before)
            sa.event.listen(runtime.engine, "after_cursor_execute", after)
        started = time.perf_counter()
        sent = 0
        for batch in batches[1:]:
            sent += deliver_batch(runtime, batch).counts.get("ok", 0)
        seconds = time.perf_counter() - started
    finally:
        runtime.close()
    messages = sum(len(batch) for batch in batches[1:])
    top = sorted(statements.items(), key=lambda item: -sum(item[1]))[:12]
    return {"campaign": campaign, "messages": messages, "sent": sent + len(batches[0]),
            "ms_per_message": seconds / messages * 1000,
            "statements": [{"ms_per_batch": sum(times) / (len(batches) - 1) * 1000, "calls": len(times),
                            "statement": text} for text, times in top]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Seed, run the rounds, check; the results as a dict."""
    os.environ.setdefault(BENCH_HOOK_SECRET_ENV, "bench-secret-" + "x" * 24)
    now = tick_moment(CAMPAIGN_CRON_HOUR)
    rounds: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    with throwaway_database(prefix="nurture_bench_batch", log=log) as database, \
            tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        seed(database.url, args.customers, now)
        shown = seed_recommendations(database.url, args.products, now)
        log(f"seeded {args.customers:,} customers, {args.products:,} products ({shown:,} products to show)")
        for round_ in range(1, args.rounds + 1):
            for variant in ("without", "with") if round_ % 2 else ("with", "without"):
                campaign = f"{'recs' if variant == 'with' else 'plain'}_{round_}"
                result = run_variant(database, Path(tmp), campaign=campaign, now=now,
                                     template=args.template if variant == "with" else None,
                                     profile=args.profile and round_ >= args.rounds - 1)
                result["shown"] = shown_count(database.dsn, campaign)
                result["ok"] = (result["sent"] == args.customers
                                and result["shown"] == (shown if variant == "with" else 0))
                log(f"round {round_} {variant}: {result['ms_per_message']:.3f} ms/message "
                    f"({result['sent']:,} sent, {result['shown']:,} products shown)")
                rounds[variant].append(result)
    best = {variant: min(r["ms_per_message"] for r in runs) for variant, runs in rounds.items()}
    mean = {variant: statistics.fmean(r["ms_per_message"] for r in runs) for variant, runs in rounds.items()}
    return {"customers": args.customers, "products": args.products, "template": args.template, "rounds": rounds,
            "best": best, "mean": mean, "added_best": best["with"] / best["without"] - 1,
            "added_mean": mean["with"] / mean["without"] - 1,
            "ok": all(r["ok"] for runs in rounds.values() for r in runs)}


def print_report(result: dict[str, Any]) -> None:
    """Rounds, best and mean, the cost added; the slowest statements when profiled."""
    print(f"deliver_batch in one process: {result['customers']:,} messages per run in batches of {BATCH}, "
          f"{result['products']:,} products, template '{result['template']}'")
    for variant in ("without", "with"):
        each = ", ".join(f"{r['ms_per_message']:.3f}" for r in result["rounds"][variant])
        print(f"  {variant:>7}: {each} ms/message (best {result['best'][variant]:.3f}, "
              f"mean {result['mean'][variant]:.3f})")
    print(f"  added by recommendations(n=3): {result['added_best']:+.1%} (best), {result['added_mean']:+.1%} (mean)")
    for variant in ("without", "with"):
        last = result["rounds"][variant][-1]
        if last["statements"]:
            print(f"  slowest statements, last '{variant}' run (ms per batch, calls):")
            for item in last["statements"]:
                print(f"    {item['ms_per_batch']:7.2f}  {item['calls']:4d}x  {item['statement']}")
    print(f"  checks: {'ok' if result['ok'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000, help="messages per run (default 1000)")
    parser.add_argument("--products", type=int, default=50_000, help="catalogue size (default 50000)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of both variants (default 4)")
    parser.add_argument("--template", choices=("list", "attributes"), default="list",
                        help="the products as one tojson list (default) or attribute by attribute")
    parser.add_argument("--profile", action="store_true", help="time every statement of the last two rounds")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = parser.parse_args(argv)
    for key in CONFIG_OVERRIDES:
        os.environ.pop(key, None)
    result = run(args)
    print_report(result)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
