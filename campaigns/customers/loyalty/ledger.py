"""Writing the points ledger: new lots with their earn entries, entries keyed once per
source, and the lock a change to someone's points takes first.

Every writer in :mod:`campaigns.customers.loyalty` goes through here, so the two rules
hold everywhere: a lot exists once per source (``uq_points_lot_source``) and an entry once
per ``entry_key``; a replay inserts nothing and changes no balance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.store.bulk import insert_rows
from campaigns.store.chunks import chunks
from campaigns.store.models import Customer, PointsEntry, PointsLot

LOTS = PointsLot.__table__
ENTRIES = PointsEntry.__table__


def kinds_text(kinds: Iterable[str]) -> str:
    """Redeemable kinds as stored on a lot: ``",coupons,goods,"`` (sorted, comma-framed,
    so ``kinds LIKE '%,goods,%'`` finds one)."""
    return "," + ",".join(sorted(set(kinds))) + ","


def entry_key(kind: str, source: str, ref: str) -> str:
    """The UNIQUE key of an entry: ``earn:order:O-1001``, ``redeem:redemption:R7`` ..."""
    return f"{kind}:{source}:{ref}"[:200]


@dataclass(frozen=True, slots=True)
class NewLot:
    """A lot about to be earned (what :func:`add_lots` writes)."""

    customer_id: int
    source: str
    source_ref: str
    rule: str
    points: int
    kinds: str
    earned_at: datetime
    expires_at: datetime | None


def add_lots(conn: Connection, lots: Sequence[NewLot], *, now: datetime, kind: str = "earn",
             detail: str | None = None) -> list[tuple[int, NewLot]]:
    """Insert ``lots`` and one entry each (``earn``, or ``adjust`` for a manual lot, whose
    ``detail`` is its reason); a lot whose source already earned is skipped. Returns
    ``(lot id, lot)`` of the lots written."""
    written: list[tuple[int, NewLot]] = []
    for chunk in chunks(list(lots)):
        rows = [
            {"customer_id": lot.customer_id, "source": lot.source, "source_ref": lot.source_ref,
             "rule": lot.rule, "points": lot.points, "remaining": lot.points, "spent": 0,
             "kinds": lot.kinds, "earned_at": lot.earned_at, "expires_at": lot.expires_at}
            for lot in chunk
        ]
        result = insert_rows(conn, LOTS, rows, finish=lambda insert: insert.on_conflict_do_nothing(
            index_elements=["source", "source_ref"]).returning(LOTS.c.id, LOTS.c.source, LOTS.c.source_ref))
        new = {(row.source, row.source_ref): row.id for row in result}
        if not new:
            continue
        entries = []
        for lot in chunk:
            lot_id = new.get((lot.source, lot.source_ref))
            if lot_id is None:
                continue
            written.append((lot_id, lot))
            entries.append({
                "customer_id": lot.customer_id, "kind": kind, "points": lot.points,
                "source": lot.source, "source_ref": lot.source_ref, "lot_id": lot_id,
                "entry_key": entry_key(kind, lot.source, lot.source_ref), "detail": (detail or lot.rule)[:500],
                "occurred_at": lot.earned_at, "recorded_at": now,
            })
        insert_rows(conn, ENTRIES, entries,
                    finish=lambda insert: insert.on_conflict_do_nothing(index_elements=["entry_key"]))
    return written


def lock_customers(conn: Connection, customer_ids: Iterable[int]) -> None:
    """Serialise changes to these customers' points with any other writer: on PostgreSQL
    the customer rows are locked until the transaction ends; on SQLite the no-op write
    takes the database's write lock before anything is read (a transaction that read
    first could not upgrade once another had written)."""
    ids = sorted(set(customer_ids))
    for chunk in chunks(ids):
        conn.execute(sa.update(Customer).where(Customer.id.in_(chunk)).values(id=Customer.id))


def set_lot_state(conn: Connection, changes: dict[int, dict[str, Any]]) -> None:
    """Write new ``remaining`` / ``spent`` / ``reversed_at`` values, one dict per lot id
    (every dict with the same keys)."""
    if not changes:
        return
    names = sorted(next(iter(changes.values())))
    statement = (
        sa.update(LOTS)
        .where(LOTS.c.id == sa.bindparam("lot_pk"))
        .values({name: sa.bindparam(f"new_{name}") for name in names})
    )
    params = [{"lot_pk": lot_id, **{f"new_{name}": values[name] for name in names}}
              for lot_id, values in sorted(changes.items())]
    for chunk in chunks(params):
        conn.execute(statement, chunk)


__all__ = ["ENTRIES", "LOTS", "NewLot", "add_lots", "entry_key", "kinds_text", "lock_customers", "set_lot_state"]
