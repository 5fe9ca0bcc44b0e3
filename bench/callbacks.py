"""Callbacks: Twilio status callbacks into ``nurture serve``, counted in the database.

    .venv/bin/python -m bench.callbacks --callbacks 20000 --concurrency 64
    # options: --replays 0.1  --warmup 200  --timeout 600  --profile  --json

Issue #7 item 5: the receiver takes at least 1,000 callbacks a second on this machine
without losing one. This

1. creates a throwaway PostgreSQL database ``nurture_bench_<hex>`` on 127.0.0.1:5432,
   migrates it and seeds N customers and N sent SMS deliveries (plus warm-up ones), each
   with a Twilio-like ``provider_message_id`` (``'SM' || md5(i)``), with set-based SQL;
2. writes a temporary project: one ``twilio`` channel ``sms_us`` whose auth token is read
   from ``NURTURE_BENCH_TWILIO_TOKEN``, Redis db 14 under its own namespace (``serve``
   pings the broker at start; callbacks enqueue nothing);
3. starts ``nurture serve`` (uvicorn, ``--serve-workers`` processes, 1 by default
   option) and waits for ``/health``;
4. runs the load generator in a second process: a bare asyncio HTTP/1.1 client with
   ``--concurrency`` keep-alive connections, each sending the next prebuilt request as
   soon as its previous answer is read. The requests are built before the clock starts:
   N distinct status callbacks ``MessageStatus=delivered`` with Twilio's fields, signed
   with ``X-Twilio-Signature`` (HMAC-SHA1 of the URL + sorted fields, base64), plus
   ``--replays`` x N exact byte-for-byte replays (Twilio's retries), each placed after its
   original at a random distance; a few warm-up callbacks go first, outside the timing;
5. counts rows: ``response`` must hold N Twilio rows (replays absorbed) and N deliveries
   must have ``receipt_status = 'delivered'``;
6. raw baseline in the same run, after ``serve`` stopped: a bare Starlette app on the
   same uvicorn defaults (``python -m uvicorn --factory``) whose handler reads the body,
   ``parse_qsl``-s it and does one ``INSERT`` of the fields into a scratch table with
   psycopg (autocommit, a queue of 15 connections = SQLAlchemy's default pool, in the
   same thread pool as the project), driven by the same load generator and requests;
7. for BENCHMARKS.md P7 ("status writes", baseline SQLAlchemy Core executemany of the
   same rows): one Core ``executemany`` of the N rows the project wrote into
   ``response_copy`` (``LIKE response INCLUDING ALL``), timed, and the same rows again
   with the deliveries' receipt updates (executemany ``UPDATE`` of ``delivery_copy``) in
   one transaction, timed: the same writes the project makes; then the project's write
   path alone, ``record_responses`` over N new receipts in the group-commit writer's
   batches (each also updating its delivery), timed, and the ratio;
8. ``--profile``: where a callback's time goes, in this process on the same database:
   signature check, form parsing, ``parse_twilio_status`` and ``record_responses`` per
   call, with the time per SQL statement and the commit (SQLAlchemy cursor events);
9. stops every subprocess and drops the database ``WITH (FORCE)``, even on error.

Timings are printed, never asserted: benchmarks are not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import (
    CONFIG_OVERRIDES,
    PROJECT_ROOT,
    QUEUE,
    REDIS_URL,
    check_alive,
    free_port,
    logger,
    stop_all,
    subprocesses,
    throwaway_database,
)

log = logger("callbacks")

TOKEN_ENV = "NURTURE_BENCH_TWILIO_TOKEN"
BASELINE_DSN_ENV = "NURTURE_BENCH_BASELINE_DSN"
CHANNEL = "sms_us"
PATH = f"/callbacks/twilio/{CHANNEL}/status"
ACCOUNT_SID = "AC" + "b" * 32
FROM_NUMBER = "+15005550006"

#: Target of issue #7 item 5.
TARGET_RATE = 1000.0
#: BENCHMARKS.md P7: >= 0.5x SQLAlchemy Core executemany of the same rows.
TARGET_P7_RATIO = 0.5


def sid(i: int) -> str:
    """The provider message id of delivery ``i``: the seed computes ``'SM' || md5(i)``."""
    return "SM" + hashlib.md5(str(i).encode()).hexdigest()


def phone(i: int) -> str:
    return f"+1555{i:07d}"


# --------------------------------------------------------------------------- setup


def seed(dsn: str, first: int, last: int) -> None:
    """Customers and sent SMS deliveries ``first..last`` (one each)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO customer (id, external_id, name, phone, acquisition_channel, created_at, updated_at, attributes)
            SELECT g, 'B' || g, 'Bench ' || g, '+1555' || lpad(g::text, 7, '0'), 'ecommerce', now(), now(), '{}'::json
            FROM generate_series(%(first)s::int, %(last)s::int) AS g
            """, {"first": first, "last": last})
        conn.execute("SELECT setval(pg_get_serial_sequence('customer', 'id'), %(last)s)", {"last": last})
        conn.execute(
            """
            INSERT INTO delivery (send_key, campaign, step, customer_id, channel, template, status, attempts,
                                  due_at, dispatch_after, provider_message_id, created_at, updated_at, sent_at)
            SELECT 'bench-cb-' || g, 'bench', 0, g, %(channel)s, 'bench/sms', 'sent', 1,
                   now(), now(), 'SM' || md5(g::text), now(), now(), now()
            FROM generate_series(%(first)s::int, %(last)s::int) AS g
            """, {"first": first, "last": last, "channel": CHANNEL})
        conn.execute("VACUUM ANALYZE customer")
        conn.execute("VACUUM ANALYZE delivery")
        conn.execute("CHECKPOINT")


def write_project(directory: Path, *, database_url: str, namespace: str) -> Path:
    config = directory / "config.toml"
    config.write_text(f"""[profiles]
cron = ""

[database]
url = "{database_url}"

[broker]
url = "{REDIS_URL}"
queue = "{QUEUE}"
namespace = "{namespace}"

[channels.{CHANNEL}]
kind = "twilio"
account_sid_env = "NURTURE_BENCH_TWILIO_SID"
auth_token_env = "{TOKEN_ENV}"
from = "{FROM_NUMBER}"
""")
    return config


def spawn(started: list, name: str, command: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    logfile = logs / f"{name}.log"
    with open(logfile, "wb") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    started.append((name, process, logfile))
    return process


def wait_healthy(base_url: str, started: list, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive(started)
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base_url}/health not answering after {timeout:g} s")


# --------------------------------------------------------------------------- requests


def twilio_sign(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """X-Twilio-Signature as Twilio documents it, computed here independently of the
    receiver (as tests/e2e/test_sms_callbacks.py does)."""
    import base64
    import hmac

    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    data = url + "".join(name + value for name in sorted(grouped) for value in sorted(set(grouped[name])))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def build_request(token: str, host: str, i: int) -> bytes:
    """The bytes of Twilio's status callback for delivery ``i``: delivered."""
    message_sid = sid(i)
    params = [("SmsSid", message_sid), ("SmsStatus", "delivered"), ("MessageStatus", "delivered"),
              ("To", phone(i)), ("MessageSid", message_sid), ("AccountSid", ACCOUNT_SID),
              ("From", FROM_NUMBER), ("ApiVersion", "2010-04-01")]
    body = urlencode(params).encode()
    signature = twilio_sign(token, f"http://{host}{PATH}", params)
    head = (f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: TwilioProxy/1.1\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {signature}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def plan_sequence(first: int, count: int, replays: float, seed_value: int) -> list[int]:
    """Delivery numbers in sending order: ``first..first+count-1`` once each, plus
    ``replays * count`` of them again, each replay after its original."""
    rng = random.Random(seed_value)
    keyed = [(float(k), first + k) for k in range(count)]
    spread = max(1, count // 10)
    for k in rng.sample(range(count), round(replays * count)):
        keyed.append((k + rng.uniform(1, spread), first + k))
    keyed.sort()
    return [i for _, i in keyed]


# --------------------------------------------------------------------------- load generator (child process)


async def _drive(host: str, port: int, requests: list[bytes], concurrency: int) -> dict[str, Any]:
    latencies: list[float] = [0.0] * len(requests)
    statuses: Counter[str] = Counter()
    position = 0
    first_sent: float | None = None
    last_done = 0.0

    async def connection() -> None:
        nonlocal position, first_sent, last_done
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while position < len(requests):
                index = position
                position += 1
                started = time.perf_counter()
                if first_sent is None:
                    first_sent = started
                try:
                    writer.write(requests[index])
                    status_line = await reader.readline()
                    if not status_line:
                        raise ConnectionError("connection closed")
                    status = status_line.split(b" ", 2)[1].decode()
                    length, close = 0, False
                    while True:
                        line = await reader.readline()
                        if line in (b"\r\n", b"\n", b""):
                            break
                        name, _, value = line.partition(b":")
                        name = name.strip().lower()
                        if name == b"content-length":
                            length = int(value.strip())
                        elif name == b"connection" and value.strip().lower() == b"close":
                            close = True
                    if length:
                        await reader.readexactly(length)
                except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                    status, close = f"conn:{type(exc).__name__}", True
                done = time.perf_counter()
                latencies[index] = done - started
                last_done = max(last_done, done)
                statuses[status] += 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return {"latencies": latencies, "statuses": dict(statuses),
            "seconds": last_done - (first_sent or last_done)}


def child_load(spec_path: str) -> None:
    """Build every request, send the warm-up ones, then the measured ones; print JSON."""
    spec = json.loads(Path(spec_path).read_text())
    host = f"127.0.0.1:{spec['port']}"
    token = spec["token"]
    warmup = [build_request(token, host, i) for i in spec["warmup"]]
    cache: dict[int, bytes] = {}
    measured = []
    for i in spec["sequence"]:
        if i not in cache:
            cache[i] = build_request(token, host, i)
        measured.append(cache[i])  # a replay is the very same bytes
    warm = asyncio.run(_drive("127.0.0.1", spec["port"], warmup, min(spec["concurrency"], len(warmup) or 1)))
    result = asyncio.run(_drive("127.0.0.1", spec["port"], measured, spec["concurrency"]))
    result["warmup_statuses"] = warm["statuses"]
    Path(spec["out"]).write_text(json.dumps(result))


def run_load(started: list, env: dict[str, str], logs: Path, *, name: str, port: int, token: str,
             warmup: list[int], sequence: list[int], concurrency: int, timeout: float) -> dict[str, Any]:
    spec = logs / f"{name}-spec.json"
    out = logs / f"{name}-result.json"
    spec.write_text(json.dumps({"port": port, "token": token, "warmup": warmup, "sequence": sequence,
                                "concurrency": concurrency, "out": str(out)}))
    process = spawn(started, name, [sys.executable, "-m", "bench.callbacks", "--child-load", str(spec)], env, logs)
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"load generator still running after {timeout:g} s")
        for other, child, _ in started:
            if child is not process and child.poll() is not None:
                check_alive([(other, child, logs / f"{other}.log")])
        time.sleep(0.1)
    started[:] = [entry for entry in started if entry[1] is not process]
    if process.returncode != 0:
        tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"load generator exited with {process.returncode}:\n{tail}")
    return json.loads(out.read_text())


def summarise(load: dict[str, Any]) -> dict[str, Any]:
    ordered = sorted(load["latencies"])

    def pct(p: float) -> float:
        rank = max(1, int(-(-p * len(ordered) // 100)))
        return ordered[min(rank, len(ordered)) - 1]

    sent = len(ordered)
    return {"sent": sent, "seconds": load["seconds"], "rate": sent / load["seconds"] if load["seconds"] else 0.0,
            "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": ordered[-1], "mean": statistics.fmean(ordered),
            "statuses": load["statuses"], "warmup_statuses": load["warmup_statuses"]}


# --------------------------------------------------------------------------- raw baseline app


def baseline_app():  # type: ignore[no-untyped-def]
    """A bare Starlette app: read the body, parse the form, one INSERT with psycopg
    (autocommit) on a connection from a queue of 15, in Starlette's thread pool."""
    import queue
    from urllib.parse import parse_qsl

    import psycopg
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    dsn = os.environ[BASELINE_DSN_ENV]
    pool: queue.Queue[psycopg.Connection] = queue.Queue()
    for _ in range(15):
        pool.put(psycopg.connect(dsn, autocommit=True))

    def insert(fields: dict[str, str]) -> None:
        conn = pool.get()
        try:
            conn.execute("INSERT INTO callback_raw (message_sid, status, fields, received_at) "
                         "VALUES (%s, %s, %s, now())",
                         (fields.get("MessageSid"), fields.get("MessageStatus"), json.dumps(fields)))
        finally:
            pool.put(conn)

    async def status(request: Request) -> Response:
        fields = dict(parse_qsl((await request.body()).decode()))
        await run_in_threadpool(insert, fields)
        return Response(status_code=200)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route(PATH, status, methods=["POST"]), Route("/health", health)])


# --------------------------------------------------------------------------- counts


def count_project(dsn: str, first: int, last: int) -> dict[str, int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT provider_ref) FROM response r JOIN delivery d ON d.id = r.delivery_id "
            "WHERE r.provider = 'twilio' AND r.kind = 'delivered' AND d.customer_id BETWEEN %s AND %s",
            (first, last)).fetchone()
        delivered = conn.execute(
            "SELECT count(*) FROM delivery WHERE receipt_status = 'delivered' AND customer_id BETWEEN %s AND %s",
            (first, last)).fetchone()
        orphans = conn.execute("SELECT count(*) FROM response WHERE delivery_id IS NULL").fetchone()
    return {"rows": rows[0], "distinct_refs": rows[1], "delivered": delivered[0], "unmatched": orphans[0]}


def count_baseline(dsn: str, warm_first: int, warm_last: int) -> dict[str, int]:
    """Rows of the measured callbacks in the baseline's scratch table (warm-up excluded)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT message_sid) FROM callback_raw WHERE message_sid NOT IN "
            "(SELECT 'SM' || md5(g::text) FROM generate_series(%s::int, %s::int) AS g)", (warm_first, warm_last)).fetchone()
    return {"rows": row[0], "distinct_refs": row[1]}


def core_executemany(database_url: str, first: int, last: int) -> dict[str, Any]:
    """P7's baseline: one SQLAlchemy Core executemany of the rows the project wrote."""
    import sqlalchemy as sa

    from campaigns.store.db import make_engine
    from campaigns.store.models import Response

    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE response_copy (LIKE response INCLUDING ALL)"))
            rows = [dict(r._mapping) for r in conn.execute(
                sa.select(Response.__table__).join_from(
                    Response.__table__, sa.table("delivery", sa.column("id"), sa.column("customer_id")),
                    sa.text("delivery.id = response.delivery_id"))
                .where(sa.text("delivery.customer_id BETWEEN :a AND :b")).params(a=first, b=last))]
            for row in rows:
                row.pop("id")
            # The deliveries those rows are receipts of, to update as the project does.
            conn.execute(sa.text("CREATE TABLE delivery_copy (LIKE delivery INCLUDING ALL)"))
            conn.execute(sa.text("INSERT INTO delivery_copy SELECT * FROM delivery WHERE customer_id BETWEEN :a AND :b"),
                         {"a": first, "b": last})
        copy = sa.Table("response_copy", sa.MetaData(), autoload_with=engine)
        delivery_copy = sa.Table("delivery_copy", sa.MetaData(), autoload_with=engine)
        updates = [{"b_id": row["delivery_id"], "b_status": "delivered", "b_at": row["occurred_at"]} for row in rows]
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(sa.insert(copy), rows)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(sa.insert(copy), [{**row, "provider_ref": row["provider_ref"] + ":2"} for row in rows])
            conn.execute(sa.update(delivery_copy).where(delivery_copy.c.id == sa.bindparam("b_id"))
                         .values(receipt_status=sa.bindparam("b_status"), receipt_at=sa.bindparam("b_at")), updates)
        both = time.perf_counter() - started
        return {"rows": len(rows), "seconds": seconds, "rate": len(rows) / seconds if seconds else 0.0,
                "with_updates_seconds": both, "with_updates_rate": len(rows) / both if both else 0.0}
    finally:
        engine.dispose()


def batched_writes(database_url: str, first: int, last: int) -> dict[str, Any]:
    """P7's project figure: the receiver's write path alone. ``record_responses`` over one
    new receipt per delivery ``first..last`` (kind ``undelivered``, later than the
    ``delivered`` ones, so every receipt also updates its delivery), in batches of
    :data:`~workers.http.batching.MAX_BATCH_ITEMS` as the group-commit writer hands
    them in under load, one transaction per batch, in this process."""
    import sqlalchemy as sa

    from campaigns.responses.recording import InboundResponse, record_responses
    from campaigns.store.db import make_engine
    from campaigns.store.models import Delivery
    from workers.http.batching import MAX_BATCH_ITEMS

    moment = datetime.now(UTC)
    items = [InboundResponse(kind="undelivered", provider="twilio", provider_ref=f"{sid(i)}:undelivered",
                             occurred_at=moment, provider_message_id=sid(i), family="sms",
                             error="30003 unreachable")
             for i in range(first, last + 1)]
    engine = make_engine(database_url)
    try:
        started = time.perf_counter()
        new = 0
        for start in range(0, len(items), MAX_BATCH_ITEMS):
            results = record_responses(engine, items[start:start + MAX_BATCH_ITEMS], now=moment)
            new += sum(not result.duplicate for result in results)
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            updated = conn.execute(sa.select(sa.func.count()).select_from(Delivery)
                                   .where(Delivery.receipt_status == "undelivered")).scalar_one()
        return {"rows": new, "updated": updated, "batch": MAX_BATCH_ITEMS, "seconds": seconds,
                "rate": len(items) / seconds if seconds else 0.0}
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- profile


def profile(database_url: str, token: str, first: int, count: int) -> dict[str, Any]:
    """Per-callback costs in this process: the receiver's pure-Python steps, then
    record_responses called directly (one thread, one call per callback), timed per SQL
    statement and commit with SQLAlchemy events."""
    from urllib.parse import parse_qsl

    import sqlalchemy as sa

    from campaigns.responses.recording import record_responses
    from campaigns.store.db import make_engine
    from workers.http.callbacks.common import parse_form
    from workers.http.callbacks.twilio import parse_twilio_status, twilio_signature_valid

    host = "127.0.0.1:8000"
    url = f"http://{host}{PATH}"
    raw = build_request(token, host, first)
    body = raw.split(b"\r\n\r\n", 1)[1]
    signature = raw.split(b"X-Twilio-Signature: ", 1)[1].split(b"\r\n", 1)[0].decode()
    fields = parse_form(body)
    assert twilio_signature_valid(token, url, fields, signature)

    def per_call(fn: Any, repeat: int = 5000) -> float:
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - started) / repeat

    now = datetime.now(UTC)
    result: dict[str, Any] = {
        "signature_valid": per_call(lambda: twilio_signature_valid(token, url, fields, signature)),
        "parse_form": per_call(lambda: parse_form(body)),
        "parse_qsl (baseline)": per_call(lambda: dict(parse_qsl(body.decode()))),
        "parse_twilio_status": per_call(lambda: parse_twilio_status(fields, channel=CHANNEL, received_at=now)),
    }
    engine = make_engine(database_url)
    statements: dict[str, list[float]] = {}
    commits: list[float] = []
    begin_times: dict[int, float] = {}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        begin_times[id(cursor)] = time.perf_counter()

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        key = " ".join(statement.split())[:60]
        statements.setdefault(key, []).append(time.perf_counter() - begin_times.pop(id(cursor)))

    original_commit = engine.dialect.do_commit

    def timed_commit(dbapi_connection: Any) -> None:
        started = time.perf_counter()
        original_commit(dbapi_connection)
        commits.append(time.perf_counter() - started)

    engine.dialect.do_commit = timed_commit  # type: ignore[method-assign]
    items = []
    for i in range(first, first + count):
        params = parse_form(build_request(token, host, i).split(b"\r\n\r\n", 1)[1])
        items.append(parse_twilio_status(params, channel=CHANNEL, received_at=now))
    record_responses(engine, items[:1], now=now)  # connect, warm caches
    statements.clear()
    commits.clear()
    started = time.perf_counter()
    for item in items[1:]:
        record_responses(engine, [item], now=now)
    total = (time.perf_counter() - started) / (count - 1)
    replay_started = time.perf_counter()
    for item in items[1:201]:
        record_responses(engine, [item], now=now)
    replay = (time.perf_counter() - replay_started) / 200
    engine.dispose()
    calls = count - 1
    result["record_responses (new)"] = total
    result["record_responses (replay)"] = replay
    result["statements"] = {key: {"per_call": sum(v[:calls]) / calls, "count": len(v)}
                            for key, v in statements.items()}
    result["commit"] = sum(commits[:calls]) / calls
    return result


# --------------------------------------------------------------------------- main run


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    from campaigns.project.loading import load_config

    namespace = f"nurture-bench-{secrets.token_hex(4)}"
    token = secrets.token_hex(16)
    n, w = args.callbacks, args.warmup
    # Delivery numbers: 1..n measured (project), n+1..n+w warm-up (project),
    # then the same layout again for the profile, so the profile touches fresh rows.
    project_first, warm_first = 1, n + 1
    profile_first = n + w + 1
    profile_count = args.profile_calls if args.profile else 0
    sequence = plan_sequence(project_first, n, args.replays, seed_value=7)
    warmup = list(range(warm_first, warm_first + w))

    with throwaway_database(log=log) as database:
        log(f"created {database.name}")
        dsn, database_url = database.dsn, database.url
        started_at = time.perf_counter()
        seed(dsn, 1, n + w + profile_count)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE callback_raw (id bigserial PRIMARY KEY, message_sid text, status text, "
                         "fields jsonb NOT NULL, received_at timestamptz NOT NULL)")
        log(f"seeded {n + w + profile_count} customers + sent deliveries in {time.perf_counter() - started_at:.1f} s")

        with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp, subprocesses(log=log) as started:
            directory = Path(tmp)
            config_path = write_project(directory, database_url=database_url, namespace=namespace)
            env = {k: v for k, v in os.environ.items() if k not in CONFIG_OVERRIDES}
            env.update({TOKEN_ENV: token, "NURTURE_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1",
                        BASELINE_DSN_ENV: dsn})
            os.environ[TOKEN_ENV] = token
            load_config(config_path)  # fail here, clearly, if the bench's config is invalid
            bin_dir = Path(sys.executable).parent
            nurture = [str(bin_dir / "nurture")] if (bin_dir / "nurture").exists() else [
                sys.executable, "-m", "workers.cli"]

            # ---- project
            port = free_port()
            spawn(started, "serve", nurture + ["serve", "--config", str(config_path), "--host", "127.0.0.1",
                                               "--port", str(port), "--workers", str(args.serve_workers)],
                  env, directory)
            wait_healthy(f"http://127.0.0.1:{port}", started)
            log(f"project: {len(sequence)} callbacks ({n} distinct + {len(sequence) - n} replays), "
                f"concurrency {args.concurrency} ...")
            project = summarise(run_load(started, env, directory, name="load-project", port=port, token=token,
                                         warmup=warmup, sequence=sequence, concurrency=args.concurrency,
                                         timeout=args.timeout))
            check_alive(started)
            project["counts"] = count_project(dsn, project_first, n)
            log(f"project: {project['rate']:,.0f} callbacks/s, statuses {project['statuses']}, "
                f"counts {project['counts']}")
            stop_all(started, log=log)

            # ---- raw baseline: same uvicorn defaults, same load generator and requests
            port = free_port()
            spawn(started, "baseline", [sys.executable, "-m", "uvicorn", "--factory", "bench.callbacks:baseline_app",
                                        "--host", "127.0.0.1", "--port", str(port),
                                        "--workers", str(args.serve_workers)], env, directory)
            wait_healthy(f"http://127.0.0.1:{port}", started)
            log("baseline: bare Starlette + one psycopg INSERT ...")
            baseline = summarise(run_load(started, env, directory, name="load-baseline", port=port, token=token,
                                          warmup=warmup, sequence=sequence,
                                          concurrency=args.concurrency, timeout=args.timeout))
            check_alive(started)
            baseline["counts"] = count_baseline(dsn, warm_first, warm_first + w - 1)
            log(f"baseline: {baseline['rate']:,.0f} callbacks/s, statuses {baseline['statuses']}")
            stop_all(started, log=log)
            serve_log = (directory / "serve.log").read_text(errors="replace")
            tracebacks = serve_log.count("Traceback")

        log("P7 baseline: Core executemany of the same rows ...")
        executemany = core_executemany(database_url, project_first, n)
        log("P7 project: record_responses in the writer's batches ...")
        writes = batched_writes(database_url, project_first, n)
        prof = None
        if args.profile:
            log(f"profile: {profile_count} record_responses calls in this process ...")
            prof = profile(database_url, token, profile_first, profile_count)
        return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "callbacks": n,
                "sent": len(sequence), "replays": len(sequence) - n, "concurrency": args.concurrency,
                "cpus": os.cpu_count(), "project": project, "baseline": baseline, "executemany": executemany,
                "writes": writes,
                "serve_tracebacks": tracebacks, "profile": prof}


# --------------------------------------------------------------------------- output


def print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=130)
    n, sent = result["callbacks"], result["sent"]
    project, baseline = result["project"], result["baseline"]
    table = Table(title=(f"Twilio status callbacks: {n:,} distinct + {result['replays']:,} replays = {sent:,}, "
                         f"{result['concurrency']} keep-alive connections, {result['cpus']} cores"))
    table.add_column("", style="bold")
    table.add_column("project: nurture serve", justify="right")
    table.add_column("raw: Starlette + 1 INSERT", justify="right")

    def ms(value: float) -> str:
        return f"{value * 1000:,.1f} ms"

    table.add_row("first send -> last answer", f"{project['seconds']:.2f} s", f"{baseline['seconds']:.2f} s")
    table.add_row("callbacks/s (distinct + replays)", f"{project['rate']:,.0f}", f"{baseline['rate']:,.0f}")
    for key in ("p50", "p90", "p99", "max"):
        table.add_row(f"latency {key}", ms(project[key]), ms(baseline[key]))
    table.add_row("HTTP answers", json.dumps(project["statuses"]), json.dumps(baseline["statuses"]))
    pc, bc = project["counts"], baseline["counts"]
    table.add_row("rows written", f"{pc['rows']:,} response (expect {n:,})",
                  f"{bc['rows']:,} callback_raw (expect {sent:,})")
    table.add_row("deliveries receipt_status=delivered", f"{pc['delivered']:,} (expect {n:,})", "-")
    project_lost = n - pc["distinct_refs"]
    table.add_row("lost (distinct without a row)", str(project_lost), str(n - bc["distinct_refs"]))
    table.add_row("duplicate rows (replays not absorbed)", str(pc["rows"] - pc["distinct_refs"]), "- (plain INSERT)")
    table.add_row("ratio project / raw", f"{project['rate'] / baseline['rate']:.2f}", "1.00")
    console.print(table)
    em = result["executemany"]
    wr = result["writes"]
    ratio = wr["rate"] / em["with_updates_rate"]
    console.print(f"P7 status writes: record_responses in batches of {wr['batch']}: {wr['rows']:,} new rows and "
                  f"{wr['updated']:,} deliveries updated in {wr['seconds']:.2f} s = {wr['rate']:,.0f} receipts/s. "
                  f"Core executemany in the same run, the same {em['rows']:,} response rows plus the same delivery "
                  f"updates, one transaction: {em['with_updates_seconds']:.2f} s = {em['with_updates_rate']:,.0f}/s "
                  f"(the inserts alone: {em['seconds']:.2f} s = {em['rate']:,.0f}/s). Ratio {ratio:.2f} "
                  f"(BENCHMARKS.md P7 target >= {TARGET_P7_RATIO}: {'met' if ratio >= TARGET_P7_RATIO else 'missed'}; "
                  f"{wr['rate'] / em['rate']:.2f} against the inserts alone)")
    console.print(f"  (HTTP callbacks/s over executemany rows/s, for comparison: {project['rate'] / em['rate']:.3f})")
    if result["serve_tracebacks"]:
        console.print(f"[red]nurture serve logged {result['serve_tracebacks']} traceback(s)[/]")
    errors = sum(v for k, v in project["statuses"].items() if k != "200")
    lost = project_lost + (n - pc["delivered"])
    met = project["rate"] >= TARGET_RATE and lost == 0 and errors == 0
    console.print(f"Target (issue #7 item 5): >= {TARGET_RATE:,.0f} callbacks/s with 0 lost: "
                  f"{project['rate']:,.0f}/s, {project_lost} lost, {n - pc['delivered']} receipts missing, "
                  f"{errors} non-200: {'met' if met else 'missed'}")
    prof = result.get("profile")
    if prof:
        console.print("Profile (this process, one thread, same database):")
        for key in ("signature_valid", "parse_form", "parse_qsl (baseline)", "parse_twilio_status",
                    "record_responses (new)", "record_responses (replay)", "commit"):
            console.print(f"  {key}: {prof[key] * 1e6:,.0f} µs")
        for key, value in prof["statements"].items():
            console.print(f"    {value['per_call'] * 1e6:,.0f} µs/call  ({value['count']}x)  {key}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callbacks", description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=20000, help="distinct status callbacks (default 20000)")
    parser.add_argument("--concurrency", type=int, default=64, help="keep-alive connections (default 64)")
    parser.add_argument("--serve-workers", type=int, default=1, help="nurture serve --workers (default 1)")
    parser.add_argument("--replays", type=float, default=0.1, help="share of exact replays (default 0.1)")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up callbacks, not measured (default 200)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per load run (default 600)")
    parser.add_argument("--profile", action="store_true", help="also time the receiver's steps in-process")
    parser.add_argument("--profile-calls", type=int, default=2000, help="record_responses calls to time (default 2000)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--child-load", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_load:
        child_load(args.child_load)
        return 0
    for key in CONFIG_OVERRIDES:
        os.environ.pop(key, None)
    result = run(args)
    print_report(result)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
