"""Responses: what providers and customers answer after a message went out.

Receipts (delivered, undelivered, bounced, blocked), opens, clicks, replies, unsubscribes
and complaints arrive from provider pushes and from our own links. Providers retry their
pushes and do not make them idempotent, so every response is written once, keyed by
``(provider, provider_ref, kind)`` (UNIQUE in ``response``), and its effects run only the
first time:

* a receipt updates the delivery's ``receipt_status`` (the latest receipt wins);
* a permanent failure (hard bounce, unknown or blacklisted number), a complaint or a
  WeChat "user block" suppresses the address;
* an unsubscribe withdraws the customer's consent on the channel family;
* a reply that is an opt-out word (``TD``, ``退订``, ``STOP`` ...) suppresses the address
  and withdraws consent at once, in the same transaction, so no queued message to that
  customer fires afterwards (the worker checks both at send time).

Pure domain code: the receivers in ``workers/http/callbacks`` parse and authenticate each
provider's request and hand :class:`InboundResponse` values to :func:`record_responses`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.config.vocabulary import FAMILY_FIELDS
from campaigns.customers.masking import mask_text
from campaigns.responses.optout import is_opt_out, opt_out_in, set_consent_in
from campaigns.store.db import dialect_insert
from campaigns.store.models import Customer, Delivery, Response

#: What a response can be.
RESPONSE_KINDS = frozenset({
    "delivered", "undelivered", "bounced", "opened", "clicked", "replied", "unsubscribed", "complained", "blocked",
})
#: Kinds that are receipts: they set ``delivery.receipt_status``.
RECEIPT_KINDS = frozenset({"delivered", "undelivered", "bounced", "blocked"})
#: Kinds that always suppress the address (a complaint, a user blocking the account).
SUPPRESSING_KINDS = frozenset({"complained", "blocked"})
#: The times a provider may report (SMS receipts, WeChat pushes, bounce reports); the
#: receivers refuse others: forged or broken, and a year-1 time cannot even be converted
#: between zones.
EARLIEST_PROVIDER_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_PROVIDER_TIME = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class InboundResponse:
    """One response as a receiver parsed it, before it is matched and recorded."""

    #: One of :data:`RESPONSE_KINDS`.
    kind: str
    #: Who reported it: twilio, aliyun, tencent, wechat, email (DSN) or web (our links).
    provider: str
    #: The provider's id for this event; with ``provider`` and ``kind`` the dedupe key.
    provider_ref: str
    occurred_at: datetime
    #: Matches ``delivery.provider_message_id`` (Twilio sid, Aliyun BizId, ...).
    provider_message_id: str | None = None
    #: Our send key, when the response carries it back (a signed token, OutId, ...).
    send_key: str | None = None
    #: Who wrote (replies), or the address concerned when no delivery is known.
    address: str | None = None
    #: Channel family of ``address`` (email, sms, wechat).
    family: str | None = None
    #: A reply's text.
    text: str | None = None
    #: A failure's code and description (masked before it is stored).
    error: str | None = None
    #: A failure that must suppress the address (hard bounce, unknown or blocked number).
    permanent: bool = False
    #: Provider fields worth keeping, without addresses or message text.
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResponseResult:
    """What recording one response did."""

    response_id: int | None
    #: Already recorded (a provider's retry): nothing else was done.
    duplicate: bool
    delivery_id: int | None
    customer_id: int | None
    #: An address was added to the suppression list.
    suppressed: bool
    #: The response was an opt-out (reply keyword, unsubscribe): consent was withdrawn.
    opted_out: bool


def record_responses(engine: Engine, items: Sequence[InboundResponse], *, now: datetime) -> list[ResponseResult]:
    """Match, record and apply ``items`` in one transaction; a duplicate changes nothing.

    Set-based, so a receiver may hand in whatever arrived in the last few milliseconds
    from many requests: one ``SELECT`` matches every item's delivery, one multi-row
    ``INSERT … ON CONFLICT DO NOTHING`` stores the new ones, one ``UPDATE`` batch sets
    their receipts, whatever the number of items. Results come back in the order of
    ``items``; an item repeating the key of an earlier one in the same call is a duplicate.
    """
    for item in items:
        if item.kind not in RESPONSE_KINDS:
            raise ValueError(f"unknown response kind {item.kind!r}")
    if not items:
        return []
    with engine.begin() as conn:
        return record_responses_in(conn, items, now=now)


def record_responses_in(conn: sa.Connection, items: Sequence[InboundResponse], *,
                        now: datetime) -> list[ResponseResult]:
    """:func:`record_responses` inside the caller's transaction."""
    deliveries = _deliveries(conn, items)
    tests = {delivery.id for delivery in deliveries if delivery is not None and delivery.is_test}
    customers: list[int | None] = []
    rows: list[dict[str, Any]] = []
    for item, delivery in zip(items, deliveries, strict=True):
        customer_id = delivery.customer_id if delivery is not None else None
        if delivery is not None and delivery.is_test:
            # An answer to a test send (nurture test-send) came from the marketer's address:
            # stored with its delivery, but it is nobody's response and has no effects below.
            customer_id = None
        elif customer_id is None and item.address and item.family in FAMILY_FIELDS:
            customer_id = _customer_by_address(conn, item.family, item.address)
        customers.append(customer_id)
        rows.append({
            "delivery_id": delivery.id if delivery is not None else None, "customer_id": customer_id,
            "kind": item.kind, "provider": item.provider, "provider_ref": item.provider_ref[:256],
            "occurred_at": item.occurred_at, "payload": _stored_payload(item),
        })
    # The first item of each key is the one that may be new; later ones repeat it.
    first_of: dict[tuple[str, str, str], int] = {}
    for index, row in enumerate(rows):
        first_of.setdefault((row["provider"], row["provider_ref"], row["kind"]), index)
    # In key order, as the receipts below in delivery order: two processes committing
    # overlapping batches then lock rows in the same order, and cannot deadlock.
    candidates = [rows[index] for _, index in sorted(first_of.items())]
    # Rows that conflict return nothing, so what came back is matched to the items by
    # the dedupe key.
    inserted_ids = {(provider, ref, kind): response_id
                    for response_id, provider, ref, kind in _insert_new(conn, candidates)}
    new = [first_of[(row["provider"], row["provider_ref"], row["kind"])] == index
           and (row["provider"], row["provider_ref"], row["kind"]) in inserted_ids
           for index, row in enumerate(rows)]
    receipts = [
        {"b_id": row["delivery_id"], "b_status": item.kind, "b_at": item.occurred_at}
        for item, row, is_new in zip(items, rows, new, strict=True)
        if is_new and row["delivery_id"] is not None and item.kind in RECEIPT_KINDS
    ]
    if receipts:
        _update_receipts(conn, receipts)
    results: list[ResponseResult] = []
    for item, row, customer_id, is_new in zip(items, rows, customers, new, strict=True):
        delivery_id = row["delivery_id"]
        if not is_new:
            results.append(ResponseResult(None, True, delivery_id, customer_id, False, False))
            continue
        key = (row["provider"], row["provider_ref"], row["kind"])
        if delivery_id is not None and delivery_id in tests:
            results.append(ResponseResult(inserted_ids[key], False, delivery_id, None, False, False))
            continue
        suppressed, opted_out = _apply_effects(conn, item, customer_id, now=now)
        results.append(ResponseResult(inserted_ids[key], False, delivery_id, customer_id, suppressed, opted_out))
    return results


#: The columns :func:`_insert_new` writes, in the order of the PostgreSQL statement.
_INSERT_COLUMNS = ("delivery_id", "customer_id", "kind", "provider", "provider_ref", "occurred_at", "payload")
#: PostgreSQL: the whole batch as one array per column. The statement text is the same
#: for any batch size, so psycopg caches its parsing; a multi-row VALUES list of 500
#: rows is a new 50 KB statement every time, whose parsing cost more than the insert
#: (P7 in docs/benchmarks.md). WITH ORDINALITY keeps the rows in the order given.
_INSERT_UNNEST = sa.text(
    "INSERT INTO response (delivery_id, customer_id, kind, provider, provider_ref, occurred_at, payload) "
    "SELECT delivery_id, customer_id, kind, provider, provider_ref, occurred_at, payload "
    "FROM unnest(CAST(:delivery_id AS integer[]), CAST(:customer_id AS integer[]), CAST(:kind AS text[]), "
    "CAST(:provider AS text[]), CAST(:provider_ref AS text[]), CAST(:occurred_at AS timestamptz[]), "
    "CAST(:payload AS json[])) WITH ORDINALITY "
    "AS batch(delivery_id, customer_id, kind, provider, provider_ref, occurred_at, payload, position) "
    "ORDER BY position "
    "ON CONFLICT (provider, provider_ref, kind) DO NOTHING "
    "RETURNING id, provider, provider_ref, kind"
)


def _insert_new(conn: sa.Connection, rows: list[dict[str, Any]]) -> Any:
    """INSERT ``rows`` into ``response``, skipping those whose key exists; returns the
    new rows' ``(id, provider, provider_ref, kind)``."""
    table = Response.__table__
    if conn.dialect.name != "postgresql":
        # One statement for all rows (SQLAlchemy's "insertmanyvalues").
        return conn.execute(
            dialect_insert(conn, table)
            .on_conflict_do_nothing(index_elements=["provider", "provider_ref", "kind"])
            .returning(table.c.id, table.c.provider, table.c.provider_ref, table.c.kind),
            rows,
        )
    columns: dict[str, list[Any]] = {name: [row[name] for row in rows] for name in _INSERT_COLUMNS}
    # Times go through the column's own bind processing (aware, converted to UTC) as the
    # Core insert would; payloads as JSON text (json.dumps, SQLAlchemy's default too).
    to_utc = table.c.occurred_at.type.bind_processor(conn.dialect)
    if to_utc is not None:
        columns["occurred_at"] = [to_utc(value) for value in columns["occurred_at"]]
    columns["payload"] = [json.dumps(payload) for payload in columns["payload"]]
    return conn.execute(_INSERT_UNNEST, columns)


def _update_receipts(conn: sa.Connection, receipts: list[dict[str, Any]]) -> None:
    """Set each receipt's delivery status, unless the delivery has a later receipt:
    pushes arrive out of order (a retried "sent" after "delivered"), and the latest wins.

    One executemany (psycopg sends it as a pipeline). A single ``UPDATE … FROM
    unnest(…)`` was measured too and was no faster: updating the delivery rows is the
    cost, not the round trips."""
    # Delivery order (see _insert_new); of one delivery's receipts the latest comes last.
    receipts = sorted(receipts, key=lambda receipt: (receipt["b_id"], receipt["b_at"]))
    delivery = Delivery.__table__
    conn.execute(
        sa.update(delivery)
        .where(delivery.c.id == sa.bindparam("b_id"),
               sa.or_(delivery.c.receipt_at.is_(None), delivery.c.receipt_at <= sa.bindparam("b_at")))
        .values(receipt_status=sa.bindparam("b_status"), receipt_at=sa.bindparam("b_at")),
        receipts,
    )


def _stored_payload(item: InboundResponse) -> dict[str, Any]:
    payload = dict(item.payload)
    if item.error:
        payload["error"] = mask_text(item.error)[:500]
    if item.text is not None:
        # A reply is kept (the marketer reads replies), masked like everything stored.
        payload["text"] = mask_text(item.text)[:1000]
    return payload


def _apply_effects(conn: sa.Connection, item: InboundResponse, customer_id: int | None, *,
                   now: datetime) -> tuple[bool, bool]:
    """Suppression and consent changes a new response calls for: (suppressed, opted_out).

    Only opt-outs, unsubscribes and permanent failures have any, so a receipt costs no
    statement here (the address is read only when it is needed)."""
    family = item.family
    opt_out_reply = item.kind == "replied" and item.text is not None and is_opt_out(item.text)
    suppressing = item.permanent or item.kind in SUPPRESSING_KINDS
    if opt_out_reply or suppressing:
        address = item.address or _customer_address(conn, customer_id, family)
        if not address or family not in FAMILY_FIELDS:
            return False, False
        if opt_out_reply:
            result = opt_out_in(conn, family=family, address=address, reason=f"opt-out reply via {item.provider}",
                                source=f"{item.provider} reply", now=now)
            return result.suppressed, True
        reason = f"{item.provider} {item.kind}" + (f": {mask_text(item.error)}" if item.error else "")
        result = opt_out_in(conn, family=family, address=address, reason=reason,
                            source=f"{item.provider} {item.kind}", now=now)
        return result.suppressed, item.kind == "complained"
    if item.kind == "unsubscribed" and customer_id is not None and family in FAMILY_FIELDS:
        set_consent_in(conn, customer_id, family, "withdrawn", source=f"{item.provider} unsubscribe", now=now)
        return False, True
    return False, False


def _deliveries(conn: sa.Connection, items: Sequence[InboundResponse]) -> list[Any]:
    """Each item's delivery (None when unknown), found by send key first, else by the
    provider's message id (the newest delivery carrying it); two statements at most."""
    columns = (Delivery.id, Delivery.customer_id, Delivery.channel, Delivery.is_test)
    send_keys = sorted({item.send_key for item in items if item.send_key})
    by_key = {
        row.send_key: row
        for row in conn.execute(sa.select(*columns, Delivery.send_key).where(Delivery.send_key.in_(send_keys)))
    } if send_keys else {}
    message_ids = sorted({item.provider_message_id for item in items
                          if item.provider_message_id and by_key.get(item.send_key or "") is None})
    by_message: dict[str, Any] = {}
    if message_ids:
        for row in conn.execute(sa.select(*columns, Delivery.provider_message_id)
                                .where(Delivery.provider_message_id.in_(message_ids))
                                .order_by(Delivery.id)):
            by_message[row.provider_message_id] = row  # ascending ids: the newest is kept
    return [by_key.get(item.send_key or "") or by_message.get(item.provider_message_id or "") for item in items]


def _customer_by_address(conn: sa.Connection, family: str, address: str) -> int | None:
    column = getattr(Customer, FAMILY_FIELDS[family])
    return conn.execute(sa.select(Customer.id).where(column == address).order_by(Customer.id).limit(1)).scalar()


def _customer_address(conn: sa.Connection, customer_id: int | None, family: str | None) -> str | None:
    if customer_id is None or family not in FAMILY_FIELDS:
        return None
    column = getattr(Customer, FAMILY_FIELDS[family])
    return conn.execute(sa.select(column).where(Customer.id == customer_id)).scalar()
