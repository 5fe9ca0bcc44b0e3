"""Named leases in the database: a lock that a crashed holder cannot keep forever.

The scheduler takes the ``scheduler`` lease before each tick, so one scheduler process
works while the others stand by; when the leader stops renewing, the lease expires and
another takes over. Ticks are idempotent anyway (UNIQUE run claims and send keys), so
the overlap of a leader that stalls past its lease costs work, not duplicates.

Portable SQL (SQLite and PostgreSQL): an INSERT for a free name, else a conditional
UPDATE that succeeds only for the current holder or once the lease has expired; the
row count says who won.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.store.db import COUNT_ROWS, dialect_insert
from campaigns.store.models import Lease

#: The scheduler's leader lease.
SCHEDULER_LEASE = "scheduler"


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease, since when and until when."""

    holder: str
    acquired_at: datetime
    expires_at: datetime


def acquire_lease(engine: Engine, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Take or renew ``name`` for ``holder`` until ``now + ttl``; False if another holder's
    lease is still running."""
    table = Lease.__table__
    with engine.begin() as conn:
        inserted = conn.execution_options(**COUNT_ROWS).execute(
            dialect_insert(conn, table)
            .values(name=name, holder=holder, acquired_at=now, expires_at=now + ttl)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        if inserted.rowcount == 1:
            return True
        # Renewal keeps acquired_at; a takeover resets it.
        acquired = sa.case((table.c.holder == holder, table.c.acquired_at), else_=sa.literal(now, Lease.acquired_at.type))
        updated = conn.execution_options(**COUNT_ROWS).execute(
            sa.update(table)
            .where(table.c.name == name, sa.or_(table.c.holder == holder, table.c.expires_at <= now))
            .values(holder=holder, acquired_at=acquired, expires_at=now + ttl)
        )
        return updated.rowcount == 1


def release_lease(engine: Engine, name: str, holder: str) -> bool:
    """Give ``name`` up if ``holder`` holds it (a clean shutdown hands over at once)."""
    table = Lease.__table__
    with engine.begin() as conn:
        deleted = conn.execution_options(**COUNT_ROWS).execute(
            sa.delete(table).where(table.c.name == name, table.c.holder == holder)
        )
        return deleted.rowcount == 1


def lease_holder(engine: Engine, name: str) -> LeaseHolder | None:
    """The current holder of ``name`` (possibly expired), or None."""
    table = Lease.__table__
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(table.c.holder, table.c.acquired_at, table.c.expires_at).where(table.c.name == name)
        ).first()
    return LeaseHolder(row.holder, row.acquired_at, row.expires_at) if row else None
