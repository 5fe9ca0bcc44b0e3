"""What is re-checked when a message is due, after planning and before any provider call.

A series can run for days; in between the customer may buy (the campaign's goal),
withdraw consent or land on the suppression list, or stop matching a step's ``when``
condition. Each check is one query for the whole claimed batch.

* enrolment no longer active (goal reached or unsubscribed at an earlier step): skip;
* goal reached since enrolment (an order, the goal event, or the redemption of a coupon
  the campaign's messages carried): skip and end the series (``exited_goal``);
* consent for the channel's family withdrawn (marketing only): skip and end the series
  (``exited_unsubscribe``); with ``[compliance] consent = "required"`` (the default) a
  marketing message also needs consent recorded as granted, else it is skipped;
* address suppressed (any purpose: a hard bounce or an opt-out reply): skip;
* the step's ``when`` expression is false for the customer now: skip this step only;
* outside the campaign's or the step's send ``window``, or, for marketing, inside the
  quiet hours (all in the customer's local time): wait for the next opening, never drop;
* marketing over the frequency caps (per channel family per day, across channels per
  week; transactional messages neither count nor are capped): defer until the cap
  frees, or skip the step when the campaign says ``when_capped = "skip"``. Which
  message keeps a slot several want goes by rank (campaign ``priority``, then due
  time): :mod:`campaigns.sending.caps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from campaigns.audience.compiler import compile_expression
from campaigns.audience.language import expression_tiers
from campaigns.audience.parser import parse_expression
from campaigns.audience.segments import segment_expressions
from campaigns.config.campaigns import CampaignConfig
from campaigns.config.compliance import FrequencyCapsConfig
from campaigns.config.keys import installation_secret
from campaigns.config.schema import AppConfig
from campaigns.config.values import window_bounds
from campaigns.config.vocabulary import CHANNEL_FAMILY
from campaigns.customers.addresses import DIGEST_PREFIX, address_digests
from campaigns.customers.loyalty.coupons import coupon_redeemed
from campaigns.customers.timezones import customer_zone
from campaigns.sending.caps import Rank, Slot, batch_ranks, cap_reached, taken_slots
from campaigns.store.models import (
    Consent,
    Customer,
    CustomerProfile,
    Enrollment,
    Event,
    Order,
    Suppression,
)


@dataclass(frozen=True)
class Skip:
    """Why a due delivery is not sent now: skipped for good (and how its enrolment ends,
    None if it goes on), or, with ``defer_until``, sent later."""

    reason: str
    exit_state: str | None = None
    defer_until: datetime | None = None


def next_opening(now: datetime, zone: ZoneInfo, start: time, end: time) -> datetime | None:
    """None when ``now`` is inside the local window [start, end), else the next start (UTC).

    A window whose end is before its start spans midnight ("20:00-02:00").
    """
    local = now.astimezone(zone)
    moment = local.time()
    inside = start <= moment < end if start < end else (moment >= start or moment < end)
    if inside:
        return None
    day = local.date()
    opening = datetime.combine(day, start, tzinfo=zone)
    if opening <= local:
        opening = datetime.combine(day + timedelta(days=1), start, tzinfo=zone)
    return opening.astimezone(UTC)


def send_time_skips(conn: sa.Connection, config: AppConfig, deliveries: Sequence[object], *,
                    now: datetime) -> dict[int, Skip]:
    """Skips for the claimed ``deliveries`` (:class:`~campaigns.sending.ledger.ClaimedDelivery`)."""
    skips: dict[int, Skip] = {}
    enrolled = [d for d in deliveries if getattr(d, "enrollment_id", None)]
    enrollments = {}
    if enrolled:
        ids = sorted({d.enrollment_id for d in enrolled})  # type: ignore[attr-defined]
        enrollments = {row.id: row for row in conn.execute(
            sa.select(Enrollment.id, Enrollment.state, Enrollment.enrolled_at, Enrollment.customer_id)
            .where(Enrollment.id.in_(ids)))}
    campaigns = {c.name: c for c in config.campaigns}

    # 1. series already ended; 2. goal reached since enrolment.
    goal_reached: set[int] = set()
    for name in {d.campaign for d in enrolled}:
        campaign = campaigns.get(name)
        if campaign is None or campaign.goal is None:
            continue
        ids = sorted({d.enrollment_id for d in enrolled if d.campaign == name})  # type: ignore[attr-defined]
        e = Enrollment.__table__
        if campaign.goal.coupon_redeemed:
            happened = coupon_redeemed(e, until=now)
        elif campaign.goal.event == "order":
            happened = sa.exists().where(Order.customer_id == e.c.customer_id, Order.ordered_at > e.c.enrolled_at,
                                         Order.ordered_at <= now)
        else:
            happened = sa.exists().where(Event.customer_id == e.c.customer_id, Event.name == campaign.goal.event,
                                         Event.occurred_at > e.c.enrolled_at, Event.occurred_at <= now)
        goal_reached |= set(conn.execute(sa.select(e.c.id).where(e.c.id.in_(ids), happened)).scalars())

    # 3. consent and 4. suppressed addresses, per channel family.
    consents = _consents(conn, deliveries, config)
    suppressed, unverifiable = _suppressed(conn, deliveries, config)

    # 5. step conditions, one query per (campaign, step) with a `when`.
    failing: dict[tuple[str, int], set[int]] = {}
    segments = None
    for name, step_index in {(d.campaign, d.step) for d in deliveries}:
        campaign = campaigns.get(name)
        if campaign is None or step_index >= len(campaign.steps) or not campaign.steps[step_index].when:
            continue
        if segments is None:  # parsed once per batch, and only when a step has a condition
            segments = segment_expressions(config)
        expression = parse_expression(campaign.steps[step_index].when or "", rfm_names=config.rfm.names,
                                      segment_names=list(segments), tiers=expression_tiers(config.loyalty))
        customer_ids = sorted({d.customer["id"] for d in deliveries if (d.campaign, d.step) == (name, step_index)})
        profile = CustomerProfile.__table__
        matching = set(conn.execute(
            sa.select(Customer.id).select_from(Customer)
            .outerjoin(profile, profile.c.customer_id == Customer.id)
            .where(Customer.id.in_(customer_ids),
                   compile_expression(expression, now=now, segments=segments, profile=profile,
                                      loyalty=config.loyalty))).scalars())
        failing[(name, step_index)] = set(customer_ids) - matching

    # 6. frequency caps: marketing sent, going out now or outranking these messages.
    caps = config.compliance.frequency
    taken = taken_slots(conn, config, deliveries, now=now) if caps.enabled else {}
    ranks = batch_ranks(config, deliveries, now=now) if caps.enabled else {}
    consent_required = config.compliance.consent == "required"

    # In rank order, so the batch's own messages take their slots as the ranking says.
    for delivery in sorted(deliveries, key=lambda d: ranks.get(d.id, (0, now, d.id))):  # type: ignore[attr-defined]
        enrollment = enrollments.get(getattr(delivery, "enrollment_id", None))
        campaign = campaigns.get(delivery.campaign)  # type: ignore[attr-defined]
        marketing = campaign is None or campaign.purpose == "marketing"
        family = _family(config, delivery)
        customer_id = delivery.customer["id"]  # type: ignore[attr-defined]
        consent = consents.get((customer_id, family[0])) if family else None
        if enrollment is not None and enrollment.state != "active":
            skip: Skip | None = Skip(f"series ended earlier ({enrollment.state})")
        elif enrollment is not None and enrollment.id in goal_reached:
            skip = Skip(f"goal reached ({campaign.goal.label if campaign and campaign.goal else ''})", "exited_goal")
        elif marketing and family and consent == "withdrawn":
            skip = Skip(f"consent withdrawn ({family[0]})", "exited_unsubscribe" if enrollment else None)
        elif marketing and family and consent_required and consent != "granted":
            skip = Skip(f"no consent recorded for marketing on {family[0]}")
        elif delivery.id in suppressed:  # type: ignore[attr-defined]
            skip = Skip("address suppressed")
        elif delivery.id in unverifiable:  # type: ignore[attr-defined]
            skip = Skip(f"{config.security.secret_env} is not set: the keyed suppressions of forgotten customers "
                        "cannot be checked", defer_until=now + SECRET_RETRY)
        elif customer_id in failing.get((delivery.campaign, delivery.step), ()):  # type: ignore[attr-defined]
            skip = Skip(f"step condition not met: {campaign.steps[delivery.step].when if campaign else ''}")  # type: ignore[attr-defined]
        else:
            skip = _timing(config, campaign, delivery, marketing=marketing, now=now)
            if skip is None and marketing and caps.enabled:
                skip = _capped(caps, campaign, taken.setdefault(customer_id, []),
                               family[0] if family else delivery.channel,  # type: ignore[attr-defined]
                               own=ranks.get(delivery.id, (0, now, delivery.id)), now=now)  # type: ignore[attr-defined]
        if skip is not None:
            skips[delivery.id] = skip  # type: ignore[attr-defined]
    return skips


#: Rounds of "move to the next opening" before windows are declared disjoint.
_WINDOW_ROUNDS = 8

#: How long a message waits when the installation secret is missing (see _suppressed).
SECRET_RETRY = timedelta(minutes=15)


def earliest_in_windows(now: datetime, zone: ZoneInfo, windows: Sequence[tuple[time, time]]) -> datetime | None:
    """The first moment from ``now`` inside every window (local ``zone``): ``now`` itself
    when already inside all of them, None when they never overlap."""
    moment = now
    for _ in range(_WINDOW_ROUNDS):
        moved = False
        for bounds in windows:
            opening = next_opening(moment, zone, *bounds)
            if opening is not None:
                moment, moved = opening, True
        if not moved:
            return moment
    return None


def _timing(config: AppConfig, campaign: CampaignConfig | None, delivery: Any, *, marketing: bool,
            now: datetime) -> Skip | None:
    """Defer a message due outside its send windows or, for marketing, in quiet hours."""
    if campaign is None:
        return None
    named: list[tuple[str, tuple[time, time]]] = []
    marketing_window = config.compliance.marketing_window
    if marketing and marketing_window:
        named.append((f"quiet hours {config.compliance.quiet_hours}", marketing_window))
    campaign_bounds = window_bounds(campaign.window)
    if campaign_bounds:
        named.append((f"the campaign's send window {campaign.window}", campaign_bounds))
    step = campaign.steps[delivery.step] if delivery.step < len(campaign.steps) else None
    if step is not None and step.window_bounds:
        named.append((f"the send window {step.window}", step.window_bounds))
    if not named:
        return None
    zone = customer_zone(delivery.customer, campaign.zone)
    until = earliest_in_windows(now, zone, [bounds for _, bounds in named])
    if until is None:
        return Skip("send windows never open together: " + ", ".join(label for label, _ in named))
    if until == now:
        return None
    # Quiet hours are the window marketing must stay out of; the others, where it must be.
    blocking = [("inside " if label.startswith("quiet hours") else "outside ") + label
                for label, bounds in named if next_opening(now, zone, *bounds) is not None]
    return Skip(f"{' and '.join(blocking)} ({zone.key})", defer_until=until)


def quiet_hours_start(config: AppConfig, campaign: CampaignConfig | None, customer: dict[str, Any], *,
                      now: datetime) -> datetime | None:
    """When the customer's next quiet hours begin (UTC), for a marketing message sent at
    ``now``: a provider that queues messages (Twilio's ValidityPeriod) must not deliver it
    later than that. None when quiet hours are off or the campaign is transactional."""
    if campaign is not None and campaign.purpose != "marketing":
        return None
    quiet = window_bounds(config.compliance.quiet_hours)
    if quiet is None:
        return None
    zone = customer_zone(customer, campaign.zone if campaign else UTC_ZONE)
    return next_opening(now, zone, *quiet) or now


UTC_ZONE = ZoneInfo("UTC")


def _capped(caps: FrequencyCapsConfig, campaign: CampaignConfig | None, slots: list[Slot], family: str, *,
            own: Rank, now: datetime) -> Skip | None:
    """Skip or defer a marketing message over the frequency caps; else count it as sent.

    ``slots`` holds the customer's taken slots (:func:`~campaigns.sending.caps.taken_slots`)
    and grows with each message of the batch let through, so one batch cannot exceed a cap either.
    """
    over = cap_reached(caps, slots, family, own=own, now=now)
    if over is None:
        slots.append(Slot(family, now))
        return None
    reason, frees = over
    if campaign is not None and campaign.when_capped == "skip":
        return Skip(reason)
    return Skip(reason, defer_until=frees)


def _family(config: AppConfig, delivery: object) -> tuple[str, str] | None:
    channel = config.channels.get(delivery.channel)  # type: ignore[attr-defined]
    if channel is None:
        return None
    family = CHANNEL_FAMILY.get(channel.recipient)
    return (family, channel.recipient) if family else None


def _consents(conn: sa.Connection, deliveries: Sequence[Any], config: AppConfig) -> dict[tuple[int, str], str]:
    """(customer id, channel family) -> consent status, for the customers of the batch."""
    customer_ids = sorted({d.customer["id"] for d in deliveries if _family(config, d)})
    if not customer_ids:
        return {}
    rows = conn.execute(
        sa.select(Consent.customer_id, Consent.channel, Consent.status).where(Consent.customer_id.in_(customer_ids))
    )
    return {(row.customer_id, row.channel): row.status for row in rows}


def _suppressed(conn: sa.Connection, deliveries: Sequence[object],
                config: AppConfig) -> tuple[set[int], set[int]]:
    """(suppressed delivery ids, ids whose suppression cannot be checked: the installation
    secret is unset while keyed digests exist on their channel family)."""
    wanted = {}
    for d in deliveries:
        family = _family(config, d)
        address = d.customer.get(family[1]) if family else None  # type: ignore[attr-defined]
        if family and address:
            wanted[d.id] = (family[0], address)  # type: ignore[attr-defined]
    if not wanted:
        return set(), set()
    # A forgotten customer's suppressions are kept as digests (campaigns.customers.addresses): keyed
    # with the installation secret, or unkeyed when written before it existed.
    secret = installation_secret(config)
    blind: set[str] = set()
    if secret is None:
        # Fail closed: without the key a keyed digest matches nothing, and the person
        # it stands for would be messaged again. Messages on a family that has keyed
        # digests wait (deferred, never dropped) until the secret is set.
        families = sorted({family for family, _ in wanted.values()})
        blind = set(conn.execute(
            sa.select(Suppression.channel).where(Suppression.channel.in_(families),
                                                 Suppression.address.startswith(DIGEST_PREFIX, autoescape=True))
            .group_by(Suppression.channel)).scalars())
    digests = {address: address_digests(address, secret) for _, address in wanted.values()}
    rows = set(conn.execute(
        sa.select(Suppression.channel, Suppression.address)
        .where(Suppression.address.in_(sorted({*digests, *(d for forms in digests.values() for d in forms)})))
    ).all())
    suppressed = {delivery_id for delivery_id, (family, address) in wanted.items()
                  if any((family, form) in rows for form in (address, *digests[address]))}
    return suppressed, {delivery_id for delivery_id, (family, _) in wanted.items()
                        if family in blind and delivery_id not in suppressed}
