"""One import row to one record, per kind: customers, orders and events.

Each parser takes a row (a dict of CSV text or JSON values), validates every field it knows
(:mod:`campaigns.customers.importing.fields`) and returns ``(batch key, record)``: the key
that makes re-imports idempotent, and a record of plain values only, so that
:mod:`campaigns.customers.importing.upserts` stays simple. A bad row raises
:class:`~campaigns.customers.importing.fields.RowInvalid`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any, Literal

import sqlalchemy as sa

from campaigns.config import jsonvalues
from campaigns.config.jsonvalues import UnstorableValue
from campaigns.customers.importing.fields import (
    RowInvalid,
    bool_value,
    datetime_value,
    email_address,
    extra_columns,
    json_value,
    non_negative_number,
    required_text,
    text_value,
    timezone_name,
)
from campaigns.store.models import Consent, Customer, CustomerIdentifier, Event, Order, OrderItem

ImportKind = Literal["customers", "orders", "events", "products"]

#: Columns that must be present (CSV header) and non-empty (every row), per kind.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "orders": ("order_id", "customer_id", "ordered_at", "amount"),
    "events": ("customer_id", "name", "occurred_at"),
    # A new product needs a name too; a stock file (sku,in_stock) updates known ones.
    "products": ("sku",),
}

#: Customer columns copied onto the Customer row as text (``customer_id`` is the key).
CUSTOMER_TEXT_COLUMNS = (
    "name",
    "email",
    "phone",
    "wechat_openid",
    "timezone",
    "locale",
    "acquisition_channel",
)
#: ``<channel>_consent`` columns -> Consent.channel.
CONSENT_COLUMNS = {"email_consent": "email", "sms_consent": "sms", "wechat_consent": "wechat"}
#: Where and when the row's consents were given (the proof PIPL and MIIT ask for); the
#: source is stored as ``import:<source>``, the time defaults to the import's.
CONSENT_META_COLUMNS = ("consent_source", "consent_at")
#: Identifier columns that are no Customer column: the WeChat unionid (one per person
#: across the brand's apps) is only matched on and stored as an identifier.
IDENTIFIER_ONLY_COLUMNS = ("unionid",)
CUSTOMER_COLUMNS = frozenset(
    ("customer_id", "created_at", "attributes", *CUSTOMER_TEXT_COLUMNS, *CONSENT_COLUMNS, *CONSENT_META_COLUMNS,
     *IDENTIFIER_ONLY_COLUMNS)
)
ORDER_COLUMNS = frozenset(("order_id", "customer_id", "ordered_at", "amount", "channel", "items", "status",
                           "shipping"))
#: What an order's ``status`` may be: a refunded or cancelled order gives back its points.
ORDER_STATUSES = ("paid", "refunded", "cancelled")
EVENT_COLUMNS = frozenset(("event_id", "customer_id", "name", "occurred_at", "properties"))

# Numeric(14, 2) holds at most 12 integer digits; larger values would abort a PG batch.
_MAX_AMOUNT = 10**12
# order_item.quantity is a 32-bit INTEGER column.
_MAX_QUANTITY = 2**31 - 1
# Columns holding a JSON object (JSONL natively, CSV as JSON text): checked key by key.
_NESTED_COLUMNS = frozenset(("attributes", "properties"))


def check_row(row: dict[str, Any]) -> None:
    """Reject the row unless every value in it is storable (see :mod:`campaigns.config.jsonvalues`)."""
    try:
        jsonvalues.check_keys(row, "")
        for name, value in row.items():
            if name in _NESTED_COLUMNS and isinstance(value, dict):
                jsonvalues.check_fields(value, name)
            elif name == "items" and isinstance(value, list):
                for index, item in enumerate(value):
                    jsonvalues.check(item, f"items[{index}]")
            else:
                jsonvalues.check(value, name)
    except UnstorableValue as exc:
        raise RowInvalid(str(exc)) from None


@functools.cache  # asked for every field of every row; a column's length never changes
def _column_length(column: sa.Column[Any]) -> int | None:
    return getattr(column.type, "length", None)


def parse_customer(row: dict[str, Any], *, csv_source: bool) -> tuple[str, dict[str, Any]]:
    """A customer row -> (``customer_id``, the customer's columns, consents given with their
    source and time, attributes (unknown columns plus the ``attributes`` object) and the
    identifier-only columns (``unionid``))."""
    check_row(row)
    columns = Customer.__table__.c
    external_id = required_text(row, "customer_id", max_length=_column_length(columns.external_id))
    record: dict[str, Any] = {"external_id": external_id}
    for name in CUSTOMER_TEXT_COLUMNS:
        record[name] = text_value(row, name, max_length=_column_length(columns[name]))
    record["email"] = email_address(record["email"])
    record["timezone"] = timezone_name(record["timezone"])
    record["created_at"] = datetime_value(row, "created_at", required=False)
    consents = {}
    for column, channel in CONSENT_COLUMNS.items():
        granted = bool_value(row, column)
        if granted is not None:
            consents[channel] = "granted" if granted else "withdrawn"
    source = text_value(row, "consent_source", max_length=_column_length(Consent.__table__.c.source) - len("import:"))
    consent_meta = {"source": f"import:{source}" if source else "import", "given": source,
                    "recorded_at": datetime_value(row, "consent_at", required=False)}
    attributes = extra_columns(row, CUSTOMER_COLUMNS, csv_source)
    nested = json_value(row, "attributes", dict, csv_source)
    if nested:
        attributes.update({k: v for k, v in nested.items() if v is not None and v != ""})
    identifiers = {name: text_value(row, name, max_length=_column_length(CustomerIdentifier.__table__.c.value))
                   for name in IDENTIFIER_ONLY_COLUMNS}
    return external_id, {"customer": record, "consents": consents, "consent_meta": consent_meta,
                         "attributes": attributes, "identifiers": identifiers}


def _parse_items(value: list[Any]) -> list[dict[str, Any]]:
    columns = OrderItem.__table__.c
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise RowInvalid(f"items[{index}]: expected an object with sku and price")
        try:
            quantity = item.get("quantity", 1)
            if isinstance(quantity, str) and quantity.strip().isdigit():
                quantity = int(quantity)
            if (isinstance(quantity, bool) or not isinstance(quantity, int)
                    or not 1 <= quantity <= _MAX_QUANTITY):
                raise RowInvalid(f"quantity: must be a whole number from 1 to {_MAX_QUANTITY}")
            if item.get("price") is None:
                raise RowInvalid("price: required")
            items.append(
                {
                    "sku": required_text(item, "sku", max_length=_column_length(columns.sku)),
                    "category": text_value(
                        item, "category", max_length=_column_length(columns.category)
                    ),
                    "quantity": quantity,
                    "price": non_negative_number(item["price"], "price", maximum=_MAX_AMOUNT),
                }
            )
        except RowInvalid as exc:
            raise RowInvalid(f"items[{index}].{exc}") from None
    return items


def parse_order(row: dict[str, Any], *, csv_source: bool) -> tuple[str, dict[str, Any]]:
    """An order row -> (``order_id``, the order, its customer's ``customer_id`` and its items,
    None when the row gives none)."""
    check_row(row)
    columns = Order.__table__.c
    order_id = required_text(row, "order_id", max_length=_column_length(columns.order_id))
    customer = required_text(
        row, "customer_id", max_length=_column_length(Customer.__table__.c.external_id)
    )
    ordered_at = datetime_value(row, "ordered_at", required=True)
    if row.get("amount") is None or row.get("amount") == "":
        raise RowInvalid("amount: required")
    amount = non_negative_number(row["amount"], "amount", maximum=_MAX_AMOUNT)
    channel = text_value(row, "channel", max_length=_column_length(columns.channel))
    status = text_value(row, "status", max_length=16)
    status = status.lower() if status else None
    if status is not None and status not in ORDER_STATUSES:
        raise RowInvalid(f"status: expected one of {', '.join(ORDER_STATUSES)}")
    shipping = None
    if row.get("shipping") not in (None, ""):
        shipping = non_negative_number(row["shipping"], "shipping", maximum=_MAX_AMOUNT)
        if shipping > amount:
            raise RowInvalid("shipping: more than the order's amount")
    raw_items = json_value(row, "items", list, csv_source)
    # None means "items not given": the order's stored items are kept. [] clears them.
    items = None if raw_items is None else _parse_items(raw_items)
    record = {
        "order": {
            "order_id": order_id,
            "ordered_at": ordered_at,
            "amount": amount,
            "channel": channel,
            "status": status,
            "shipping": shipping,
        },
        "customer": customer,
        "items": items,
    }
    return order_id, record


def parse_event(row: dict[str, Any], *, csv_source: bool) -> tuple[str, dict[str, Any]]:
    """An event row -> (dedupe key, the event and its customer's ``customer_id``). The key is
    the source's ``event_id``, else a hash of the event's content. ``POST /events`` and
    ``nurture track`` validate with this parser too."""
    check_row(row)
    columns = Event.__table__.c
    customer = required_text(
        row, "customer_id", max_length=_column_length(Customer.__table__.c.external_id)
    )
    name = required_text(row, "name", max_length=_column_length(columns.name))
    occurred_at = datetime_value(row, "occurred_at", required=True)
    assert occurred_at is not None
    event_id = text_value(row, "event_id", max_length=_column_length(columns.dedupe_key))
    properties = extra_columns(row, EVENT_COLUMNS, csv_source)
    nested = json_value(row, "properties", dict, csv_source)
    if nested:
        properties.update(nested)
    if event_id is None:
        # No source id: the event's content is its identity, so re-imports collapse.
        canonical = json.dumps(
            [customer, name, occurred_at.isoformat(), properties],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        dedupe_key = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    else:
        dedupe_key = event_id
    record = {
        "event": {
            "name": name,
            "occurred_at": occurred_at,
            "properties": properties,
            "dedupe_key": dedupe_key,
        },
        "customer": customer,
    }
    return dedupe_key, record


#: The row parser of each import kind.
PARSERS: dict[str, Callable[..., tuple[str, dict[str, Any]]]] = {
    "customers": parse_customer,
    "orders": parse_order,
    "events": parse_event,
}


__all__ = [
    "CONSENT_COLUMNS",
    "CONSENT_META_COLUMNS",
    "CUSTOMER_COLUMNS",
    "CUSTOMER_TEXT_COLUMNS",
    "EVENT_COLUMNS",
    "IDENTIFIER_ONLY_COLUMNS",
    "ORDER_COLUMNS",
    "ORDER_STATUSES",
    "PARSERS",
    "REQUIRED_COLUMNS",
    "ImportKind",
    "check_row",
    "parse_customer",
    "parse_event",
    "parse_order",
]
