"""The product catalogue: ``nurture import products`` rows, and the skus order items name.

A products file has one row per product, keyed by ``sku``: ``name``, ``category``,
``price``, ``url``, ``image_url`` and ``in_stock`` (true/false, yes/no, 1/0); any other
column, and the keys of an ``attributes`` object, are kept in the product's attributes.
Rows are upserted by sku like the other imports (:mod:`campaigns.customers.importing`):
an empty value keeps the stored one, attributes are merged into the stored ones, a new
product needs a name. A row that changes nothing is not written at all, so a replay of
the same file leaves every row (``updated_at`` too) as it was; ``created_at`` is set once.

Order items name products by sku. An item whose sku is not in the catalogue is kept (the
order happened; the catalogue may come later, or the product was discontinued) and the
orders import reports it (:func:`unknown_skus`, ``ImportReport.unknown_*``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.customers.identity.resolution import MatchPlan
from campaigns.customers.importing.fields import (
    RowInvalid,
    bool_value,
    extra_columns,
    json_value,
    non_negative_number,
    required_text,
    text_value,
)
from campaigns.customers.importing.report import RowError
from campaigns.customers.importing.rows import check_row
from campaigns.customers.importing.upserts import BatchOutcome, PendingRow, last_wins
from campaigns.store.bulk import insert_rows, select_keyed
from campaigns.store.chunks import chunks
from campaigns.store.models import Product, utcnow

#: The catalogue's own columns; any other column of a products file is an attribute.
PRODUCT_COLUMNS = frozenset(("sku", "name", "category", "price", "url", "image_url", "in_stock", "attributes"))
#: Columns written from a row as given (``attributes`` is merged, the times are the import's).
_VALUE_COLUMNS = ("name", "category", "price", "url", "image_url", "in_stock")
# Numeric(14, 2) holds at most 12 integer digits.
_MAX_PRICE = 10**12


def _length(name: str) -> int | None:
    return getattr(Product.__table__.c[name].type, "length", None)


def _url(row: dict[str, Any], name: str) -> str | None:
    """An absolute http(s) address, or None when not given: messages link to it, so a
    relative path or a ``javascript:`` one is refused here rather than sent."""
    text = text_value(row, name, max_length=_length(name))
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or any(ch.isspace() for ch in text):
        raise RowInvalid(f"{name}: expected an absolute http:// or https:// address")
    return text


def parse_product(row: dict[str, Any], *, csv_source: bool) -> tuple[str, dict[str, Any]]:
    """A products row -> (``sku``, the product's columns given (None: not given) and its
    attributes (the other columns, plus the ``attributes`` object))."""
    check_row(row)
    sku = required_text(row, "sku", max_length=_length("sku"))
    price = None
    if row.get("price") not in (None, ""):
        # Stored with 2 decimals: rounded here, so a replay compares equal to what was stored.
        price = round(non_negative_number(row["price"], "price", maximum=_MAX_PRICE), 2)
    product = {
        "name": text_value(row, "name", max_length=_length("name")),
        "category": text_value(row, "category", max_length=_length("category")),
        "price": price,
        "url": _url(row, "url"),
        "image_url": _url(row, "image_url"),
        "in_stock": bool_value(row, "in_stock"),
    }
    attributes = extra_columns(row, PRODUCT_COLUMNS, csv_source)
    nested = json_value(row, "attributes", dict, csv_source)
    if nested:
        attributes.update({key: value for key, value in nested.items() if value is not None and value != ""})
    return sku, {"product": product, "attributes": attributes}


def write_products(engine: Engine, batch: list[PendingRow], *, plan: MatchPlan) -> BatchOutcome:
    """Upsert one batch of products by sku, in one transaction: new ones inserted, changed
    ones updated (``updated_at`` now, ``created_at`` kept), identical ones left alone.
    ``plan`` is unused: products belong to no customer (every writer takes it)."""
    table = Product.__table__
    rows = last_wins(batch)
    now = utcnow()
    errors: list[RowError] = []
    changes: list[dict[str, Any]] = []
    created = unchanged = 0
    with engine.begin() as conn:
        stored = {found.sku: found._mapping for found in select_keyed(
            conn, table, [(row.key,) for row in rows], on=("sku",),
            columns=(table.c.sku, *(table.c[name] for name in _VALUE_COLUMNS), table.c.attributes))}
        for row in rows:
            given, current = row.record["product"], stored.get(row.key)
            if current is None:
                if given["name"] is None:
                    errors.append(RowError(row.line, "name: required for a product not in the catalogue yet"))
                    continue
                values = {**given, "in_stock": True if given["in_stock"] is None else given["in_stock"],
                          "attributes": row.record["attributes"]}
                created += 1
            else:
                values = {name: current[name] if given[name] is None else given[name] for name in _VALUE_COLUMNS}
                values["attributes"] = {**(current["attributes"] or {}), **row.record["attributes"]}
                if all(values[name] == current[name] for name in values):
                    unchanged += 1  # a replay: nothing to write, not even updated_at
                    continue
            changes.append({"sku": row.key, **values, "created_at": now, "updated_at": now})

        def upsert(insert: Any) -> Any:
            # Values were merged with the stored ones above: the row takes them whole,
            # except created_at, which is the first import's.
            excluded = insert.excluded
            return insert.on_conflict_do_update(
                index_elements=["sku"],
                set_={name: excluded[name] for name in (*_VALUE_COLUMNS, "attributes", "updated_at")})

        for chunk in chunks(changes):
            insert_rows(conn, table, chunk, finish=upsert)
    updated = len(rows) - len(errors) - created - unchanged
    return BatchOutcome(len(batch) - len(errors), errors,
                        {"created": created, "updated": updated, "unchanged": unchanged})


def unknown_skus(conn: Connection, skus: Iterable[str]) -> set[str] | None:
    """Those of ``skus`` the catalogue does not hold; None when the catalogue is empty
    (then every sku is unknown, and saying so once is more use than listing them)."""
    table = Product.__table__
    if conn.execute(sa.select(table.c.id).limit(1)).first() is None:
        return None
    wanted = sorted(set(skus))
    known = {found.sku for found in select_keyed(conn, table, [(sku,) for sku in wanted], on=("sku",),
                                                 columns=(table.c.sku,))}
    return set(wanted) - known


__all__ = ["PRODUCT_COLUMNS", "parse_product", "unknown_skus", "write_products"]
