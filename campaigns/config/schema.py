"""``config.toml`` validated into typed, frozen models.

:func:`load_config` reports every problem at once, each with file, line and key path
(:class:`~campaigns.errors.ConfigError`). Secrets never appear in the file: a channel
names the environment variable that holds each one (``secret_env = "HOOK_SECRET"``).
Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from campaigns.config.options.sms import AliyunSmsConfig, TencentSmsConfig, TwilioConfig
from campaigns.config.options.smtp import SmtpChannelConfig
from campaigns.config.options.wechat import WeChatOAChannelConfig, WeComRobotChannelConfig
from campaigns.config.base import Duration, RecipientField, _Model
from campaigns.config.durations import MAX_DAYS
from campaigns.errors import ConfigError, ConfigIssue
from campaigns.config.jsonvalues import MAX_INTEGER, MIN_INTEGER
from campaigns.config.secretvalues import pasted_secret_issues
from campaigns.config.tomlguard import shape_problem
from campaigns.customers.timezones import zone_named
from campaigns.config.tomlpos import KeyLines

#: Environment variables that override the file, for operators and tests.
DATABASE_URL_ENV = "NURTURE_DATABASE_URL"
BROKER_URL_ENV = "NURTURE_BROKER_URL"

#: Bounds that keep configured numbers inside what the databases and date arithmetic take:
#: days beyond MAX_DAYS overflowed ``now - timedelta(days=N)``, integers beyond int64
#: overflowed SQLite's parameter binding; both stopped the scheduler mid-tick.
MAX_COUNT = 1_000_000_000
Int64 = Annotated[int, Field(ge=MIN_INTEGER, le=MAX_INTEGER)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class DatabaseConfig(_Model):
    """Where the data lives: SQLite by default, PostgreSQL in production."""

    url: str = "sqlite:///var/nurture.db"


class BrokerConfig(_Model):
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


class WorkerConfig(_Model):
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


class RateLimitConfig(_Model):
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


class SchedulerConfig(_Model):
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


_WINDOW = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")


def check_window(value: str | None, *, what: str = "send window") -> str | None:
    """``value`` if it is a local "HH:MM-HH:MM" window, else ValueError naming ``what``."""
    if value is not None and not _WINDOW.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: use local 'HH:MM-HH:MM', e.g. '09:00-21:00'")
    return value


def window_bounds(value: str | None) -> tuple[time, time] | None:
    """The (start, end) local times of an "HH:MM-HH:MM" window; end before start spans midnight."""
    if not value:
        return None
    start, end = value.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


class FrequencyCapsConfig(_Model):
    """Caps on marketing messages per customer across all campaigns, over rolling periods
    (transactional messages are exempt and do not count)."""

    enabled: bool = True
    #: At most this many marketing messages per customer per channel family (email, sms,
    #: wechat) in any 24 hours.
    per_channel_per_day: int = Field(default=1, ge=1, le=MAX_COUNT)
    #: At most this many marketing messages per customer across channels in any 7 days.
    per_week: int = Field(default=3, ge=1, le=MAX_COUNT)


class ComplianceConfig(_Model):
    """Rules the worker enforces on every marketing message, whatever the campaign says."""

    #: required: a marketing message needs consent recorded as granted on its channel
    #: family; unless_withdrawn: it is refused only where consent was withdrawn (for
    #: customers outside opt-in regimes; check what applies to you).
    consent: Literal["required", "unless_withdrawn"] = "required"
    #: No marketing between these local times (the customer's time zone); a message due
    #: then waits for the end, never dropped. "" switches quiet hours off.
    quiet_hours: str = "21:00-08:00"
    frequency: FrequencyCapsConfig = FrequencyCapsConfig()

    @field_validator("quiet_hours")
    @classmethod
    def _valid_quiet_hours(cls, value: str) -> str:
        return check_window(value, what="quiet hours") if value else value

    @property
    def marketing_window(self) -> tuple[time, time] | None:
        """The local (start, end) in which marketing may go out: the complement of quiet hours."""
        bounds = window_bounds(self.quiet_hours)
        return (bounds[1], bounds[0]) if bounds else None


class TemplatesConfig(_Model):
    """Where message templates live, and the budget of one render."""

    dir: Path = Path("templates")
    #: The most characters one render (one part of one message) may build in one value or
    #: write in all; a template over it fails that message permanently.
    max_output_chars: int = Field(default=1_000_000, ge=1, le=1_000_000_000)
    #: The most operations one render may take (loop iterations, look-ups, calls, filters,
    #: operators, writes, and one per 100 characters built).
    max_operations: int = Field(default=100_000, ge=1, le=1_000_000_000)


class OutboxChannelConfig(_Model):
    """Writes each rendered message to a file, like Django's file-based email backend."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["outbox"]
    dir: Path = Path("var/outbox")
    recipient: RecipientField = "email"
    #: The From header of written emails (``from`` in the file).
    sender: str = Field(default="nurture <nurture@localhost>", alias="from")


class WebhookChannelConfig(_Model):
    """POSTs a JSON body rendered from the template to ``url``, signed with HMAC-SHA256."""

    kind: Literal["webhook"]
    url: str
    #: Name of the environment variable that holds the signing secret.
    secret_env: str | None = None
    timeout: Duration = timedelta(seconds=10)
    recipient: RecipientField = "external_id"
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("webhook url must start with http:// or https://")
        return value


ChannelConfig = Annotated[
    OutboxChannelConfig
    | WebhookChannelConfig
    | AliyunSmsConfig
    | TencentSmsConfig
    | TwilioConfig
    | WeComRobotChannelConfig
    | WeChatOAChannelConfig
    | SmtpChannelConfig,
    Field(discriminator="kind"),
]


def check_cron(value: str, *, example: str = "0 10 * * *") -> str:
    """``value`` if it is a cron expression that fires, else ValueError saying why.

    ``croniter.is_valid`` accepts expressions that never fire (``0 0 31 2 *``: February
    has no 31st), on which the scheduler's croniter search fails every tick; a search
    bounded by croniter's 50 years finds that out here. A year field (7 fields) is
    refused: it makes "fires" depend on today's date.
    """
    if len(value.split()) > 6 or not croniter.is_valid(value):
        raise ValueError(f"invalid cron expression {value!r} (expected 5 fields, e.g. '{example}')")
    try:
        croniter(value, _CRON_PROBE).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):
        raise ValueError(f"cron expression {value!r} never fires (no such date in 50 years, "
                         f"e.g. the 31st of February); e.g. '{example}'") from None
    return value


_CRON_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


def check_timezone(value: str) -> str:
    """``value`` if it names an IANA time zone, else ValueError saying so."""
    if zone_named(value) is None:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Asia/Shanghai')")
    return value


class CronTrigger(_Model):
    """Run on a cron schedule, evaluated in the campaign's time zone."""

    cron: str

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return check_cron(value)


#: A lifecycle stage name.
Stage = Literal["prospect", "new", "active", "at_risk", "churned"]
#: Lifecycle stages, in the order they are evaluated.
STAGES: tuple[str, ...] = get_args(Stage)


class StageEnteredTrigger(_Model):
    """Fire once per customer entry into a lifecycle stage (from profile recomputes)."""

    stage_entered: Stage


class SegmentEnteredTrigger(_Model):
    """Fire once per customer entry into an RFM segment (from profile recomputes)."""

    segment_entered: str


class EventTrigger(_Model):
    """Fire once per recorded event of this name (``nurture track``, ``POST /events``,
    event imports); the first step goes out within seconds of the event being received."""

    event: str = Field(max_length=64)

    @field_validator("event")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("event name must not be empty, e.g. { event = \"signup\" }")
        return value


_TRIGGER_KEYS = ("cron", "stage_entered", "segment_entered", "event", "manual", "date")


class DateTrigger(_Model):
    """Fire on a date held by the customer: ``attributes.NAME`` (``YYYY-MM-DD``) or
    ``first_order`` (its anniversary), ``days_before`` it, at ``at`` in the customer's
    local time (the campaign's when the customer has none); ``annual`` compares month and
    day only (birthdays, anniversaries)."""

    date: str
    days_before: int = Field(default=0, ge=0, le=366)
    annual: bool = False
    at: str = "09:00"

    @field_validator("date")
    @classmethod
    def _known_date(cls, value: str) -> str:
        if value != "first_order" and not re.fullmatch(r"attributes\.[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(f"date must be 'attributes.NAME' or 'first_order', not {value!r}")
        return value

    @field_validator("at")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"invalid time {value!r}: use local 'HH:MM', e.g. '09:00'")
        return value


class ManualTrigger(_Model):
    """Only ``nurture run CAMPAIGN`` starts it: a one-off broadcast."""

    manual: Literal[True]


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in _TRIGGER_KEYS:
            if key in value:
                return key
        return None
    if isinstance(value, BaseModel):
        return next(k for k in _TRIGGER_KEYS if hasattr(value, k))
    return None


Trigger = Annotated[
    Annotated[CronTrigger, Tag("cron")]
    | Annotated[StageEnteredTrigger, Tag("stage_entered")]
    | Annotated[SegmentEnteredTrigger, Tag("segment_entered")]
    | Annotated[EventTrigger, Tag("event")]
    | Annotated[ManualTrigger, Tag("manual")]
    | Annotated[DateTrigger, Tag("date")],
    Discriminator(
        _trigger_kind,
        custom_error_type="trigger_kind",
        custom_error_message="trigger must be one of { cron = \"0 10 * * *\" }, "
        "{ stage_entered = \"at_risk\" }, { segment_entered = \"cant_lose\" }, { event = \"signup\" } "
        "{ date = \"attributes.birthday\", annual = true } or { manual = true }",
    ),
]


class LifecycleConfig(_Model):
    """Thresholds of the lifecycle stages, in days (see docs/segments.md).

    prospect: no order yet; new: first order within ``new_within``; active: last order
    within ``at_risk_after``; at_risk: last order ``at_risk_after`` to ``churned_after``
    days ago; churned: longer.
    """

    new_within: int = Field(default=30, ge=0, le=MAX_DAYS)
    at_risk_after: int = Field(default=90, ge=1, le=MAX_DAYS)
    churned_after: int = Field(default=180, ge=1, le=MAX_DAYS)

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleConfig:
        if self.churned_after <= self.at_risk_after:
            raise ValueError("churned_after must be greater than at_risk_after")
        return self


ScoreRange = Annotated[tuple[int, int], BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)]


class RfmRule(_Model):
    """One row of the RFM segment table: a name and inclusive score ranges."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    r: ScoreRange = (1, 5)
    f: ScoreRange = (1, 5)
    m: ScoreRange = (1, 5)

    @field_validator("r", "f", "m")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not (1 <= low <= high <= 5):
            raise ValueError(f"score range must be [low, high] within 1..5, got {list(value)}")
        return value


#: The default RFM table, evaluated top to bottom (first match wins). Designed so every
#: one of the 125 score combinations gets exactly one label and every label is reachable;
#: docs/segments.md shows the grid.
DEFAULT_RFM_RULES = (
    RfmRule(name="champions", r=(4, 5), f=(4, 5), m=(4, 5)),
    RfmRule(name="loyal", r=(3, 5), f=(4, 5)),
    RfmRule(name="cant_lose", r=(1, 1), f=(4, 5)),
    RfmRule(name="at_risk", r=(1, 2), f=(3, 5)),
    RfmRule(name="potential_loyalist", r=(4, 5), f=(2, 3)),
    RfmRule(name="new", r=(5, 5), f=(1, 1)),
    RfmRule(name="promising", r=(4, 4), f=(1, 1)),
    RfmRule(name="need_attention", r=(3, 3), f=(2, 3)),
    RfmRule(name="about_to_sleep", r=(3, 3), f=(1, 1)),
    RfmRule(name="hibernating", r=(2, 2), f=(1, 2)),
    RfmRule(name="lost", r=(1, 1), f=(1, 2)),
)


class RfmConfig(_Model):
    """RFM scoring: the segment table (override it whole with ``[[rfm.segments]]``)."""

    segments: tuple[RfmRule, ...] = DEFAULT_RFM_RULES

    @property
    def names(self) -> list[str]:
        """Segment names in evaluation order."""
        return [rule.name for rule in self.segments]


class ProfilesConfig(_Model):
    """When the scheduler recomputes profiles (set ``cron = ""`` to only run it by hand)."""

    cron: str = "0 3 * * *"
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return check_cron(value, example="0 3 * * *") if value else value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        # The scheduler builds ZoneInfo(timezone) every tick: an unknown zone stopped it.
        return check_timezone(value)


def _attribute_key(value: str) -> str:
    # Keys become JSON paths ($."key") in SQL: a quote or backslash in one would break out
    # of the path; the expression language's attributes.NAME allows none either.
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", value):
        raise ValueError(f"attribute names may hold letters, digits, '_', '-' and '.' (at most 64), "
                         f"not {value[:40]!r}")
    return value


AttributeKey = Annotated[str, AfterValidator(_attribute_key)]


class AudienceConfig(_Model):
    """Who a campaign targets: filters combined with AND; an empty audience is everyone."""

    #: A named segment from ``[segments]``.
    segment: str | None = None
    #: An audience expression (docs/segments.md), e.g. ``'stage == "at_risk" and orders_count >= 2'``.
    where: str | None = None

    acquisition_channel: list[str] | None = None
    #: Customers with at least one order bought through one of these channels.
    purchase_channel: list[str] | None = None
    min_orders: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    max_orders: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    #: Last order more than N days ago (lapsing customers).
    last_order_more_than_days: int | None = Field(default=None, ge=0, le=MAX_DAYS)
    #: Last order within the past N days.
    last_order_within_days: int | None = Field(default=None, ge=0, le=MAX_DAYS)
    min_total_spent: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    #: Customer signed up (created) within the past N days.
    created_within_days: int | None = Field(default=None, ge=0, le=MAX_DAYS)
    #: Equality on free attributes, e.g. ``{ vip = true, city = "Shanghai" }``.
    attributes: dict[AttributeKey, str | Int64 | FiniteFloat | bool] = Field(default_factory=dict)


class VariantConfig(_Model):
    """One A/B variant of a step: its template and relative weight."""

    template: str
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)


class StepConfig(_Model):
    """One message of a campaign's series."""

    #: The step's template; or give ``variants`` for an A/B test.
    template: str | None = None
    delay: Duration = timedelta(0)
    #: An audience expression checked when the step is due: customers for whom it is
    #: false skip this step (e.g. ``'rfm_segment != "champions"'`` to spare them a coupon).
    when: str | None = None
    #: A/B variants, assigned deterministically by weight; the assignment is recorded.
    variants: list[VariantConfig] = Field(default_factory=list)
    #: Local send window "HH:MM-HH:MM" (customer's time zone, else the campaign's): a step
    #: due outside it waits for the next opening; never dropped.
    window: str | None = None

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str | None) -> str | None:
        return check_window(value)

    @property
    def window_bounds(self) -> tuple[time, time] | None:
        """The window's (start, end) local times; end before start spans midnight."""
        return window_bounds(self.window)

    @model_validator(mode="after")
    def _one_template(self) -> StepConfig:
        if (self.template is None) == (not self.variants):
            raise ValueError("give a step either template = \"...\" or [[campaigns.steps.variants]], not both")
        return self

    @property
    def templates(self) -> list[str]:
        """The templates this step can send (one, or one per variant)."""
        return [v.template for v in self.variants] if self.variants else [self.template or ""]


class GoalConfig(_Model):
    """What the campaign is for: reaching it ends the customer's series, and conversions
    within ``within`` of enrolment (treated vs holdout) measure the campaign."""

    #: ``order`` (any order) or the name of an event, e.g. ``review``.
    event: str = "order"
    within: Duration = timedelta(days=14)


class CampaignConfig(_Model):
    """A campaign: who (audience), when (trigger), what (steps) and how (channels)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    enabled: bool = True
    purpose: Literal["marketing", "transactional"] = "marketing"
    timezone: str = "UTC"
    trigger: Trigger
    audience: AudienceConfig = AudienceConfig()
    #: Preference order: each customer gets the first channel they have an address for.
    channels: list[str] = Field(min_length=1)
    #: never: a customer gets this campaign once; every_run: once per cron run, entry or
    #: event; with ``reentry_after`` too, only if not enrolled within that time.
    reentry: Literal["never", "every_run"] = "never"
    reentry_after: Duration | None = None
    #: Share of the audience held out (enrolled, never messaged) to measure lift.
    holdout: float = Field(default=0.0, ge=0, lt=1)
    goal: GoalConfig | None = None
    #: Local send window "HH:MM-HH:MM" for every step (a step's own ``window`` narrows
    #: it further); outside it a message waits for the next opening.
    window: str | None = None
    #: What a marketing message over the ``[compliance.frequency]`` caps does: wait until
    #: the cap allows it (defer) or give this step up (skip; the series goes on).
    when_capped: Literal["defer", "skip"] = "defer"
    steps: list[StepConfig] = Field(min_length=1)

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str | None) -> str | None:
        return check_window(value)

    @property
    def window_bounds(self) -> tuple[time, time] | None:
        """The campaign window's (start, end) local times, if it has one."""
        return window_bounds(self.window)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @property
    def zone(self) -> ZoneInfo:
        """The campaign's time zone."""
        return ZoneInfo(self.timezone)


class ApiConfig(_Model):
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


class SecurityConfig(_Model):
    """The per-installation secret (campaigns.config.keys): keys the VERP tag and Message-ID of
    each email, and the digests ``nurture forget`` keeps instead of addresses."""

    #: Environment variable holding the secret (at least 16 characters, the same on every
    #: machine of a deployment). While it is unset ``nurture forget`` and ``POST /bounces``
    #: refuse, and VERP senders are not used.
    secret_env: str = "NURTURE_SECRET"


class AppConfig(_Model):
    """The whole of ``config.toml``."""

    database: DatabaseConfig = DatabaseConfig()
    broker: BrokerConfig = BrokerConfig()
    worker: WorkerConfig = WorkerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    templates: TemplatesConfig = TemplatesConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    rfm: RfmConfig = RfmConfig()
    profiles: ProfilesConfig = ProfilesConfig()
    api: ApiConfig = ApiConfig()
    security: SecurityConfig = SecurityConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    #: Per-channel send rate limits, e.g. ``sms = { limit = 5000, per = "1s" }``.
    rate_limits: dict[str, RateLimitConfig] = Field(default_factory=dict)
    #: Named audience expressions, usable by campaigns and the CLI.
    segments: dict[str, str] = Field(default_factory=dict)
    campaigns: list[CampaignConfig] = Field(default_factory=list)
    #: The file this was loaded from (not a TOML key).
    source: Path | None = Field(default=None, exclude=True)

    def campaign(self, name: str) -> CampaignConfig:
        """The campaign called ``name``; KeyError if there is none."""
        for campaign in self.campaigns:
            if campaign.name == name:
                return campaign
        raise KeyError(name)


def _format_loc(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _clean_loc(raw: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Turn a pydantic error location into the key path as written in the file.

    Pydantic adds entries that are not keys (the tag of a discriminated union, validator
    names); they are dropped. A missing or unknown key ends the path: it is what to fix.
    """
    path: list[str | int] = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and part != node.get("kind"):
            path.append(part)
            break
    return tuple(path)


#: Key names that look like an inline secret; the error says where secrets belong.
_SECRET_WORDS = ("secret", "password", "token", "api_key", "apikey", "access_key", "auth")


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1]) if error.get("loc") else ""
        if any(word in key.lower() for word in _SECRET_WORDS) and not key.endswith("_env"):
            return ("unknown key; secrets are never written in the file: put it in an environment "
                    f"variable and name that variable with {key}_env")
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _reference_issues(raw: dict[str, Any], base: Path) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross-key checks that pydantic cannot express per field; run on the raw data so they
    are reported even when other keys failed validation."""
    from campaigns.audience.segments import validate_segments  # imports this module

    yield from validate_segments(raw)
    yield from pasted_secret_issues(raw)
    channels = raw.get("channels") if isinstance(raw.get("channels"), dict) else {}
    templates = raw.get("templates") if isinstance(raw.get("templates"), dict) else {}
    template_dir = base / str(templates.get("dir", "templates"))
    limits = raw.get("rate_limits") if isinstance(raw.get("rate_limits"), dict) else {}
    for name in limits:
        if name not in channels:
            yield ("rate_limits", name), f"rate limit for unknown channel {name!r}"
    seen: dict[str, int] = {}
    campaigns = raw.get("campaigns") if isinstance(raw.get("campaigns"), list) else []
    for index, campaign in enumerate(campaigns):
        if not isinstance(campaign, dict):
            continue
        name = campaign.get("name")
        if isinstance(name, str):
            if name in seen:
                yield ("campaigns", index, "name"), f"duplicate campaign name {name!r} (first defined as campaigns[{seen[name]}])"
            else:
                seen[name] = index
        for position, channel in enumerate(campaign.get("channels") or []):
            if isinstance(channel, str) and channel not in channels:
                known = ", ".join(sorted(channels)) or "none defined"
                yield ("campaigns", index, "channels", position), f"unknown channel {channel!r} (defined: {known})"
            elif isinstance(channel, str) and _smtp_without_unsubscribe(channels.get(channel)) and (
                campaign.get("purpose", "marketing") == "marketing"
            ):
                yield (("campaigns", index, "channels", position),
                       f"channel {channel!r} has no unsubscribe_url: marketing email must carry a one-click "
                       "unsubscribe (RFC 8058); set unsubscribe_url and unsubscribe_secret_env on the channel")
            elif isinstance(channel, str) and _refuses_marketing_raw(channels.get(channel)) and (
                campaign.get("purpose", "marketing") == "marketing"
            ):
                yield (("campaigns", index, "channels", position),
                       f"channel {channel!r} sends WeChat template/subscribe messages, which are for service "
                       "notices only: a marketing campaign cannot use it (set purpose = \"transactional\" "
                       "for a service notice)")
        for step_index, step in enumerate(campaign.get("steps") or []):
            if not isinstance(step, dict):
                continue
            from campaigns.sending.rendering import template_parts

            named: list[tuple[tuple[str | int, ...], Any]] = [
                (("campaigns", index, "steps", step_index, "template"), step.get("template"))
            ]
            variants = step.get("variants") if isinstance(step.get("variants"), list) else []
            named += [
                (("campaigns", index, "steps", step_index, "variants", v, "template"), variant.get("template"))
                for v, variant in enumerate(variants) if isinstance(variant, dict)
            ]
            for key, template in named:
                if isinstance(template, str) and not template_parts(template_dir, template):
                    yield (
                        key,
                        f"template {template!r} not found: expected files such as "
                        f"{template_dir / template}.txt.j2 or .json.j2",
                    )


def _smtp_without_unsubscribe(channel: Any) -> bool:
    return isinstance(channel, dict) and channel.get("kind") == "smtp" and not channel.get("unsubscribe_url")


def _refuses_marketing_raw(channel: Any) -> bool:
    """:func:`campaigns.config.options.wechat.refuses_marketing` on the raw TOML table."""
    return (
        isinstance(channel, dict)
        and channel.get("kind") == "wechat_oa"
        and channel.get("message_type", "template") in ("template", "subscribe")
    )


def _secret_warnings(config: AppConfig) -> list[str]:
    warnings = []
    for name, channel in config.channels.items():
        for key, value in channel.model_dump(by_alias=False).items():
            if key == "secret_env" and isinstance(channel, WebhookChannelConfig):
                continue  # an error in nurture check (campaigns.project.check): webhooks are never sent unsigned
            if key.endswith("_env") and isinstance(value, str) and value and not os.environ.get(value):
                warnings.append(f"channels.{name}.{key}: environment variable {value} is not set")
    from campaigns.config.keys import MIN_SECRET_LENGTH, installation_secret  # imports this module

    # The same test the code that needs the secret applies, so the warning cannot disagree.
    if installation_secret(config) is None:
        secret_env = config.security.secret_env
        problem = f"shorter than {MIN_SECRET_LENGTH} characters" if read_secret(secret_env) else "not set"
        warnings.append(f"security.secret_env: environment variable {secret_env} is {problem}: nurture forget "
                        "and POST /bounces refuse, and VERP senders are not used, until it is")
    return warnings


def parse_config(text: str, *, file: str = "config.toml", base: Path | None = None) -> AppConfig:
    """Validate TOML ``text``; raises :class:`ConfigError` listing every problem."""
    base = base or Path(".")
    # Bounded work first: tomllib is quadratic in a dotted key's parts and recursive in nesting.
    shape = shape_problem(text)
    if shape is not None:
        raise ConfigError([ConfigIssue(file, shape[0], "", shape[1])])
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        if line is None:
            # Before Python 3.14 the position is only in the message: "... (at line 3, column 7)".
            match = re.search(r"at line (\d+)", str(exc))
            line = int(match.group(1)) if match else None
        raise ConfigError([ConfigIssue(file, line, "", f"TOML syntax error: {exc}")]) from None

    lines = KeyLines(text)
    found: list[tuple[tuple[str | int, ...], str]] = []
    config: AppConfig | None = None
    try:
        config = AppConfig.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            found.append((_clean_loc(raw, tuple(error["loc"])), _message(error)))
    found.extend(_reference_issues(raw, base))
    if found:
        issues = sorted(
            {ConfigIssue(file, lines.line_of(loc), _format_loc(loc), message) for loc, message in found},
            key=lambda issue: (issue.line or 0, issue.key_path, issue.message),
        )
        raise ConfigError(issues)
    assert config is not None
    return _resolve_paths(config, base)


def _resolve_paths(config: AppConfig, base: Path) -> AppConfig:
    channels = {
        name: channel.model_copy(update={"dir": base / channel.dir})
        if isinstance(channel, OutboxChannelConfig) and not channel.dir.is_absolute()
        else channel
        for name, channel in config.channels.items()
    }
    templates = config.templates
    if not templates.dir.is_absolute():
        templates = templates.model_copy(update={"dir": base / templates.dir})
    database = config.database
    # A relative SQLite path in the file is relative to the file; in the environment, to
    # the working directory, as a shell user would expect.
    url = os.environ.get(DATABASE_URL_ENV) or database.url
    url_base = Path.cwd() if os.environ.get(DATABASE_URL_ENV) else base
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        url = "sqlite:///" + str(url_base / url[len("sqlite:///") :])
    broker = config.broker
    if os.environ.get(BROKER_URL_ENV):
        try:
            broker = BrokerConfig.model_validate({**broker.model_dump(), "url": os.environ[BROKER_URL_ENV]})
        except ValidationError as exc:
            raise ConfigError(
                [ConfigIssue(BROKER_URL_ENV, None, "", _message(e)) for e in exc.errors()]
            ) from None
    return config.model_copy(
        update={
            "channels": channels,
            "templates": templates,
            "database": database.model_copy(update={"url": url}),
            "broker": broker,
        }
    )


def load_config(path: str | os.PathLike[str]) -> AppConfig:
    """Read and validate the config file at ``path``.

    Raises:
        ConfigError: the file is missing, not TOML, or invalid; every issue is listed.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(file), None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(file), None, "", f"cannot read: {exc}")]) from None
    config = parse_config(text, file=str(file), base=file.resolve().parent)
    return config.model_copy(update={"source": file.resolve()})


def secret_warnings(config: AppConfig) -> list[str]:
    """Problems that do not stop loading but will stop a send (unset secret variables)."""
    return _secret_warnings(config)


def read_secret(env_name: str | None) -> str | None:
    """The value of the environment variable ``env_name`` (None when unnamed or unset)."""
    if not env_name:
        return None
    return os.environ.get(env_name) or None
