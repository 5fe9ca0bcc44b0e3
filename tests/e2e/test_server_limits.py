"""``nurture serve``'s uvicorn under hostile clients (workers/http/server_limits.py): half-sent request
heads and bodies are timed out, the connection cap displaces idle sockets so ``/health``
still answers, and everything runs with the options the CLI passes (uvicorn_options).

The receiver app is the real one (create_app on a SQLite database, stub broker). Time
limits are set small in the test's config; no test asserts how long anything took: a
client timeout of a few seconds, or a generous deadline, is the failure condition.
"""

from __future__ import annotations

import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from campaigns.project.loading import parse_config
from workers.http.app import create_app
from workers.http.server_limits import uvicorn_options
from workers.jobs.broker import make_broker

HALF_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: "


@contextmanager
def serving(sqlite_url: str, api: str) -> Iterator[tuple[str, int, uvicorn.Server]]:
    """The receiver on a loopback port with ``[api]`` set to ``api``; yields (host, port, server)."""
    config = parse_config(f'[database]\nurl = "{sqlite_url}"\n[broker]\nurl = "stub://"\n[api]\n{api}\n')
    app = create_app(config, broker=make_broker(config.broker))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none",
                                           lifespan="on", **uvicorn_options(config.api)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        yield "127.0.0.1", server.servers[0].sockets[0].getsockname()[1], server
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def open_half_heads(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(HALF_HEAD)
        held.append(sock)
    return held


def read_until_closed(socks: list[socket.socket], deadline_s: float) -> dict[socket.socket, bytes]:
    """What each socket received until the server closed it; sockets still open when
    ``deadline_s`` passes are left out (a failure deadline, not a measurement)."""
    received = {sock: b"" for sock in socks}
    closed: dict[socket.socket, bytes] = {}
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    end = time.monotonic() + deadline_s
    while len(closed) < len(socks) and time.monotonic() < end:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                received[sock] += chunk
            else:
                selector.unregister(sock)
                closed[sock] = received[sock]
    selector.close()
    return closed


@pytest.fixture
def enough_file_descriptors() -> Iterator[None]:
    """Room for 2,000 client and 2,000 server sockets in this one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 6000
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the hard file-descriptor limit ({hard}) is below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("enough_file_descriptors")
def test_2000_half_sent_heads_do_not_stop_health_and_are_closed_after_the_header_timeout(sqlite_url):
    with serving(sqlite_url, "header_timeout_s = 3") as (host, port, _):
        held = open_half_heads(port, 2000)
        try:
            # Given 2,000 connections stuck mid-header, /health answers (within the client's 3 s).
            answer = httpx.get(f"http://{host}:{port}/health", timeout=3.0)
            assert answer.status_code == 200 and answer.json() == {"status": "ok"}
            # Then every one of them is answered 408 and closed once its head is overdue.
            closed = read_until_closed(held, deadline_s=60)
            assert len(closed) == len(held)
            assert all(data.startswith(b"HTTP/1.1 408 Request Timeout") for data in closed.values())
            assert b"request head not received within 3 s" in next(iter(closed.values()))
            assert httpx.get(f"http://{host}:{port}/health", timeout=3.0).status_code == 200
        finally:
            for sock in held:
                sock.close()


def test_a_trickled_head_does_not_extend_its_deadline(sqlite_url):
    with serving(sqlite_url, "header_timeout_s = 1") as (_, port, _server):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            sock.sendall(HALF_HEAD)
            sock.setblocking(False)
            data, end = b"", time.monotonic() + 30
            # A byte every 0.2 s: each one arrives well within any per-byte idle timeout.
            while time.monotonic() < end:
                try:
                    chunk = sock.recv(4096)
                except BlockingIOError:
                    try:
                        sock.send(b"x")
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    time.sleep(0.2)
                    continue
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 408")
        finally:
            sock.close()


def test_a_half_sent_head_after_a_kept_alive_request_is_timed_out_too(sqlite_url):
    with serving(sqlite_url, "header_timeout_s = 1\nkeep_alive_timeout_s = 60") as (_, port, _server):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while b'{"status":"ok"}' not in first:
                first += sock.recv(4096)
            sock.sendall(HALF_HEAD)
            closed = read_until_closed([sock], deadline_s=30)
            assert closed and closed[sock].startswith(b"HTTP/1.1 408")
        finally:
            sock.close()


def test_a_body_that_never_arrives_is_cut_off(sqlite_url, monkeypatch):
    # POST /events reads the body once the key checks out: it waits for the 100 bytes.
    monkeypatch.setenv("NURTURE_API_KEY", "key-for-the-body-test")
    with serving(sqlite_url, "body_timeout_s = 1") as (_, port, _server):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer key-for-the-body-test\r\nContent-Length: 100\r\n\r\n[{")
            assert read_until_closed([sock], deadline_s=30), "the connection was never closed"
        finally:
            sock.close()


def test_at_the_connection_cap_the_longest_waiting_idle_connection_makes_room(sqlite_url):
    with serving(sqlite_url, "max_connections = 16\nheader_timeout_s = 60") as (host, port, server):
        held = open_half_heads(port, 16)
        try:
            end = time.monotonic() + 10  # until the server has accepted all 16
            while len(server.server_state.connections) < 16 and time.monotonic() < end:
                time.sleep(0.01)
            answer = httpx.get(f"http://{host}:{port}/health", timeout=3.0)
            assert answer.status_code == 200
            # The first (oldest) of the idle connections was closed to make room.
            closed = read_until_closed(held[:1], deadline_s=10)
            assert closed == {held[0]: b""}
        finally:
            for sock in held:
                sock.close()


def test_a_real_nurture_serve_under_a_low_descriptor_limit_keeps_answering_without_an_accept_flood(
        tmp_path, sqlite_url):
    # The incident: more idle connections than the process may open files. A `nurture
    # serve` whose soft and hard limits are 300 (set in its own process only) fits its
    # connection cap under them, so accept() never fails, /health answers and the log
    # stays short, however many half-sent heads are held.
    import os
    import signal
    import subprocess
    import sys

    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{sqlite_url}"\n[broker]\nurl = "stub://"\n'
                      "[api]\nheader_timeout_s = 60\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))\n"
            "from workers.cli.main import main\n"
            f"sys.argv = ['nurture', 'serve', '--config', {str(config)!r}, '--port', '{port}']\n"
            "main()\n")
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        server = subprocess.Popen([sys.executable, "-c", code], stdout=output, stderr=subprocess.STDOUT,
                                  env={**os.environ, "NURTURE_LOG_LEVEL": "WARNING"})
    held: list[socket.socket] = []
    try:
        end = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=3.0)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < end, log.read_text()
                time.sleep(0.2)
        for _ in range(600):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            try:
                sock.sendall(HALF_HEAD)
            except (BrokenPipeError, ConnectionResetError):
                pass  # displaced already
            held.append(sock)
        answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=3.0)
        assert answer.status_code == 200
    finally:
        for sock in held:
            sock.close()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    text = log.read_text()
    assert "max_connections 4096 lowered to 44" in text
    assert "out of system resource" not in text and "Too many open files" not in text
    assert len(text.splitlines()) < 50, text[-3000:]
