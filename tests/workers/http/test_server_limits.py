"""Pieces of workers/http/server_limits.py that need no server: the log rate limiter and the
file-descriptor fit of the connection cap (the server itself: tests/e2e/test_server_limits.py)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from workers.http.server_limits import FD_RESERVE, RepeatLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited() -> Iterator[tuple[logging.Logger, io.StringIO, FakeClock]]:
    clock = FakeClock()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("nurture.test.repeat_limiter")
    log.propagate = False
    log.addHandler(handler)
    limiter = RepeatLimiter(burst=3, interval_s=60, clock=clock)
    log.addFilter(limiter)
    yield log, stream, clock
    log.removeFilter(limiter)
    log.removeHandler(handler)
    log.propagate = True


def test_a_repeated_error_is_logged_a_few_times_per_interval_then_summarised(limited):
    log, stream, clock = limited
    for _ in range(1000):  # as asyncio logs every failed accept() retry
        log.error("socket.accept() out of system resource")
    log.error("a different message %s", "passes")
    assert stream.getvalue().splitlines() == ["ERROR socket.accept() out of system resource"] * 3 + [
        "ERROR a different message passes"]
    clock.now += 61
    log.error("socket.accept() out of system resource")
    assert stream.getvalue().splitlines()[4:] == [
        "ERROR 997 more like the next were not logged in the last 60 s",
        "ERROR socket.accept() out of system resource",
    ]


def test_messages_differing_only_in_their_arguments_share_one_budget(limited):
    log, stream, _ = limited
    for port in range(10):
        log.warning("Invalid HTTP request received from %s", f"10.0.0.1:{port}")
    assert len(stream.getvalue().splitlines()) == 3


def test_the_connection_cap_is_lowered_to_what_the_file_descriptor_limit_allows():
    # A hard limit of 1,024 (common on Linux) cannot be raised again: a child process.
    code = (
        "import resource\n"
        "from workers.http.server_limits import FD_RESERVE, fit_connections_to_fd_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (512, 1024))\n"
        "print(fit_connections_to_fd_limit(4096), fit_connections_to_fd_limit(500),\n"
        "      resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # The soft limit is raised to the hard one; 4,096 does not fit and is lowered.
    assert out.split() == [str(1024 - FD_RESERVE), "500", "1024"]
