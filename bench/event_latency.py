"""P6 event trigger latency: sign-up event in -> first welcome message at the sink.

    .venv/bin/python -m bench.event_latency --events 500
    # options: --rate 20  --batch 1  --threads 8  --timeout 30  --warmup 5  --json

This

1. creates a throwaway PostgreSQL database ``nurture_bench_<hex>`` on 127.0.0.1:5432,
   migrates it and seeds N customers (plus a few warm-up ones) with set-based SQL;
2. writes a temporary project: Redis 127.0.0.1:6379 db 14 under its own namespace, a
   ``webhook`` channel pointing at a loopback HTTP sink in this process (a
   ``ThreadingHTTPServer`` that records the arrival time of every request per customer
   id, taken from the JSON body), and a ``welcome`` campaign with
   ``trigger = { event = "signup" }`` whose one step is a ``.json.j2`` template carrying
   the customer's external id; ``[api] key_env`` names the bearer key's variable;
3. starts ``nurture serve`` and a Dramatiq worker
   (``python -m dramatiq workers.app --processes 1 --threads 8``) as subprocesses, waits
   for ``/health`` and for warm-up events to come out at the sink (worker up and warm);
4. sends one ``signup`` event per customer at a steady rate (default 20/s, one event per
   request; ``--batch k`` puts k events in each request) with one keep-alive httpx
   client, recording the send time of each; latency = sink arrival - send time, per
   event (both clocks are this process's ``time.time()``);
5. measures two floors in the same run, at the same rate and count, to the same sink:
   *direct*: the bench POSTs the same JSON body straight to the sink on a keep-alive
   client (network + sink); *one Dramatiq hop*: ``actor.send()`` from the bench to a
   Dramatiq worker subprocess (same Redis, 1 process, same threads) whose actor only
   POSTs to the sink, i.e. the cost of one broker hop with Dramatiq's idle polling;
6. reports count, p50/p90/p99/max, losses (no message after ``--timeout``) and
   duplicates (more than one message per customer), plus a breakdown from the ledger's
   timestamps; stops the subprocesses, drops the database ``WITH (FORCE)`` and flushes
   Redis db 14, even on error.

Timings are printed, never asserted: benchmarks are not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from bench.common import (
    BENCH_COMPLIANCE,
    CONFIG_OVERRIDES,
    PROJECT_ROOT,
    QUEUE,
    REDIS_URL,
    check_alive,
    flush_redis,
    free_port,
    logger,
    subprocesses,
    throwaway_database,
)

log = logger("event_latency")

API_KEY_ENV = "NURTURE_BENCH_API_KEY"

#: Target from BENCHMARKS.md (P6).
TARGET_P99_S = 2.0

#: Environment variables that would override the bench's config file.


# --------------------------------------------------------------------------- the sink


class Sink:
    """Loopback HTTP sink: arrival times (``time.time()``) per path and customer id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: dict[str, dict[str, list[float]]] = {}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                arrived = time.time()
                try:
                    customer = str(json.loads(body)["customer"])
                except (ValueError, KeyError, TypeError):
                    customer = "?"
                with sink.lock:
                    sink.arrivals.setdefault(self.path, {}).setdefault(customer, []).append(arrived)
                payload = b'{"id":"sink"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def seen(self, path: str) -> dict[str, list[float]]:
        with self.lock:
            return {key: list(value) for key, value in self.arrivals.get(path, {}).items()}

    def count(self, path: str, customers: list[str]) -> int:
        with self.lock:
            got = self.arrivals.get(path, {})
            return sum(1 for customer in customers if customer in got)


# --------------------------------------------------------------------------- setup


def seed(url: str, external_ids: list[str]) -> None:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO customer (external_id, name, email, acquisition_channel, created_at, updated_at, attributes)
            SELECT x, 'Bench ' || x, lower(x) || '@example.com', 'ecommerce', now(), now(), '{}'::json
            FROM unnest(%(ids)s::text[]) AS x
            """,
            {"ids": external_ids},
        )
        conn.execute("VACUUM ANALYZE customer")
        conn.execute("CHECKPOINT")


def write_project(directory: Path, *, database_url: str, namespace: str, sink_url: str) -> Path:
    templates = directory / "templates" / "welcome"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "hello.json.j2").write_text(
        '{"customer": {{ customer.external_id | tojson }}, "campaign": "welcome", "text": "Welcome aboard!"}\n'
    )
    config = directory / "config.toml"
    config.write_text(f"""[profiles]
cron = ""

[database]
url = "{database_url}"

[broker]
url = "{REDIS_URL}"
queue = "{QUEUE}"
namespace = "{namespace}"

[api]
key_env = "{API_KEY_ENV}"

[templates]
dir = "templates"

{BENCH_COMPLIANCE}
[channels.hook]
kind = "webhook"
url = "{sink_url}"
secret_env = "NURTURE_BENCH_HOOK_SECRET"
recipient = "external_id"

[[campaigns]]
name = "welcome"
trigger = {{ event = "signup" }}
channels = ["hook"]

  [[campaigns.steps]]
  template = "welcome/hello"
""")
    return config


def spawn(started: list[tuple[str, subprocess.Popen[bytes], Path]], name: str, command: list[str],
          env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    logfile = logs / f"{name}.log"
    with open(logfile, "wb") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    started.append((name, process, logfile))
    return process


def wait_for(predicate: Any, timeout: float, what: str,
             started: list[tuple[str, subprocess.Popen[bytes], Path]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive(started)
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


# --------------------------------------------------------------------------- sending


def paced(count: int, rate: float) -> Iterator[int]:
    """Yield 0..count-1, each at its slot ``start + i / rate`` (never early)."""
    start = time.perf_counter()
    for index in range(count):
        slot = start + index / rate
        delay = slot - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield index


def stats(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        # nearest-rank percentile
        rank = max(1, int(-(-p * len(ordered) // 100)))
        return ordered[min(rank, len(ordered)) - 1]

    return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": ordered[-1],
            "mean": statistics.fmean(ordered), "min": ordered[0]}


def collect(sink: Sink, path: str, sent: dict[str, float], timeout: float, grace: float) -> dict[str, Any]:
    """Wait for every customer of ``sent`` to arrive at ``path`` (or the timeout), then
    ``grace`` more seconds for duplicates; latencies are first arrival - send time."""
    customers = list(sent)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sink.count(path, customers) < len(customers):
        time.sleep(0.05)
    time.sleep(grace)
    seen = sink.seen(path)
    latencies = [min(seen[c]) - sent[c] for c in customers if c in seen]
    lost = [c for c in customers if c not in seen]
    duplicates = sum(1 for c in customers if len(seen.get(c, [])) > 1)
    return {"count": len(customers), "delivered": len(latencies), "lost": len(lost), "lost_sample": lost[:10],
            "duplicates": duplicates, "latencies": latencies, **stats(latencies)}


def run_project(sink: Sink, *, base_url: str, key: str, customers: list[str], rate: float, batch: int,
                timeout: float, grace: float) -> dict[str, Any]:
    import httpx

    sent: dict[str, float] = {}
    acks: list[float] = []
    answered: dict[str, float] = {}
    statuses: dict[str, int] = {}
    requests = [customers[i : i + batch] for i in range(0, len(customers), batch)]
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        for index in paced(len(requests), rate / batch):
            group = requests[index]
            body = {"events": [{"event_id": f"signup-{c}", "customer_id": c, "name": "signup",
                                "properties": {"plan": "free"}} for c in group]}
            at = time.time()
            response = client.post("/events", json=body)
            done = time.time()
            acks.append(done - at)
            key_status = str(response.status_code)
            statuses[key_status] = statuses.get(key_status, 0) + 1
            if response.status_code == 202:
                accepted = response.json()["accepted"]
                if accepted != len(group):
                    statuses["not accepted"] = statuses.get("not accepted", 0) + len(group) - accepted
            for c in group:
                sent[c] = at
                answered[c] = done
    send_seconds = time.perf_counter() - started
    result = collect(sink, "/hook", sent, timeout, grace)
    result.update({"send_seconds": send_seconds, "offered_rate": len(customers) / send_seconds,
                   "requests": len(requests), "http": statuses, "ack": stats(acks), "sent": sent,
                   "answered": answered})
    return result


def run_direct(sink: Sink, *, customers: list[str], rate: float) -> dict[str, Any]:
    """Floor 1: the same JSON body POSTed straight to the sink on a keep-alive client."""
    import httpx

    sent: dict[str, float] = {}
    with httpx.Client(base_url=sink.base, timeout=30) as client:
        for index in paced(len(customers), rate):
            c = customers[index]
            body = json.dumps({"customer": c, "campaign": "welcome", "text": "Welcome aboard!"}).encode()
            sent[c] = time.time()
            client.post("/direct", content=body, headers={"Content-Type": "application/json"})
    return collect(sink, "/direct", sent, 10, 0.2)


# --------------------------------------------------------------------------- floor 2: one Dramatiq hop


def child_hop_worker(namespace: str, sink_url: str, threads: int) -> None:
    """A Dramatiq worker whose only actor POSTs its argument to the sink (one keep-alive
    client per thread, as the webhook channel does). Runs until SIGTERM."""
    import dramatiq
    import httpx
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    local = threading.local()

    def bench_hop(customer: str) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=10)
        body = json.dumps({"customer": customer, "campaign": "welcome", "text": "Welcome aboard!"}).encode()
        client.post(sink_url, content=body, headers={"Content-Type": "application/json"})

    dramatiq.actor(bench_hop, broker=broker, queue_name="hop", max_retries=0)
    worker = dramatiq.Worker(broker, worker_threads=threads)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker.start()
    print("ready", flush=True)
    stop.wait()
    worker.stop(timeout=5000)
    broker.close()


def run_hop(sink: Sink, started: list[tuple[str, subprocess.Popen[bytes], Path]], *, env: dict[str, str],
            logs: Path, customers: list[str], warmup: list[str], rate: float, threads: int) -> dict[str, Any]:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    namespace = f"nurture-bench-hop-{secrets.token_hex(4)}"
    spawn(started, "hop-worker", [sys.executable, "-m", "bench.event_latency", "--child-hop-worker", namespace,
                                  "--sink", f"{sink.base}/hop", "--threads", str(threads)], env, logs)
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)

    def bench_hop(customer: str) -> None:
        """Runs in the child only."""

    actor = dramatiq.actor(bench_hop, broker=broker, queue_name="hop", max_retries=0)
    try:
        for c in warmup:
            actor.send(c)
        wait_for(lambda: sink.count("/hop", warmup) == len(warmup), 60, "the one-hop worker's warm-up", started)
        sent: dict[str, float] = {}
        for index in paced(len(customers), rate):
            c = customers[index]
            sent[c] = time.time()
            actor.send(c)
        return collect(sink, "/hop", sent, 30, 0.5)
    finally:
        broker.close()


# --------------------------------------------------------------------------- breakdown from the ledger


def breakdown(url: str, project: dict[str, Any], lease_s: float) -> dict[str, Any]:
    """Per event, from the ledger (wall clock): POST answered -> handle_events planned the
    delivery (``created_at``) -> the worker's POST arrived at the sink."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.external_id, d.created_at, d.dispatch_after, d.sent_at, d.status"
            " FROM delivery d JOIN customer c ON c.id = d.customer_id WHERE d.campaign = 'welcome'"
        ).fetchall()

    def epoch(value: datetime | None) -> float | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()

    sent, answered = project["sent"], project["answered"]
    to_plan, plan_to_sink, ack_to_plan = [], [], []
    statuses: dict[str, int] = {}
    sink_seen: dict[str, list[float]] = project["_seen"]
    for external_id, created_at, _dispatch_after, _sent_at, status in rows:
        statuses[status] = statuses.get(status, 0) + 1
        if external_id not in sent:
            continue
        planned = epoch(created_at)
        if planned is None:
            continue
        to_plan.append(planned - sent[external_id])
        ack_to_plan.append(planned - answered[external_id])
        if external_id in sink_seen:
            plan_to_sink.append(min(sink_seen[external_id]) - planned)
    return {"rows": len(rows), "statuses": statuses, "send_to_planned": stats(to_plan),
            "answered_to_planned": stats(ack_to_plan), "planned_to_sink": stats(plan_to_sink)}


# --------------------------------------------------------------------------- main run


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from campaigns.project.loading import load_config

    namespace = f"nurture-bench-{secrets.token_hex(4)}"
    customers = [f"S{i:06d}" for i in range(1, args.events + 1)]
    warmup = [f"W{i:03d}" for i in range(1, args.warmup + 1)]
    key = secrets.token_hex(16)

    with throwaway_database(log=log) as database:
        name, database_url = database.name, database.url
        flush_redis()
        try:
            seed(database_url, customers + warmup)
            log(f"seeded {len(customers) + len(warmup)} customers in {name}")

            with Sink() as sink, tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp, subprocesses(log=log) as started:
                directory = Path(tmp)
                config_path = write_project(directory, database_url=database_url, namespace=namespace,
                                            sink_url=f"{sink.base}/hook")
                config = load_config(config_path)  # fail here, clearly, if the bench's config is invalid
                env = {k: v for k, v in os.environ.items() if k not in CONFIG_OVERRIDES}
                env.update({API_KEY_ENV: key, "NURTURE_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1"})
                port = free_port()
                bin_dir = Path(sys.executable).parent
                nurture = str(bin_dir / "nurture") if (bin_dir / "nurture").exists() else None
                serve_cmd = ([nurture] if nurture else [sys.executable, "-m", "workers.cli"]) + [
                    "serve", "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
                spawn(started, "serve", serve_cmd, env, directory)
                spawn(started, "worker", [sys.executable, "-m", "dramatiq", "workers.app", "--processes", "1",
                                          "--threads", str(args.threads), "--queues", QUEUE], env, directory)
                base_url = f"http://127.0.0.1:{port}"

                def healthy() -> bool:
                    try:
                        return httpx.get(f"{base_url}/health", timeout=1).status_code == 200
                    except httpx.HTTPError:
                        return False

                wait_for(healthy, 60, "nurture serve /health", started)
                log("receiver up; warming up the worker ...")
                with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as client:
                    for c in warmup:
                        answer = client.post("/events", json={"events": [
                            {"event_id": f"signup-{c}", "customer_id": c, "name": "signup"}]})
                        if answer.status_code != 202 or answer.json().get("accepted") != 1:
                            raise RuntimeError(f"warm-up event refused: {answer.status_code} {answer.text[:300]}")
                wait_for(lambda: sink.count("/hook", warmup) == len(warmup), 60, "the warm-up welcome messages", started)
                time.sleep(1.0)  # let the worker fall back into its idle polling

                log(f"project: {len(customers)} signup events at {args.rate:g}/s, {args.batch} per request ...")
                project = run_project(sink, base_url=base_url, key=key, customers=customers, rate=args.rate,
                                      batch=args.batch, timeout=args.timeout, grace=args.grace)
                project["_seen"] = sink.seen("/hook")
                check_alive(started)
                ledger = breakdown(database_url, project, config.worker.lease.total_seconds())
                log(f"project: p99 {project.get('p99', float('nan')):.3f} s, lost {project['lost']}, "
                    f"duplicates {project['duplicates']}")

                # Floors, after the project's processes are stopped, so they do not compete.
                for pname, process, _ in started:
                    if process.poll() is None:
                        process.send_signal(signal.SIGTERM)
                for pname, process, _ in started:
                    process.wait(timeout=15)
                started.clear()

                log("floor 1: direct keep-alive POST to the sink ...")
                direct = run_direct(sink, customers=customers, rate=args.rate)
                log("floor 2: one Dramatiq hop (actor.send -> worker subprocess -> POST) ...")
                hop = run_hop(sink, started, env=env, logs=directory, customers=customers,
                              warmup=[f"HW{i}" for i in range(args.warmup)], rate=args.rate, threads=args.threads)
            for result in (project,):
                result.pop("_seen", None)
            return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "events": len(customers),
                    "rate": args.rate, "batch": args.batch, "threads": args.threads, "cpus": os.cpu_count(),
                    "project": project, "ledger": ledger, "direct": direct, "hop": hop}
        finally:
            flush_redis()


# --------------------------------------------------------------------------- output


def print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    table = Table(title=(f"P6 event trigger latency: {result['events']} signup events at {result['rate']:g}/s, "
                         f"{result['batch']} per request, worker 1 process x {result['threads']} threads"))
    table.add_column("", style="bold")
    columns = [("project: POST /events -> sink", result["project"]),
               ("floor: one Dramatiq hop", result["hop"]),
               ("floor: direct POST", result["direct"])]
    for label, _ in columns:
        table.add_column(label, justify="right")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:,.1f} ms"

    table.add_row("events / delivered", *[f"{r['count']} / {r['delivered']}" for _, r in columns])
    for key in ("p50", "p90", "p99", "max", "mean"):
        table.add_row(key, *[ms(r.get(key)) for _, r in columns])
    table.add_row("lost (no message)", *[str(r["lost"]) for _, r in columns])
    table.add_row("duplicates", *[str(r["duplicates"]) for _, r in columns])
    console.print(table)

    project, ledger = result["project"], result["ledger"]
    console.print(f"Offered rate {project['offered_rate']:.1f} events/s over {project['send_seconds']:.1f} s, "
                  f"{project['requests']} requests, HTTP answers {project['http']}")
    console.print(f"POST /events round trip (202): p50 {ms(project['ack'].get('p50'))}, "
                  f"p99 {ms(project['ack'].get('p99'))}, max {ms(project['ack'].get('max'))}")
    console.print(f"Ledger: {ledger['rows']} welcome deliveries, statuses {ledger['statuses']}")
    for label, key in (("send -> delivery planned by handle_events", "send_to_planned"),
                       ("202 answered -> planned (hop 1: queue wait + plan)", "answered_to_planned"),
                       ("planned -> sink (claim, enqueue, hop 2: send_deliveries)", "planned_to_sink")):
        s = ledger[key]
        console.print(f"  {label}: p50 {ms(s.get('p50'))}, p90 {ms(s.get('p90'))}, p99 {ms(s.get('p99'))}, "
                      f"max {ms(s.get('max'))}")
    p99 = project.get("p99")
    if p99 is None:
        console.print("Target (BENCHMARKS.md P6): p99 <= 2 s: [red]no message arrived[/]")
    else:
        verdict = "meets" if p99 <= TARGET_P99_S and project["lost"] == 0 else "misses"
        lost = "" if project["lost"] == 0 else f" ({project['lost']} lost)"
        console.print(f"Target (BENCHMARKS.md P6): p99 {p99:.3f} s vs <= {TARGET_P99_S:g} s{lost}: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.event_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500, help="signup events, one customer each (default 500)")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second offered (default 20)")
    parser.add_argument("--batch", type=int, default=1, help="events per POST /events request (default 1)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up events before measuring (default 5)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds after the last send before a missing message counts as lost (default 30)")
    parser.add_argument("--grace", type=float, default=2.0,
                        help="seconds to keep listening for duplicates once all arrived (default 2)")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    parser.add_argument("--child-hop-worker", metavar="NAMESPACE", help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_hop_worker:
        child_hop_worker(args.child_hop_worker, args.sink, args.threads)
        return 0
    for key in CONFIG_OVERRIDES:
        os.environ.pop(key, None)
    result = run(args)
    print_report(result)
    if args.json:
        slim = json.loads(json.dumps(result, default=str))
        for part in ("project", "direct", "hop"):
            for key in ("latencies", "sent", "answered"):
                slim[part].pop(key, None)
        print(json.dumps(slim, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
