"""The limits ``nurture serve`` puts on uvicorn in front of clients that may be hostile.

uvicorn on its own times a connection out only while it idles *between* requests
(``timeout_keep_alive``): a client that connects and sends half a request head, or a body
one byte a minute, holds its socket forever. Twenty thousand of them used up the file
descriptors: ``/health`` stopped answering and asyncio logged "socket.accept() out of
system resource" with a traceback on every accept retry (266 MB in 100 s). So:

* :class:`GuardedH11Protocol`, uvicorn's h11 protocol with a deadline for the request
  head (``[api] header_timeout_s``, from the connection's opening or, between kept-alive
  requests, from the next request's first byte; a trickle of bytes does not extend it)
  and one for the body (``body_timeout_s``); a client that misses the head deadline gets
  ``408`` and is disconnected;
* a connection cap (``[api] max_connections``) kept below the process's file-descriptor
  limit (:func:`fit_connections_to_fd_limit`). At the cap, a new connection displaces the
  one that has waited longest for its request head, so a flood of idle sockets cannot
  lock real clients out; only when every connection is busy with a request is the new
  one answered ``503`` and closed;
* :class:`RepeatLimiter`, a logging filter that lets the first few records of a message
  through per interval and then reports how many it held back.

:func:`uvicorn_options` turns ``[api]`` into the keyword arguments of ``uvicorn.run`` /
``uvicorn.Config``; the CLI and the tests use the same function.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from campaigns.config.runtime import ApiConfig

logger = logging.getLogger("nurture.serve")

#: File descriptors kept free for everything but client sockets: the listening socket,
#: database and Redis connections, log files, the thread pool's needs.
FD_RESERVE = 256
#: Loggers whose repeated records are rate-limited by :func:`install_log_limits`: asyncio
#: (accept errors), uvicorn's error log (invalid requests) and ours.
LIMITED_LOGGERS = ("asyncio", "uvicorn.error", "nurture.serve")


@dataclass(frozen=True)
class ServerLimits:
    """The limits :class:`GuardedH11Protocol` enforces (``[api]`` keys of the same names)."""

    #: Seconds from a connection's opening (or, between keep-alive requests, from the next
    #: request's first byte) to the end of its request head.
    header_timeout_s: float = 10.0
    #: Seconds from the end of the request head to the end of its body.
    body_timeout_s: float = 30.0
    #: Most open client connections in one server process.
    max_connections: int = 4096

    @classmethod
    def from_config(cls, api: ApiConfig) -> ServerLimits:
        """The limits ``[api]`` sets."""
        return cls(header_timeout_s=api.header_timeout_s, body_timeout_s=api.body_timeout_s,
                   max_connections=api.max_connections)


def _raw_answer(status: str, text: str, *extra: str) -> bytes:
    body = text.encode("utf-8")
    head = [f"HTTP/1.1 {status}", "Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}",
            "Connection: close", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with request-head and body deadlines and a connection cap.

    Use :func:`protocol_class` for a subclass bound to its :class:`ServerLimits`; each
    such class keeps its own list of connections waiting for a request head.
    """

    limits: ClassVar[ServerLimits] = ServerLimits()
    #: Connections waiting for a request head, oldest first (a dict keeps insertion order).
    waiting: ClassVar[dict[GuardedH11Protocol, None]] = {}

    _deadline: asyncio.TimerHandle | None = None
    _phase: str = "new"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Register the connection; displace or refuse one at the cap; start the head deadline."""
        at_cap = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        if at_cap and not self._displace_oldest_waiting():
            logger.warning("connection refused: %d connections open, [api] max_connections is %d",
                           len(self.connections) - 1, self.limits.max_connections)
            transport.write(_raw_answer("503 Service Unavailable", "server busy, retry later\n", "Retry-After: 1"))
            transport.close()
            return
        self._await_head(self.limits.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        """Feed h11, then move the deadline to the phase the request is in."""
        super().data_received(data)
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # Part of a head (or nothing after a keep-alive idle): a deadline from now,
            # unless one runs already (more bytes of the same head do not extend it).
            if self._phase != "head":
                self._await_head(self.limits.header_timeout_s)
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._set_deadline("body", self.limits.body_timeout_s, self._body_timed_out)
        else:
            self._set_deadline("busy", None, None)

    def on_response_complete(self) -> None:
        """After a response: uvicorn's keep-alive timer covers the idle wait, and the
        connection may be displaced like one waiting for a head."""
        self._set_deadline("idle", None, None)
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE and self._phase == "idle":
            type(self).waiting[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection's deadline and place in the waiting list."""
        self._set_deadline("closed", None, None)
        super().connection_lost(exc)

    # -- deadlines -------------------------------------------------------------------------

    def _await_head(self, seconds: float) -> None:
        self._set_deadline("head", seconds, self._head_timed_out)
        type(self).waiting[self] = None

    def _set_deadline(self, phase: str, seconds: float | None, callback: Callable[[], None] | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        type(self).waiting.pop(self, None)
        self._phase = phase
        if seconds is not None and callback is not None:
            self._deadline = self.loop.call_later(seconds, callback)

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.transport.write(_raw_answer(
            "408 Request Timeout", f"request head not received within {self.limits.header_timeout_s:g} s\n"))
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            # The app is reading the body: closing makes its receive() report a disconnect.
            logger.warning("request body not received within %g s: connection closed", self.limits.body_timeout_s)
            self.transport.close()

    def _displace_oldest_waiting(self) -> bool:
        """Close the connection that has waited longest for a request head; False when none does."""
        waiting = type(self).waiting
        while waiting:
            other = next(iter(waiting))
            del waiting[other]
            if other is not self and not other.transport.is_closing():
                other.transport.close()
                return True
        return False


def protocol_class(limits: ServerLimits) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass enforcing ``limits``, with its own waiting list."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits, "waiting": {}})


def fit_connections_to_fd_limit(max_connections: int) -> int:
    """``max_connections``, lowered if the process may not open that many files.

    The soft ``RLIMIT_NOFILE`` is first raised towards the hard limit as far as the cap
    needs (as nginx's ``worker_rlimit_nofile`` does); a cap that still does not fit, with
    :data:`FD_RESERVE` descriptors to spare, is lowered with a warning. Past the limit,
    ``accept()`` fails and the server stops taking connections at all.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections
    fitted = max(1, soft - FD_RESERVE)
    logger.warning("[api] max_connections %d lowered to %d: the process may open %d files (ulimit -n)",
                   max_connections, fitted, soft)
    return fitted


def uvicorn_options(api: ApiConfig, *, fit_to_fd_limit: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` enforcing ``api``'s limits."""
    limits = ServerLimits.from_config(api)
    if fit_to_fd_limit:
        limits = dataclasses.replace(limits, max_connections=fit_connections_to_fd_limit(limits.max_connections))
    return {
        "http": protocol_class(limits),
        "timeout_keep_alive": api.keep_alive_timeout_s,
        "h11_max_incomplete_event_size": api.max_header_bytes,
        "backlog": min(2048, limits.max_connections),
    }


# -- log rate limiting ---------------------------------------------------------------------


class RepeatLimiter(logging.Filter):
    """Lets the first ``burst`` records of each message (logger, level and format string)
    through per ``interval_s``, holds back the rest, and logs how many it held back when
    the message comes again after the interval.

    Parameters:
        burst: records of one message let through per interval.
        interval_s: length of the interval.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, *, burst: int = 10, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.interval_s, self.clock = burst, interval_s, clock
        #: key -> [interval start, records seen in it]
        self._seen: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True for a record to emit."""
        if getattr(record, "nurture_summary", False):
            return True
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = self.clock()
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.interval_s:
            held = int(entry[1]) - self.burst if entry is not None else 0
            if len(self._seen) > 1000:  # a message per client address must not grow this forever
                self._seen.clear()
            self._seen[key] = [now, 1]
            if held > 0:
                logging.getLogger(record.name).log(
                    record.levelno, "%d more like the next were not logged in the last %g s", held,
                    self.interval_s, extra={"nurture_summary": True})
            return True
        entry[1] += 1
        return entry[1] <= self.burst


def install_log_limits(limiter: RepeatLimiter | None = None) -> RepeatLimiter:
    """Rate-limit the loggers of :data:`LIMITED_LOGGERS` (after uvicorn configured logging,
    whose dictConfig would otherwise drop the filters); returns the filter."""
    limiter = limiter or RepeatLimiter()
    for name in LIMITED_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, RepeatLimiter) for f in target.filters):
            target.addFilter(limiter)
    return limiter
