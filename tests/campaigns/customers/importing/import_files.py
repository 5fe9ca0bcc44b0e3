"""Import files written into ``tmp_path``, and what an import left in the database: shared
by the tests of campaigns/customers/importing/ (the migrated SQLite ``engine`` fixture is in
this folder's conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from campaigns.customers.importing.files import import_file
from campaigns.store.models import Customer, Order, OrderItem


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write ``text`` to ``tmp_path/name`` as UTF-8."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(tmp_path: Path, name: str, rows: list[Any]) -> Path:
    """Write ``rows`` as JSON lines."""
    return write(tmp_path, name, "".join(json.dumps(row) + "\n" for row in rows))


def count(engine: Engine, model: Any) -> int:
    """How many rows ``model``'s table holds."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(model.__table__)).scalar_one()


def customer(engine: Engine, external_id: str) -> Customer:
    """The customer stored under ``external_id``."""
    with Session(engine) as session:
        return session.exec(select(Customer).where(Customer.external_id == external_id)).one()


def seed_customers(engine: Engine, tmp_path: Path, *ids: str) -> None:
    """Import customers with just these ids (orders and events need them first)."""
    path = write(tmp_path, "seed.csv", "customer_id\n" + "".join(f"{i}\n" for i in ids))
    assert import_file(engine, "customers", path).imported == len(ids)


def order_items(engine: Engine, order_id: str) -> list[tuple[str, str | None, int, float]]:
    """(sku, category, quantity, price) of each item of ``order_id``, by sku."""
    with Session(engine) as session:
        rows = session.exec(
            select(OrderItem).join(Order).where(Order.order_id == order_id).order_by(OrderItem.sku)
        ).all()
        return [(i.sku, i.category, i.quantity, i.price) for i in rows]
