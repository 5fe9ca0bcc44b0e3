"""``[lifecycle]``, ``[rfm]`` and ``[profiles]``: how customer profiles are computed (the
stage thresholds, the RFM segment table, when the recompute runs)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from campaigns.config.base import StrictModel
from campaigns.config.durations import MAX_DAYS
from campaigns.config.values import check_cron, check_timezone
from campaigns.config.vocabulary import DEFAULT_RFM_RULES, RfmRule


class LifecycleConfig(StrictModel):
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


class RfmConfig(StrictModel):
    """RFM scoring: the segment table (override it whole with ``[[rfm.segments]]``)."""

    segments: tuple[RfmRule, ...] = DEFAULT_RFM_RULES

    @property
    def names(self) -> list[str]:
        """Segment names in evaluation order."""
        return [rule.name for rule in self.segments]


class ProfilesConfig(StrictModel):
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
