"""What every benchmark needs: the machine's servers, a throwaway database, a clean
environment, helper processes that are always stopped, and the moment just after the
bench campaign's slot."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Benchmarks use their own Redis database (the tests use 12 and 13).
REDIS_URL = "redis://127.0.0.1:6379/14"
QUEUE = "nurture"
#: Benchmarks measure throughput at whatever hour they run, so quiet hours are off; the
#: consent and frequency-cap checks still run on every message.
BENCH_COMPLIANCE = '[compliance]\nquiet_hours = ""\n'
#: The webhook channel sends nothing unsigned: bench configs name this variable as
#: secret_env, and a fresh whsec_ secret is put in this process's environment (inherited
#: by every helper process it starts).
BENCH_HOOK_SECRET_ENV = "NURTURE_BENCH_HOOK_SECRET"
os.environ.setdefault(BENCH_HOOK_SECRET_ENV, "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())

#: Environment variables that would point a bench's processes at another project.
CONFIG_OVERRIDES = ("NURTURE_DATABASE_URL", "NURTURE_BROKER_URL", "NURTURE_CONFIG")

#: A started helper process: its name, the process, and the file its output goes to.
Started = tuple[str, "subprocess.Popen[bytes]", Path]


def logger(prefix: str):  # type: ignore[no-untyped-def]
    """A ``log(message)`` printing ``[prefix] message`` to stderr, unbuffered."""

    def log(message: str) -> None:
        print(f"[{prefix}] {message}", file=sys.stderr, flush=True)

    return log


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ThrowawayDatabase:
    """A PostgreSQL database of one bench run."""

    name: str
    #: ``postgresql://…``, for psycopg.
    dsn: str
    #: ``postgresql+psycopg://…``, for SQLAlchemy and the project's config.
    url: str


@contextlib.contextmanager
def throwaway_database(*, prefix: str = "nurture_bench", keep: bool = False,
                       log: Callable[[str], None] | None = None) -> Iterator[ThrowawayDatabase]:
    """A new database ``<prefix>_<hex>`` on 127.0.0.1:5432 with the project's schema,
    dropped ``WITH (FORCE)`` on exit whatever happens, unless ``keep`` (then ``log`` says
    how to drop it)."""
    import psycopg

    from campaigns.store.db import make_engine, upgrade

    name = f"{prefix}_{secrets.token_hex(6)}"
    dsn = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    database = ThrowawayDatabase(name=name, dsn=dsn, url=dsn.replace("postgresql://", "postgresql+psycopg://"))
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        engine = make_engine(database.url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield database
    finally:
        if keep:
            if log is not None:
                log(f'kept {name} (drop it with: DROP DATABASE "{name}" WITH (FORCE))')
        else:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if log is not None:
                log(f"dropped {name}")


def flush_redis(url: str = REDIS_URL) -> None:
    """Empty the benchmarks' Redis database."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    client.flushdb()
    client.close()


def grant_consent(conn, *, now: datetime, family: str = "email") -> None:  # type: ignore[no-untyped-def]
    """Record marketing consent for every customer (``conn``: a psycopg connection), as an
    import of a consenting customer base would: marketing needs it."""
    conn.execute(
        "INSERT INTO consent (customer_id, channel, status, source, recorded_at) "
        "SELECT id, %(family)s, 'granted', 'bench', %(now)s FROM customer",
        {"family": family, "now": now},
    )


def tick_moment(hour: int) -> datetime:
    """One minute after the most recent ``hour``:00 UTC (a ``0 hour * * *`` campaign's slot)."""
    current = datetime.now(UTC)
    slot = current.replace(hour=hour, minute=0, second=0, microsecond=0)
    if slot > current:
        slot -= timedelta(days=1)
    return slot + timedelta(minutes=1)


def stop_all(started: list[Started], *, log=None, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM every process still running, wait, and kill those that do not stop."""
    for _, process, _ in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name, process, _ in started:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            if log is not None:
                log(f"{name} did not stop on SIGTERM: killing it")
            process.kill()
            process.wait()
    started.clear()


@contextlib.contextmanager
def subprocesses(*, log=None) -> Iterator[list[Started]]:  # type: ignore[no-untyped-def]
    """Processes appended to the yielded list are stopped on exit, whatever happens."""
    started: list[Started] = []
    try:
        yield started
    finally:
        stop_all(started, log=log)


def check_alive(started: list[Started]) -> None:
    """Raise with the end of its log if a helper process has exited."""
    for name, process, logfile in started:
        if process.poll() is not None:
            tail = logfile.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with code {process.returncode}; its log ends with:\n{tail}")
