"""Provider access tokens shared by every worker process, refreshed by one at a time.

WeChat allows a limited number of token fetches a day, and a forced refresh invalidates
the token every other process holds, so all processes must share one cached token and
only one of them may refresh it. :class:`TokenCache` offers the two primitives that need:
a cached ``(value, expires_at)`` per key and a lease lock (``SET NX PX`` in Redis) that
expires by itself if its holder dies mid-refresh.

* :class:`MemoryTokenCache`: one process (stub broker, tests).
* :class:`RedisTokenCache`: every process using the same Redis and prefix.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from workers.channels.redisclient import is_redis_url, redis_client

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True)
class CachedToken:
    """An access token and when it expires (Unix time, seconds)."""

    value: str
    expires_at: float


@runtime_checkable
class TokenCache(Protocol):
    """Shared storage for access tokens plus a per-key refresh lock."""

    def get(self, key: str) -> CachedToken | None:
        """The cached token for ``key``, or None (missing or expired)."""
        ...

    def put(self, key: str, token: CachedToken) -> None:
        """Store ``token``; it disappears by itself when it expires."""
        ...

    def try_lock(self, key: str, ttl_s: float) -> str | None:
        """Take the refresh lock of ``key`` for at most ``ttl_s``: a lease id, or None if held."""
        ...

    def unlock(self, key: str, lease: str) -> None:
        """Release the lock if ``lease`` still holds it."""
        ...


class MemoryTokenCache:
    """An in-process token cache (thread-safe)."""

    def __init__(self) -> None:
        self._tokens: dict[str, CachedToken] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._mutex = threading.Lock()

    def get(self, key: str) -> CachedToken | None:
        """The cached token for ``key``, or None (missing or expired)."""
        with self._mutex:
            token = self._tokens.get(key)
        if token is None or token.expires_at <= time.time():
            return None
        return token

    def put(self, key: str, token: CachedToken) -> None:
        """Store ``token``."""
        with self._mutex:
            self._tokens[key] = token

    def try_lock(self, key: str, ttl_s: float) -> str | None:
        """Take the refresh lock of ``key``: a lease id, or None if another holder has it."""
        now = time.monotonic()
        with self._mutex:
            held = self._locks.get(key)
            if held is not None and held[1] > now:
                return None
            lease = uuid.uuid4().hex
            self._locks[key] = (lease, now + ttl_s)
            return lease

    def unlock(self, key: str, lease: str) -> None:
        """Release the lock if ``lease`` still holds it."""
        with self._mutex:
            held = self._locks.get(key)
            if held is not None and held[0] == lease:
                del self._locks[key]


#: Delete the lock only if we still hold it: after a lease expired, another process may own it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisTokenCache:
    """Tokens in Redis (``{prefix}:token:{key}``) with a ``SET NX PX`` refresh lock."""

    def __init__(self, *, client: redis.Redis | None = None, url: str | None = None, prefix: str = "nurture") -> None:
        client = redis_client(client=client, url=url, owner="RedisTokenCache")
        self.prefix = prefix
        self._client = client
        self._unlock = client.register_script(_UNLOCK)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:token:{key}"

    def _lock_key(self, key: str) -> str:
        return f"{self.prefix}:token-lock:{key}"

    def get(self, key: str) -> CachedToken | None:
        """The cached token for ``key``, or None (missing or expired)."""
        raw = self._client.get(self._key(key))
        if raw is None:
            return None
        data = json.loads(raw)
        token = CachedToken(value=data["value"], expires_at=float(data["expires_at"]))
        return token if token.expires_at > time.time() else None

    def put(self, key: str, token: CachedToken) -> None:
        """Store ``token``, expiring in Redis when the token does."""
        ttl_ms = int((token.expires_at - time.time()) * 1000)
        if ttl_ms <= 0:
            return
        payload = json.dumps({"value": token.value, "expires_at": token.expires_at})
        self._client.set(self._key(key), payload, px=ttl_ms)

    def try_lock(self, key: str, ttl_s: float) -> str | None:
        """Take the refresh lock of ``key``: a lease id, or None if another process has it."""
        lease = uuid.uuid4().hex
        if self._client.set(self._lock_key(key), lease, nx=True, px=max(int(ttl_s * 1000), 1)):
            return lease
        return None

    def unlock(self, key: str, lease: str) -> None:
        """Release the lock if ``lease`` still holds it."""
        self._unlock(keys=[self._lock_key(key)], args=[lease])


def make_token_cache(*, redis_url: str | None, prefix: str = "nurture") -> TokenCache:
    """A Redis cache when the broker is Redis (several processes), else an in-memory one."""
    if is_redis_url(redis_url):
        return RedisTokenCache(url=redis_url, prefix=prefix)
    return MemoryTokenCache()
