"""``[compliance]``: the rules every marketing message obeys whatever its campaign says
(consent, quiet hours, frequency caps)."""

from __future__ import annotations

from datetime import time
from typing import Literal

from pydantic import Field, field_validator

from campaigns.config.base import StrictModel
from campaigns.config.values import MAX_COUNT, check_window, window_bounds


class FrequencyCapsConfig(StrictModel):
    """Caps on marketing messages per customer across all campaigns, over rolling periods
    (transactional messages are exempt and do not count)."""

    enabled: bool = True
    #: At most this many marketing messages per customer per channel family (email, sms,
    #: wechat) in any 24 hours.
    per_channel_per_day: int = Field(default=1, ge=1, le=MAX_COUNT)
    #: At most this many marketing messages per customer across channels in any 7 days.
    per_week: int = Field(default=3, ge=1, le=MAX_COUNT)


class ComplianceConfig(StrictModel):
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
