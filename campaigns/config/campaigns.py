"""``[[campaigns]]``: who a campaign targets, what it sends (steps, A/B variants, the
templates and their render budget), its goal and its windows; triggers are in
:mod:`campaigns.config.triggers`."""

from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, Field, field_validator, model_validator

from campaigns.config.base import Duration, StrictModel
from campaigns.config.coupons import CouponConfig
from campaigns.config.durations import MAX_DAYS
from campaigns.config.feedback import Question
from campaigns.config.triggers import Trigger
from campaigns.config.values import (
    MAX_COUNT,
    FiniteFloat,
    Int64,
    Window,
    check_timezone,
    window_bounds,
)


#: The most products one ``recommendations(n=...)`` call can show, and the most a step's
#: ``min_recommendations`` can ask for.
MAX_RECOMMENDATIONS = 50


class TemplatesConfig(StrictModel):
    """Where message templates live, and the budget of one render."""

    dir: Path = Path("templates")
    #: The most characters one render (one part of one message) may build in one value or
    #: write in all; a template over it fails that message permanently.
    max_output_chars: int = Field(default=1_000_000, ge=1, le=1_000_000_000)
    #: The most operations one render may take (loop iterations, look-ups, calls, filters,
    #: operators, writes, and one per 100 characters built).
    max_operations: int = Field(default=100_000, ge=1, le=1_000_000_000)


def _attribute_key(value: str) -> str:
    # Keys become JSON paths ($."key") in SQL: a quote or backslash in one would break out
    # of the path; the expression language's attributes.NAME allows none either.
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", value):
        raise ValueError(f"attribute names may hold letters, digits, '_', '-' and '.' (at most 64), "
                         f"not {value[:40]!r}")
    return value


#: The name of a free customer attribute, as audiences may compare it.
AttributeKey = Annotated[str, AfterValidator(_attribute_key)]


class AudienceConfig(StrictModel):
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


class VariantConfig(StrictModel):
    """One A/B variant of a step: its template and relative weight."""

    template: str
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)


class StepConfig(StrictModel):
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
    window: Window = None
    #: The fewest recommended products (in stock) a customer must have for this step to
    #: be sent (docs/recommendations.md); a customer with fewer is skipped, saying so,
    #: rather than sent an empty ``recommendations()`` block. 0: no requirement.
    min_recommendations: int = Field(default=0, ge=0, le=MAX_RECOMMENDATIONS)
    #: The question this step asks (docs/feedback.md): ``nps`` (0-10) or ``csat`` (1-5).
    #: Its template gets ``survey`` (one signed link per score, the reply hint); replies
    #: and link clicks are recorded as the customer's score, once per message.
    survey: Question | None = None

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


class GoalConfig(StrictModel):
    """What the campaign is for: reaching it ends the customer's series, and conversions
    within ``within`` of enrolment (treated vs holdout) measure the campaign."""

    #: ``order`` (any order) or the name of an event, e.g. ``review``.
    event: str = "order"
    within: Duration = timedelta(days=14)
    #: The goal is the redemption of the coupon the campaign's message carried (the
    #: campaign needs a ``coupon``; docs/coupons.md), instead of ``event``.
    coupon_redeemed: bool = False

    @model_validator(mode="after")
    def _one_goal(self) -> GoalConfig:
        if self.coupon_redeemed and "event" in self.model_fields_set:
            raise ValueError("give the goal either event = \"...\" or coupon_redeemed = true, not both")
        return self

    @property
    def label(self) -> str:
        """What reaching the goal is, as reports name it: ``coupon redeemed`` or the event."""
        return "coupon redeemed" if self.coupon_redeemed else self.event


class CampaignConfig(StrictModel):
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
    #: A unique coupon code per message, ``{{ coupon.code }}`` in templates: drawn from an
    #: imported pool or generated (:mod:`campaigns.config.coupons`, docs/coupons.md).
    coupon: CouponConfig | None = None
    #: Local send window "HH:MM-HH:MM" for every step (a step's own ``window`` narrows
    #: it further); outside it a message waits for the next opening.
    window: Window = None
    #: What a marketing message over the ``[compliance.frequency]`` caps does: wait until
    #: the cap allows it (defer) or give this step up (skip; the series goes on).
    when_capped: Literal["defer", "skip"] = "defer"
    #: Which message a frequency cap keeps when several campaigns want the same slot of a
    #: customer: higher first (then the earlier due time). Transactional messages are never
    #: capped, so this orders marketing campaigns only.
    priority: int = Field(default=0, ge=-1000, le=1000)
    steps: list[StepConfig] = Field(min_length=1)

    @property
    def window_bounds(self) -> tuple[time, time] | None:
        """The campaign window's (start, end) local times, if it has one."""
        return window_bounds(self.window)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _coupon_goal_has_coupons(self) -> CampaignConfig:
        if self.goal is not None and self.goal.coupon_redeemed and self.coupon is None:
            raise ValueError("goal.coupon_redeemed needs the campaign's coupon: add coupon = { pool = \"NAME\" } "
                             "or { generate = \"PREFIX\" }")
        beyond = [step for step in (self.coupon.steps or []) if step >= len(self.steps)] if self.coupon else []
        if beyond:
            raise ValueError(f"coupon.steps names step {beyond[0]}, but the campaign has {len(self.steps)} "
                             "step(s), numbered from 0")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The campaign's time zone."""
        return ZoneInfo(self.timezone)
