"""Writing one batch of validated import rows: set-based upserts, one transaction per batch.

Each writer takes a batch of :class:`PendingRow` (a record from
:mod:`campaigns.customers.importing.rows` plus its line), writes it in ONE transaction with
bulk upserts in statement-sized chunks, and returns (rows imported, rows rejected): an order
or event whose customer is unknown is rejected by line. Should the database refuse a batch,
:func:`write_in_halves` retries it in halves so only the refused row is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.customers.importing.report import RowError
from campaigns.customers.importing.rows import CUSTOMER_TEXT_COLUMNS
from campaigns.store.chunks import chunks
from campaigns.store.db import dialect_insert
from campaigns.store.models import Consent, Customer, Event, Order, OrderItem, utcnow

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass
class PendingRow:
    """A validated row waiting for its batch: the record plus where it came from."""

    line: int
    key: str
    record: dict[str, Any]


#: What a bad row can make the database (or its driver) raise: a value it refuses. Anything
#: else (a lost connection, a missing table) still stops the import.
ROW_ERRORS = (sa.exc.DataError, sa.exc.IntegrityError, ValueError, OverflowError)


def write_in_halves(write: Callable[[list[_T]], _R], items: list[_T]) -> tuple[list[_R], list[tuple[_T, str]]]:
    """``write(items)``; should the database refuse them (:data:`ROW_ERRORS`), their
    halves are written instead, down to single items, so one bad item costs only itself.
    Imports and ``POST /events`` both write this way.

    Returns what each write that went through returned, and ``(item, error class name)``
    for each item refused. Only the class is kept: the message of a database error quotes
    the statement's parameters, which hold emails and phone numbers.
    """
    if not items:
        return [], []
    try:
        return [write(items)], []
    except ROW_ERRORS as exc:
        if len(items) == 1:
            cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
            return [], [(items[0], type(cause).__name__)]
    middle = len(items) // 2
    done, refused = write_in_halves(write, items[:middle])
    more, more_refused = write_in_halves(write, items[middle:])
    return done + more, refused + more_refused


def _last_wins(batch: list[PendingRow]) -> list[PendingRow]:
    """Drop earlier rows with the same key: one statement may not touch a row twice."""
    latest: dict[str, PendingRow] = {}
    for row in batch:
        latest.pop(row.key, None)  # re-insert so the order follows the last occurrence
        latest[row.key] = row
    return list(latest.values())


def customer_ids(conn: Connection, external_ids: set[str]) -> dict[str, int]:
    """external_id -> Customer.id for the given ids (one SELECT per statement chunk)."""
    found: dict[str, int] = {}
    table = Customer.__table__
    for chunk in chunks(sorted(external_ids)):
        query = sa.select(table.c.external_id, table.c.id).where(table.c.external_id.in_(chunk))
        found.update({external_id: pk for external_id, pk in conn.execute(query)})
    return found


def _resolve_customers(
    conn: Connection, batch: list[PendingRow]
) -> tuple[list[tuple[PendingRow, int]], list[RowError]]:
    ids = customer_ids(conn, {row.record["customer"] for row in batch})
    resolved, errors = [], []
    for row in batch:
        customer = row.record["customer"]
        if customer in ids:
            resolved.append((row, ids[customer]))
        else:
            errors.append(
                RowError(row.line, f"customer_id {customer!r} not found: import customers first")
            )
    return resolved, errors


def _write_customers(engine: Engine, batch: list[PendingRow]) -> tuple[int, list[RowError]]:
    table = Customer.__table__
    unique = _last_wins(batch)
    now = utcnow()
    with engine.begin() as conn:
        # attributes are merged into the stored ones (a partial file must not wipe keys it
        # does not mention), which needs the current values: one SELECT per chunk.
        existing: dict[str, dict[str, Any]] = {}
        for chunk in chunks([row.key for row in unique]):
            query = sa.select(table.c.external_id, table.c.attributes).where(
                table.c.external_id.in_(chunk)
            )
            existing.update(
                {external_id: attrs or {} for external_id, attrs in conn.execute(query)}
            )
        # Rows with and without created_at are upserted separately: created_at is NOT NULL,
        # so the "not given" rows insert now() but must not overwrite it on update.
        groups: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for row in unique:
            values = dict(row.record["customer"])
            values["attributes"] = {**existing.get(row.key, {}), **row.record["attributes"]}
            values["updated_at"] = now
            given = values["created_at"] is not None
            if not given:
                values["created_at"] = now
            groups[given].append(values)
        for created_given, rows in groups.items():
            for chunk in chunks(rows):
                insert = dialect_insert(conn, table).values(chunk)
                excluded = insert.excluded
                set_: dict[str, Any] = {
                    # Empty means "not given": keep the stored value.
                    name: sa.func.coalesce(excluded[name], table.c[name])
                    for name in CUSTOMER_TEXT_COLUMNS
                }
                set_["attributes"] = excluded.attributes
                set_["updated_at"] = excluded.updated_at
                if created_given:
                    set_["created_at"] = excluded.created_at
                conn.execute(
                    insert.on_conflict_do_update(index_elements=["external_id"], set_=set_)
                )

        consent_rows = [row for row in unique if row.record["consents"]]
        if consent_rows:
            ids = customer_ids(conn, {row.key for row in consent_rows})
            values = [
                {
                    "customer_id": ids[row.key],
                    "channel": channel,
                    "status": status,
                    "source": row.record["consent_meta"]["source"],
                    "recorded_at": row.record["consent_meta"]["recorded_at"] or now,
                }
                for row in consent_rows
                for channel, status in row.record["consents"].items()
            ]
            consent = Consent.__table__
            for chunk in chunks(values):
                insert = dialect_insert(conn, consent).values(chunk)
                excluded = insert.excluded
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["customer_id", "channel"],
                        set_={
                            "status": excluded.status,
                            "source": excluded.source,
                            "recorded_at": excluded.recorded_at,
                        },
                        # Only a real change is recorded (so recorded_at stays meaningful on
                        # re-import), and an import never re-grants consent that was withdrawn
                        # by another source (an unsubscribe must beat a stale CRM export).
                        where=sa.and_(
                            consent.c.status != excluded.status,
                            sa.or_(
                                excluded.status == "withdrawn",
                                consent.c.status != "withdrawn",
                                consent.c.source.startswith("import"),
                            ),
                        ),
                    )
                )
    return len(batch), []


def _write_orders(engine: Engine, batch: list[PendingRow]) -> tuple[int, list[RowError]]:
    table = Order.__table__
    items_table = OrderItem.__table__
    with engine.begin() as conn:
        resolved, errors = _resolve_customers(conn, batch)
        by_key = {row.key: (row, customer_pk) for row, customer_pk in resolved}  # last wins
        values = [{**row.record["order"], "customer_id": pk} for row, pk in by_key.values()]
        for chunk in chunks(values):
            insert = dialect_insert(conn, table).values(chunk)
            excluded = insert.excluded
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["order_id"],
                    set_={
                        "customer_id": excluded.customer_id,
                        "ordered_at": excluded.ordered_at,
                        "amount": excluded.amount,
                        "channel": sa.func.coalesce(excluded.channel, table.c.channel),
                    },
                )
            )
        with_items = [row for row, _ in by_key.values() if row.record["items"] is not None]
        if with_items:
            order_pks: dict[str, int] = {}
            for chunk in chunks([row.key for row in with_items]):
                query = sa.select(table.c.order_id, table.c.id).where(table.c.order_id.in_(chunk))
                order_pks.update({order_id: pk for order_id, pk in conn.execute(query)})
            for chunk in chunks(sorted(order_pks.values())):
                conn.execute(sa.delete(items_table).where(items_table.c.order_pk.in_(chunk)))
            item_values = [
                {**item, "order_pk": order_pks[row.key]}
                for row in with_items
                for item in row.record["items"]
            ]
            for chunk in chunks(item_values):
                conn.execute(sa.insert(items_table).values(chunk))
    return len(resolved), errors


def _write_events(engine: Engine, batch: list[PendingRow]) -> tuple[int, list[RowError]]:
    table = Event.__table__
    with engine.begin() as conn:
        resolved, errors = _resolve_customers(conn, batch)
        by_key = {row.key: {**row.record["event"], "customer_id": pk} for row, pk in resolved}
        for chunk in chunks(list(by_key.values())):
            insert = dialect_insert(conn, table).values(chunk)
            # Events are facts: an already stored event is left exactly as it is.
            conn.execute(insert.on_conflict_do_nothing(index_elements=["dedupe_key"]))
    return len(resolved), errors


#: The writer of each import kind.
WRITERS: dict[str, Callable[[Engine, list[PendingRow]], tuple[int, list[RowError]]]] = {
    "customers": _write_customers,
    "orders": _write_orders,
    "events": _write_events,
}


__all__ = ["ROW_ERRORS", "WRITERS", "PendingRow", "customer_ids", "write_in_halves"]
