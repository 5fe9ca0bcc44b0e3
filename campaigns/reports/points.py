"""One customer's points, as ``nurture points CUSTOMER`` and the customer view show them.

Plain dicts out (``workers/cli/`` draws them): the balance and what it buys per kind, the
tier and the next one, every lot with points left (its source, rule, when it was earned
and the last local day it can be spent), and the ledger's entries, newest first. Dates a
customer would read (``earned_on``, ``valid_through``) are in the customer's own time
zone, as the lots' validity is counted (docs/loyalty.md); times are UTC.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.balances import standing
from campaigns.customers.timezones import customer_zone
from campaigns.store.models import Customer, LoyaltyMember, PointsEntry

#: History entries shown unless the caller asks for another number.
HISTORY_LIMIT = 20

_ENTRIES = PointsEntry.__table__


def _zone(conn: Connection, loyalty: LoyaltyConfig, customer_id: int) -> ZoneInfo:
    row = conn.execute(sa.select(Customer.timezone, Customer.phone).where(Customer.id == customer_id)).first()
    return customer_zone({"timezone": row.timezone, "phone": row.phone} if row else {}, ZoneInfo(loyalty.timezone))


def last_local_day(expires_at: datetime | None, zone: ZoneInfo) -> date | None:
    """The last day (in ``zone``) points expiring at ``expires_at`` can be spent: a lot
    that expires at 00:00 local on 15 March is valid through 14 March."""
    if expires_at is None:
        return None
    return (expires_at.astimezone(zone) - timedelta(microseconds=1)).date()


def customer_points(conn: Connection, loyalty: LoyaltyConfig, customer_id: int, *, now: datetime,
                    history_limit: int = HISTORY_LIMIT) -> dict[str, Any]:
    """The points of ``customer_id`` at ``now``.

    Returns ``balance``, ``by_kind`` (what may be redeemed per kind), ``tier``,
    ``tier_since``, ``next_tier`` and ``to_next_tier`` (qualifying points, or spend, still
    needed), ``tier_benefits``, ``next_expiry`` (``points``, ``expires_at``,
    ``valid_through``: the next lots to expire, however far off, or None), ``lots`` (every
    lot still holding points, debts included, next to expire first: ``source``,
    ``source_ref``, ``rule``, ``points``, ``remaining``, ``kinds``, ``earned_at``,
    ``earned_on``, ``expires_at``, ``valid_through``), ``history`` (ledger entries newest
    first, at most ``history_limit``) with ``history_total``, and ``timezone``, the zone
    the local dates are in.
    """
    zone = _zone(conn, loyalty, customer_id)
    held = standing(conn, loyalty, customer_id, now=now)
    lots = [{
        **{key: lot[key] for key in ("id", "source", "source_ref", "rule", "points", "remaining", "kinds",
                                     "earned_at", "expires_at")},
        "earned_on": lot["earned_at"].astimezone(zone).date(),
        "valid_through": last_local_day(lot["expires_at"], zone),
    } for lot in held.lots]
    expiring = [lot for lot in lots if lot["remaining"] > 0 and lot["expires_at"] is not None]
    next_expiry = None
    if expiring:
        first = min(lot["expires_at"] for lot in expiring)
        next_expiry = {"points": sum(lot["remaining"] for lot in expiring if lot["expires_at"] == first),
                       "expires_at": first, "valid_through": last_local_day(first, zone)}
    tier_since = conn.execute(sa.select(LoyaltyMember.tier_since)
                              .where(LoyaltyMember.customer_id == customer_id)).scalar()
    history = [dict(row) for row in conn.execute(
        sa.select(_ENTRIES.c.occurred_at, _ENTRIES.c.kind, _ENTRIES.c.points, _ENTRIES.c.source,
                  _ENTRIES.c.source_ref, _ENTRIES.c.detail, _ENTRIES.c.recorded_at)
        .where(_ENTRIES.c.customer_id == customer_id)
        .order_by(_ENTRIES.c.occurred_at.desc(), _ENTRIES.c.id.desc())
        .limit(max(history_limit, 0))
    ).mappings()] if history_limit > 0 else []
    history_total = conn.execute(sa.select(sa.func.count()).select_from(_ENTRIES)
                                 .where(_ENTRIES.c.customer_id == customer_id)).scalar_one()
    return {
        "as_of": now,
        "timezone": zone.key,
        "balance": held.balance,
        "by_kind": dict(held.by_kind),
        "tier": held.tier,
        "tier_since": tier_since,
        "next_tier": held.next_tier,
        "to_next_tier": held.to_next_tier,
        "tier_benefits": list(held.tier_benefits),
        "next_expiry": next_expiry,
        "lots": lots,
        "history": history,
        "history_total": history_total,
    }


def points_summary(conn: Connection, loyalty: LoyaltyConfig, customer_id: int, *, now: datetime) -> dict[str, Any]:
    """What the customer view shows of the points: ``balance``, ``by_kind``, ``tier``,
    ``next_tier``, ``to_next_tier`` and ``next_expiry`` (see :func:`customer_points`)."""
    full = customer_points(conn, loyalty, customer_id, now=now, history_limit=0)
    return {key: full[key] for key in ("balance", "by_kind", "tier", "next_tier", "to_next_tier", "next_expiry")}


__all__ = ["HISTORY_LIMIT", "customer_points", "last_local_day", "points_summary"]
