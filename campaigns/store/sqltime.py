"""Date arithmetic on timestamp columns, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa


def plus_interval(dialect: str, column: sa.ColumnElement[datetime], delay: timedelta, type_: sa.types.TypeEngine) -> sa.ColumnElement[datetime]:
    """``column + delay`` in SQL, typed as ``type_``.

    SQLite stores timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` text (compared as text), so
    the sum keeps exactly that format: seconds shifted by ``datetime()``, the fraction kept.
    """
    if not delay:
        return column
    if dialect == "sqlite":
        seconds = int(delay.total_seconds())  # durations are whole seconds
        shifted = sa.func.strftime(
            "%Y-%m-%d %H:%M:%S", column, f"{seconds:+d} seconds", type_=sa.String
        ).concat(sa.func.substr(column, 20, type_=sa.String))
        return sa.type_coerce(shifted, type_)
    return sa.type_coerce(column + sa.literal(delay, type_=sa.Interval()), type_)


def utc_day(dialect: str, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[int]:
    """The UTC calendar day of a timestamp, as whole days since 1970-01-01 (an integer,
    so days subtract and group the same on both engines)."""
    if dialect == "sqlite":
        # Stored as UTC text; julianday() reads it, the epoch's Julian day is 2440587.5.
        # CAST truncates, which is floor for any time after 1970 (floor() itself is not
        # in every SQLite build).
        return sa.cast(sa.func.julianday(column) - 2440587.5, sa.Integer)
    return sa.cast(sa.func.floor(sa.extract("epoch", column) / 86400), sa.Integer)
