"""Rate limits per provider account that hold across every worker process.

A limiter answers one question, "may I send now?", without sleeping: ``acquire(key)``
returns ``None`` when a slot was taken, else the seconds until one frees up. A channel
turns a refusal into a ``defer`` outcome, so no worker thread sits idle waiting.

Both implementations are sliding-window logs: at most ``limit`` acquisitions in any
``window_s`` seconds. Providers state their limits that way ("20 messages a minute per
robot"), and unlike a fixed window it never lets ``2 * limit`` through across a window
boundary.

* :class:`MemoryRateLimiter`: one process (stub broker, tests).
* :class:`RedisRateLimiter`: a Lua script over a sorted set, timed by the Redis server's
  clock, so processes on different hosts share one window without trusting their clocks.

Dramatiq's own ``WindowRateLimiter`` was the model, but it blocks or raises and cannot say
how long to wait, which is what ``defer`` needs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from workers.channels.redisclient import is_redis_url, redis_client

if TYPE_CHECKING:
    import redis


@runtime_checkable
class RateLimiter(Protocol):
    """Grants at most N acquisitions per window and per key."""

    def acquire(self, key: str) -> float | None:
        """Take a slot for ``key``: ``None`` if granted, else seconds until one frees up."""
        ...


class MemoryRateLimiter:
    """An in-process sliding-window limiter (thread-safe)."""

    def __init__(self, *, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._log: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float | None:
        """Take a slot for ``key``: ``None`` if granted, else seconds until one frees up."""
        with self._lock:
            now = self._clock()
            log = self._log.setdefault(key, deque())
            while log and log[0] <= now - self.window_s:
                log.popleft()
            if len(log) < self.limit:
                log.append(now)
                return None
            return max(log[0] + self.window_s - now, 0.001)


#: KEYS[1] = the key's sorted set; ARGV = limit, window in ms, a unique member suffix.
#: Returns -1 when granted, else the milliseconds until the oldest entry leaves the window.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(tonumber(oldest[2]) + window - now, 1)
"""


class RedisRateLimiter:
    """A sliding-window limiter shared by every process using the same Redis and prefix."""

    def __init__(
        self,
        *,
        limit: int,
        window_s: float,
        client: redis.Redis | None = None,
        url: str | None = None,
        prefix: str = "nurture",
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        client = redis_client(client=client, url=url, owner="RedisRateLimiter")
        self.limit = limit
        self.window_s = window_s
        self.prefix = prefix
        self._client = client
        self._script = client.register_script(_SLIDING_WINDOW)

    def acquire(self, key: str) -> float | None:
        """Take a slot for ``key``: ``None`` if granted, else seconds until one frees up."""
        wait_ms = int(
            self._script(
                keys=[f"{self.prefix}:ratelimit:{key}"],
                args=[self.limit, int(self.window_s * 1000), uuid.uuid4().hex],
            )
        )
        return None if wait_ms < 0 else wait_ms / 1000.0


def make_rate_limiter(*, redis_url: str | None, limit: int, window_s: float, prefix: str = "nurture") -> RateLimiter:
    """A Redis limiter when the broker is Redis (several processes), else an in-memory one."""
    if is_redis_url(redis_url):
        return RedisRateLimiter(limit=limit, window_s=window_s, url=redis_url, prefix=prefix)
    return MemoryRateLimiter(limit=limit, window_s=window_s)
