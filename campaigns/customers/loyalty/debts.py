"""Debts: points taken back after they were spent, settled by later earnings.

A refund of an order whose points were already redeemed cannot take them back from the
order's lot; with ``negative_balance = "carry"`` the shortfall becomes a ``debt`` lot
(negative ``remaining``, no expiry), and :func:`settle_debts` pays it from the customer's
positive lots, those expiring first first. Settling moves points between lots and leaves
the balance as it is (the ledger's sum is unchanged); each payment is an allocation of the
reversal entry that made the debt, so the history shows which lot paid it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.customers.loyalty.ledger import ENTRIES, LOTS, entry_key, set_lot_state
from campaigns.store.bulk import insert_rows
from campaigns.store.models import PointsAllocation

ALLOCATIONS = PointsAllocation.__table__


def spending_order(lot: Any) -> tuple[Any, ...]:
    """The order lots are spent in: the first to expire first (never-expiring last), then
    the oldest."""
    return (lot.expires_at is None, lot.expires_at or lot.earned_at, lot.earned_at, lot.id)


def settle_debts(conn: Connection, *, now: datetime) -> int:
    """Pay every debt from its customer's unexpired positive lots; returns the points paid.
    Reads only customers with a debt (a partial index holds them)."""
    debtors = sa.select(LOTS.c.customer_id).where(LOTS.c.remaining < 0).distinct().scalar_subquery()
    lots = conn.execute(
        sa.select(LOTS.c.id, LOTS.c.customer_id, LOTS.c.source, LOTS.c.source_ref, LOTS.c.remaining,
                  LOTS.c.earned_at, LOTS.c.expires_at)
        .where(LOTS.c.customer_id.in_(debtors), LOTS.c.remaining != 0,
               sa.or_(LOTS.c.expires_at.is_(None), LOTS.c.expires_at > now))
    ).all()
    if not lots:
        return 0
    by_customer: defaultdict[int, list[Any]] = defaultdict(list)
    for lot in lots:
        by_customer[lot.customer_id].append(lot)
    changes: dict[int, dict[str, Any]] = {}
    payments: list[tuple[str, int, int]] = []  # (debt's reversal entry key, paying lot, points)
    paid_total = 0
    for customer_lots in by_customer.values():
        debts = sorted((lot for lot in customer_lots if lot.remaining < 0), key=lambda lot: lot.id)
        credit = sorted((lot for lot in customer_lots if lot.remaining > 0), key=spending_order)
        left = {lot.id: lot.remaining for lot in customer_lots}
        for debt in debts:
            for lot in credit:
                owed = -left[debt.id]
                if owed <= 0:
                    break
                take = min(owed, left[lot.id])
                if take <= 0:
                    continue
                left[lot.id] -= take
                left[debt.id] += take
                paid_total += take
                payments.append((debt.source_ref, lot.id, take))
        for lot in customer_lots:
            if left[lot.id] != lot.remaining:
                changes[lot.id] = {"remaining": left[lot.id]}
    set_lot_state(conn, changes)
    if payments:
        # A debt lot's source_ref is the reversed source ("order:O-1"): its entry names it.
        keys = sorted({entry_key("reverse", *ref.split(":", 1)) for ref, _, _ in payments})
        ids = dict(conn.execute(sa.select(ENTRIES.c.entry_key, ENTRIES.c.id).where(ENTRIES.c.entry_key.in_(keys))).all())
        rows = [{"entry_id": ids[entry_key("reverse", *ref.split(":", 1))], "lot_id": lot_id, "points": take}
                for ref, lot_id, take in payments if entry_key("reverse", *ref.split(":", 1)) in ids]
        if rows:
            insert_rows(conn, ALLOCATIONS, rows)
    return paid_total


__all__ = ["ALLOCATIONS", "settle_debts", "spending_order"]
