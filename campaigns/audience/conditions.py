"""SQL building blocks of compiled audience expressions: null-safe comparisons, day
counts as time ranges, BIGINT parameters and balanced ``and``/``or`` trees.

Each keeps one promise of the language (:mod:`campaigns.audience.language`) that plain
SQL does not: missing values compare as Python would, day counts agree on every dialect,
large integers bind on PostgreSQL, and long chains stay within SQLite's depth limit.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BooleanClauseList, ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

#: The SQL operator of each comparison node.
SQL_OPERATORS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
}


def as_bigint(value: Any) -> Any:
    """An integer as a BIGINT parameter: bound as the compared column's type, PostgreSQL
    cast it to INTEGER and aborted the audience query on anything beyond 2**31
    (``orders_count >= 3000000000``, which check accepts)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return sa.literal(value, sa.BigInteger())
    return value


def null_safe(column: Any, op_type: type, value: Any) -> sa.ColumnElement[bool]:
    """``column op value`` that is false (or, for !=, true) when ``column`` is NULL."""
    compared = SQL_OPERATORS[op_type](column, value)
    if op_type is ast.NotEq:
        return sa.or_(column.is_(None), compared)
    return sa.and_(column.is_not(None), compared)


def days_comparison(op_type: type, value: float, moment: Any, *, now: datetime) -> sa.ColumnElement[bool]:
    """``days since moment op value`` at ``now`` as a range on the ``moment`` column (days
    are floored), so no date arithmetic happens in SQL and both dialects agree. A missing
    moment (no order yet) compares false, except for ``!=``."""
    present = moment.is_not(None)
    if op_type is ast.NotEq:
        return sa.or_(~present, _days_range(ast.NotEq, value, moment, now))
    return sa.and_(present, _days_range(op_type, value, moment, now))


def _days_range(op_type: type, value: float, created: Any, now: datetime) -> sa.ColumnElement[bool]:
    def at_least(days: int) -> sa.ColumnElement[bool]:  # floor(age) >= days
        return created <= now - timedelta(days=days)

    if op_type is ast.GtE:
        return at_least(math.ceil(value))
    if op_type is ast.Gt:
        return at_least(math.floor(value) + 1)
    if op_type is ast.LtE:
        return sa.not_(at_least(math.floor(value) + 1))
    if op_type is ast.Lt:
        return sa.not_(at_least(math.ceil(value)))
    if value != int(value):
        equal: sa.ColumnElement[bool] = sa.false()
    else:
        equal = sa.and_(at_least(int(value)), sa.not_(at_least(int(value) + 1)))
    return sa.not_(equal) if op_type is ast.NotEq else equal


class _Parenthesized(ColumnElement[bool]):
    """A condition in parentheses that SQLAlchemy keeps as written: ``or_``/``and_``
    flatten nested lists of their own operator (and drop a ``Grouping`` around them),
    which would undo :func:`balanced`."""

    __visit_name__ = "nurture_parenthesized"
    inherit_cache = True
    _traverse_internals = [("inner", InternalTraversal.dp_clauseelement)]
    type = sa.Boolean()

    def __init__(self, inner: ColumnElement[bool]) -> None:
        self.inner = inner


@compiles(_Parenthesized)
def _compile_parenthesized(element: _Parenthesized, compiler: SQLCompiler, **kw: Any) -> str:
    return "(" + compiler.process(element.inner, **kw) + ")"


def balanced(combine: Callable[..., ColumnElement[bool]], parts: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """``combine`` (``sa.and_`` or ``sa.or_``) of ``parts`` as a balanced tree of
    parenthesised halves, its nested lists kept apart.

    SQLite parses a flat ``a OR b OR c ...`` into a tree as deep as the chain is long and
    refuses one deeper than 1,000 (SQLITE_MAX_EXPR_DEPTH). Segments that use a segment
    twice reach that once inlined (ten levels: 1,024 conditions), and SQLAlchemy would
    flatten them into one chain; balanced, the depth grows with the logarithm instead.
    """
    kept = [_Parenthesized(part) if isinstance(part, BooleanClauseList) else part for part in parts]
    if len(kept) <= 2:
        return combine(*kept)
    middle = len(kept) // 2
    return combine(_Parenthesized(balanced(combine, kept[:middle])),
                   _Parenthesized(balanced(combine, kept[middle:])))
