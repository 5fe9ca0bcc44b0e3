"""campaigns.store.bulk: the same rows found, updated and inserted on SQLite (row-value IN,
executemany) and PostgreSQL (one unnest of arrays per statement)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from campaigns.store.bulk import in_values, insert_rows, select_keyed, update_keyed
from campaigns.store.chunks import STATEMENT_ROWS
from campaigns.store.models import Customer, CustomerIdentifier, OrderItem

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 6, 2, 12, 0, tzinfo=UTC)
IDENTIFIERS = CustomerIdentifier.__table__
CUSTOMERS = Customer.__table__


def add_customer(conn, external_id: str) -> int:
    return conn.execute(sa.insert(CUSTOMERS).values(external_id=external_id, created_at=NOW, updated_at=NOW,
                                                    attributes={}).returning(CUSTOMERS.c.id)).scalar_one()


def identifier(customer_id: int, kind: str, value: str, **extra) -> dict:
    return {"customer_id": customer_id, "kind": kind, "value": value, "source": "pos", "verified": False,
            "first_seen_at": NOW, "last_seen_at": NOW, **extra}


def test_inserted_rows_come_back_through_returning_and_conflicts_are_skipped(engine):
    with engine.begin() as conn:
        a, b = add_customer(conn, "a"), add_customer(conn, "b")
        insert_rows(conn, IDENTIFIERS, [identifier(a, "phone", "+8613800000001")])
        rows = [identifier(a, "phone", "+8613800000001"),  # taken: skipped
                identifier(b, "email", "b@example.com", verified=True),
                identifier(b, "id", "pos:2", source=None, last_seen_at=LATER)]
        returned = insert_rows(conn, IDENTIFIERS, rows, finish=lambda insert: insert.on_conflict_do_nothing(
            index_elements=["kind", "value"]).returning(IDENTIFIERS.c.kind, IDENTIFIERS.c.value)).all()
        stored = conn.execute(sa.select(IDENTIFIERS.c.customer_id, IDENTIFIERS.c.kind, IDENTIFIERS.c.value,
                                        IDENTIFIERS.c.source, IDENTIFIERS.c.verified, IDENTIFIERS.c.last_seen_at)
                              .order_by(IDENTIFIERS.c.id)).all()
    assert sorted(returned) == [("email", "b@example.com"), ("id", "pos:2")]
    assert [(row[0], row[1], row[2], row[3], bool(row[4]), row[5].astimezone(UTC)) for row in stored] == [
        (a, "phone", "+8613800000001", "pos", False, NOW),
        (b, "email", "b@example.com", "pos", True, NOW),
        (b, "id", "pos:2", None, False, LATER),
    ]


def test_identical_rows_are_each_inserted(engine):
    # Every column the same in every row: still one row inserted per row given.
    with engine.begin() as conn:
        orders = sa.table("orders", sa.column("id"), sa.column("order_id"), sa.column("customer_id"),
                          sa.column("ordered_at"), sa.column("amount"))
        customer = add_customer(conn, "a")
        order = conn.execute(sa.insert(orders).values(order_id="O1", customer_id=customer, ordered_at=NOW, amount=9)
                             .returning(orders.c.id)).scalar_one()
        line = {"order_pk": order, "sku": "TEA-1", "category": "tea", "quantity": 1, "price": 3.0}
        insert_rows(conn, OrderItem.__table__, [line, dict(line), dict(line)])
        count = conn.execute(sa.select(sa.func.count()).select_from(OrderItem.__table__)).scalar_one()
    assert count == 3


def test_rows_are_found_and_updated_by_composite_keys_beyond_one_statement(engine):
    many = 2 * STATEMENT_ROWS + 7  # more keys than one SQLite chunk holds
    with engine.begin() as conn:
        customer = add_customer(conn, "a")
        insert_rows(conn, IDENTIFIERS, [identifier(customer, "email", f"u{n}@example.com") for n in range(many)])
        insert_rows(conn, IDENTIFIERS, [identifier(customer, "phone", "+8613800000001")])
        wanted = [("email", f"u{n}@example.com") for n in range(0, many, 2)]
        wanted += [("email", "nobody@example.com"), ("phone", "u0@example.com"), wanted[0]]  # misses, a repeat
        found = select_keyed(conn, IDENTIFIERS, wanted, on=("kind", "value"),
                             columns=(IDENTIFIERS.c.kind, IDENTIFIERS.c.value))
        update_keyed(conn, IDENTIFIERS, wanted, on=("kind", "value"), values={"last_seen_at": LATER})
        later = conn.execute(sa.select(IDENTIFIERS.c.value).where(IDENTIFIERS.c.last_seen_at == LATER)).scalars()
        assert select_keyed(conn, IDENTIFIERS, [], on=("kind", "value"), columns=(IDENTIFIERS.c.id,)) == []
    expected = {("email", f"u{n}@example.com") for n in range(0, many, 2)}
    assert sorted(found) == sorted(expected)
    assert set(later) == {value for _, value in expected}


def test_insert_rows_needs_a_row(engine):
    with engine.begin() as conn, pytest.raises(ValueError, match="at least one row"):
        insert_rows(conn, IDENTIFIERS, [])


def test_the_rows_an_insert_took_are_counted_when_asked(engine):
    # SQLAlchemy reports an INSERT's rowcount only with preserve_rowcount: attaching
    # identifiers relies on it to skip re-reading what it has just inserted.
    with engine.begin() as conn:
        customer = add_customer(conn, "a")
        insert_rows(conn, IDENTIFIERS, [identifier(customer, "email", "taken@example.com")])
        rows = [identifier(customer, "email", address) for address in
                ("taken@example.com", "new1@example.com", "new2@example.com")]
        result = insert_rows(conn, IDENTIFIERS, rows, finish=lambda insert: insert.on_conflict_do_nothing(
            index_elements=["kind", "value"]).execution_options(preserve_rowcount=True))
    assert result.rowcount == 2


def test_in_values_finds_the_same_rows_beyond_one_statement_in_fixed_statements(engine):
    many = 2 * STATEMENT_ROWS + 7
    with engine.begin() as conn:
        customer = add_customer(conn, "a")
        insert_rows(conn, IDENTIFIERS, [identifier(customer, "email", f"u{n}@example.com") for n in range(many)])
        wanted = [f"u{n}@example.com" for n in range(1, many)] + ["nobody@example.com"]
        conditions = in_values(conn, IDENTIFIERS.c.value, wanted)
        found = [value for condition in conditions
                 for value in conn.execute(sa.select(IDENTIFIERS.c.value).where(condition)).scalars()]
        assert in_values(conn, IDENTIFIERS.c.value, []) == []
        # PostgreSQL: one statement whose text does not depend on how many values it holds.
        texts = {str(condition.compile(dialect=conn.dialect)) for condition in
                 in_values(conn, IDENTIFIERS.c.value, ["x"]) + in_values(conn, IDENTIFIERS.c.value, ["x", "y"])}
    assert sorted(found) == sorted(wanted[:-1])
    # SQLite: IN lists of a statement's size (three here).
    assert len(conditions) == (1 if engine.dialect.name == "postgresql" else -(-len(wanted) // STATEMENT_ROWS))
    if engine.dialect.name == "postgresql":
        assert len(texts) == 1
