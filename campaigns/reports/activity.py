"""What one customer did and went through: their events and their campaign enrolments,
for the single-customer view (:func:`campaigns.reports.customers.customer_view`).

Read-only, plain dicts out; each function reads one customer's rows through the indexes on
``customer_id`` (``ix_event_customer_name_time``, ``enrollment.customer_id``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from campaigns.store.models import Delivery, Enrollment, Event


def _rows(conn: sa.Connection, query: sa.Select) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(query).mappings()]


def customer_events(conn: sa.Connection, customer_id: int, *, limit: int) -> tuple[list[dict[str, Any]], int]:
    """One customer's events, newest first (at most ``limit``), and how many there are."""
    event = Event.__table__.c
    rows = _rows(conn, sa.select(event.name, event.occurred_at, event.properties)
                 .where(event.customer_id == customer_id)
                 .order_by(event.occurred_at.desc(), event.id.desc()).limit(limit))
    total = conn.execute(sa.select(sa.func.count()).select_from(Event.__table__)
                         .where(event.customer_id == customer_id)).scalar_one()
    return rows, total


def customer_enrollments(conn: sa.Connection, customer_id: int, *, limit: int) -> tuple[list[dict[str, Any]], int]:
    """One customer's enrolments, newest first (at most ``limit``), each with the A/B
    variants its deliveries got, and how many enrolments there are."""
    enrollment = Enrollment.__table__.c
    rows = _rows(conn, sa.select(enrollment.id, enrollment.campaign, enrollment.occurrence, enrollment.state,
                                 enrollment.holdout, enrollment.enrolled_at, enrollment.exited_at)
                 .where(enrollment.customer_id == customer_id)
                 .order_by(enrollment.enrolled_at.desc(), enrollment.id.desc()).limit(limit))
    total = conn.execute(sa.select(sa.func.count()).select_from(Enrollment.__table__)
                         .where(enrollment.customer_id == customer_id)).scalar_one()
    variants: dict[int, list[dict[str, Any]]] = {row["id"]: [] for row in rows}
    if rows:
        delivery = Delivery.__table__.c
        # One delivery per step and enrolment carries the variant (the send key is unique).
        for row in _rows(conn, sa.select(delivery.enrollment_id, delivery.step, delivery.variant, delivery.template)
                         .where(delivery.enrollment_id.in_(list(variants)), delivery.variant.is_not(None))
                         .order_by(delivery.enrollment_id, delivery.step, delivery.id)):
            variants[row.pop("enrollment_id")].append(row)
    for row in rows:
        row["holdout"] = bool(row["holdout"])
        row["variants"] = variants[row.pop("id")]
    return rows, total
