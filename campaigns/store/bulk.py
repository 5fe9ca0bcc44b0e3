"""Set-based statements over many rows at once: rows found or updated by many composite
keys (``(kind, value)`` pairs), and many rows inserted or upserted.

An import batch looks up, inserts and updates a thousand rows of several kinds. One ``IN``
list or multi-row ``VALUES`` per kind and statement chunk means a new statement text for
every size of list, which SQLAlchemy compiles afresh and PostgreSQL parses and plans afresh
each time (that was most of an import's time). Here:

* PostgreSQL takes the keys or rows as one array per column and ``unnest``s them: ONE
  statement of fixed text whatever the number of rows, which psycopg prepares once per
  connection, with a few array parameters instead of thousands of scalars;
* SQLite compares row values, ``(kind, value) IN ((?, ?), ...)``, in statement-sized
  chunks (:data:`~campaigns.store.chunks.STATEMENT_ROWS`) under its parameter limit, and
  inserts with ``executemany`` of one statement (SQLite runs in-process: no round trips).

Both return the same rows; callers never see which path ran.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from campaigns.store.chunks import chunks
from campaigns.store.db import dialect_insert


def _unnest(table: sa.Table, names: Sequence[str], rows: Sequence[Sequence[Any]], *, alias: str) -> Any:
    """``unnest(:c0, :c1, ...) AS <alias>(<names>)``: ``rows`` (tuples in the order of
    ``names``) as a table, one array parameter per column typed like ``table``'s (PostgreSQL)."""
    arrays = [
        sa.bindparam(f"{alias}_{name}", [row[index] for row in rows], type_=ARRAY(table.c[name].type))
        for index, name in enumerate(names)
    ]
    return sa.func.unnest(*arrays).table_valued(*names).render_derived(name=alias)


def in_values(conn: Connection, column: sa.ColumnElement[Any], values: Sequence[Any]) -> list[sa.ColumnElement[bool]]:
    """``column IN values`` as conditions to run one statement each (none for no values).

    PostgreSQL gets one ``column = ANY(:array)``: a fixed statement text whatever the
    number of values, which psycopg parses and prepares once, where an ``IN`` list of a
    few hundred values is a new text each time (its rendering and parsing cost more than
    the index look-up). SQLite gets ``IN`` lists of statement-sized chunks.
    """
    values = list(values)
    if not values:
        return []
    if conn.dialect.name == "postgresql":
        return [column == sa.any_(sa.bindparam(None, values, type_=ARRAY(column.type)))]
    return [column.in_(chunk) for chunk in chunks(values)]


def select_keyed(conn: Connection, table: sa.Table, keys: Sequence[tuple[Any, ...]], *,
                 on: Sequence[str], columns: Sequence[sa.ColumnElement[Any]]) -> list[sa.Row[Any]]:
    """``columns`` of the rows of ``table`` whose ``on`` columns equal one of ``keys``.

    ``keys`` are tuples in the order of ``on``; duplicates are harmless. Returns the rows
    in no particular order.
    """
    keys = list(dict.fromkeys(keys))
    if not keys:
        return []
    if conn.dialect.name == "postgresql":
        wanted = _unnest(table, on, keys, alias="keys")
        query = sa.select(*columns).select_from(table).join(
            wanted, sa.and_(*(table.c[name] == wanted.c[name] for name in on)))
        return conn.execute(query).all()  # one fetchall, not a fetchone per row
    found: list[sa.Row[Any]] = []
    key_columns = sa.tuple_(*(table.c[name] for name in on))
    for chunk in chunks(keys):
        found.extend(conn.execute(sa.select(*columns).where(key_columns.in_(chunk))).all())
    return found


def update_keyed(conn: Connection, table: sa.Table, keys: Sequence[tuple[Any, ...]], *,
                 on: Sequence[str], values: dict[str, Any]) -> None:
    """Set ``values`` on the rows of ``table`` whose ``on`` columns equal one of ``keys``."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return
    if conn.dialect.name == "postgresql":
        wanted = _unnest(table, on, keys, alias="keys")
        conn.execute(sa.update(table).where(*(table.c[name] == wanted.c[name] for name in on)).values(values))
        return
    key_columns = sa.tuple_(*(table.c[name] for name in on))
    for chunk in chunks(keys):
        conn.execute(sa.update(table).where(key_columns.in_(chunk)).values(values))


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], *,
                finish: Callable[[Any], Any] = lambda insert: insert) -> sa.CursorResult[Any]:
    """Insert ``rows`` (dicts with the same keys) into ``table`` in one statement.

    ``finish`` completes the dialect's ``INSERT`` construct (it is given the construct, so
    ``insert.excluded`` can be named): ``on_conflict_do_nothing``/``_do_update`` and
    ``returning``. The result holds what ``RETURNING`` gave, in no particular order.
    """
    if not rows:
        raise ValueError("insert_rows needs at least one row")
    insert = dialect_insert(conn, table)
    if conn.dialect.name != "postgresql":
        return conn.execute(finish(insert), list(rows))
    names = list(rows[0])
    first = rows[0]
    # A column with one value for every row (the import's time, its source) is one scalar
    # parameter, not an array: each array element costs its adaptation in Python.
    # (One column stays an array whatever: its length is the number of rows inserted.)
    constant = [name for name in names[1:] if all(row[name] == first[name] for row in rows)]
    varying = [name for name in names if name not in constant]
    new = _unnest(table, varying, [[row[name] for name in varying] for row in rows], alias="new")
    values = {name: new.c[name] for name in varying}
    values.update({name: sa.bindparam(f"same_{name}", first[name], type_=table.c[name].type) for name in constant})
    source = sa.select(*(values[name] for name in names)).select_from(new)
    return conn.execute(finish(insert.from_select(names, source)))


__all__ = ["in_values", "insert_rows", "select_keyed", "update_keyed"]
