"""``trigger``: when a campaign fires (a cron schedule, a lifecycle stage or RFM segment
entered, an event, a date held by the customer, or by hand)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator

from campaigns.config.base import StrictModel
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


#: The key that tells each trigger apart, in the order they are looked for.
_TRIGGER_KEYS = ("cron", "stage_entered", "segment_entered", "event", "manual", "date")


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
