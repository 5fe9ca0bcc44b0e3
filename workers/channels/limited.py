"""A channel wrapper enforcing a provider account's rate limit across worker processes.

``[rate_limits] sms = { limit = 5000, per = "1s" }`` wraps the ``sms`` channel: each send
first takes a slot from a shared limiter; when none is free the message is deferred to
the moment one frees up (a ``defer`` outcome), so the provider never sees more than the
account allows and no worker thread sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from workers.channels.base import Channel
from workers.channels.ratelimit import RateLimiter


class RateLimitedChannel:
    """Wraps ``inner`` with ``limiter`` under ``key`` (one key per channel)."""

    def __init__(self, *, inner: Channel, limiter: RateLimiter, key: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.inner = inner
        self.name = inner.name
        self.limiter = limiter
        self.key = key
        self.clock = clock

    def send(self, message: OutboundMessage) -> SendResult:
        """Send if a slot is free, else defer to when one will be."""
        wait = self.limiter.acquire(self.key)
        if wait is not None:
            return SendResult(Outcome.DEFER, error=f"rate limit of channel {self.name!r} reached",
                              defer_until=self.clock() + timedelta(seconds=wait), code="rate_limited")
        return self.inner.send(message)

    def close(self) -> None:
        """Close the wrapped channel."""
        self.inner.close()
