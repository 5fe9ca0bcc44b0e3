"""The HTTP plumbing every HTTP channel shares: one keep-alive client per worker thread,
a request whose transport failure becomes a retry, and ``Retry-After``.

Channels are called from several worker threads at once and an ``httpx.Client`` keeps its
connections per instance, so each thread gets its own client (connections stay warm
without locking), and :meth:`ThreadClients.close` closes every thread's client when the
channel closes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from campaigns.sending.messages import Outcome, SendResult


class ThreadClients:
    """One keep-alive ``httpx.Client`` per worker thread, all sharing ``timeout_s``,
    ``transport`` (tests pass a mock) and default ``headers`` (the User-Agent...)."""

    def __init__(self, *, timeout_s: float, headers: Mapping[str, str],
                 transport: httpx.BaseTransport | None = None) -> None:
        self._timeout_s = timeout_s
        self._headers = dict(headers)
        self._transport = transport
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        """The calling thread's client, created on its first call."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(timeout=self._timeout_s, transport=self._transport, headers=self._headers)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every thread's client."""
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()


def request_or_retry(client: httpx.Client, method: str, url: str,
                     **kwargs: Any) -> httpx.Response | SendResult:
    """The provider's answer to one request, or a RETRY result when none came.

    A timeout is ambiguous (the provider may have accepted): whoever retries should check
    the receipt first. ``kwargs`` go to :meth:`httpx.Client.request`.
    """
    try:
        return client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        return SendResult(Outcome.RETRY, error=f"timeout: {type(exc).__name__}", code="timeout")
    except httpx.TransportError as exc:
        return SendResult(Outcome.RETRY, error=f"network error: {type(exc).__name__}", code="network")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": an HTTP-date is GMT, never the machine's local time
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
