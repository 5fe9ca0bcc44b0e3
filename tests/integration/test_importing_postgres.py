"""The idempotent bulk upserts of campaigns.importing on a real PostgreSQL.

Each test gets a throwaway database, created and dropped around it. Without a reachable
server the tests skip locally and fail under CI (``CI`` set).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.db import make_engine, upgrade
from campaigns.importing import RowError, import_file
from campaigns.models import Consent, Customer, Event, Order, OrderItem

pytestmark = pytest.mark.integration

SERVER = "postgres@127.0.0.1:5432"


def _admin_connection() -> Any:
    import psycopg

    try:
        return psycopg.connect(
            f"postgresql://{SERVER}/postgres", autocommit=True, connect_timeout=3
        )
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {SERVER} is unreachable: {str(exc).strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    name = f"nurture_test_import_{secrets.token_hex(6)}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(f"postgresql://{SERVER}/{name}")
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()  # close pooled connections first, or DROP would wait on them
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            model.__tablename__: conn.execute(
                sa.select(sa.func.count()).select_from(model.__table__)
            ).scalar_one()
            for model in (Customer, Consent, Order, OrderItem, Event)
        }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_idempotent_upserts_on_postgres(pg_engine: Engine, tmp_path: Path) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "customer_id,name,email,email_consent,vip\n"
        "c1,Ann,ann@example.com,yes,true\n"
        "c2,Bob,bob@example.com,no,false\n"
        "c2,Bob B,bob@example.com,no,false\n"  # duplicate key in one batch: last wins
        "c3,Bad,not-an-email,,\n",
        encoding="utf-8",
    )
    orders = write_jsonl(
        tmp_path / "orders.jsonl",
        [
            {
                "order_id": "o1",
                "customer_id": "c1",
                "ordered_at": "2025-03-01T10:00:00+08:00",
                "amount": 50,
                "items": [{"sku": "A", "price": 20}, {"sku": "B", "price": 30}],
            },
            {"order_id": "o2", "customer_id": "ghost", "ordered_at": "2025-03-01", "amount": 1},
        ],
    )
    events = write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"customer_id": "c1", "name": "signup", "occurred_at": "2025-02-01"},
            {
                "event_id": "ev-1",
                "customer_id": "c2",
                "name": "review",
                "occurred_at": "2025-03-02",
                "properties": {"stars": 4},
            },
        ],
    )

    for _ in range(2):  # the second pass must change nothing
        report = import_file(pg_engine, "customers", customers, batch_size=2)
        assert report.imported == 3
        assert report.rejected == [RowError(5, "email: 'not-an-email' is not a valid address")]
        report = import_file(pg_engine, "orders", orders)
        assert report.imported == 1
        assert report.rejected == [
            RowError(2, "customer_id 'ghost' not found: import customers first")
        ]
        assert import_file(pg_engine, "events", events).imported == 2
        assert counts(pg_engine) == {
            "customer": 2,
            "consent": 2,
            "orders": 1,
            "order_item": 2,
            "event": 2,
        }

    # A changed file updates in place: new name, new amount, items replaced.
    customers.write_text("customer_id,name,tier\nc1,Ann Lee,gold\n", encoding="utf-8")
    import_file(pg_engine, "customers", customers)
    write_jsonl(
        orders,
        [
            {
                "order_id": "o1",
                "customer_id": "c1",
                "ordered_at": "2025-03-01T10:00:00+08:00",
                "amount": 75.5,
                "items": [{"sku": "C", "quantity": 3, "price": 25.5}],
            }
        ],
    )
    import_file(pg_engine, "orders", orders)
    assert counts(pg_engine) == {
        "customer": 2,
        "consent": 2,
        "orders": 1,
        "order_item": 1,
        "event": 2,
    }
    with pg_engine.connect() as conn:
        name, email, attributes = conn.execute(
            sa.select(Customer.name, Customer.email, Customer.attributes).where(
                Customer.external_id == "c1"
            )
        ).one()
        assert (name, email) == ("Ann Lee", "ann@example.com")
        assert attributes == {"vip": True, "tier": "gold"}
        assert (
            conn.execute(sa.select(Customer.name).where(Customer.external_id == "c2")).scalar_one()
            == "Bob B"
        )
        assert conn.execute(sa.select(Order.amount)).scalar_one() == 75.5
        assert conn.execute(sa.select(OrderItem.sku, OrderItem.quantity)).one() == ("C", 3)
