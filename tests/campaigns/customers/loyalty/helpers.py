"""Writing the facts loyalty reads (customers, orders, events) straight into a database,
and reading back what the ledger holds, for the loyalty tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.store.models import Customer, Event, Order, PointsEntry, PointsLot


def add_customer(engine: sa.Engine, external_id: str, *, timezone: str | None = "Asia/Shanghai",
                 at: datetime) -> int:
    """A customer row; returns its id."""
    with engine.begin() as conn:
        return conn.execute(sa.insert(Customer).values(
            external_id=external_id, timezone=timezone, created_at=at, updated_at=at, attributes={},
        ).returning(Customer.id)).scalar_one()


def add_order(engine: sa.Engine, customer_id: int, order_id: str, *, at: datetime, amount: float,
              shipping: float | None = None, channel: str | None = None, status: str = "paid") -> None:
    """An order row."""
    with engine.begin() as conn:
        conn.execute(sa.insert(Order).values(order_id=order_id, customer_id=customer_id, ordered_at=at,
                                             amount=amount, shipping=shipping, channel=channel, status=status))


def set_status(engine: sa.Engine, order_id: str, status: str) -> None:
    """Refund or cancel an order, as a re-import with a new status does."""
    with engine.begin() as conn:
        conn.execute(sa.update(Order).where(Order.order_id == order_id).values(status=status))


def add_event(engine: sa.Engine, customer_id: int, name: str, key: str, *, at: datetime) -> None:
    """An event row (``key`` is its dedupe key)."""
    with engine.begin() as conn:
        conn.execute(sa.insert(Event).values(customer_id=customer_id, name=name, occurred_at=at, properties={},
                                             dedupe_key=key))


def lots(engine: sa.Engine, customer_id: int) -> list[dict[str, Any]]:
    """The customer's lots, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(PointsLot).where(PointsLot.customer_id == customer_id)
                            .order_by(PointsLot.id)).mappings().all()
    return [dict(row) for row in rows]


def entries(engine: sa.Engine, customer_id: int) -> list[tuple[str, int, str]]:
    """The customer's ledger as ``(kind, points, source_ref)``, in order."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(PointsEntry.kind, PointsEntry.points, PointsEntry.source_ref)
            .where(PointsEntry.customer_id == customer_id).order_by(PointsEntry.id))]
