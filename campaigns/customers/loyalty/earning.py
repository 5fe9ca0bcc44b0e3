"""Earning: paid orders and rewarded events become lots of points.

:func:`earn` reads the orders and events that arrived since it last ran (a cursor per
table, by row id), batch by batch, and writes a lot per source with its ``earn`` entry
(:func:`~campaigns.customers.loyalty.ledger.add_lots`): one statement reads a batch with
each customer's time zone and tier, the points and expiry of each row are worked out in
memory, one statement writes them. A lot exists once per source, so a replayed import, a
re-delivered event or a cursor reset earns nothing twice.

The rules (``[loyalty]``): an order earns ``points_per_unit`` (or its purchase channel's
rate) per currency unit paid, shipping excluded if configured, multiplied by the
customer's tier multiplier, rounded as configured; an order under ``minimum_amount`` or
not ``paid`` earns nothing. An event earns its rule's points times the multiplier, capped
per local day and calendar month. Each lot keeps its rule's validity
(:mod:`~campaigns.customers.loyalty.validity`, in the customer's time zone) and kinds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.debts import settle_debts
from campaigns.customers.loyalty.ledger import LOTS, NewLot, add_lots, kinds_text
from campaigns.customers.loyalty.validity import expires_at
from campaigns.customers.timezones import customer_zone
from campaigns.store.db import dialect_insert
from campaigns.store.models import Customer, Event, LoyaltyMember, Order, PointsCursor

#: Rows read per batch (one transaction each).
BATCH_ROWS = 5000
_ROUNDING = {"floor": ROUND_FLOOR, "round": ROUND_HALF_UP, "ceil": ROUND_CEILING}


@dataclass
class EarnReport:
    """What one :func:`earn` call wrote."""

    lots: int = 0
    points: int = 0
    #: Rows read that earned nothing (under the minimum, not paid, no rule, capped out).
    skipped: int = 0
    #: Customers who earned, for the tier recompute that upgrades them at once.
    customers: set[int] = field(default_factory=set)


def _cursor(conn: Connection, source: str) -> int:
    """How far earning has read ``source``, locked until the batch commits: two earners at
    once (two ``POST /events`` jobs) take turns, so neither reads a batch the other is
    writing, and a daily cap is counted once (a write first: on SQLite a transaction that
    only read could not upgrade to write)."""
    table = PointsCursor.__table__
    conn.execute(dialect_insert(conn, table).values(source=source, last_id=0)
                 .on_conflict_do_nothing(index_elements=["source"]))
    conn.execute(sa.update(table).where(table.c.source == source).values(last_id=table.c.last_id))
    value = conn.execute(sa.select(table.c.last_id).where(table.c.source == source)).scalar()
    return int(value or 0)


def _advance(conn: Connection, source: str, last_id: int) -> None:
    insert = dialect_insert(conn, PointsCursor.__table__).values(source=source, last_id=last_id)
    conn.execute(insert.on_conflict_do_update(index_elements=["source"], set_={"last_id": last_id}))


def _points(amount: Decimal, rounding: str) -> int:
    return int(amount.quantize(Decimal(1), rounding=_ROUNDING[rounding]))


def _multipliers(loyalty: LoyaltyConfig) -> dict[str | None, Decimal]:
    table: dict[str | None, Decimal] = {tier.name: Decimal(str(tier.multiplier)) for tier in loyalty.tiers}
    table[None] = Decimal(str(loyalty.tiers[0].multiplier))
    return table


def _earn_from(loyalty: LoyaltyConfig, zone: ZoneInfo) -> datetime | None:
    if loyalty.earn_from is None:
        return None
    return datetime.combine(loyalty.earn_from, time(0), tzinfo=zone).astimezone(UTC)


def _zone(row: Any, fallback: ZoneInfo) -> ZoneInfo:
    return customer_zone({"timezone": row.timezone, "phone": row.phone}, fallback)


def earn(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime, batch_rows: int = BATCH_ROWS) -> EarnReport:
    """Earn the points of every order and event recorded since the last call."""
    report = EarnReport()
    fallback = ZoneInfo(loyalty.timezone)
    _earn_orders(engine, loyalty, now=now, fallback=fallback, report=report, batch_rows=batch_rows)
    if loyalty.events:
        _earn_events(engine, loyalty, now=now, fallback=fallback, report=report, batch_rows=batch_rows)
    return report


def _earn_orders(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime, fallback: ZoneInfo,
                 report: EarnReport, batch_rows: int) -> None:
    rule = loyalty.orders
    kinds = kinds_text(rule.redeemable)
    multipliers = _multipliers(loyalty)
    start = _earn_from(loyalty, fallback)
    minimum = Decimal(str(rule.minimum_amount))
    rates = {channel: Decimal(str(rate)) for channel, rate in rule.channels.items()}
    default_rate = Decimal(str(rule.points_per_unit))
    o, c, m = Order.__table__, Customer.__table__, LoyaltyMember.__table__
    while True:
        with engine.begin() as conn:
            after = _cursor(conn, "orders")
            rows = conn.execute(
                sa.select(o.c.id, o.c.order_id, o.c.customer_id, o.c.ordered_at, o.c.amount, o.c.shipping,
                          o.c.channel, o.c.status, c.c.timezone, c.c.phone, m.c.tier)
                .select_from(o.join(c, c.c.id == o.c.customer_id).outerjoin(m, m.c.customer_id == o.c.customer_id))
                .where(o.c.id > after)
                .order_by(o.c.id)
                .limit(batch_rows)
            ).all()
            if not rows:
                return
            lots = []
            for row in rows:
                if row.status != "paid" or (start is not None and row.ordered_at < start):
                    report.skipped += 1
                    continue
                paid = Decimal(str(row.amount))
                if rule.exclude_shipping and row.shipping:
                    paid -= Decimal(str(row.shipping))
                if paid <= 0 or paid < minimum:
                    report.skipped += 1
                    continue
                rate = rates.get(row.channel, default_rate)
                points = _points(paid * rate * multipliers.get(row.tier, multipliers[None]), rule.rounding)
                if points <= 0:
                    report.skipped += 1
                    continue
                lots.append(NewLot(
                    customer_id=row.customer_id, source="order", source_ref=row.order_id, rule="purchase",
                    points=points, kinds=kinds, earned_at=row.ordered_at,
                    expires_at=expires_at(row.ordered_at, rule.valid_for, _zone(row, fallback)),
                ))
            _write(conn, lots, now=now, report=report)
            _advance(conn, "orders", rows[-1].id)
        if len(rows) < batch_rows:
            return


def _local_buckets(when: datetime, zone: ZoneInfo) -> tuple[str, str]:
    day = when.astimezone(zone).date()
    return day.isoformat(), day.isoformat()[:7]


def _earn_events(engine: Engine, loyalty: LoyaltyConfig, *, now: datetime, fallback: ZoneInfo,
                 report: EarnReport, batch_rows: int) -> None:
    rules = loyalty.events
    multipliers = _multipliers(loyalty)
    start = _earn_from(loyalty, fallback)
    capped = [name for name, rule in rules.items() if rule.max_per_day or rule.max_per_month]
    e, c, m = Event.__table__, Customer.__table__, LoyaltyMember.__table__
    while True:
        with engine.begin() as conn:
            after = _cursor(conn, "event")
            # Rows of every name are read (by id, in order) so the cursor moves past them
            # too; only the rewarded ones are joined to their customer.
            ids = conn.execute(sa.select(e.c.id, e.c.name).where(e.c.id > after).order_by(e.c.id)
                               .limit(batch_rows)).all()
            if not ids:
                return
            wanted = [row.id for row in ids if row.name in rules]
            rows = []
            if wanted:
                rows = conn.execute(
                    sa.select(e.c.id, e.c.name, e.c.dedupe_key, e.c.customer_id, e.c.occurred_at,
                              c.c.timezone, c.c.phone, m.c.tier)
                    .select_from(e.join(c, c.c.id == e.c.customer_id)
                                 .outerjoin(m, m.c.customer_id == e.c.customer_id))
                    .where(e.c.id >= wanted[0], e.c.id <= wanted[-1], e.c.name.in_(sorted(set(rules))))
                    .order_by(e.c.customer_id, e.c.occurred_at, e.c.id)
                ).all()
            used = _cap_usage(conn, rows, capped, fallback) if capped and rows else {}
            lots = []
            for row in rows:
                rule = rules[row.name]
                if start is not None and row.occurred_at < start:
                    report.skipped += 1
                    continue
                zone = _zone(row, fallback)
                points = _points(Decimal(rule.points) * multipliers.get(row.tier, multipliers[None]), "floor")
                if row.name in capped:
                    day, month = _local_buckets(row.occurred_at, zone)
                    room = [math.inf]
                    if rule.max_per_day:
                        room.append(rule.max_per_day - used[(row.customer_id, row.name, day)])
                    if rule.max_per_month:
                        room.append(rule.max_per_month - used[(row.customer_id, row.name, month)])
                    points = int(min(points, *room))
                    if points > 0:
                        used[(row.customer_id, row.name, day)] += points
                        used[(row.customer_id, row.name, month)] += points
                if points <= 0:
                    report.skipped += 1
                    continue
                lots.append(NewLot(
                    customer_id=row.customer_id, source="event", source_ref=row.dedupe_key, rule=row.name,
                    points=points, kinds=kinds_text(rule.redeemable), earned_at=row.occurred_at,
                    expires_at=expires_at(row.occurred_at, rule.valid_for, zone),
                ))
            _write(conn, lots, now=now, report=report)
            _advance(conn, "event", ids[-1].id)
        if len(ids) < batch_rows:
            return


def _cap_usage(conn: Connection, rows: list[Any], capped: list[str], fallback: ZoneInfo) -> defaultdict[tuple[int, str, str], int]:
    """Points already earned by capped rules, per (customer, rule, local day) and (customer,
    rule, local month), for the customers of this batch in the months it covers."""
    used: defaultdict[tuple[int, str, str], int] = defaultdict(int)
    customers = sorted({row.customer_id for row in rows if row.name in capped})
    if not customers:
        return used
    since = min(row.occurred_at for row in rows) - timedelta(days=32)
    zones = {row.customer_id: _zone(row, fallback) for row in rows}
    for chunk_start in range(0, len(customers), 500):
        chunk = customers[chunk_start:chunk_start + 500]
        earned = conn.execute(
            sa.select(LOTS.c.customer_id, LOTS.c.rule, LOTS.c.earned_at, LOTS.c.points)
            .where(LOTS.c.customer_id.in_(chunk), LOTS.c.rule.in_(capped), LOTS.c.source == "event",
                   LOTS.c.earned_at >= since)
        ).all()
        for lot in earned:
            day, month = _local_buckets(lot.earned_at, zones.get(lot.customer_id, fallback))
            used[(lot.customer_id, lot.rule, day)] += lot.points
            used[(lot.customer_id, lot.rule, month)] += lot.points
    return used


def _write(conn: Connection, lots: list[NewLot], *, now: datetime, report: EarnReport) -> None:
    if not lots:
        return
    unique = list({(lot.source, lot.source_ref): lot for lot in lots}.values())
    written = add_lots(conn, unique, now=now)
    report.lots += len(written)
    report.points += sum(lot.points for _, lot in written)
    report.customers.update(lot.customer_id for _, lot in written)
    if written:
        settle_debts(conn, now=now)


__all__ = ["BATCH_ROWS", "EarnReport", "earn"]
