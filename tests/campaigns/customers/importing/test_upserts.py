"""Upserts (campaigns/customers/importing/upserts.py): a re-import updates in place instead of
duplicating, keeps what a file does not give (and consent withdrawn elsewhere), and a row the
database refuses is rejected alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from campaigns.customers.importing.files import import_file
from campaigns.customers.importing.report import RowError
from campaigns.store.models import Consent, Customer, Order, OrderItem
from tests.campaigns.customers.importing.import_files import (
    count,
    customer,
    order_items,
    seed_customers,
    write,
    write_jsonl,
)


def test_customer_reimport_is_idempotent_and_updates(engine: Engine, tmp_path: Path) -> None:
    first = write(
        tmp_path,
        "a.csv",
        "customer_id,name,email,vip,city\n"
        "c1,Ann,ann@example.com,true,Shanghai\n"
        "c2,Bob,bob@example.com,false,\n",
    )
    import_file(engine, "customers", first)
    created = customer(engine, "c1").created_at
    report = import_file(engine, "customers", first)
    assert (report.imported, report.rejected) == (2, [])
    assert count(engine, Customer) == 2

    # Changed name, blank email (= not given: kept), new attribute merged with stored ones.
    second = write(tmp_path, "b.csv", "customer_id,name,email,tier\nc1,Ann Lee,,gold\n")
    import_file(engine, "customers", second)
    assert count(engine, Customer) == 2
    ann = customer(engine, "c1")
    assert ann.name == "Ann Lee"
    assert ann.email == "ann@example.com"
    assert ann.attributes == {"vip": True, "city": "Shanghai", "tier": "gold"}
    assert ann.created_at == created  # not given, so not overwritten
    assert ann.updated_at >= created


def test_import_does_not_regrant_consent_withdrawn_elsewhere(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path, "c.csv", "customer_id,email_consent\nc1,yes\n")
    import_file(engine, "customers", path)
    with engine.begin() as conn:  # the customer unsubscribes through a link
        conn.execute(sa.update(Consent.__table__).values(status="withdrawn", source="unsubscribe"))
    import_file(engine, "customers", path)  # a stale export says "yes" again
    with Session(engine) as session:
        consent = session.exec(select(Consent)).one()
    assert (consent.status, consent.source) == ("withdrawn", "unsubscribe")


def test_duplicate_key_in_one_batch_keeps_last(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "customer_id,name\nc1,First\nc1,Second\nc2,Other\n")
    report = import_file(engine, "customers", path)
    assert (report.rows_read, report.imported, report.rejected) == (3, 3, [])
    assert count(engine, Customer) == 2
    assert customer(engine, "c1").name == "Second"


def test_order_reimport_replaces_items(engine: Engine, tmp_path: Path) -> None:
    seed_customers(engine, tmp_path, "c1")
    first = [
        {
            "order_id": "o1",
            "customer_id": "c1",
            "ordered_at": "2025-03-01",
            "amount": 50,
            "items": [{"sku": "A", "price": 20}, {"sku": "B", "price": 30}],
        }
    ]
    import_file(engine, "orders", write_jsonl(tmp_path, "o.jsonl", first))
    import_file(engine, "orders", write_jsonl(tmp_path, "o.jsonl", first))
    assert count(engine, Order) == 1
    assert count(engine, OrderItem) == 2

    second = [
        {
            "order_id": "o1",
            "customer_id": "c1",
            "ordered_at": "2025-03-01",
            "amount": 75,
            "channel": "store",
            "items": [{"sku": "C", "quantity": 3, "price": 25}],
        }
    ]
    report = import_file(engine, "orders", write_jsonl(tmp_path, "o2.jsonl", second))
    assert (report.imported, report.rejected) == (1, [])
    assert count(engine, Order) == 1
    assert order_items(engine, "o1") == [("C", None, 3, 25.0)]
    with Session(engine) as session:
        order = session.exec(select(Order)).one()
    assert (order.amount, order.channel) == (75.0, "store")

    # No "items" key means items not given: the stored items are kept.
    third = [{"order_id": "o1", "customer_id": "c1", "ordered_at": "2025-03-01", "amount": 75}]
    import_file(engine, "orders", write_jsonl(tmp_path, "o3.jsonl", third))
    assert order_items(engine, "o1") == [("C", None, 3, 25.0)]


def test_a_row_the_database_refuses_is_rejected_alone(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last line of defence: should validation miss a value the database refuses, the
    batch is retried in halves so the valid rows around the bad one are still written."""
    from campaigns.customers.importing import rows as importing_rows

    monkeypatch.setattr(importing_rows, "check_row", lambda row: None)  # let the bad value through
    rows = [{"customer_id": f"c{i}", "email": f"c{i}@example.com"} for i in range(1, 8)]
    rows[4]["name"] = "\ud800"  # SQLite cannot encode it
    path = write(tmp_path, "c.jsonl", "".join(json.dumps(row) + "\n" for row in rows))

    report = import_file(engine, "customers", path, batch_size=7)

    assert report.imported == 6
    assert report.rejected == [RowError(5, "the database refused this row (UnicodeEncodeError)")]
    assert count(engine, Customer) == 6
