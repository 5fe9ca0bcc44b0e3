"""What is re-checked when a message is due, after planning and before any provider call.

A series can run for days; in between the customer may buy (the campaign's goal),
withdraw consent or land on the suppression list, or stop matching a step's ``when``
condition. Each check is one query for the whole claimed batch.

* enrolment no longer active (goal reached or unsubscribed at an earlier step): skip;
* goal reached since enrolment (an order, or the goal event): skip and end the series
  (``exited_goal``);
* consent for the channel's family withdrawn (marketing only): skip and end the series
  (``exited_unsubscribe``);
* address suppressed: skip;
* the step's ``when`` expression is false for the customer now: skip this step only;
* outside the step's send ``window`` (customer's local time): wait for the next opening.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from campaigns.audience import CHANNEL_FAMILY
from campaigns.config import AppConfig
from campaigns.models import (
    Consent,
    Customer,
    CustomerProfile,
    Enrollment,
    Event,
    Order,
    Suppression,
)
from campaigns.segments import compile_expression, parse_expression, segment_expressions


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
    """Skips for the claimed ``deliveries`` (:class:`~campaigns.ledger.ClaimedDelivery`)."""
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
        if campaign.goal.event == "order":
            happened = sa.exists().where(Order.customer_id == e.c.customer_id, Order.ordered_at > e.c.enrolled_at,
                                         Order.ordered_at <= now)
        else:
            happened = sa.exists().where(Event.customer_id == e.c.customer_id, Event.name == campaign.goal.event,
                                         Event.occurred_at > e.c.enrolled_at, Event.occurred_at <= now)
        goal_reached |= set(conn.execute(sa.select(e.c.id).where(e.c.id.in_(ids), happened)).scalars())

    # 3. withdrawn consent and 4. suppressed addresses, per channel family.
    withdrawn = _withdrawn(conn, deliveries, config)
    suppressed = _suppressed(conn, deliveries, config)

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
                                      segment_names=list(segments))
        customer_ids = sorted({d.customer["id"] for d in deliveries if (d.campaign, d.step) == (name, step_index)})
        profile = CustomerProfile.__table__
        matching = set(conn.execute(
            sa.select(Customer.id).select_from(Customer)
            .outerjoin(profile, profile.c.customer_id == Customer.id)
            .where(Customer.id.in_(customer_ids),
                   compile_expression(expression, now=now, segments=segments, profile=profile))).scalars())
        failing[(name, step_index)] = set(customer_ids) - matching

    for delivery in deliveries:
        enrollment = enrollments.get(getattr(delivery, "enrollment_id", None))
        campaign = campaigns.get(delivery.campaign)
        marketing = campaign is None or campaign.purpose == "marketing"
        if enrollment is not None and enrollment.state != "active":
            skips[delivery.id] = Skip(f"series ended earlier ({enrollment.state})")
        elif enrollment is not None and enrollment.id in goal_reached:
            skips[delivery.id] = Skip(f"goal reached ({campaign.goal.event if campaign and campaign.goal else ''})",
                                      "exited_goal")
        elif marketing and delivery.id in withdrawn:
            skips[delivery.id] = Skip("consent withdrawn", "exited_unsubscribe" if enrollment else None)
        elif delivery.id in suppressed:
            skips[delivery.id] = Skip("address suppressed")
        elif delivery.customer["id"] in failing.get((delivery.campaign, delivery.step), ()):
            when = campaign.steps[delivery.step].when if campaign else ""
            skips[delivery.id] = Skip(f"step condition not met: {when}")
        elif campaign is not None and delivery.step < len(campaign.steps) and campaign.steps[delivery.step].window:
            bounds = campaign.steps[delivery.step].window_bounds
            assert bounds is not None
            opening = next_opening(now, _zone(delivery.customer.get("timezone"), campaign.zone), *bounds)
            if opening is not None:
                skips[delivery.id] = Skip(f"outside the send window {campaign.steps[delivery.step].window}",
                                          defer_until=opening)
    return skips


def _zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    """The customer's time zone, or the campaign's when unknown or invalid."""
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def _family(config: AppConfig, delivery: object) -> tuple[str, str] | None:
    channel = config.channels.get(delivery.channel)  # type: ignore[attr-defined]
    if channel is None:
        return None
    family = CHANNEL_FAMILY.get(channel.recipient)
    return (family, channel.recipient) if family else None


def _withdrawn(conn: sa.Connection, deliveries: Sequence[object], config: AppConfig) -> set[int]:
    wanted = {}
    for d in deliveries:
        family = _family(config, d)
        if family:
            wanted[d.id] = (d.customer["id"], family[0])  # type: ignore[attr-defined]
    if not wanted:
        return set()
    rows = set(conn.execute(
        sa.select(Consent.customer_id, Consent.channel)
        .where(Consent.customer_id.in_(sorted({c for c, _ in wanted.values()})), Consent.status == "withdrawn")
    ).all())
    return {delivery_id for delivery_id, key in wanted.items() if key in rows}


def _suppressed(conn: sa.Connection, deliveries: Sequence[object], config: AppConfig) -> set[int]:
    wanted = {}
    for d in deliveries:
        family = _family(config, d)
        address = d.customer.get(family[1]) if family else None  # type: ignore[attr-defined]
        if family and address:
            wanted[d.id] = (family[0], address)  # type: ignore[attr-defined]
    if not wanted:
        return set()
    rows = set(conn.execute(
        sa.select(Suppression.channel, Suppression.address)
        .where(Suppression.address.in_(sorted({a for _, a in wanted.values()})))
    ).all())
    return {delivery_id for delivery_id, key in wanted.items() if key in rows}
