"""Statement-sized chunks: how many rows (or ids in an ``IN`` list) one SQL statement takes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

_T = TypeVar("_T")

#: Rows per INSERT statement (and ids per ``IN`` list): keeps bound parameters under
#: SQLite's and PostgreSQL's limits whatever the caller's batch size. Statements of one
#: batch still share one transaction.
STATEMENT_ROWS = 500


def chunks(items: list[_T], size: int = STATEMENT_ROWS) -> Iterator[list[_T]]:
    """``items`` in consecutive slices of at most ``size``, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = ["STATEMENT_ROWS", "chunks"]
