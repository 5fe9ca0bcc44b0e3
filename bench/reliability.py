"""Reliability suite: a campaign to a loopback webhook sink under faults, checked for exactly-once.

    .venv/bin/python -m bench.reliability --recipients 10000 --workers 2 --scenario all
    # scenarios: kill, redis, flaky, db, combined; all = each of them, one after another
    # options: --threads 8  --lease 15  --outage 5  --fault-rate 0.2  --replace  --json  (see --help)

Each scenario runs a real deployment on this machine and breaks it mid-campaign:

1. a throwaway PostgreSQL database ``nurture_rel_<hex>`` (migrated), N customers imported
   through ``campaigns.customers.importing`` with consent granted, one ``transactional`` cron
   campaign (so consent, caps and quiet hours do not apply) with one webhook step;
2. a throwaway ``redis-server`` on a free port (``--save "" --appendonly no``: a restart
   loses every queued broker message);
3. a loopback sink in its own process that speaks Standard Webhooks: it verifies each
   request's signature, records every arrival by ``webhook-id`` and, like any receiver,
   treats ``webhook-id`` as the idempotency key (a repeat is answered 200, not processed
   again); with ``--fault-rate`` it answers that share of requests with 429
   (``Retry-After: 1``), 500, or by holding the answer past the client's timeout (after
   processing it: the ambiguous case);
4. ``nurture scheduler`` (ticking every second; restarted by this runner if it exits, and
   each exit is reported) and ``--workers`` ``dramatiq workers.app`` worker processes;
5. the fault, when half the messages have reached the sink:

   * ``kill``: SIGKILL one worker process (the Dramatiq child that sends); Dramatiq's
     parent then stops, and the other worker (plus a replacement with ``--replace``)
     finishes the campaign;
   * ``redis``: stop the redis-server, wait ``--outage`` seconds, start it again, empty;
   * ``flaky``: the sink fails ``--fault-rate`` of all requests, from the start;
   * ``db``: ``pg_terminate_backend`` every connection to the database but the runner's,
     ``--db-kills`` times, 1.5 s apart;
   * ``combined``: a flaky sink, and kill at 1/3, Redis restart at 1/2, db at 2/3;

6. waits until every ledger row is final, stops everything, and checks:

   * the ledger planned exactly one delivery per recipient and every row is ``sent``;
   * the set of webhook-ids the sink accepted equals the set of the ledger's send keys
     (losses = 0, nothing unexpected), every signature was valid;
   * no duplicate after the idempotency key: no recipient got two different webhook-ids,
     and a repeated webhook-id always carried the same body;
   * every raw re-delivery (a webhook-id the sink would have processed twice without its
     idempotency check) belongs to a delivery with an ambiguous attempt in the ledger: a
     timeout or network error in ``delivery_attempt``, a claim that never recorded an
     outcome (worker killed, or its record transaction lost: ``delivery.attempts`` exceeds
     its ``delivery_attempt`` rows), or two accepted attempts (a lease that ran out while
     a worker was still sending);

   and prints the figures: messages, unique received, raw arrivals, re-deliveries absorbed
   by the idempotency key, losses, duplicates, retries, leases recovered, time, throughput.

Exit code 1 if any check of any scenario failed (each failure is named). Timings are
printed, never asserted. Everything started is stopped, the database dropped and the
redis-server and temporary directory removed, even on error (``--keep`` keeps the
database and directory for inspection).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import csv
import hashlib
import hmac
import json
import multiprocessing
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    CONFIG_OVERRIDES,
    PROJECT_ROOT,
    QUEUE,
    free_port,
    logger,
    throwaway_database,
)

log = logger("reliability")

SCENARIOS = ("kill", "redis", "flaky", "db", "combined")
ALL = SCENARIOS
CAMPAIGN = "reliability"
SECRET_ENV = "NURTURE_RELIABILITY_SECRET"
TEMPLATE = ('{"send_key": {{ send_key|tojson }}, "customer": {{ customer.external_id|tojson }}, '
            '"campaign": {{ campaign.name|tojson }}, "text": "Your order has shipped."}\n')
#: Standard Webhooks: receivers reject timestamps further than this from their clock.
TIMESTAMP_TOLERANCE_S = 300


@dataclass
class Options:
    """One scenario's knobs (the command-line options, also used by the integration test)."""

    recipients: int = 10_000
    workers: int = 2
    processes: int = 1
    threads: int = 8
    lease_s: int = 15
    interval_s: int = 1
    batch_size: int = 50
    send_concurrency: int = 0
    webhook_timeout_s: int = 2
    max_attempts: int = 25
    fault_rate: float = 0.2
    outage_s: float = 5.0
    db_kills: int = 3
    replace: bool = False
    sink_latency_ms: float = 0.0
    seed: int = 1
    deadline_s: float = 900.0
    keep: bool = False
    #: Restart `nurture scheduler` when it exits (it does not survive a Redis or database
    #: outage on its own); False shows what happens without a supervisor.
    supervise: bool = True


# --------------------------------------------------------------------------- the sink (own process)


def _sink_main(control: Any, secret: str, fault_rate: float, hang_s: float, latency_s: float, seed: int) -> None:
    """The loopback Standard Webhooks receiver; runs in its own process."""
    from workers.channels.webhook import signing_key

    key = signing_key(secret)
    rng = random.Random(seed)
    #: webhook-id -> [arrivals, accepted, rejected, timeouts, customer, body digest, body mismatch]
    ids: dict[str, list[Any]] = {}
    totals: Counter[str] = Counter()
    answers = {
        200: b"OK", 400: b"Bad Request", 429: b"Too Many Requests", 500: b"Internal Server Error",
    }

    def response(status: int, body: bytes, extra: bytes = b"") -> bytes:
        return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                % (status, answers[status], len(body), extra)) + body

    def verify(headers: dict[bytes, bytes], body: bytes) -> str | None:
        """Why the request is not a valid Standard Webhooks message of ours, or None."""
        wid, stamp, signature = (headers.get(b"webhook-id"), headers.get(b"webhook-timestamp"),
                                 headers.get(b"webhook-signature"))
        if not (wid and stamp and signature):
            return "missing webhook headers"
        try:
            if abs(time.time() - int(stamp)) > TIMESTAMP_TOLERANCE_S:
                return "timestamp outside tolerance"
        except ValueError:
            return "bad timestamp"
        expected = base64.b64encode(hmac.new(key, wid + b"." + stamp + b"." + body, hashlib.sha256).digest())
        if not any(part.startswith(b"v1,") and hmac.compare_digest(part[3:], expected) for part in signature.split()):
            return "bad signature"
        return None

    def handle(headers: dict[bytes, bytes], body: bytes) -> tuple[bytes, float]:
        """The answer to one request and how long to hold it."""
        totals["arrivals"] += 1
        problem = verify(headers, body)
        if problem is not None:
            totals["invalid"] += 1
            totals[f"invalid: {problem}"] += 1
            return response(400, json.dumps({"error": problem}).encode()), 0.0
        wid = headers[b"webhook-id"].decode()
        record = ids.get(wid)
        if record is None:
            record = ids[wid] = [0, 0, 0, 0, None, None, False]
        record[0] += 1
        fault = None
        if fault_rate > 0 and rng.random() < fault_rate:
            fault = rng.choice(("429", "500", "timeout"))
        if fault == "429":
            record[2] += 1
            totals["answered 429"] += 1
            return response(429, b'{"error":"slow down"}', b"Retry-After: 1\r\n"), latency_s
        if fault == "500":
            record[2] += 1
            totals["answered 500"] += 1
            return response(500, b'{"error":"oops"}'), latency_s
        # Processed: a receiver that did not dedupe would act on the message again here.
        record[1] += 1
        digest = hashlib.sha256(body).hexdigest()
        if record[1] == 1:
            totals["unique"] += 1
            record[5] = digest
            try:
                payload = json.loads(body)
                record[4] = payload.get("customer")
                if payload.get("send_key") != headers.get(b"idempotency-key", b"").decode():
                    totals["send key mismatch"] += 1
            except ValueError:
                totals["unparsable body"] += 1
        else:
            totals["absorbed"] += 1
            if digest != record[5]:
                record[6] = True
        answer = response(200, b'{"id":"%s"}' % wid.encode())
        if fault == "timeout":
            record[3] += 1
            totals["held past timeout"] += 1
            return answer, hang_s
        return answer, latency_s

    class Http(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = self.buffer[:end].split(b"\r\n")
                headers: dict[bytes, bytes] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
                if len(self.buffer) < end + 4 + length:
                    return
                body = self.buffer[end + 4 : end + 4 + length]
                self.buffer = self.buffer[end + 4 + length :]
                answer, hold = handle(headers, body)
                if hold > 0:
                    asyncio.get_running_loop().call_later(hold, self._write, answer)
                else:
                    self.transport.write(answer)  # type: ignore[attr-defined]

        def _write(self, answer: bytes) -> None:
            if not self.transport.is_closing():
                self.transport.write(answer)  # type: ignore[attr-defined]

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Http, host="127.0.0.1", port=0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        stop = asyncio.Event()

        def on_control() -> None:
            try:
                command = control.recv()
            except EOFError:
                stop.set()
                return
            if command == "progress":
                control.send((totals["unique"], totals["arrivals"]))
            elif command == "stats":
                control.send({"totals": dict(totals), "ids": ids})
            elif command == "stop":
                stop.set()

        loop.add_reader(control.fileno(), on_control)
        control.send(("ready", port))
        await stop.wait()
        server.close()

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(serve())


class Sink:
    """The sink process and its control pipe."""

    def __init__(self, *, secret: str, fault_rate: float, hang_s: float, latency_s: float, seed: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._control, child = context.Pipe()
        self.process = context.Process(target=_sink_main, args=(child, secret, fault_rate, hang_s, latency_s, seed),
                                       daemon=True)
        self.process.start()
        if not self._control.poll(30):
            raise RuntimeError("the sink process did not start")
        _ready, self.port = self._control.recv()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def progress(self) -> tuple[int, int]:
        """(unique webhook-ids accepted, raw arrivals)."""
        self._control.send("progress")
        return self._control.recv()  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        self._control.send("stats")
        return self._control.recv()  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._control.send("stop")
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# --------------------------------------------------------------------------- helper processes


def without_preload(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without LD_PRELOAD: the suite may run under libfaketime (tests.clockshift),
    which moves our processes' clocks but stops jemalloc's redis-server from starting
    ("Unexpected recursive calls to clock_gettime()"); Redis's clock is not under test."""
    return {key: value for key, value in environ.items() if key != "LD_PRELOAD"}


class RedisServer:
    """A throwaway redis-server that keeps nothing: a restart empties it."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (the suite starts and restarts its own)")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.logfile = directory / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        #: The broker's key namespace (set by the runner).
        self.namespace = "nurture"

    def broker_messages(self) -> tuple[int, int]:
        """(messages Redis holds for the broker: queued, delayed or unacked; of them, waiting in the queue)."""
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            prefix = f"{self.namespace}:{QUEUE}"
            held = client.hlen(f"{prefix}.msgs") + client.hlen(f"{prefix}.DQ.msgs")
            return int(held), int(client.llen(prefix))
        finally:
            client.close()

    def keys(self) -> int:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            return int(client.dbsize())
        finally:
            client.close()

    def start(self) -> None:
        import redis

        with open(self.logfile, "ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=without_preload(os.environ),
            )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {self.logfile.read_text()[-2000:]}") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class Proc:
    """A helper process of the run: its command, log and exits."""

    name: str
    command: list[str]
    env: dict[str, str]
    logfile: Path
    stdout: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    #: Exits this runner did not cause: (exit code, end of its log).
    unexpected_exits: list[tuple[int, str]] = field(default_factory=list)
    killed: bool = False
    _log_offset: int = 0

    def start(self) -> None:
        out = open(self.stdout or self.logfile, "ab")  # noqa: SIM115 - handed to the child
        err = open(self.logfile, "ab") if self.stdout else subprocess.STDOUT  # noqa: SIM115
        self._log_offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        self.process = subprocess.Popen(self.command, cwd=PROJECT_ROOT, env=self.env, stdout=out, stderr=err,
                                        start_new_session=True)
        out.close()
        if err is not subprocess.STDOUT:
            err.close()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, chars: int = 1500) -> str:
        with open(self.logfile, "rb") as handle:
            handle.seek(self._log_offset)
            return handle.read().decode(errors="replace")[-chars:]

    def children(self) -> list[int]:
        """Pids of this process's children (Dramatiq's worker processes)."""
        if self.process is None:
            return []
        found: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                found += [int(pid) for pid in (task / "children").read_text().split()]
        return found

    def stop(self, timeout_s: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# --------------------------------------------------------------------------- setup


def write_customers(path: Path, count: int) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "name", "email", "phone", "timezone", "email_consent", "sms_consent",
                         "wechat_consent"])
        for number in range(1, count + 1):
            writer.writerow([f"R{number:06d}", f"Reliable Person {number}", f"r{number}@example.com",
                             f"+8613{number:09d}", "UTC", "true", "true", "true"])


def write_project(directory: Path, *, database_url: str, broker_url: str, sink_url: str, options: Options,
                  namespace: str) -> Path:
    templates = directory / "templates" / CAMPAIGN
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "notice.json.j2").write_text(TEMPLATE)
    # The campaign's daily slot an hour ago: due now (within max_lateness), next one in 23 h.
    hour = (datetime.now(UTC).hour - 1) % 24
    concurrency = f"send_concurrency = {options.send_concurrency}\n" if options.send_concurrency else ""
    config = directory / "config.toml"
    config.write_text(f"""[profiles]
cron = ""

[database]
url = "{database_url}"

[broker]
url = "{broker_url}"
queue = "{QUEUE}"
namespace = "{namespace}"
batch_size = {options.batch_size}

[worker]
processes = {options.processes}
threads = {options.threads}
{concurrency}lease = "{options.lease_s}s"
max_attempts = {options.max_attempts}
backoff_base = "1s"
backoff_cap = "4s"

[scheduler]
interval = "{options.interval_s}s"
leader_lease = "5s"

[templates]
dir = "{directory / 'templates'}"

[channels.hook]
kind = "webhook"
url = "{sink_url}"
secret_env = "{SECRET_ENV}"
timeout = "{options.webhook_timeout_s}s"
recipient = "external_id"

[[campaigns]]
name = "{CAMPAIGN}"
purpose = "transactional"
timezone = "UTC"
trigger = {{ cron = "0 {hour} * * *" }}
channels = ["hook"]
reentry = "never"

  [[campaigns.steps]]
  template = "{CAMPAIGN}/notice"
""")
    return config


# --------------------------------------------------------------------------- one scenario


def faults_for(scenario: str) -> list[tuple[float, str]]:
    """(share of messages arrived, fault) pairs injected mid-campaign."""
    return {
        "kill": [(0.5, "kill")],
        "redis": [(0.5, "redis")],
        "flaky": [],
        "db": [(0.5, "db")],
        "combined": [(1 / 3, "kill"), (0.5, "redis"), (2 / 3, "db")],
    }[scenario]


def _stop_all(procs: list[Proc]) -> None:
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.stop()


def _remove_unless_kept(directory: Path, *, keep: bool) -> None:
    if keep:
        log(f"kept {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)


def run_scenario(scenario: str, options: Options) -> dict[str, Any]:
    """Run one scenario end to end; returns its figures and the list of failed checks."""
    from campaigns.customers.importing.files import import_file
    from campaigns.store.db import make_engine

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    flaky = scenario in ("flaky", "combined")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    directory = Path(tempfile.mkdtemp(prefix=f"nurture-rel-{scenario}-"))
    procs: list[Proc] = []
    # Undone in reverse on the way out, whatever happens: the processes, the sink, Redis,
    # the database, then the folder (the last two kept with --keep).
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(_remove_unless_kept, directory, keep=options.keep)
        database = cleanup.enter_context(throwaway_database(prefix="nurture_rel", keep=options.keep, log=log))
        log(f"[{scenario}] {options.recipients:,} recipients, {options.workers} workers, database {database.name}, "
            f"in {directory}")
        engine = make_engine(database.url)
        customers = directory / "customers.csv"
        write_customers(customers, options.recipients)
        imported = import_file(engine, "customers", customers)
        engine.dispose()
        if imported.rejected:
            raise RuntimeError(f"customer import rejected rows: {imported.rejected[:3]}")
        redis_server = RedisServer(directory)
        cleanup.callback(redis_server.stop)
        redis_server.start()
        sink = Sink(secret=secret, fault_rate=options.fault_rate if flaky else 0.0,
                    hang_s=options.webhook_timeout_s + 1.0, latency_s=options.sink_latency_ms / 1000,
                    seed=options.seed)
        cleanup.callback(sink.close)
        cleanup.callback(_stop_all, procs)
        redis_server.namespace = f"nurture-rel-{secrets.token_hex(3)}"
        config_path = write_project(directory, database_url=database.url, broker_url=redis_server.url,
                                    sink_url=sink.url, options=options, namespace=redis_server.namespace)
        env = {k: v for k, v in os.environ.items() if k not in CONFIG_OVERRIDES}
        env.update({"NURTURE_CONFIG": str(config_path), SECRET_ENV: secret, "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": str(PROJECT_ROOT)})
        result = _drive(scenario, options, directory, config_path, env, database.dsn, redis_server, sink, procs)
    result["scenario"] = scenario
    return result


def _drive(scenario: str, options: Options, directory: Path, config_path: Path, env: dict[str, str], dsn: str,
           redis_server: RedisServer, sink: Sink, procs: list[Proc]) -> dict[str, Any]:
    """Start the scheduler and workers, inject the faults, wait for the end, check."""
    import psycopg

    expected_count = options.recipients
    scheduler = Proc(
        "scheduler",
        [sys.executable, "-c", "from workers.cli.main import main; main()", "scheduler", "--config", str(config_path),
         "--json"],
        env, directory / "scheduler.log", stdout=directory / "scheduler.jsonl",
    )
    worker_command = [sys.executable, "-m", "dramatiq", "workers.app", "--processes", str(options.processes),
                      "--threads", str(options.threads), "--queues", QUEUE]
    workers = [Proc(f"worker{n}", worker_command, env, directory / f"worker{n}.log") for n in range(options.workers)]
    procs += [scheduler, *workers]
    for worker in workers:
        worker.start()
    # Let the workers boot before the campaign starts, so the fault lands mid-campaign.
    time.sleep(2.0)
    monitor = psycopg.connect(dsn, autocommit=True)
    faults = [[share, kind, False] for share, kind in faults_for(scenario)]
    injected: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []  # {"at": monotonic time, "action": ..., "fault": ...}
    scheduler_exits: list[tuple[int, str]] = []
    started = time.monotonic()
    scheduler.start()
    deadline = started + options.deadline_s
    finished_at = None
    counts: dict[str, int] = {}
    try:
        while True:
            now = time.monotonic()
            # The scheduler is supervised: `nurture scheduler` exiting is a finding, reported.
            code = scheduler.exited()
            if code is not None and not scheduler.killed:
                scheduler_exits.append((code, scheduler.log_tail()))
                if options.supervise:
                    log(f"[{scenario}] scheduler exited with code {code}; restarting it "
                        f"(exit #{len(scheduler_exits)})")
                    scheduler.start()
                else:
                    log(f"[{scenario}] scheduler exited with code {code}; not restarting it (--no-supervise)")
                    scheduler.killed = True
            for worker in list(workers):
                code = worker.exited()
                if code is None or worker.killed:
                    continue
                worker.unexpected_exits.append((code, worker.log_tail()))
                log(f"[{scenario}] {worker.name} exited unexpectedly with code {code}; restarting it")
                worker.start()
            for entry in faults:
                share, kind, done = entry
                if done:
                    continue
                unique, _ = sink.progress()
                if unique >= share * expected_count:
                    entry[2] = True
                    injected.append(_inject(kind, scenario, options, monitor, workers, redis_server, pending,
                                            directory, env, worker_command, procs, unique))
            for item in [item for item in pending if item["at"] <= now]:
                pending.remove(item)
                if item["action"] == "redis-start":
                    redis_server.start()
                    # Figures: what the restarted server held at once (nothing survives a
                    # restart; only what a process wrote in the meantime).
                    item["fault"]["keys_after_restart"] = redis_server.keys()
                    log(f"[{scenario}] redis-server started again (empty)")
                elif item["action"] == "db-terminate":
                    terminated = _terminate_backends(monitor)
                    item["fault"]["terminated"].append(terminated)
                    log(f"[{scenario}] terminated {terminated} database connections")
            counts = dict(monitor.execute("SELECT status, count(*) FROM delivery GROUP BY status").fetchall())
            unfinished = counts.get("queued", 0) + counts.get("sending", 0)
            if sum(counts.values()) >= expected_count and unfinished == 0 and not pending:
                # Every row is final. (Should that happen before a fault was due, the checks
                # below say so: the run proved nothing.)
                finished_at = time.monotonic()
                break
            if now > deadline:
                log(f"[{scenario}] deadline of {options.deadline_s:g} s reached with ledger {counts}")
                break
            time.sleep(0.2)
        # A late duplicate (a worker still sending after its lease) would arrive now.
        time.sleep(1.0)
    finally:
        for proc in procs:
            proc.stop()
    elapsed = (finished_at or time.monotonic()) - started
    stats = sink.stats()
    evidence = _ledger_evidence(monitor)
    monitor.close()
    scheduler_ticks = _scheduler_reports(directory / "scheduler.jsonl")
    result = _figures(scenario, options, stats, evidence, scheduler_ticks, scheduler_exits, workers, injected,
                      faults, counts, elapsed, timed_out=finished_at is None)
    result["logs"] = str(directory)
    result["worker_log_notes"] = _worker_log_notes(directory)
    return result


def _inject(kind: str, scenario: str, options: Options, monitor: Any, workers: list[Proc], redis_server: RedisServer,
            pending: list[dict[str, Any]], directory: Path, env: dict[str, str], worker_command: list[str],
            procs: list[Proc], unique: int) -> dict[str, Any]:
    sending = monitor.execute("SELECT count(*) FROM delivery WHERE status = 'sending'").fetchone()[0]
    fault: dict[str, Any] = {"fault": kind, "at_unique": unique, "sending_rows": sending}
    if kind == "kill":
        victim = next((w for w in workers if w.exited() is None and not w.killed), None)
        children = victim.children() if victim else []
        if not children:
            fault["error"] = "no running worker process to kill"
            return fault
        victim.killed = True
        os.kill(children[0], signal.SIGKILL)
        fault["killed_pid"] = children[0]
        log(f"[{scenario}] SIGKILL {victim.name}'s worker process {children[0]} at {unique:,} messages "
            f"({sending} rows sending)")
        if options.replace:
            replacement = Proc(f"worker{len(workers)}", worker_command, env, directory / f"worker{len(workers)}.log")
            workers.append(replacement)
            procs.append(replacement)
            replacement.start()
            log(f"[{scenario}] started a replacement worker")
    elif kind == "redis":
        with contextlib.suppress(Exception):
            fault["broker_messages"], fault["broker_queued"] = redis_server.broker_messages()
        redis_server.stop()
        pending.append({"at": time.monotonic() + options.outage_s, "action": "redis-start", "fault": fault})
        log(f"[{scenario}] redis-server stopped at {unique:,} messages ({sending} rows sending); "
            f"down for {options.outage_s:g} s")
    elif kind == "db":
        fault["terminated"] = [_terminate_backends(monitor)]
        for n in range(1, options.db_kills):
            pending.append({"at": time.monotonic() + 1.5 * n, "action": "db-terminate", "fault": fault})
        log(f"[{scenario}] terminated {fault['terminated'][0]} database connections at {unique:,} messages "
            f"({sending} rows sending)")
    return fault


def _terminate_backends(monitor: Any) -> int:
    rows = monitor.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def _ledger_evidence(conn: Any) -> list[tuple[Any, ...]]:
    """Per delivery: id, send_key, customer, status, claims, attempt rows, ok attempts,
    ambiguous attempts (timeout / network), last_error."""
    return conn.execute(
        """
        SELECT d.id, d.send_key, c.external_id, d.status, d.attempts,
               coalesce(a.n, 0), coalesce(a.ok, 0), coalesce(a.ambiguous, 0), d.last_error
        FROM delivery d
        JOIN customer c ON c.id = d.customer_id
        LEFT JOIN (
            SELECT delivery_id, count(*) AS n,
                   count(*) FILTER (WHERE outcome = 'ok') AS ok,
                   count(*) FILTER (WHERE code IN ('timeout', 'network')) AS ambiguous
            FROM delivery_attempt GROUP BY delivery_id
        ) a ON a.delivery_id = d.id
        WHERE d.campaign = %s
        """,
        (CAMPAIGN,),
    ).fetchall() + [("attempts-by-outcome", conn.execute(
        "SELECT outcome, coalesce(code, ''), count(*) FROM delivery_attempt GROUP BY 1, 2 ORDER BY 3 DESC"
    ).fetchall())]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def _scheduler_reports(path: Path) -> list[dict[str, Any]]:
    reports = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                reports.append(json.loads(line))
    return reports


def _worker_log_notes(directory: Path) -> dict[str, int]:
    """How often the processes logged the interesting things (connection errors, retries)."""
    patterns = {
        "worker*.log": {
            "consumer connection errors": "Consumer encountered a connection error",
            "consumer unexpected errors": "Consumer encountered an unexpected error",
            "acks retried (broker down)": "Failed to post_process_message",
            "records retried (database)": "retrying in",
            "jobs failed (retried by Dramatiq)": "Failed to process message",
            "jobs given up by Dramatiq": "Retries exceeded",
        },
        "scheduler.log": {"scheduler ticks failed (retried)": "failed, retrying next interval"},
    }
    notes: Counter[str] = Counter()
    for pattern_glob, labels in patterns.items():
        for path in directory.glob(pattern_glob):
            text = path.read_text(errors="replace")
            for label, pattern in labels.items():
                notes[label] += text.count(pattern)
    return dict(notes)


def _figures(scenario: str, options: Options, stats: dict[str, Any], evidence: list[tuple[Any, ...]],
             ticks: list[dict[str, Any]], scheduler_exits: list[tuple[int, str]], workers: list[Proc],
             injected: list[dict[str, Any]], faults: list[list[Any]], counts: dict[str, int], elapsed: float,
             *, timed_out: bool) -> dict[str, Any]:
    from workers.channels.webhook import webhook_id

    by_outcome = evidence[-1][1]
    rows = evidence[:-1]
    totals = stats["totals"]
    ids: dict[str, list[Any]] = stats["ids"]
    expected = {webhook_id(row[1]): row for row in rows}
    accepted = {wid for wid, record in ids.items() if record[1] > 0}
    losses = sorted(set(expected) - accepted)
    unexpected = sorted(accepted - set(expected))
    statuses = Counter(row[3] for row in rows)
    # Duplicates the idempotency key cannot absorb: one recipient under two webhook-ids,
    # or one webhook-id carrying two different bodies.
    per_customer = Counter(record[4] for record in ids.values() if record[1] > 0)
    duplicate_recipients = sorted(customer for customer, n in per_customer.items() if n > 1)
    conflicting = sorted(wid for wid, record in ids.items() if record[6])
    # Raw re-deliveries: webhook-ids processed more than once without the idempotency check.
    redelivered = {wid: record[1] - 1 for wid, record in ids.items() if record[1] > 1}
    reasons: Counter[str] = Counter()
    unexplained = []
    for wid, extra in redelivered.items():
        row = expected.get(wid)
        if row is None:
            unexplained.append(wid)
            continue
        _, _, _, _, claims, attempt_rows, ok_attempts, ambiguous, _ = row
        if ambiguous:
            reasons["timeout / network error attempt"] += extra
        elif claims > attempt_rows:
            reasons["claim without recorded outcome (worker killed / record lost)"] += extra
        elif ok_attempts > 1:
            reasons["lease expired while sending (two ok attempts)"] += extra
        else:
            unexplained.append(wid)
    lost_claims = sum(max(0, row[4] - row[5]) for row in rows)
    claims_beyond_first = sum(max(0, row[4] - 1) for row in rows)
    requeued = sum(report.get("requeued_leases", 0) for report in ticks)
    # Deliveries the scheduler enqueued beyond the first time: jobs the broker lost (or
    # that waited in the queue longer than a lease), rows of dead workers, retries whose
    # job was lost.
    redispatched = max(0, sum(report.get("enqueued_deliveries", 0) for report in ticks) - len(rows))
    arrivals = totals.get("arrivals", 0)
    unique = len(accepted & set(expected))

    failures: list[str] = []
    if timed_out:
        failures.append(f"timed out after {options.deadline_s:g} s: ledger {counts}")
    if len(rows) != options.recipients:
        failures.append(f"ledger planned {len(rows)} deliveries for {options.recipients} recipients")
    if statuses.get("sent", 0) != len(rows):
        failures.append(f"not every ledger row is sent: {dict(statuses)}")
    if losses:
        failures.append(f"{len(losses)} message(s) never reached the sink (e.g. {losses[:3]})")
    if unexpected:
        failures.append(f"{len(unexpected)} unexpected webhook-id(s) at the sink (e.g. {unexpected[:3]})")
    if totals.get("invalid", 0):
        failures.append(f"{totals['invalid']} request(s) failed verification: "
                        + ", ".join(f"{k[9:]}: {v}" for k, v in totals.items() if k.startswith("invalid: ")))
    if totals.get("send key mismatch", 0) or totals.get("unparsable body", 0):
        failures.append("bodies inconsistent with their Idempotency-Key")
    if duplicate_recipients:
        failures.append(f"{len(duplicate_recipients)} recipient(s) got more than one message "
                        f"(e.g. {duplicate_recipients[:3]})")
    if conflicting:
        failures.append(f"{len(conflicting)} webhook-id(s) arrived with different bodies")
    if unexplained:
        failures.append(f"{len(unexplained)} raw re-deliveries without an ambiguous attempt in the ledger "
                        f"(e.g. {unexplained[:3]})")
    for share, kind, done in faults:
        if not done:
            failures.append(f"fault {kind} was never injected (the campaign ended before {share:.0%})")
    for fault in injected:
        if fault.get("error"):
            failures.append(f"fault {fault['fault']}: {fault['error']}")
        elif fault["at_unique"] >= options.recipients:
            failures.append(f"fault {fault['fault']} landed after every message had arrived")
        if fault["fault"] == "db" and not sum(fault.get("terminated", [])):
            failures.append("fault db terminated no database connection")
    if scenario in ("flaky", "combined") and not (totals.get("answered 429") or totals.get("answered 500")
                                                     or totals.get("held past timeout")):
        failures.append("the flaky sink injected no fault")
    worker_exits = [(w.name, code, tail) for w in workers for code, tail in w.unexpected_exits]
    # The processes must ride out the faults themselves; the runner's restarts only let
    # the campaign finish so that losses can still be counted.
    if scheduler_exits:
        failures.append(f"`nurture scheduler` exited {len(scheduler_exits)} time(s) (code "
                        f"{scheduler_exits[0][0]}): {_last_line(scheduler_exits[0][1])}")
    for name, code, tail in worker_exits:
        failures.append(f"{name} exited unexpectedly (code {code}): {_last_line(tail)}")
    return {
        "recipients": options.recipients,
        "workers": options.workers,
        "fault_rate": options.fault_rate if scenario in ("flaky", "combined") else 0.0,
        "expected": len(expected),
        "unique_received": unique,
        "raw_arrivals": arrivals,
        "rejected_by_sink": totals.get("answered 429", 0) + totals.get("answered 500", 0),
        "answered_429": totals.get("answered 429", 0),
        "answered_500": totals.get("answered 500", 0),
        "held_past_timeout": totals.get("held past timeout", 0),
        "redeliveries_absorbed": totals.get("absorbed", 0),
        "redelivery_reasons": dict(reasons),
        "losses": len(losses),
        "duplicates": len(duplicate_recipients) + len(conflicting),
        "unexplained_redeliveries": len(unexplained),
        "invalid_requests": totals.get("invalid", 0),
        "ledger": dict(statuses),
        "retries": claims_beyond_first,
        "attempts_by_outcome": {f"{outcome} {code}".strip(): n for outcome, code, n in by_outcome},
        "claims_without_outcome": lost_claims,
        "leases_recovered": requeued,
        "redispatched": redispatched,
        "scheduler_ticks": len(ticks),
        "scheduler_exits": [{"code": code, "log": tail} for code, tail in scheduler_exits],
        "worker_unexpected_exits": [{"worker": name, "code": code, "log": tail} for name, code, tail in worker_exits],
        "faults": injected,
        "elapsed_s": round(elapsed, 2),
        "throughput": round(len(expected) / elapsed, 1) if elapsed > 0 else None,
        "failures": failures,
        "ok": not failures,
    }


# --------------------------------------------------------------------------- report


def print_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, 34 + 22 * len(results)))
    first = results[0]
    console.print(f"[bold]Reliability[/]: {first['recipients']:,} recipients, {first['workers']} workers "
                  f"(dramatiq workers.app), {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    table = Table()
    table.add_column("", style="bold")
    for result in results:
        table.add_column(result["scenario"], justify="right")

    def row(label: str, render: Any) -> None:
        table.add_row(label, *[render(r) for r in results])

    def fault_text(r: dict[str, Any]) -> str:
        parts = []
        for fault in r["faults"]:
            text = f"{fault['fault']} @ {fault['at_unique']:,}"
            if fault["fault"] == "db":
                text += f" ({'+'.join(str(n) for n in fault.get('terminated', []))} conns)"
            if fault["fault"] == "redis" and "broker_messages" in fault:
                text += f" ({fault.get('broker_queued', 0):,} queued jobs lost)"
            parts.append(text)
        if r["fault_rate"]:
            parts.insert(0, f"sink fails {r['fault_rate']:.0%}")
        return ", ".join(parts) or "-"

    row("fault (at unique messages)", fault_text)
    row("messages expected", lambda r: f"{r['expected']:,}")
    row("unique received", lambda r: f"{r['unique_received']:,}")
    row("raw arrivals", lambda r: f"{r['raw_arrivals']:,}")
    row("  rejected by sink (429 / 500)", lambda r: f"{r['answered_429']:,} / {r['answered_500']:,}")
    row("  held past client timeout", lambda r: f"{r['held_past_timeout']:,}")
    row("  re-deliveries absorbed by key", lambda r: f"{r['redeliveries_absorbed']:,}")
    row("losses", lambda r: f"{r['losses']:,}")
    row("duplicates after idempotency key", lambda r: f"{r['duplicates']:,}")
    row("unexplained re-deliveries", lambda r: f"{r['unexplained_redeliveries']:,}")
    row("retries (claims beyond the first)", lambda r: f"{r['retries']:,}")
    row("claims without recorded outcome", lambda r: f"{r['claims_without_outcome']:,}")
    row("leases recovered (sweeper)", lambda r: f"{r['leases_recovered']:,}")
    row("re-dispatched by the scheduler", lambda r: f"{r['redispatched']:,}")
    row("scheduler exits (restarted)", lambda r: f"{len(r['scheduler_exits'])}")
    row("worker unexpected exits", lambda r: f"{len(r['worker_unexpected_exits'])}")
    row("ledger", lambda r: ", ".join(f"{k} {v:,}" for k, v in sorted(r["ledger"].items())))
    row("time", lambda r: f"{r['elapsed_s']:.1f} s")
    row("throughput", lambda r: f"{r['throughput']:,.0f} msg/s" if r["throughput"] else "-")
    row("checks", lambda r: "[green]pass[/]" if r["ok"] else f"[red]FAIL ({len(r['failures'])})[/]")
    console.print(table)
    for result in results:
        reasons = result["redelivery_reasons"]
        if reasons:
            console.print(f"{result['scenario']}: re-deliveries explained by the ledger: "
                          + "; ".join(f"{n} {why}" for why, n in reasons.items()))
        if result["attempts_by_outcome"]:
            console.print(f"{result['scenario']}: provider calls recorded: "
                          + ", ".join(f"{k} {v:,}" for k, v in result["attempts_by_outcome"].items()))
        notes = {k: v for k, v in result["worker_log_notes"].items() if v}
        if notes:
            console.print(f"{result['scenario']}: worker logs: " + ", ".join(f"{k} {v}" for k, v in notes.items()))
        for failure in result["failures"]:
            console.print(f"{result['scenario']}: [red]FAILED[/] {failure}")


def main(argv: list[str] | None = None) -> int:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="all",
                        help=f"all, or a comma-separated list of: {', '.join(SCENARIOS)} (default all = "
                             f"{', '.join(ALL)})")
    parser.add_argument("--recipients", type=int, default=defaults.recipients, help="customers = messages (10000)")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help="`dramatiq workers.app` instances (default 2)")
    parser.add_argument("--processes", type=int, default=defaults.processes, help="processes per worker (1)")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="threads per worker process (8)")
    parser.add_argument("--lease", type=int, default=defaults.lease_s, help="worker.lease in seconds (15)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="broker.batch_size (50)")
    parser.add_argument("--send-concurrency", type=int, default=0,
                        help="worker.send_concurrency (default: the project's)")
    parser.add_argument("--webhook-timeout", type=int, default=defaults.webhook_timeout_s,
                        help="the webhook channel's timeout in seconds (2)")
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate,
                        help="share of requests the flaky sink fails (0.2)")
    parser.add_argument("--outage", type=float, default=defaults.outage_s, help="Redis downtime in seconds (5)")
    parser.add_argument("--db-kills", type=int, default=defaults.db_kills,
                        help="rounds of pg_terminate_backend, 1.5 s apart (3)")
    parser.add_argument("--replace", action="store_true", help="start a replacement worker after the kill")
    parser.add_argument("--sink-latency-ms", type=float, default=0.0, help="the sink answers after this delay")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="the flaky sink's random seed")
    parser.add_argument("--timeout", type=float, default=defaults.deadline_s,
                        help="give up a scenario after this many seconds (900)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and log directories")
    parser.add_argument("--no-supervise", action="store_true",
                        help="do not restart `nurture scheduler` when it exits (shows what an outage does "
                             "to an unsupervised scheduler)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    names = ALL if args.scenario == "all" else tuple(s.strip() for s in args.scenario.split(",") if s.strip())
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}: choose from all, {', '.join(SCENARIOS)}")
    options = Options(
        recipients=args.recipients, workers=args.workers, processes=args.processes, threads=args.threads,
        lease_s=args.lease, batch_size=args.batch_size, send_concurrency=args.send_concurrency,
        webhook_timeout_s=args.webhook_timeout, fault_rate=args.fault_rate, outage_s=args.outage,
        db_kills=args.db_kills, replace=args.replace, sink_latency_ms=args.sink_latency_ms, seed=args.seed,
        deadline_s=args.timeout, keep=args.keep, supervise=not args.no_supervise,
    )
    for key in CONFIG_OVERRIDES:
        os.environ.pop(key, None)
    results = []
    for scenario in names:
        result = run_scenario(scenario, options)
        verdict = "pass" if result["ok"] else "FAIL: " + "; ".join(result["failures"])
        log(f"[{scenario}] {result['unique_received']:,}/{result['expected']:,} unique, "
            f"{result['raw_arrivals']:,} arrivals, {result['losses']} lost, {result['duplicates']} duplicates, "
            f"{result['elapsed_s']:.1f} s: {verdict}")
        results.append(result)
    print_table(results)
    if args.json:
        print(json.dumps({"options": asdict(options), "results": results}, indent=2, default=str))
    return 0 if all(result["ok"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
