"""Redemptions and manual adjustments: spending points, all or nothing.

A redemption asks for ``points`` of one ``kind`` (goods, coupons ...) at a time ``at``.
It may use the customer's lots that were earned by then, are still valid then, and are
redeemable for that kind, those expiring first first; a debt (a negative lot) counts
against every kind. When the lots allowed cannot cover it, it is refused with the
balance that was allowed, and nothing is written: no partial redemption ever.

Each redemption is keyed by its id (the import's ``redemption_id``, the API's idempotency
key): sent again with the same values, it is reported ``duplicate`` and changes nothing;
sent again with other values it is refused. :func:`redeem` takes a whole batch: one
statement reads the lots of every customer in it, the batch is allocated in memory in
time order, and one statement per table writes the result.

An adjustment (``nurture points adjust``) adds a lot redeemable for everything (valid
``[loyalty] adjustments_valid_for``), or takes points like a redemption of any kind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.loyalty.debts import ALLOCATIONS, settle_debts, spending_order
from campaigns.customers.loyalty.ledger import (
    ENTRIES,
    LOTS,
    NewLot,
    add_lots,
    entry_key,
    kinds_text,
    lock_customers,
    set_lot_state,
)
from campaigns.customers.loyalty.validity import expires_at
from campaigns.customers.timezones import customer_zone
from campaigns.store.bulk import insert_rows
from campaigns.store.chunks import chunks
from campaigns.store.models import Customer

#: Most points one redemption or adjustment may move (a typo guard, and int64-safe).
MAX_POINTS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Redemption:
    """A request to spend points. ``kind`` None (adjustments) may use any lot."""

    redemption_id: str
    customer_id: int
    points: int
    kind: str | None
    at: datetime
    #: What was redeemed (a product, a coupon), kept on the entry.
    note: str | None = None


@dataclass(frozen=True, slots=True)
class RedemptionResult:
    """What became of one :class:`Redemption`."""

    redemption_id: str
    status: Literal["redeemed", "duplicate", "refused"]
    points: int
    #: Why it was refused; for ``redeemed``, None.
    reason: str | None = None
    #: What the customer may still redeem for this kind afterwards (or had, when refused).
    balance: int | None = None
    #: (lot id, points) taken, for ``redeemed``.
    lots: tuple[tuple[int, int], ...] = ()


def _usable(lot: Any, remaining: int, kind: str | None, at: datetime) -> bool:
    # A lot may pay for a redemption at ``at``: points left (as allocated so far in this
    # batch), earned by then, still valid then, and redeemable for ``kind``.
    if remaining <= 0 or lot.earned_at > at:
        return False
    if lot.expires_at is not None and lot.expires_at <= at:
        return False
    return kind is None or f",{kind}," in lot.kinds


def redeem(engine: Engine, requests: Sequence[Redemption], *, now: datetime, source: str = "redemption",
           entry_kind: str = "redeem") -> list[RedemptionResult]:
    """Apply ``requests`` in time order (then in the order given); one result each, in the
    order given. All of a batch is written in one transaction."""
    if not requests:
        return []
    results: dict[int, RedemptionResult] = {}
    keys = {index: entry_key(entry_kind, source, request.redemption_id) for index, request in enumerate(requests)}
    with engine.begin() as conn:
        lock_customers(conn, (request.customer_id for request in requests))
        existing: dict[str, Any] = {}
        for chunk in chunks(sorted(set(keys.values()))):
            for row in conn.execute(sa.select(ENTRIES.c.entry_key, ENTRIES.c.customer_id, ENTRIES.c.points,
                                              ENTRIES.c.detail)
                                    .where(ENTRIES.c.entry_key.in_(chunk))):
                existing[row.entry_key] = row
        customers = sorted({request.customer_id for request in requests})
        lots_of: defaultdict[int, list[Any]] = defaultdict(list)
        for chunk in chunks(customers):
            for lot in conn.execute(
                sa.select(LOTS.c.id, LOTS.c.customer_id, LOTS.c.remaining, LOTS.c.spent, LOTS.c.kinds,
                          LOTS.c.earned_at, LOTS.c.expires_at)
                .where(LOTS.c.customer_id.in_(chunk), LOTS.c.remaining != 0)
            ):
                lots_of[lot.customer_id].append(lot)
        for customer_lots in lots_of.values():
            customer_lots.sort(key=spending_order)
        left = {lot.id: lot.remaining for lots in lots_of.values() for lot in lots}
        spent = {lot.id: lot.spent for lots in lots_of.values() for lot in lots}
        seen: dict[str, int] = {}
        order = sorted(range(len(requests)), key=lambda index: (requests[index].at, index))
        taken_by: dict[int, list[tuple[int, int]]] = {}
        for index in order:
            request = requests[index]
            key = keys[index]
            stored = existing.get(key)
            if stored is not None or key in seen:
                if stored is not None:
                    kind = (stored.detail or "").split(": ", 1)[0] or None if request.kind else None
                    same = (stored.customer_id, -stored.points, kind) == (request.customer_id, request.points,
                                                                          request.kind)
                else:
                    earlier = requests[seen[key]]
                    same = (earlier.customer_id, earlier.points, earlier.kind) == (
                        request.customer_id, request.points, request.kind)
                results[index] = RedemptionResult(
                    request.redemption_id, "duplicate" if same else "refused", request.points,
                    None if same else "this id was already used for another redemption")
                continue
            seen[key] = index
            lots = lots_of.get(request.customer_id, [])
            usable = [lot for lot in lots if _usable(lot, left[lot.id], request.kind, request.at)]
            debt = sum(left[lot.id] for lot in lots if left[lot.id] < 0)
            allowed = sum(left[lot.id] for lot in usable) + debt
            if request.points > allowed:
                what = f"for {request.kind}" if request.kind else "in all"
                results[index] = RedemptionResult(
                    request.redemption_id, "refused", request.points,
                    f"not enough points: {max(allowed, 0)} redeemable {what}, {request.points} asked",
                    balance=max(allowed, 0))
                continue
            need = request.points
            taken: list[tuple[int, int]] = []
            for lot in usable:
                if need <= 0:
                    break
                take = min(need, left[lot.id])
                left[lot.id] -= take
                spent[lot.id] += take
                need -= take
                taken.append((lot.id, take))
            taken_by[index] = taken
            results[index] = RedemptionResult(request.redemption_id, "redeemed", request.points,
                                              balance=allowed - request.points, lots=tuple(taken))
        if taken_by:
            entries = [{
                "customer_id": requests[index].customer_id, "kind": entry_kind, "points": -requests[index].points,
                "source": source, "source_ref": requests[index].redemption_id[:160], "lot_id": None,
                "entry_key": keys[index],
                "detail": _detail(requests[index]),
                "occurred_at": requests[index].at, "recorded_at": now,
            } for index in sorted(taken_by)]
            ids: dict[str, int] = {}
            for chunk in chunks(entries):
                result = insert_rows(conn, ENTRIES, chunk, finish=lambda insert: insert.returning(
                    ENTRIES.c.id, ENTRIES.c.entry_key))
                ids.update({row.entry_key: row.id for row in result})
            allocations = [{"entry_id": ids[keys[index]], "lot_id": lot_id, "points": take}
                           for index, taken in taken_by.items() for lot_id, take in taken]
            for chunk in chunks(allocations):
                insert_rows(conn, ALLOCATIONS, chunk)
            touched = {lot_id for taken in taken_by.values() for lot_id, _ in taken}
            set_lot_state(conn, {lot_id: {"remaining": left[lot_id], "spent": spent[lot_id]} for lot_id in touched})
    return [results[index] for index in range(len(requests))]


def _detail(request: Redemption) -> str | None:
    # "goods: tea set" for a redemption, the reason alone for an adjustment (no kind).
    parts = [part for part in (request.kind, request.note) if part]
    return ": ".join(parts)[:500] or None


@dataclass(frozen=True, slots=True)
class AdjustmentResult:
    """What became of one adjustment."""

    adjustment_id: str
    status: Literal["adjusted", "duplicate", "refused"]
    points: int
    reason: str | None = None


def adjust(engine: Engine, loyalty: LoyaltyConfig, *, customer_id: int, points: int, adjustment_id: str,
           reason: str, at: datetime, now: datetime) -> AdjustmentResult:
    """Add ``points`` (positive: a new lot) or take them (negative: spent like a redemption
    of any kind, refused beyond the balance), keyed by ``adjustment_id``."""
    if points == 0 or abs(points) > MAX_POINTS:
        return AdjustmentResult(adjustment_id, "refused", points, f"points must be between -{MAX_POINTS} and "
                                f"{MAX_POINTS}, and not 0")
    if points < 0:
        result = redeem(engine, [Redemption(adjustment_id, customer_id, -points, None, at, note=reason)],
                        now=now, source="adjustment", entry_kind="adjust")[0]
        status = {"redeemed": "adjusted"}.get(result.status, result.status)
        return AdjustmentResult(adjustment_id, status, points, result.reason)  # type: ignore[arg-type]
    with engine.begin() as conn:
        lock_customers(conn, [customer_id])
        row = conn.execute(sa.select(Customer.timezone, Customer.phone).where(Customer.id == customer_id)).first()
        if row is None:
            return AdjustmentResult(adjustment_id, "refused", points, "no such customer")
        zone = customer_zone({"timezone": row.timezone, "phone": row.phone}, ZoneInfo(loyalty.timezone))
        written = add_lots(conn, [NewLot(
            customer_id=customer_id, source="adjustment", source_ref=adjustment_id[:160], rule="adjustment",
            points=points, kinds=kinds_text(loyalty.kinds), earned_at=at,
            expires_at=expires_at(at, loyalty.adjustments_valid_for, zone),
        )], now=now, kind="adjust", detail=reason)
        if not written:
            return AdjustmentResult(adjustment_id, "duplicate", points)
        settle_debts(conn, now=now)
    return AdjustmentResult(adjustment_id, "adjusted", points)


__all__ = ["MAX_POINTS", "AdjustmentResult", "Redemption", "RedemptionResult", "adjust", "redeem"]
