"""``trigger``: when a campaign fires (a cron schedule, a lifecycle stage, RFM segment or
member tier entered, an event, a date held by the customer, points about to expire, or by
hand)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator

from campaigns.config.base import Duration, StrictModel
from campaigns.config.values import check_cron
from campaigns.config.vocabulary import Stage


class CronTrigger(StrictModel):
    """Run on a cron schedule, evaluated in the campaign's time zone."""

    cron: str

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return check_cron(value)


class StageEnteredTrigger(StrictModel):
    """Fire once per customer entry into a lifecycle stage (from profile recomputes)."""

    stage_entered: Stage


class SegmentEnteredTrigger(StrictModel):
    """Fire once per customer entry into an RFM segment (from profile recomputes)."""

    segment_entered: str


class TierEnteredTrigger(StrictModel):
    """Fire once per customer entry into a member tier (``[[loyalty.tiers]]``), as the
    loyalty daily job's tier recompute records it; the name is checked against the tiers."""

    tier_entered: str = Field(min_length=1, max_length=32)


#: The longest lead time of an expiry reminder.
MAX_REMINDER_LEAD = timedelta(days=366)


class PointsExpiringTrigger(StrictModel):
    """The expiry reminder: fire once per lot of points (lots of one customer expiring at
    the same moment count as one) as it comes within this lead time of expiring, e.g.
    ``{ points_expiring = "30d" }``."""

    points_expiring: Duration

    @field_validator("points_expiring")
    @classmethod
    def _sensible_lead(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("points_expiring is how long before the points expire to remind, e.g. \"30d\": "
                             "it must be longer than zero")
        if value > MAX_REMINDER_LEAD:
            raise ValueError("points_expiring is at most 366 days ahead")
        return value


class EventTrigger(StrictModel):
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


class FeedbackTrigger(StrictModel):
    """Fire once per survey answer whose score falls in this band, e.g. a follow-up for
    detractors: ``{ feedback = "detractor" }`` (docs/feedback.md). Each answer enrols its
    customer once, whatever ``reentry`` says; the follow-up's first message sent marks a
    detractor answered."""

    feedback: Literal["detractor", "passive", "promoter"]


#: The key that tells each trigger apart, in the order they are looked for.
_TRIGGER_KEYS = ("cron", "stage_entered", "segment_entered", "tier_entered", "event", "manual", "date",
                 "points_expiring", "feedback")


class DateTrigger(StrictModel):
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


class ManualTrigger(StrictModel):
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


#: A campaign's ``trigger``: the model chosen by the one key it holds.
Trigger = Annotated[
    Annotated[CronTrigger, Tag("cron")]
    | Annotated[StageEnteredTrigger, Tag("stage_entered")]
    | Annotated[SegmentEnteredTrigger, Tag("segment_entered")]
    | Annotated[TierEnteredTrigger, Tag("tier_entered")]
    | Annotated[PointsExpiringTrigger, Tag("points_expiring")]
    | Annotated[EventTrigger, Tag("event")]
    | Annotated[ManualTrigger, Tag("manual")]
    | Annotated[DateTrigger, Tag("date")]
    | Annotated[FeedbackTrigger, Tag("feedback")],
    Discriminator(
        _trigger_kind,
        custom_error_type="trigger_kind",
        custom_error_message="trigger must be one of { cron = \"0 10 * * *\" }, "
        "{ stage_entered = \"at_risk\" }, { segment_entered = \"cant_lose\" }, { tier_entered = \"gold\" }, "
        "{ event = \"signup\" }, { date = \"attributes.birthday\", annual = true }, "
        "{ points_expiring = \"30d\" }, { feedback = \"detractor\" } or { manual = true }",
    ),
]
