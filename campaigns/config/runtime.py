"""How nurture runs: where the data and the broker are, how workers send and retry, the
scheduler loop, per-channel rate limits, the HTTP receiver (``[api]``) and the
per-installation secret (``[security]``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import Field, field_validator

from campaigns.config.base import Duration, StrictModel

#: Environment variables that override the file, for operators and tests.
DATABASE_URL_ENV = "NURTURE_DATABASE_URL"
BROKER_URL_ENV = "NURTURE_BROKER_URL"


class DatabaseConfig(StrictModel):
    """Where the data lives: SQLite by default, PostgreSQL in production."""

    url: str = "sqlite:///var/nurture.db"


class BrokerConfig(StrictModel):
    """The Dramatiq broker: ``stub://`` runs workers in-process, ``redis://`` distributes."""

    url: str = "stub://"
    #: Queue the delivery jobs go to.
    queue: str = "nurture"
    #: Deliveries carried by one job; retries re-enqueue only the failed ones.
    batch_size: int = Field(default=50, ge=1, le=1000)
    #: Redis key namespace (lets several deployments or tests share one server).
    namespace: str = "nurture"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not (value.startswith("stub://") or value.startswith(("redis://", "rediss://", "unix://"))):
            raise ValueError("broker.url must start with stub://, redis:// or rediss://")
        return value

    @property
    def in_process(self) -> bool:
        """Whether deliveries are worked in this process (``stub://``: Dramatiq's stub
        broker and in-process worker threads) rather than by ``nurture worker`` over Redis."""
        return self.url.startswith("stub://")


class WorkerConfig(StrictModel):
    """How workers send: concurrency, leases and retry policy."""

    processes: int = Field(default=1, ge=1, le=64)
    threads: int = Field(default=8, ge=1, le=256)
    #: Sends in flight per process: a job's rows go out concurrently on a pool this size,
    #: so slow providers do not serialize a batch (1 = one after another).
    send_concurrency: int = Field(default=32, ge=1, le=1024)
    #: How long a worker may hold a delivery in ``sending`` before it is taken back.
    lease: Duration = timedelta(minutes=5)
    #: Attempts per delivery before it is marked failed.
    max_attempts: int = Field(default=6, ge=1, le=50)
    #: Per-channel overrides of max_attempts, e.g. ``{ sms = 3 }`` (SMS resent late is
    #: worse than not at all).
    channel_max_attempts: dict[str, Annotated[int, Field(ge=1, le=50)]] = Field(default_factory=dict)
    #: Full-jitter exponential backoff: random(0, min(cap, base * 2**attempt)).
    backoff_base: Duration = timedelta(seconds=2)
    backoff_cap: Duration = timedelta(minutes=10)


class RateLimitConfig(StrictModel):
    """At most ``limit`` sends per ``per`` on one channel, across every worker process
    (Redis when the broker is Redis); a send over it is deferred, never dropped."""

    limit: int = Field(ge=1, le=1_000_000_000)
    per: Duration = timedelta(seconds=1)

    @field_validator("per")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        # A zero window cannot hold a limit: the limiter refused to start, mid-run.
        if value < timedelta(milliseconds=1):
            raise ValueError('per must be at least 1ms, e.g. per = "1s"')
        return value


class SchedulerConfig(StrictModel):
    """The scheduler loop."""

    interval: Duration = timedelta(seconds=30)
    #: A cron slot missed by more than this (scheduler down) is skipped, not sent late.
    max_lateness: Duration = timedelta(days=1)
    #: Stage/segment entries older than this when a tick first sees them do not fire (a
    #: daily recompute dates entries up to a day back, so keep it above a day).
    entry_window: Duration = timedelta(days=2)
    #: How long the leader scheduler's lock lasts without renewal (at least two intervals
    #: are used): a standby scheduler takes over this long after the leader dies.
    leader_lease: Duration = timedelta(seconds=60)


class ApiConfig(StrictModel):
    """The HTTP event receiver (``nurture serve``)."""

    #: Name of the environment variable holding the bearer key clients must send; while
    #: it is unset, ``POST /events`` refuses every request (503).
    key_env: str = "NURTURE_API_KEY"
    #: Environment variable holding the token unsigned provider pushes (Aliyun, Tencent)
    #: must carry as ``?token=`` in the callback URL configured at the provider.
    callback_token_env: str = "NURTURE_CALLBACK_TOKEN"
    #: Environment variable holding the secret that signs click and open tokens.
    link_secret_env: str = "NURTURE_LINK_SECRET"
    #: Environment variable holding the Token of the WeChat account's server configuration
    #: (signs the event pushes of every ``wechat_oa`` channel).
    wechat_token_env: str = "NURTURE_WECHAT_TOKEN"
    #: Environment variable holding the EncodingAESKey (43 characters) of the account's
    #: server configuration, for pushes in encrypted mode (安全模式 or 兼容模式).
    wechat_aes_key_env: str = "NURTURE_WECHAT_AES_KEY"
    #: Environment variable holding the password of the read-only dashboard
    #: (``/dashboard``, HTTP Basic, any user name); while it is unset the dashboard
    #: answers 503, so campaign figures are never served to anyone by default.
    dashboard_password_env: str = "NURTURE_DASHBOARD_PASSWORD"
    #: Public base URL of ``nurture serve`` (e.g. ``https://t.example.com``). With it and
    #: the link secret, HTML messages get click-tracking links and an open pixel.
    public_url: str | None = None
    #: Add the open pixel (clicks are tracked either way once ``public_url`` is set).
    track_opens: bool = True
    #: Seconds a client has, from connecting (or from the first byte of its next request
    #: on a kept-alive connection), to send a complete request head; then 408 and closed.
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    #: Seconds a client has, once its request head is in, to send the body.
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    #: Seconds an idle kept-alive connection stays open between requests.
    keep_alive_timeout_s: float = Field(default=5.0, gt=0, le=3600)
    #: Most open client connections per server process; at the cap a new connection
    #: displaces the one waiting longest for its request head (503 when none is waiting).
    #: Lowered at start to what the file-descriptor limit (ulimit -n) allows.
    max_connections: int = Field(default=4096, ge=16, le=1_000_000)
    #: Largest request head (request line and headers), in bytes; larger is a 400.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    #: Failed dashboard passwords allowed per client address within
    #: ``dashboard_lockout_s``; past them the dashboard answers 429 with Retry-After.
    dashboard_max_failures: int = Field(default=5, ge=1, le=1000)
    #: The window of ``dashboard_max_failures``, in seconds.
    dashboard_lockout_s: float = Field(default=300.0, gt=0, le=86400)

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
            raise ValueError(f"public_url must be an absolute http(s) URL, not {value!r}")
        return value.rstrip("/") if value else value


class SecurityConfig(StrictModel):
    """The per-installation secret (campaigns.config.keys): keys the VERP tag and Message-ID of
    each email, and the digests ``nurture forget`` keeps instead of addresses."""

    #: Environment variable holding the secret (at least 16 characters, the same on every
    #: machine of a deployment). While it is unset ``nurture forget`` and ``POST /bounces``
    #: refuse, and VERP senders are not used.
    secret_env: str = "NURTURE_SECRET"
