"""Expiry: lots whose time is up lose what is left of them, one ``expire`` entry each.

Two set-based statements in one transaction, whatever the number of lots: the entries are
``INSERT ... SELECT`` from the open lots past their ``expires_at`` (a partial index holds
the open lots by expiry), then those lots are emptied; what the insert returns is the
report. An expiry is keyed by its lot, so
running the job twice expires nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.customers.loyalty.ledger import ENTRIES, LOTS


@dataclass
class ExpiryReport:
    """What one :func:`expire_lots` call did."""

    lots: int = 0
    points: int = 0


def expire_lots(engine: Engine, *, now: datetime) -> ExpiryReport:
    """Expire every open lot whose ``expires_at`` is at or before ``now``."""
    due = sa.and_(LOTS.c.remaining > 0, LOTS.c.expires_at.is_not(None), LOTS.c.expires_at <= now)
    key = sa.literal("expire:lot:") + sa.cast(LOTS.c.id, sa.String)
    source = sa.select(
        LOTS.c.customer_id, sa.literal("expire"), -LOTS.c.remaining, sa.literal("lot"),
        sa.cast(LOTS.c.id, sa.String), LOTS.c.id, key, LOTS.c.rule, LOTS.c.expires_at,
        sa.literal(now, type_=ENTRIES.c.recorded_at.type),
    ).where(due)
    columns = ["customer_id", "kind", "points", "source", "source_ref", "lot_id", "entry_key", "detail",
               "occurred_at", "recorded_at"]
    insert = sa.insert(ENTRIES).from_select(columns, source).returning(ENTRIES.c.points)
    with engine.begin() as conn:
        # The entries written say what expired. A count(*) of the due lots first was a
        # statement of its own, which PostgreSQL planned as a parallel scan of every lot:
        # it cannot know that few open lots are past their expiry.
        if conn.dialect.name == "postgresql":
            # Counted by the server (a first run expires millions of lots at once).
            written = insert.cte("expired")
            lots, total = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(written.c.points), 0))
                                       .select_from(written)).one()
        else:
            points = conn.execute(insert).scalars().all()
            lots, total = len(points), sum(points)
        if not lots:
            return ExpiryReport()
        conn.execute(sa.update(LOTS).where(due).values(remaining=0))
    return ExpiryReport(lots=int(lots), points=-int(total))


__all__ = ["ExpiryReport", "expire_lots"]
