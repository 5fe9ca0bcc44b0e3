"""Reading points: balances as SQL (for audiences, reports and the daily job) and one
customer's standing (for templates and ``nurture points``).

A balance is the sum of ``remaining`` over the customer's lots still valid at ``now``
(debts included, never-expiring): it reads right even before the daily job has expired
the lots whose time is up. Once the job has run, it equals the sum of the ledger's
entries, which tests check on random histories.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.ledger import ENTRIES, LOTS
from campaigns.customers.loyalty.tiers import MEMBERS, qualifying_query
from campaigns.customers.timezones import customer_zone
from campaigns.store.chunks import chunks
from campaigns.store.models import Customer

#: How far ahead ``loyalty.expiring`` looks for the next points to expire, unless a
#: ``points_expiring`` campaign's own lead time says otherwise.
EXPIRING_WITHIN = timedelta(days=30)


def _valid(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(LOTS.c.expires_at.is_(None), LOTS.c.expires_at > now)


def balances_query(*, now: datetime) -> sa.Subquery:
    """``(customer_id, balance)`` for every customer holding any lot with points left."""
    return (sa.select(LOTS.c.customer_id, sa.func.sum(LOTS.c.remaining).label("balance"))
            .where(LOTS.c.remaining != 0, _valid(now)).group_by(LOTS.c.customer_id).subquery("balances"))


def balance_of(customer_id: Any, *, now: datetime) -> sa.ScalarSelect[Any]:
    """The balance of ``customer_id`` (a column or value) at ``now``, as a scalar subquery."""
    return (sa.select(sa.func.coalesce(sa.func.sum(LOTS.c.remaining), 0))
            .where(LOTS.c.customer_id == customer_id, LOTS.c.remaining != 0, _valid(now)).scalar_subquery())


def expiring_of(customer_id: Any, *, now: datetime, within: timedelta) -> sa.ScalarSelect[Any]:
    """Points of ``customer_id`` that expire in ``(now, now + within]``."""
    return (sa.select(sa.func.coalesce(sa.func.sum(LOTS.c.remaining), 0))
            .where(LOTS.c.customer_id == customer_id, LOTS.c.remaining > 0,
                   LOTS.c.expires_at > now, LOTS.c.expires_at <= now + within).scalar_subquery())


def earned_of(customer_id: Any, *, now: datetime, within: timedelta | None) -> sa.ScalarSelect[Any]:
    """Points ``customer_id`` earned (orders, events, referrals; not reversed) in
    ``(now - within, now]``, or ever when ``within`` is None."""
    query = sa.select(sa.func.coalesce(sa.func.sum(LOTS.c.points), 0)).where(
        LOTS.c.customer_id == customer_id, LOTS.c.source.in_(("order", "event", "referral")),
        LOTS.c.reversed_at.is_(None), LOTS.c.earned_at <= now)
    if within is not None:
        query = query.where(LOTS.c.earned_at > now - within)
    return query.scalar_subquery()


def tier_of(customer_id: Any, loyalty: LoyaltyConfig) -> sa.ColumnElement[str]:
    """The tier of ``customer_id``: its ``loyalty_member`` row's, else the lowest."""
    return sa.func.coalesce(
        sa.select(MEMBERS.c.tier).where(MEMBERS.c.customer_id == customer_id).scalar_subquery(),
        sa.literal(loyalty.lowest_tier),
    )


def ledger_sum(conn: Connection, customer_id: int) -> int:
    """The sum of every ledger entry of ``customer_id`` (what the balance must equal once
    the daily job has run)."""
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(ENTRIES.c.points), 0))
                            .where(ENTRIES.c.customer_id == customer_id)).scalar() or 0)


@dataclass(frozen=True)
class Expiring:
    """The next points to expire: how many, and the last local day they can be spent."""

    points: int
    #: The customer's local date of the last day the points are valid.
    last_day: date
    expires_at: datetime


@dataclass(frozen=True)
class Standing:
    """One customer's points and tier, as templates see them (``loyalty.*``)."""

    balance: int
    #: Balance usable per redeemable kind.
    by_kind: dict[str, int]
    expiring: Expiring | None
    tier: str
    #: The tier above, and the qualifying points (or spend) still needed to reach it.
    next_tier: str | None
    to_next_tier: float | None
    tier_benefits: tuple[str, ...] = ()
    lots: list[dict[str, Any]] = field(default_factory=list)
    #: The customer's time zone (their own, their phone's, else ``[loyalty] timezone``):
    #: the zone of ``expiring.last_day``.
    zone: str = "UTC"

    def expiring_at(self, expires_at: datetime) -> Expiring:
        """The customer's open points that expire at ``expires_at`` (what a
        ``points_expiring`` reminder of those lots names; 0 once they were spent)."""
        points = sum(lot["remaining"] for lot in self.lots
                     if lot["remaining"] > 0 and lot["expires_at"] == expires_at)
        return _expiring(points, expires_at, ZoneInfo(self.zone))

    def next_expiring(self, *, now: datetime, within: timedelta) -> Expiring | None:
        """The first points to expire in ``(now, now + within]``, all the lots expiring at
        that same moment together (None when nothing does)."""
        return _next_expiring(self.lots, now=now, within=within, zone=ZoneInfo(self.zone))

    def with_expiring(self, expiring: Expiring | None) -> Standing:
        """This standing with ``expiring`` in place of its own."""
        return replace(self, expiring=expiring)

    def as_context(self) -> dict[str, Any]:
        """The ``loyalty`` template variable."""
        return {
            "balance": self.balance,
            "by_kind": dict(self.by_kind),
            "expiring": None if self.expiring is None else {
                "points": self.expiring.points, "date": self.expiring.last_day.isoformat(),
                "expires_at": self.expiring.expires_at.isoformat()},
            "tier": self.tier,
            "next_tier": self.next_tier,
            "to_next_tier": self.to_next_tier,
            "tier_benefits": list(self.tier_benefits),
        }


def standing(conn: Connection, loyalty: LoyaltyConfig, customer_id: int, *, now: datetime,
             expiring_within: timedelta = EXPIRING_WITHIN) -> Standing:
    """The points, next expiry and tier of ``customer_id`` at ``now``."""
    customer = conn.execute(sa.select(Customer.timezone, Customer.phone).where(Customer.id == customer_id)).first()
    zone = customer_zone({"timezone": customer.timezone, "phone": customer.phone} if customer else {},
                         ZoneInfo(loyalty.timezone))
    lots = conn.execute(
        sa.select(*_LOT_COLUMNS)
        .where(LOTS.c.customer_id == customer_id, LOTS.c.remaining != 0, _valid(now))
        .order_by(LOTS.c.expires_at.is_(None), LOTS.c.expires_at, LOTS.c.id)
    ).all()
    tier = conn.execute(sa.select(MEMBERS.c.tier).where(MEMBERS.c.customer_id == customer_id)).scalar() \
        or loyalty.lowest_tier
    have = 0.0
    if loyalty.tier_rank(tier) + 1 < len(loyalty.tiers):
        q = qualifying_query(loyalty, now=now, customer_ids=[customer_id])
        have = float(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(q.c.qualifying), 0))).scalar() or 0)
    return _standing(loyalty, lots, tier=tier, qualifying=have, zone=zone, now=now, expiring_within=expiring_within)


def standings(conn: Connection, loyalty: LoyaltyConfig, customer_ids: Iterable[int], *, now: datetime,
              expiring_within: timedelta = EXPIRING_WITHIN) -> dict[int, Standing]:
    """:func:`standing` of many customers at once, by customer id: two queries per
    :data:`~campaigns.store.chunks.STATEMENT_ROWS` customers (their zone, tier and
    qualifying points in one, their lots in the other), however many there are. The
    worker reads a batch's standings this way, never one customer at a time.

    Ids of no customer are left out.
    """
    result: dict[int, Standing] = {}
    for chunk in chunks(sorted(set(customer_ids))):
        q = qualifying_query(loyalty, now=now, customer_ids=chunk)
        people = conn.execute(
            sa.select(Customer.id, Customer.timezone, Customer.phone, MEMBERS.c.tier, q.c.qualifying)
            .select_from(Customer)
            .outerjoin(MEMBERS, MEMBERS.c.customer_id == Customer.id)
            .outerjoin(q, q.c.customer_id == Customer.id)
            .where(Customer.id.in_(chunk))
        ).all()
        lots: dict[int, list[Any]] = {}
        for lot in conn.execute(
            sa.select(LOTS.c.customer_id, *_LOT_COLUMNS)
            .where(LOTS.c.customer_id.in_(chunk), LOTS.c.remaining != 0, _valid(now))
            .order_by(LOTS.c.customer_id, LOTS.c.expires_at.is_(None), LOTS.c.expires_at, LOTS.c.id)
        ):
            lots.setdefault(lot.customer_id, []).append(lot)
        fallback = ZoneInfo(loyalty.timezone)
        for person in people:
            zone = customer_zone({"timezone": person.timezone, "phone": person.phone}, fallback)
            result[person.id] = _standing(
                loyalty, lots.get(person.id, []), tier=person.tier or loyalty.lowest_tier,
                qualifying=float(person.qualifying or 0), zone=zone, now=now, expiring_within=expiring_within)
    return result


_LOT_COLUMNS = (LOTS.c.id, LOTS.c.source, LOTS.c.source_ref, LOTS.c.rule, LOTS.c.points, LOTS.c.remaining,
                LOTS.c.kinds, LOTS.c.earned_at, LOTS.c.expires_at)


def _expiring(points: int, expires_at: datetime, zone: ZoneInfo) -> Expiring:
    # A lot expiring at local midnight was last usable the day before.
    return Expiring(points=points, last_day=(expires_at.astimezone(zone) - timedelta(seconds=1)).date(),
                    expires_at=expires_at)


def _next_expiring(lots: Sequence[Any], *, now: datetime, within: timedelta, zone: ZoneInfo) -> Expiring | None:
    """The earliest open points expiring in ``(now, now + within]`` of ``lots`` (rows or
    the dicts of :attr:`Standing.lots`)."""
    def get(lot: Any, name: str) -> Any:
        return lot[name] if isinstance(lot, dict) else getattr(lot, name)

    soon = [lot for lot in lots if get(lot, "remaining") > 0 and get(lot, "expires_at") is not None
            and now < get(lot, "expires_at") <= now + within]
    if not soon:
        return None
    first = min(get(lot, "expires_at") for lot in soon)
    return _expiring(sum(get(lot, "remaining") for lot in soon if get(lot, "expires_at") == first), first, zone)


def _standing(loyalty: LoyaltyConfig, lots: Sequence[Any], *, tier: str, qualifying: float, zone: ZoneInfo,
              now: datetime, expiring_within: timedelta) -> Standing:
    """A :class:`Standing` from what was read: the customer's lots still valid at ``now``
    with points left (or owed), their tier and their qualifying points in the window."""
    balance = sum(lot.remaining for lot in lots)
    debt = sum(lot.remaining for lot in lots if lot.remaining < 0)
    by_kind = {kind: max(0, debt + sum(lot.remaining for lot in lots if lot.remaining > 0 and f",{kind}," in lot.kinds))
               for kind in loyalty.kinds}
    rank = loyalty.tier_rank(tier)
    next_tier = to_next = None
    if rank + 1 < len(loyalty.tiers):
        above = loyalty.tiers[rank + 1]
        next_tier, to_next = above.name, max(0.0, round(above.minimum - qualifying, 2))
    return Standing(
        balance=balance, by_kind=by_kind,
        expiring=_next_expiring(lots, now=now, within=expiring_within, zone=zone),
        tier=tier, next_tier=next_tier, to_next_tier=to_next,
        tier_benefits=loyalty.tiers[rank].benefits,
        lots=[{"id": lot.id, "source": lot.source, "source_ref": lot.source_ref, "rule": lot.rule,
               "points": lot.points, "remaining": lot.remaining, "kinds": lot.kinds.strip(",").split(","),
               "earned_at": lot.earned_at, "expires_at": lot.expires_at} for lot in lots],
        zone=zone.key,
    )


__all__ = ["EXPIRING_WITHIN", "Expiring", "Standing", "balance_of", "balances_query", "earned_of", "expiring_of",
           "ledger_sum", "standing", "standings", "tier_of"]
