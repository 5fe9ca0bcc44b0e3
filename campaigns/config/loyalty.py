"""``[loyalty]``: the points programme (how points are earned, how long each lot stays
valid and what it can be redeemed for), member tiers, and when the daily job runs.

The defaults are seed 004's rule set: 1 point per yuan paid (valid 1 year, redeemable for
goods, coupons and services), 10 per review (3 months; goods and coupons), 5 per share
(6 months; goods and coupons). See docs/loyalty.md.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from campaigns.config.base import Duration, StrictModel
from campaigns.config.values import MAX_COUNT, FiniteFloat, check_cron, check_timezone

#: What points can be spent on, unless ``[loyalty] kinds`` names others.
DEFAULT_KINDS: tuple[str, ...] = ("goods", "coupons", "services")
#: Calendar validity rules: the lot expires at the end of the period named, in the
#: customer's local time ("quarter_after": the end of the quarter after the one it was
#: earned in).
CalendarRule = Literal["month_end", "month_after", "quarter_end", "quarter_after", "year_end", "year_after"]

_VALIDITY = re.compile(r"(\d{1,4})\s*(y|mo|w|d)")
_MONTHS = {"y": 12, "mo": 1}


def check_validity(value: str) -> str:
    """``value`` if it is a validity: a duration in years, months, weeks or days (``"1y"``,
    ``"6mo"``, ``"90d"``, ``"1y6mo"``) or a calendar rule (``"quarter_after"``)."""
    compact = value.strip().replace(" ", "")
    if compact in CalendarRule.__args__:  # type: ignore[attr-defined]
        return compact
    if not compact or _VALIDITY.sub("", compact) != "":
        raise ValueError(
            f"invalid validity {value[:40]!r}: use a duration such as '1y', '6mo', '90d', or one of "
            + ", ".join(CalendarRule.__args__)  # type: ignore[attr-defined]
        )
    months, days = validity_parts(compact)
    if months > 1200 or days > 36_500:
        raise ValueError(f"validity {value[:40]!r} is longer than 100 years")
    return compact


def validity_parts(value: str) -> tuple[int, int]:
    """A duration validity as (months, days): ``"1y6mo"`` -> (18, 0), ``"2w"`` -> (0, 14)."""
    months = days = 0
    for amount, unit in _VALIDITY.findall(value):
        if unit in _MONTHS:
            months += int(amount) * _MONTHS[unit]
        else:
            days += int(amount) * (7 if unit == "w" else 1)
    return months, days


#: How long a lot of points stays redeemable (see :func:`check_validity`).
Validity = Annotated[str, AfterValidator(check_validity)]
#: A name marketers write (a tier, a kind, a rule): letters, digits, '_' and '-'.
_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"


class OrderEarnRule(StrictModel):
    """Points for a paid order: ``points_per_unit`` per currency unit paid."""

    points_per_unit: FiniteFloat = Field(default=1.0, ge=0, le=1_000_000)
    #: How fractional points are settled.
    rounding: Literal["floor", "round", "ceil"] = "floor"
    #: Orders paying less (after shipping, when excluded) earn nothing.
    minimum_amount: FiniteFloat = Field(default=0.0, ge=0)
    #: Shipping (the order's ``shipping`` column) earns nothing.
    exclude_shipping: bool = True
    #: Points per unit by purchase channel (``store = 2``), instead of ``points_per_unit``.
    channels: dict[str, Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]] = Field(default_factory=dict)
    valid_for: Validity = "1y"
    redeemable: tuple[str, ...] = DEFAULT_KINDS
    #: Order statuses whose points are taken back (a refund, a cancellation).
    reversed_by: tuple[str, ...] = ("refunded", "cancelled")


class EventEarnRule(StrictModel):
    """Points for an event (``[loyalty.events.review]``): a fixed amount per event."""

    points: int = Field(ge=1, le=MAX_COUNT)
    valid_for: Validity = "1y"
    redeemable: tuple[str, ...] = ("goods", "coupons")
    #: The most points this rule gives one customer in one local day / calendar month;
    #: an event beyond the cap earns what is left of it (or nothing).
    max_per_day: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    max_per_month: int | None = Field(default=None, ge=1, le=MAX_COUNT)


class TierConfig(StrictModel):
    """One member tier (``[[loyalty.tiers]]``), reached by ``minimum`` qualifying points
    (or spend, see ``[loyalty] tier_measure``) within the tier window."""

    name: str = Field(pattern=_NAME)
    minimum: FiniteFloat = Field(ge=0)
    #: Earned points are multiplied by this while in the tier (orders and events).
    multiplier: FiniteFloat = Field(default=1.0, gt=0, le=100)
    #: Privileges shown to templates as ``loyalty.tier_benefits`` (free text).
    benefits: tuple[str, ...] = ()


class ReferralConfig(StrictModel):
    """Referrals (``[loyalty.referrals]``): every customer's code and link, the sign-up
    event that carries a code, and the referrer's reward (docs/loyalty.md, Referrals)."""

    enabled: bool = True
    #: Points the referrer earns per referred customer (0: referrals tracked, not rewarded).
    reward_points: int = Field(default=100, ge=0, le=MAX_COUNT)
    #: When: at the referee's first paid order (taken back if it is refunded), or at sign-up.
    reward_on: Literal["first_paid_order", "signup"] = "first_paid_order"
    #: Welcome points for the referee, at sign-up (0: none).
    referee_points: int = Field(default=0, ge=0, le=MAX_COUNT)
    valid_for: Validity = "1y"
    redeemable: tuple[str, ...] = DEFAULT_KINDS
    #: The referral link, ``{code}`` standing for the code: ``"https://shop.example/r/{code}"``.
    link: str = ""
    #: The event a sign-up is, and its property holding the code (or a link ending in it).
    signup_event: str = Field(default="signup", min_length=1, max_length=64)
    code_property: str = Field(default="referral_code", min_length=1, max_length=64)
    #: Characters of a code before its check character.
    code_length: int = Field(default=8, ge=6, le=16)

    @field_validator("link")
    @classmethod
    def _link_has_code(cls, value: str) -> str:
        if not value:
            return value
        if not re.match(r"https?://[^\s/{}]+", value) or any(char.isspace() for char in value):
            raise ValueError(f"link {value[:60]!r}: an http:// or https:// address such as "
                             "'https://shop.example/r/{code}'")
        rest = value.replace("{code}", "", 1)
        if "{code}" not in value or "{" in rest or "}" in rest:
            raise ValueError(f"link {value[:60]!r}: put {{code}} once where the code goes, and no other braces")
        return value


def _default_events() -> dict[str, EventEarnRule]:
    return {
        "review": EventEarnRule(points=10, valid_for="3mo", redeemable=("goods", "coupons")),
        "share": EventEarnRule(points=5, valid_for="6mo", redeemable=("goods", "coupons")),
    }


def _default_tiers() -> tuple[TierConfig, ...]:
    return (
        TierConfig(name="member", minimum=0),
        TierConfig(name="silver", minimum=1000, multiplier=1.2, benefits=("free shipping",)),
        TierConfig(name="gold", minimum=5000, multiplier=1.5, benefits=("free shipping", "birthday gift")),
    )


def _known_kinds(where: str, kinds: tuple[str, ...], known: tuple[str, ...]) -> None:
    unknown = [kind for kind in kinds if kind not in known]
    if unknown:
        raise ValueError(f"{where}: unknown kind {unknown[0]!r} (kinds are {', '.join(known)})")


class LoyaltyConfig(StrictModel):
    """The points programme. Off unless ``enabled = true``."""

    enabled: bool = False
    #: When the daily job runs (earn, reverse refunds, expire, recompute tiers), in
    #: ``timezone``; ``""`` runs it only by hand (``nurture loyalty run``).
    cron: str = "30 2 * * *"
    #: The zone of the daily job, and of customers whose own zone is unknown.
    timezone: str = "Asia/Shanghai"
    #: Orders and events before this date earn nothing (a programme's launch day).
    earn_from: date | None = None
    #: What points are redeemable for.
    kinds: tuple[str, ...] = DEFAULT_KINDS
    orders: OrderEarnRule = OrderEarnRule()
    #: Points for events, by event name (review, share, signup, birthday ...).
    events: dict[str, EventEarnRule] = Field(default_factory=_default_events)
    #: A positive manual adjustment is a lot valid this long, redeemable for everything.
    adjustments_valid_for: Validity = "1y"
    #: A refund of points already spent: ``carry`` leaves a negative balance that later
    #: earnings settle; ``forgive`` takes back only what is left of the order's points.
    negative_balance: Literal["carry", "forgive"] = "carry"
    #: Tiers, lowest first; the first is the tier of every customer.
    tiers: tuple[TierConfig, ...] = Field(default_factory=_default_tiers, min_length=1)
    #: What qualifies for a tier: points earned, or spend on paid orders, in ``tier_window``.
    tier_measure: Literal["points", "spend"] = "points"
    tier_window: Validity = "12mo"
    #: A member who no longer qualifies keeps the tier this long before moving down.
    tier_grace: Duration = timedelta(days=30)
    #: Liability per outstanding point, in the currency (``report loyalty``).
    point_value: FiniteFloat = Field(default=0.01, ge=0)
    #: Referral codes and rewards (on with the programme unless ``enabled = false``).
    referrals: ReferralConfig = ReferralConfig()

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return check_cron(value, example="30 2 * * *") if value else value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("kinds")
    @classmethod
    def _kind_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for kind in value:
            if not re.fullmatch(_NAME, kind):
                raise ValueError(f"kind {kind[:40]!r}: use letters, digits, '_' or '-' (at most 32)")
        return value

    @field_validator("events")
    @classmethod
    def _event_names(cls, value: dict[str, EventEarnRule]) -> dict[str, EventEarnRule]:
        for name in value:
            if not name or len(name) > 64 or name != name.strip():
                raise ValueError(f"event name {name[:40]!r}: 1-64 characters, no surrounding spaces")
        return value

    @field_validator("orders")
    @classmethod
    def _order_kinds(cls, value: OrderEarnRule, info: ValidationInfo) -> OrderEarnRule:
        _known_kinds("redeemable", value.redeemable, info.data.get("kinds", DEFAULT_KINDS))
        return value

    @field_validator("events")
    @classmethod
    def _event_kinds(cls, value: dict[str, EventEarnRule], info: ValidationInfo) -> dict[str, EventEarnRule]:
        for name, rule in value.items():
            _known_kinds(f"{name}.redeemable", rule.redeemable, info.data.get("kinds", DEFAULT_KINDS))
        return value

    @field_validator("referrals")
    @classmethod
    def _referral_kinds(cls, value: ReferralConfig, info: ValidationInfo) -> ReferralConfig:
        _known_kinds("redeemable", value.redeemable, info.data.get("kinds", DEFAULT_KINDS))
        return value

    @field_validator("tier_window")
    @classmethod
    def _window_is_duration(cls, value: str) -> str:
        if value in CalendarRule.__args__:  # type: ignore[attr-defined]
            raise ValueError("tier_window must be a duration such as '12mo' or '365d', not a calendar rule")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LoyaltyConfig:
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tiers: two tiers share a name")
        minimums = [tier.minimum for tier in self.tiers]
        if minimums[0] != 0:
            raise ValueError(f"tiers: the first tier ({names[0]}) is everyone's, so its minimum must be 0")
        if any(later <= earlier for earlier, later in zip(minimums, minimums[1:], strict=False)):
            raise ValueError("tiers: list them lowest first, each minimum above the one before")
        return self

    def tier_rank(self, name: str | None) -> int:
        """0 for the first tier, 1 for the next ...; 0 for an unknown or missing name."""
        for rank, tier in enumerate(self.tiers):
            if tier.name == name:
                return rank
        return 0

    @property
    def lowest_tier(self) -> str:
        """The tier every customer starts in."""
        return self.tiers[0].name
