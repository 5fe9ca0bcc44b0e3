"""The customers ``nurture check`` renders every template for: not one sample, but the
shapes real customer data comes in.

A template that works for a typical customer can still fail at send time for another:
``{{ stats.last_order_at.strftime("%d %B") }}`` for a customer with no orders (the value
is None), ``{{ customer.name.upper() }}`` for one without a name,
``{{ customer.phone[-4:] }}`` in an email to someone without a phone. Each archetype is the
typical customer with one such difference; check renders each template against every
archetype its campaign can reach, with the context the worker builds
(:func:`campaigns.sending.rendering.build_context`).

While ``[loyalty]`` is on, every archetype carries a member's points and tier
(``loyalty``), and two more archetypes are the typical customer with no points at all (so
``loyalty.expiring`` is None) and in the top tier (no ``loyalty.next_tier``); a
``tier_entered`` trigger puts them all in its tier, and a ``points_expiring`` trigger
leaves out the one with nothing expiring, which it never reaches.

Reach is judged from what the config states without a database: the campaign's channels
(an archetype with no address on any of them gets nothing) and its structured audience
(``min_orders = 1`` rules out "no orders"; an ``attributes`` filter rules out "no
attributes" and gives the others the attribute values it asks for). Audience expressions
(``where``, a ``segment``, a step's ``when``) and stage or segment triggers may rule out
more, which only a database could tell: :func:`narrowed_by` names them, and check then
reports such a failure as a warning rather than an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from campaigns.config.triggers import PointsExpiringTrigger
from campaigns.customers.loyalty.balances import Expiring, Standing

if TYPE_CHECKING:
    from campaigns.config.campaigns import CampaignConfig, StepConfig
    from campaigns.config.schema import AppConfig


@dataclass(frozen=True)
class Archetype:
    """One kind of customer: its name as check reports it ("no orders": "a customer with no
    orders"; :data:`TYPICAL`: "a typical customer") and the customer
    and order facts a delivery of it carries (the shape :func:`campaigns.sending.ledger.claim`
    loads)."""

    name: str
    customer: dict[str, Any] = field(hash=False)
    stats: dict[str, Any] = field(hash=False)
    #: The ``loyalty`` template variable (None while the programme is off).
    loyalty: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def described(self) -> str:
        """The archetype in a sentence: "a typical customer", "a customer with no orders"."""
        return "a typical customer" if self.name == TYPICAL else f"a customer with {self.name}"


#: Name of the typical customer's archetype.
TYPICAL = "typical"
#: The typical customer: every field set, a few orders, a couple of free attributes.
TYPICAL_CUSTOMER: dict[str, Any] = {
    "id": 0,
    "external_id": "C-SAMPLE",
    "name": "Li Wei",
    "email": "li.wei@example.com",
    "phone": "+8613800000000",
    "wechat_openid": "o-sample",
    "timezone": "Asia/Shanghai",
    "locale": "zh-CN",
    "acquisition_channel": "ecommerce",
    "created_at": datetime(2024, 3, 1, tzinfo=UTC),
    "attributes": {"city": "Hangzhou", "vip": True},
}
#: The typical customer's order facts.
TYPICAL_STATS: dict[str, Any] = {"orders_count": 3, "total_spent": 456.0,
                                 "last_order_at": datetime(2025, 6, 1, tzinfo=UTC)}
#: Order facts of a customer who never bought (as the ledger loads them: None, not absent).
NO_ORDERS: dict[str, Any] = {"orders_count": 0, "total_spent": 0.0, "last_order_at": None}


def _customer(**changes: Any) -> dict[str, Any]:
    return {**TYPICAL_CUSTOMER, **changes}


#: Every archetype, the typical customer first.
ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(TYPICAL, _customer(), TYPICAL_STATS),
    Archetype("no orders", _customer(), NO_ORDERS),
    Archetype("one order", _customer(), {"orders_count": 1, "total_spent": 35.0,
                                         "last_order_at": datetime(2025, 11, 20, 14, 5, tzinfo=UTC)}),
    Archetype("many orders", _customer(), {"orders_count": 1250, "total_spent": 987654.5,
                                           "last_order_at": datetime(2025, 11, 30, 9, 0, tzinfo=UTC)}),
    Archetype("no name", _customer(name=None), TYPICAL_STATS),
    Archetype("no attributes", _customer(attributes={}, timezone=None, locale=None, acquisition_channel=None),
              TYPICAL_STATS),
    Archetype("no email", _customer(email=None), TYPICAL_STATS),
    Archetype("no phone", _customer(phone=None), TYPICAL_STATS),
    Archetype("no WeChat", _customer(wechat_openid=None), TYPICAL_STATS),
)


def reachable(config: AppConfig, campaign: CampaignConfig) -> list[Archetype]:
    """The archetypes ``campaign`` can send to, adapted to its structured audience (an
    ``attributes`` or ``acquisition_channel`` filter's values filled in, ``min_total_spent``
    met): those with an address on one of its channels and not ruled out by the audience."""
    found = [adapted for archetype in ARCHETYPES
             if (adapted := _adapted(archetype, campaign)) is not None and _has_address(config, campaign, adapted)]
    if not config.loyalty.enabled:
        return found
    samples = loyalty_samples(config, campaign)
    found = [replace(archetype, loyalty=samples[0][1]) for archetype in found]
    typical = next((archetype for archetype in found if archetype.name == TYPICAL), None)
    if typical is not None:
        found += [replace(typical, name=name, loyalty=sample) for name, sample in samples[1:]]
    return found


#: When the typical member's next points expire (a sample: check has no database).
SAMPLE_EXPIRY = datetime(2025, 12, 31, 16, 0, tzinfo=UTC)


def loyalty_samples(config: AppConfig, campaign: CampaignConfig) -> list[tuple[str, dict[str, Any]]]:
    """The ``loyalty`` variables check renders with, named as archetypes, the typical
    member's first: 1,280 points of which 120 expire soon, in the second tier (or the one
    a ``tier_entered`` trigger names) halfway to the next; "no points" (nothing expiring,
    unless the campaign reminds of expiring points); "the top tier" (no next tier)."""
    loyalty = config.loyalty
    tiers = loyalty.tiers
    entered = getattr(campaign.trigger, "tier_entered", None)
    reminder = isinstance(campaign.trigger, PointsExpiringTrigger)

    def sample(rank: int, balance: int, *, expiring: bool) -> dict[str, Any]:
        tier = tiers[rank]
        above = tiers[rank + 1] if rank + 1 < len(tiers) else None
        return Standing(
            balance=balance, by_kind=dict.fromkeys(loyalty.kinds, balance),
            expiring=Expiring(points=min(120, balance), last_day=date(2025, 12, 31), expires_at=SAMPLE_EXPIRY)
            if expiring else None,
            tier=tier.name, next_tier=above.name if above else None,
            to_next_tier=round((above.minimum - tier.minimum) / 2, 2) if above else None,
            tier_benefits=tier.benefits,
        ).as_context()

    rank = loyalty.tier_rank(entered) if entered else min(1, len(tiers) - 1)
    samples = [(TYPICAL, sample(rank, 1280, expiring=True))]
    if not reminder:
        samples.append(("no points", sample(rank if entered else 0, 0, expiring=False)))
    top = len(tiers) - 1
    if not entered and top != rank:
        samples.append((f"the top tier ({tiers[top].name})", sample(top, 8600, expiring=True)))
    return samples


def narrowed_by(campaign: CampaignConfig, step: StepConfig) -> list[str]:
    """What, beyond the structured audience, may keep an archetype from this step (which
    check cannot evaluate): the audience's segment and expression, the step's condition,
    a stage or segment trigger."""
    audience = campaign.audience
    found = []
    if audience.segment:
        found.append(f"segment {audience.segment!r}")
    if audience.where:
        found.append(f"where {audience.where!r}")
    if step.when:
        found.append(f"when {step.when!r}")
    for kind in ("stage_entered", "segment_entered", "tier_entered"):
        value = getattr(campaign.trigger, kind, None)
        if value:
            found.append(f"trigger {kind} {value!r}")
    return found


def _has_address(config: AppConfig, campaign: CampaignConfig, archetype: Archetype) -> bool:
    recipients = [config.channels[name].recipient for name in campaign.channels if name in config.channels]
    return any(archetype.customer.get(recipient) for recipient in recipients)


def _adapted(archetype: Archetype, campaign: CampaignConfig) -> Archetype | None:
    """``archetype`` as the campaign's structured audience would select it, or None when
    that audience rules it out."""
    audience = campaign.audience
    orders = archetype.stats["orders_count"]
    needs_an_order = bool(audience.last_order_more_than_days is not None or audience.last_order_within_days is not None
                          or audience.purchase_channel or audience.min_total_spent)
    if orders < (audience.min_orders or 0) or (audience.max_orders is not None and orders > audience.max_orders):
        return None
    if orders == 0 and needs_an_order:
        return None
    customer, stats = dict(archetype.customer), dict(archetype.stats)
    if audience.attributes:
        if not customer["attributes"]:
            return None
        customer["attributes"] = {**customer["attributes"], **audience.attributes}
    if audience.acquisition_channel and customer["acquisition_channel"] not in audience.acquisition_channel:
        if customer["acquisition_channel"] is None:
            return None
        customer["acquisition_channel"] = audience.acquisition_channel[0]
    if audience.min_total_spent:
        stats["total_spent"] = max(stats["total_spent"], audience.min_total_spent)
    return replace(archetype, customer=customer, stats=stats)
