"""Typed, type-guarded reads of free JSON attributes, the same on SQLite and PostgreSQL.

A plain ``CAST(attributes ->> 'tier' AS INTEGER)`` makes PostgreSQL abort the whole query
as soon as one customer stores ``"gold"`` under ``tier``; SQLite would just compare
unequal. Guarding the cast with the JSON value's own type makes both databases agree: a
value of another type simply does not match.
"""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

Kind = Literal["bool", "int", "float", "str"]

# json_type() on SQLite and json_typeof() on PostgreSQL name types differently; a guard
# accepts either spelling.
_JSON_TYPES: dict[str, tuple[str, ...]] = {
    "bool": ("true", "false", "boolean"),
    "int": ("integer", "real", "number"),
    "float": ("integer", "real", "number"),
    "str": ("text", "string"),
}


class json_type_of(FunctionElement[str]):  # noqa: N801 - reads like the SQL function it renders
    """The JSON type name of ``column[key]`` (``json_type`` / ``json_typeof``)."""

    type = sa.String()
    name = "json_type_of"
    inherit_cache = True


@compiles(json_type_of, "sqlite")
def _sqlite_json_type(element: json_type_of, compiler: Any, **kw: Any) -> str:
    column, path = list(element.clauses)
    return f"json_type({compiler.process(column, **kw)}, {compiler.process(path, **kw)})"


@compiles(json_type_of, "postgresql")
def _postgresql_json_type(element: json_type_of, compiler: Any, **kw: Any) -> str:
    column, path = list(element.clauses)
    # The path parameter is '$."key"' for SQLite; PostgreSQL takes the bare key.
    key = compiler.process(sa.func.substr(path, 4, sa.func.length(path) - 4), **kw)
    return f"json_typeof({compiler.process(column, **kw)} -> {key})"


def typed_attribute(column: sa.ColumnElement[Any], key: str, kind: Kind) -> sa.ColumnElement[Any]:
    """``column[key]`` as ``kind``, or NULL when the stored JSON value has another type.

    Raises:
        ValueError: ``key`` holds a double quote or backslash, which the quoted JSON path
            cannot carry on both databases (config and expressions refuse such names).
    """
    if '"' in key or "\\" in key:
        raise ValueError("an attribute name cannot contain a double quote or a backslash")
    path = '$."' + key + '"'
    element = column[key]
    value = {
        "bool": element.as_boolean,
        "int": element.as_float,  # integer equality through float: 3 == 3.0, and 3.5 never casts to int
        "float": element.as_float,
        "str": element.as_string,
    }[kind]()
    guard = json_type_of(column, sa.literal(path)).in_(_JSON_TYPES[kind])
    return sa.case((guard, value), else_=sa.null())


def kind_of(value: object) -> Kind:
    """The attribute kind a Python literal compares as."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"
