"""Writing one batch of validated import rows: set-based upserts, one transaction per batch.

Each writer takes a batch of :class:`PendingRow` (a record from
:mod:`campaigns.customers.importing.rows` plus its line), writes it in ONE transaction with
bulk upserts in statement-sized chunks, and returns a :class:`BatchOutcome` (rows imported,
rows rejected, and what became of the customers): an order or event whose customer is
unknown is rejected by line. Should the database refuse a batch, :func:`write_in_halves`
retries it in halves so only the refused row is lost.

Customers go through :mod:`campaigns.customers.identity.resolution`: a row that matches no
one creates a customer, one that matches one updates it, one that matches several merges
them (strong identifiers) or opens a review item (weak ones). Orders and events name their
customer by any identifier (:func:`~campaigns.customers.identity.lookup.resolve_references`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.customers.identity.lookup import resolve_references
from campaigns.customers.identity.resolution import (
    MatchPlan,
    attach_identifiers,
    match_batch,
    merge_groups,
    row_identity,
)
from campaigns.customers.importing.report import RowError
from campaigns.customers.importing.rows import CUSTOMER_TEXT_COLUMNS
from campaigns.store.bulk import insert_rows, select_keyed
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


def last_wins(batch: list[PendingRow]) -> list[PendingRow]:
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
    conn: Connection, batch: list[PendingRow], plan: MatchPlan
) -> tuple[list[tuple[PendingRow, int]], list[RowError]]:
    # A bare customer_id is the row's id in the import's source; kind:value is any identifier.
    ids = resolve_references(conn, {row.record["customer"] for row in batch}, rules=plan.rules, source=plan.source)
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


@dataclass
class BatchOutcome:
    """What writing one batch did: rows written, rows rejected, and for customers how many
    were created, updated and merged and how many review items were opened."""

    written: int
    errors: list[RowError] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    #: Customers that absorbed others in a merge (their profiles need a recompute).
    survivors: set[int] = field(default_factory=set)


#: How restrictive a consent state is: of one person's rows, the withdrawal stands.
_RESTRICTIVE = {"granted": 0, "withdrawn": 1}


def _group_values(rows: list[PendingRow], stored: dict[str, Any]) -> dict[str, Any]:
    """The customer columns of a group of rows of one person (batch order): a later
    non-empty value wins, except where the person first came from (the first one given)."""
    values: dict[str, Any] = {name: None for name in CUSTOMER_TEXT_COLUMNS}
    values["created_at"] = None
    attributes = dict(stored)
    for row in rows:
        for name, value in row.record["customer"].items():
            if name == "external_id" or value is None:
                continue
            if name == "acquisition_channel" and values[name] is not None:
                continue
            values[name] = value
        attributes.update(row.record["attributes"])
    values["attributes"] = attributes
    return values


def _consent_source(row: PendingRow, plan: MatchPlan) -> str:
    meta = row.record["consent_meta"]
    if plan.source is None:
        return str(meta["source"])
    given = meta.get("given")
    text = f"import:{plan.source}" + (f":{given}" if given else "")
    return text[: _column_length(Consent.__table__.c.source)]


def _column_length(column: sa.Column[Any]) -> int:
    return int(getattr(column.type, "length", 0) or 0)


def _customer_upsert(insert: Any, *, created_given: bool) -> Any:
    """``insert`` (of import rows into ``customer``) made ``... ON CONFLICT (external_id) DO
    UPDATE ... RETURNING id, external_id``: a value not given keeps the stored one, and so
    does where the person first came from; ``created_at`` is overwritten only when the rows
    give it."""
    table = Customer.__table__
    excluded = insert.excluded
    set_: dict[str, Any] = {
        # Empty means "not given": keep the stored value.
        name: sa.func.coalesce(excluded[name], table.c[name])
        for name in CUSTOMER_TEXT_COLUMNS
    }
    # Where the person first came from is never overwritten once known.
    set_["acquisition_channel"] = sa.func.coalesce(table.c.acquisition_channel, excluded.acquisition_channel)
    set_["attributes"] = excluded.attributes
    set_["updated_at"] = excluded.updated_at
    if created_given:
        set_["created_at"] = excluded.created_at
    return insert.on_conflict_do_update(index_elements=["external_id"], set_=set_).returning(
        table.c.id, table.c.external_id)


def _write_customers(engine: Engine, batch: list[PendingRow], *, plan: MatchPlan) -> BatchOutcome:
    table = Customer.__table__
    unique, errors = [], []
    limit = _column_length(table.c.external_id)
    for row in last_wins(batch):
        if plan.source and len(plan.source) + 1 + len(row.key) > limit:
            errors.append(RowError(row.line, f"customer_id: longer than {limit - len(plan.source) - 1} "
                                             f"characters (with its source prefix {plan.source}:)"))
        else:
            unique.append(row)
    now = utcnow()
    with engine.begin() as conn:
        identities = [
            row_identity(row.key, {**row.record["customer"], **row.record.get("identifiers", {})}, plan=plan)
            for row in unique
        ]
        match = match_batch(conn, identities, plan=plan)
        targets, merged = merge_groups(conn, match, plan=plan, now=now)
        # attributes are merged into the stored ones (a partial file must not wipe keys it
        # does not mention), which needs the current values.
        stored: dict[int, tuple[str, dict[str, Any]]] = {
            pk: (external_id, attrs or {})
            for pk, external_id, attrs in select_keyed(
                conn, table, [(pk,) for pk in sorted(pk for pk in targets if pk is not None)], on=("id",),
                columns=(table.c.id, table.c.external_id, table.c.attributes))
        }
        # Rows with and without created_at are upserted separately: created_at is NOT NULL,
        # so the "not given" rows insert now() but must not overwrite it on update.
        groups: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        keys: list[str] = []
        for group, target in zip(match.groups, targets, strict=True):
            # A new person is known by its first row's id; an existing one keeps its own.
            external_id, attributes = stored[target] if target is not None else (
                identities[group.rows[0]].own.value, {})
            values = _group_values([unique[index] for index in group.rows], attributes)
            values["external_id"] = external_id
            values["updated_at"] = now
            given = values["created_at"] is not None
            if not given:
                values["created_at"] = now
            groups[given].append(values)
            keys.append(external_id)
        pks: dict[str, int] = {}
        for created_given, rows in groups.items():
            if rows:
                upsert = functools.partial(_customer_upsert, created_given=created_given)
                pks.update({external_id: pk for pk, external_id in insert_rows(conn, table, rows, finish=upsert).all()})
        row_customers = [pks[keys[match.group_of[index]]] for index in range(len(unique))]
        attached = attach_identifiers(conn, match, row_customers, plan=plan, now=now)
        _write_consents(conn, unique, [attached.customer(pk) for pk in row_customers], plan=plan, now=now)
    created = sum(1 for target in targets if target is None)
    survivors = {target for target, group in zip(targets, match.groups, strict=True)
                 if target is not None and len(group.customers) > 1} | set(attached.moved_to.values())
    return BatchOutcome(len(batch) - len(errors), errors, {
        "created": created, "updated": len(targets) - created, "merged": merged + attached.merged,
        "reviews_opened": attached.reviews_opened,
    }, survivors={attached.customer(pk) for pk in survivors})


def _write_consents(conn: Connection, rows: list[PendingRow], customers: list[int], *,
                    plan: MatchPlan, now: datetime) -> None:
    # One value per customer and channel: of several rows of one person, the most
    # restrictive state (a withdrawal in any of them stands).
    chosen: dict[tuple[int, str], dict[str, Any]] = {}
    for row, customer_pk in zip(rows, customers, strict=True):
        for channel, status in row.record["consents"].items():
            current = chosen.get((customer_pk, channel))
            if current is not None and _RESTRICTIVE[current["status"]] >= _RESTRICTIVE[status]:
                continue
            chosen[(customer_pk, channel)] = {
                "customer_id": customer_pk,
                "channel": channel,
                "status": status,
                "source": _consent_source(row, plan),
                "recorded_at": row.record["consent_meta"]["recorded_at"] or now,
            }
    consent = Consent.__table__
    if plan.source is None:
        regrant = consent.c.source.startswith("import")
    else:
        # A sourced import re-grants only what its own source withdrew: a withdrawal
        # reported by another system (or anywhere else) stands.
        own = f"import:{plan.source}"
        regrant = sa.or_(consent.c.source == own, consent.c.source.startswith(own + ":"))

    def upsert(insert: Any) -> Any:
        excluded = insert.excluded
        return insert.on_conflict_do_update(
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
                sa.or_(excluded.status == "withdrawn", consent.c.status != "withdrawn", regrant),
            ),
        )

    if chosen:
        insert_rows(conn, consent, [chosen[key] for key in sorted(chosen)], finish=upsert)


def _write_orders(engine: Engine, batch: list[PendingRow], *, plan: MatchPlan) -> BatchOutcome:
    table = Order.__table__
    items_table = OrderItem.__table__
    with engine.begin() as conn:
        resolved, errors = _resolve_customers(conn, batch, plan)
        by_key = {row.key: (row, customer_pk) for row, customer_pk in resolved}  # last wins
        values = [{**row.record["order"], "customer_id": pk} for row, pk in by_key.values()]
        # A file without a status column leaves a stored status as it is (a re-import of
        # the original export must not turn a refund back into a sale); new orders are paid.
        for given in (True, False):
            rows = [{**value, "status": value["status"] or "paid"} for value in values
                    if (value["status"] is not None) is given]
            for chunk in chunks(rows):
                insert = dialect_insert(conn, table).values(chunk)
                excluded = insert.excluded
                updates = {
                    "customer_id": excluded.customer_id,
                    "ordered_at": excluded.ordered_at,
                    "amount": excluded.amount,
                    "channel": sa.func.coalesce(excluded.channel, table.c.channel),
                    "shipping": sa.func.coalesce(excluded.shipping, table.c.shipping),
                }
                if given:
                    updates["status"] = excluded.status
                conn.execute(insert.on_conflict_do_update(index_elements=["order_id"], set_=updates))
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
    return BatchOutcome(len(resolved), errors)


def _write_events(engine: Engine, batch: list[PendingRow], *, plan: MatchPlan) -> BatchOutcome:
    table = Event.__table__
    with engine.begin() as conn:
        resolved, errors = _resolve_customers(conn, batch, plan)
        by_key = {row.key: {**row.record["event"], "customer_id": pk} for row, pk in resolved}
        for chunk in chunks(list(by_key.values())):
            insert = dialect_insert(conn, table).values(chunk)
            # Events are facts: an already stored event is left exactly as it is.
            conn.execute(insert.on_conflict_do_nothing(index_elements=["dedupe_key"]))
    return BatchOutcome(len(resolved), errors)


#: The writer of each import kind.
WRITERS: dict[str, Callable[..., BatchOutcome]] = {
    "customers": _write_customers,
    "orders": _write_orders,
    "events": _write_events,
}


__all__ = ["ROW_ERRORS", "WRITERS", "BatchOutcome", "PendingRow", "customer_ids", "write_in_halves"]
