"""Shared fixtures: real SQLite files, throwaway PostgreSQL databases, a Redis db of our
own, and a loopback HTTP sink that records what channels send.

Following Dramatiq's test suite: a missing server skips the test locally with a clear
reason, and fails it when ``CI`` is set.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn

from campaigns.store.db import make_engine, upgrade
from campaigns.store.models import Customer, Order

POSTGRES_ADMIN_URL = os.environ.get("NURTURE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("NURTURE_TEST_REDIS", "redis://127.0.0.1:6379/13")


class ServerThread:
    """uvicorn serving ``app`` on an ephemeral loopback port, in a thread."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join()


def missing_service(reason: str) -> None:
    """Skip locally, fail under CI: a CI run must never silently skip integration tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite file with the schema migrated."""
    url = f"sqlite:///{tmp_path / 'nurture.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[sa.Engine]:
    """An engine on a fresh, migrated SQLite file."""
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL database (migrated), dropped afterwards."""
    import psycopg

    name = f"nurture_test_{secrets.token_hex(6)}"
    admin_dsn = POSTGRES_ADMIN_URL
    try:
        admin = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL is not reachable at {admin_dsn}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of our own (db 13 by default), flushed before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        missing_service(f"Redis is not reachable at {REDIS_TEST_URL}: {exc}")
    client.flushdb()
    try:
        yield REDIS_TEST_URL
    finally:
        client.flushdb()
        client.close()


@dataclass
class SinkRequest:
    """One request the sink received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


@dataclass
class HttpSink:
    """A loopback HTTP server recording requests; ``responses`` scripts its answers.

    Each entry of ``responses`` is (status, headers, body) and is used once, in order;
    when empty the sink answers 200 with a JSON id.
    """

    url: str
    requests: list[SinkRequest] = field(default_factory=list)
    responses: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Cleared by a test, the sink holds every request it receives (counted in
    #: ``arrived`` first) until the test sets it again: "mid-send" without timing.
    released: threading.Event = field(default_factory=lambda: _set(threading.Event()))
    #: Requests received so far, held or answered.
    arrived: int = 0

    def answer(self, status: int, body: bytes | str = b"", **headers: str) -> None:
        """Queue one scripted answer."""
        self.responses.append((status, headers, body.encode() if isinstance(body, str) else body))

    def bodies(self) -> list[Any]:
        with self.lock:
            return [request.json() for request in self.requests]


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    """A loopback HTTP sink on an ephemeral port."""
    sink: HttpSink

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with sink.lock:
                sink.arrived += 1
            sink.released.wait()
            if sink.delay_s:
                import time

                time.sleep(sink.delay_s)
            with sink.lock:
                sink.requests.append(SinkRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                scripted = sink.responses.pop(0) if sink.responses else None
            if scripted is None:
                status, headers, payload = 200, {}, json.dumps({"id": f"sink-{len(sink.requests)}"}).encode()
            else:
                status, headers, payload = scripted
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sink = HttpSink(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sink
    sink.released.set()  # a test that failed while holding requests lets them go
    server.shutdown()
    server.server_close()


def seed_customers(
    engine: sa.Engine,
    *,
    count: int,
    now: datetime,
    lapsed_share: float = 0.5,
    seed: int = 1,
    channel: str = "ecommerce",
    prefix: str = "C",
    consent: bool = True,
) -> dict[str, list[str]]:
    """Insert ``count`` customers with orders; returns external ids by ``lapsed`` / ``active``.

    Lapsed customers' last order is 120-400 days before ``now``; active ones bought within
    30 days. Each gets marketing consent on every channel family unless ``consent`` is False. Ids are deterministic so tests can compute the expected audience by hand.
    """
    rng = random.Random(seed)
    groups: dict[str, list[str]] = {"lapsed": [], "active": []}
    with engine.begin() as conn:
        customer_rows = []
        for number in range(count):
            lapsed = number < count * lapsed_share
            external_id = f"{prefix}{number:05d}"
            groups["lapsed" if lapsed else "active"].append(external_id)
            customer_rows.append({
                "external_id": external_id, "name": f"Test Person{number}",
                "email": f"p{number}@example.com", "phone": f"+86138{number:08d}",
                "acquisition_channel": channel, "created_at": now - timedelta(days=500),
                "updated_at": now, "attributes": {"n": number},
            })
        conn.execute(sa.insert(Customer.__table__), customer_rows)
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        order_rows = []
        for external_id in groups["lapsed"] + groups["active"]:
            lapsed = external_id in groups["lapsed"]
            days_ago = rng.randint(120, 400) if lapsed else rng.randint(1, 30)
            order_rows.append({
                "order_id": f"O-{external_id}", "customer_id": ids[external_id],
                "ordered_at": now - timedelta(days=days_ago), "amount": 100.0, "channel": channel,
            })
        conn.execute(sa.insert(Order.__table__), order_rows)
    if consent:
        grant_consent(engine, now=now)
    return groups


def grant_consent(engine: sa.Engine, *, now: datetime, families: tuple[str, ...] = ("email", "sms", "wechat"),
                  external_ids: list[str] | None = None) -> int:
    """Record marketing consent as granted (source "test") on ``families`` for every
    customer (or those in ``external_ids``) that has none recorded yet; returns rows added."""
    from campaigns.store.db import dialect_insert
    from campaigns.store.models import Consent

    with engine.begin() as conn:
        query = sa.select(Customer.id)
        if external_ids is not None:
            query = query.where(Customer.external_id.in_(external_ids))
        rows = [{"customer_id": customer_id, "channel": family, "status": "granted", "source": "test",
                 "recorded_at": now}
                for customer_id in conn.execute(query).scalars() for family in families]
        if not rows:
            return 0
        result = conn.execute(
            dialect_insert(conn, Consent.__table__).values(rows)
            .on_conflict_do_nothing(index_elements=["customer_id", "channel"])
        )
        return result.rowcount


WEBHOOK_TEMPLATE = '{"to": {{ customer.external_id|tojson }}, "orders": {{ stats.orders_count }}, "campaign": {{ campaign.name|tojson }}}'


#: The ``whsec_`` signing secret the ``project`` fixture's webhook channel reads from
#: NURTURE_TEST_HOOK_SECRET (the channel sends nothing unsigned).
TEST_HOOK_SECRET = "whsec_" + base64.b64encode(b"nurture-test-webhook-signing-key").decode()


@pytest.fixture
def hook_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """NURTURE_TEST_HOOK_SECRET set to :data:`TEST_HOOK_SECRET`, for tests that build
    their own webhook channel (the channel sends nothing unsigned)."""
    monkeypatch.setenv("NURTURE_TEST_HOOK_SECRET", TEST_HOOK_SECRET)
    return TEST_HOOK_SECRET


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write a config.toml (and a webhook template) into ``tmp_path``; returns its path.

    Sets NURTURE_TEST_HOOK_SECRET to :data:`TEST_HOOK_SECRET` (a test may set its own)."""
    monkeypatch.setenv("NURTURE_TEST_HOOK_SECRET", TEST_HOOK_SECRET)

    def write(*, database_url: str, broker_url: str = "stub://", sink_url: str = "http://127.0.0.1:9/none",
              extra: str = "", audience: str = "min_orders = 1\nlast_order_more_than_days = 90",
              max_attempts: int = 4, namespace: str = "nurture-test", quiet_hours: str = "") -> Path:
        # Quiet hours are stated, off by default: the worker processes a test starts read the
        # real clock, and the default 21:00-08:00 Asia/Shanghai would hold their sends back
        # whenever the suite runs then (tests about quiet hours pin the clock instead).
        compliance, extra = state_quiet_hours(extra, quiet_hours)
        templates = tmp_path / "templates" / "win_back"
        templates.mkdir(parents=True, exist_ok=True)
        (templates / "ping.json.j2").write_text(WEBHOOK_TEMPLATE)
        config = tmp_path / "config.toml"
        config.write_text(f"""
[database]
url = "{database_url}"

[broker]
url = "{broker_url}"
batch_size = 7
namespace = "{namespace}"

[worker]
threads = 4
max_attempts = {max_attempts}
backoff_base = "0s"
backoff_cap = "0s"
{compliance}
[templates]
dir = "templates"

[channels.hook]
kind = "webhook"
url = "{sink_url}"
secret_env = "NURTURE_TEST_HOOK_SECRET"
timeout = "5s"

[[campaigns]]
name = "win_back"
timezone = "Asia/Shanghai"
trigger = {{ cron = "0 10 * * *" }}
channels = ["hook"]

  [campaigns.audience]
  {audience}

  [[campaigns.steps]]
  template = "win_back/ping"
{extra}
""")
        return config

    return write


def state_quiet_hours(extra: str, quiet_hours: str) -> tuple[str, str]:
    """(a ``[compliance]`` table, ``extra``) with ``quiet_hours`` stated once: in ``extra``'s
    own ``[compliance]`` table when it has one (unless it states quiet hours itself)."""
    line = f'quiet_hours = "{quiet_hours}"'
    if re.search(r"^\s*quiet_hours\s*=", extra, re.MULTILINE):
        return "", extra
    header = re.search(r"^\s*\[compliance\][^\n]*\n?", extra, re.MULTILINE)
    if header:
        return "", f"{extra[:header.end()].rstrip()}\n{line}\n{extra[header.end():]}"
    return f"\n[compliance]\n{line}\n", extra


def line_of(text: str, marker: str, occurrence: int = 1) -> int:
    """1-based line number of the ``occurrence``-th line of ``text`` containing ``marker``."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"marker {marker!r} (occurrence {occurrence}) not in the test's TOML")


#: A moment just after the demo campaigns' daily 10:00 Asia/Shanghai slot.
TICK_NOW = datetime(2026, 3, 2, 2, 5, tzinfo=UTC)
