"""Staff alerts: the ledger of messages to a staff channel (a WeCom group robot or a
webhook) about a detractor's score or a complaint.

An alert is written to ``staff_alert`` (status ``queued``) in the same transaction as
what caused it, keyed by ``alert_key`` (UNIQUE): ``feedback:<feedback id>`` for a
detractor, ``reply:<response id>`` for a complaint. A provider's repeated push or a
second pass over the same reply finds the key taken and queues nothing, so every cause
alerts once. The worker (``workers/jobs``) sends queued rows later; the domain never
talks to a staff channel itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from campaigns.store.db import COUNT_ROWS, dialect_insert
from campaigns.store.models import StaffAlert

#: The kinds of alert (``staff_alert.kind``).
ALERT_KINDS = frozenset({"detractor", "complaint"})


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
