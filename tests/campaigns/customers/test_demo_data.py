"""What `nurture demo` may reset: campaigns.customers.demo_data.inspect_demo_database reads a SQLite
file without creating or changing it and names the rows the demo did not write."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from campaigns.customers.demo_data import inspect_demo_database, mark_demo_database
from campaigns.store.db import make_engine, upgrade
from campaigns.store.models import Customer, Order, utcnow


def migrated(path: Path) -> Path:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def add_customer(path: Path, external_id: str, order_id: str | None = None) -> None:
    engine = make_engine(f"sqlite:///{path}")
    now = utcnow()
    with engine.begin() as conn:
        customer_id = conn.execute(sa.insert(Customer.__table__).values(
            external_id=external_id, created_at=now, updated_at=now, attributes={}).returning(Customer.id)).scalar_one()
        if order_id:
            conn.execute(sa.insert(Order.__table__).values(order_id=order_id, customer_id=customer_id,
                                                           ordered_at=now, amount=1.0))
    engine.dispose()


def test_a_missing_file_is_free_for_the_demo_and_is_not_created(tmp_path):
    path = tmp_path / "nurture.db"

    found = inspect_demo_database(path)

    assert (found.exists, found.created_by_demo, found.foreign) == (False, False, {})
    assert not path.exists()


def test_an_empty_migrated_database_is_free_for_the_demo(tmp_path):
    found = inspect_demo_database(migrated(tmp_path / "nurture.db"))

    assert (found.exists, found.created_by_demo, found.foreign) == (True, False, {})


def test_any_row_in_a_database_the_demo_did_not_create_is_foreign_and_the_file_is_not_changed(tmp_path):
    path = migrated(tmp_path / "nurture.db")
    add_customer(path, "C000001", "O00000001")  # demo-shaped ids do not make it the demo's
    before = hashlib.sha256(path.read_bytes()).hexdigest()

    found = inspect_demo_database(path)

    assert found.foreign == {"customer": 1, "orders": 1}
    assert not found.created_by_demo and found.deliveries == []
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_in_a_demo_database_only_rows_of_other_shapes_are_foreign(tmp_path):
    path = migrated(tmp_path / "nurture.db")
    mark_demo_database(path)
    add_customer(path, "store:S000001", "O00000001")
    add_customer(path, "online:W000002", "O00000002")
    add_customer(path, "C000003")  # a demo from before sources (issue #15) is still the demo's
    add_customer(path, "forgotten:0123abcd")  # a demo customer after `nurture forget`
    assert inspect_demo_database(path).foreign == {}
    assert inspect_demo_database(path).created_by_demo

    add_customer(path, "ACME-7", "INV-2024-1")
    add_customer(path, "store:ACME-8")  # the demo's source, but not an id it writes
    add_customer(path, "online:S000009")  # the other source's id shape

    assert inspect_demo_database(path).foreign == {"customer": 3, "orders": 1}


def test_a_file_that_is_not_a_sqlite_database_is_foreign(tmp_path):
    path = tmp_path / "nurture.db"
    path.write_bytes(b"my notes, not a database\n" * 100)

    found = inspect_demo_database(path)

    assert found.foreign == {"(not a SQLite database)": 1}
    assert path.read_bytes() == b"my notes, not a database\n" * 100


def test_another_applications_sqlite_file_is_foreign(tmp_path):
    path = tmp_path / "nurture.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()

    assert inspect_demo_database(path).foreign == {"notes": 1}


def test_in_a_demo_database_products_not_of_the_demo_catalogue_are_foreign(tmp_path):
    from campaigns.customers.demo_catalogue import PRODUCTS
    from campaigns.store.models import Product

    path = migrated(tmp_path / "nurture.db")
    mark_demo_database(path)
    engine = make_engine(f"sqlite:///{path}")
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.insert(Product.__table__).values(sku=PRODUCTS[0].sku, name="x", attributes={},
                                                         created_at=now, updated_at=now))
    assert inspect_demo_database(path).foreign == {}
    with engine.begin() as conn:  # the user imported their own catalogue into the demo's database
        conn.execute(sa.insert(Product.__table__).values(sku="MY-OWN-1", name="mine", attributes={},
                                                         created_at=now, updated_at=now))
    engine.dispose()

    assert inspect_demo_database(path).foreign == {"product": 1}
