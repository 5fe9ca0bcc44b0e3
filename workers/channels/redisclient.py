"""The Redis client of the state channels share across worker processes (rate limits,
access tokens), opened from the broker's URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

#: URL schemes of a Redis broker; any other broker (``stub://``) means one process.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def is_redis_url(url: str | None) -> bool:
    """Whether ``url`` names a Redis server, so shared state should live there."""
    return url is not None and url.startswith(REDIS_SCHEMES)


def redis_client(*, client: redis.Redis | None, url: str | None, owner: str) -> redis.Redis:
    """``client``, else a new client for ``url``; ValueError naming ``owner`` (the class
    that needs it) when neither is given."""
    if client is not None:
        return client
    if url is None:
        raise ValueError(f"{owner} needs a client or a url")
    # Imported here: a stub-broker process (tests, the demo) never needs the redis package.
    import redis as redis_lib

    return redis_lib.Redis.from_url(url)
