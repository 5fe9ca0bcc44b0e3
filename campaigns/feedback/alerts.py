"""Staff alerts: the ledger of messages to a staff channel (a WeCom group robot or a
webhook) about a detractor's score or a complaint.

An alert is written to ``staff_alert`` (status ``queued``) in the same transaction as
what caused it, keyed by ``alert_key`` (UNIQUE): ``feedback:<feedback id>`` for a
detractor, ``reply:<response id>`` for a complaint. A provider's repeated push or a
second pass over the same reply finds the key taken and queues nothing, so every cause
alerts once. The worker (``workers/jobs/staff_alerts.py``) sends queued rows later;
the domain never talks to a staff channel itself.

Sending is at most once per lease: :func:`take_due_alerts` leases queued rows (their
``due_at`` moved to the lease's end and the attempt counted, in one conditional UPDATE, so
two workers never take the same row), the worker posts each, and :func:`settle_alert`
records the answer: ``sent``, ``failed`` (with the error), or queued again for a later
retry. A worker that dies after the staff channel accepted an alert but before it was
settled leaves the row queued: it is sent again after the lease. That is the one way an
alert goes out twice; webhook receivers can drop the repeat by its ``Idempotency-Key`` /
``webhook-id`` (the alert key), a WeCom group shows it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.store.db import COUNT_ROWS, dialect_insert
from campaigns.store.models import StaffAlert

#: The kinds of alert (``staff_alert.kind``).
ALERT_KINDS = frozenset({"detractor", "complaint"})
#: What :func:`settle_alert` may record.
SETTLED_STATUSES = frozenset({"sent", "failed", "queued"})
#: Characters of an error kept on the row (the column's size).
ERROR_CHARS = 512


@dataclass(frozen=True)
class DueAlert:
    """A queued alert leased for sending: what it says and where it goes."""

    id: int
    key: str
    channel: str
    kind: str
    customer_id: int | None
    payload: dict[str, Any]
    created_at: datetime
    #: This attempt's number, from 1.
    attempt: int


def queue_staff_alert(conn: Connection, *, channel: str, key: str, kind: str,
                      customer_id: int | None, payload: dict[str, Any], now: datetime) -> bool:
    """Queue an alert to the staff channel ``channel`` unless one with ``key`` exists.

    ``payload`` is what the alert says (JSON: customer, score, text, campaign ...).
    Returns True when the row is new, False when ``key`` was already queued (or sent):
    callers run this in their own transaction, so the alert commits with its cause.
    """
    if kind not in ALERT_KINDS:
        raise ValueError(f"unknown staff alert kind {kind!r} (expected one of {sorted(ALERT_KINDS)})")
    result = conn.execute(
        dialect_insert(conn, StaffAlert.__table__)
        .values(alert_key=key, channel=channel, kind=kind, customer_id=customer_id,
                payload=payload, status="queued", attempts=0, created_at=now)
        .on_conflict_do_nothing(index_elements=["alert_key"]),
        execution_options=COUNT_ROWS,
    )
    return result.rowcount == 1


def take_due_alerts(engine: Engine, *, now: datetime, lease: timedelta, limit: int = 20,
                    channels: frozenset[str] | None = None) -> list[DueAlert]:
    """Lease up to ``limit`` queued alerts due at ``now`` (oldest first) until ``now +
    lease``, counting their attempt; only ``channels``' when given. A row another worker
    took meanwhile is not returned (the UPDATE re-checks that it is still due)."""
    table = StaffAlert.__table__
    due = sa.and_(table.c.status == "queued", sa.or_(table.c.due_at.is_(None), table.c.due_at <= now))
    if channels is not None:
        due = sa.and_(due, table.c.channel.in_(sorted(channels)))
    with engine.begin() as conn:
        ids = list(conn.execute(sa.select(table.c.id).where(due).order_by(table.c.id).limit(limit)).scalars())
        if not ids:
            return []
        rows = conn.execute(
            sa.update(table).where(table.c.id.in_(ids), due)
            .values(due_at=now + lease, attempts=table.c.attempts + 1)
            .returning(table.c.id, table.c.alert_key, table.c.channel, table.c.kind, table.c.customer_id,
                       table.c.payload, table.c.created_at, table.c.attempts)
        ).all()
    return sorted((DueAlert(id=row.id, key=row.alert_key, channel=row.channel, kind=row.kind,
                            customer_id=row.customer_id, payload=dict(row.payload or {}),
                            created_at=row.created_at, attempt=row.attempts) for row in rows),
                  key=lambda alert: alert.id)


def settle_alert(engine: Engine, alert_id: int, *, status: str, now: datetime, error: str | None = None,
                 due_at: datetime | None = None, count_attempt: bool = True) -> bool:
    """Record the outcome of sending a leased alert: ``sent`` (at ``now``), ``failed``
    (with ``error``), or ``queued`` again until ``due_at`` (a retry; ``count_attempt``
    False gives its attempt back: a rate limiter's or a missing secret's wait is no try).
    False when the row is no longer queued (settled by another worker after our lease)."""
    if status not in SETTLED_STATUSES:
        raise ValueError(f"unknown staff alert status {status!r}")
    table = StaffAlert.__table__
    values: dict[str, Any] = {"status": status, "error": error[:ERROR_CHARS] if error else None}
    if status == "sent":
        values.update(sent_at=now, due_at=None)
    elif status == "queued":
        values["due_at"] = due_at or now
        if not count_attempt:
            values["attempts"] = sa.func.max(table.c.attempts - 1, 0) if engine.dialect.name == "sqlite" \
                else sa.func.greatest(table.c.attempts - 1, 0)
    else:
        values["due_at"] = None
    with engine.begin() as conn:
        updated = conn.execute(sa.update(table).where(table.c.id == alert_id, table.c.status == "queued")
                               .values(**values), execution_options=COUNT_ROWS)
    return updated.rowcount == 1


def alerts_due(engine: Engine, *, now: datetime) -> int:
    """How many queued alerts are due at ``now`` (the scheduler wakes the sender when any
    is; the partial index of queued rows keeps this cheap however many were sent)."""
    table = StaffAlert.__table__
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(
            table.c.status == "queued", sa.or_(table.c.due_at.is_(None), table.c.due_at <= now))).scalar_one())


@dataclass(frozen=True)
class AlertRow:
    """A staff alert as ``nurture alerts list`` shows it."""

    key: str
    channel: str
    kind: str
    status: str
    attempts: int
    error: str | None
    created_at: datetime
    sent_at: datetime | None
    due_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready data."""
        return {"key": self.key, "channel": self.channel, "kind": self.kind, "status": self.status,
                "attempts": self.attempts, "error": self.error, "created_at": self.created_at,
                "sent_at": self.sent_at, "due_at": self.due_at}


def list_staff_alerts(engine: Engine, *, statuses: frozenset[str] = frozenset(), limit: int = 50
                      ) -> tuple[list[AlertRow], int]:
    """The newest staff alerts (of ``statuses`` when given), at most ``limit``, and how
    many match in all."""
    table = StaffAlert.__table__
    conditions = [table.c.status.in_(sorted(statuses))] if statuses else []
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(table).where(*conditions)).scalar_one()
        rows = conn.execute(sa.select(table).where(*conditions).order_by(table.c.id.desc()).limit(limit)).all()
    return [AlertRow(key=row.alert_key, channel=row.channel, kind=row.kind, status=row.status,
                     attempts=row.attempts, error=row.error, created_at=row.created_at, sent_at=row.sent_at,
                     due_at=row.due_at) for row in rows], int(total)


def retry_failed_alerts(engine: Engine, *, keys: frozenset[str] = frozenset()) -> int:
    """Queue the failed alerts again (those of ``keys`` when given, else every failed
    one), due at once with their attempts reset: after a bad robot key or webhook URL was
    fixed. Returns how many were queued; a sent alert is never sent again this way."""
    table = StaffAlert.__table__
    conditions = [table.c.status == "failed"]
    if keys:
        conditions.append(table.c.alert_key.in_(sorted(keys)))
    with engine.begin() as conn:
        updated = conn.execute(sa.update(table).where(*conditions).values(status="queued", attempts=0, due_at=None),
                               execution_options=COUNT_ROWS)
    return int(updated.rowcount)
