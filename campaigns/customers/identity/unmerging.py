"""A merge reversed: every row the merge moved, removed or changed put back exactly.

:func:`unmerge` reads the :class:`~campaigns.store.models.CustomerMerge` record
:func:`~campaigns.customers.identity.merging.merge_customers` wrote and, in the caller's
transaction: re-inserts the merged customer with its row id, moves the recorded ids that
still point at the survivor back, re-inserts the removed rows with their ids, restores
every changed value, and marks the merge reversed. Rows created after the merge (a new
order of the person, a message sent since) stay with the survivor: nothing says which
record they belonged to.

Merges are undone newest first: one is refused while a later, unreversed merge depends on
it (the survivor has since been merged into another customer, or another customer was
merged into the same survivor later), since that merge's record was taken over rows this
one would move.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.customers.identity.merging import TABLES, MergeError, from_json
from campaigns.store.chunks import chunks
from campaigns.store.db import COUNT_ROWS
from campaigns.store.models import Customer, CustomerMerge

_MERGE = CustomerMerge.__table__
_CUSTOMER = Customer.__table__


@dataclass(frozen=True)
class UnmergeResult:
    """What :func:`unmerge` put back."""

    merge_id: int
    survivor_id: int
    #: The merged customer, back with its own row id and external id.
    merged_id: int
    merged_external_id: str
    #: Rows moved back to the merged customer, per table (those still on the survivor).
    moved_back: dict[str, int] = field(default_factory=dict)
    #: Rows re-inserted, per table (the merged customer's row included).
    restored: dict[str, int] = field(default_factory=dict)
    #: Values set back to what they were before the merge.
    values_restored: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return {
            "merge_id": self.merge_id, "survivor_id": self.survivor_id, "merged_id": self.merged_id,
            "merged_external_id": self.merged_external_id, "moved_back": dict(self.moved_back),
            "restored": dict(self.restored), "values_restored": self.values_restored,
        }


def unmerge(conn: Connection, *, merge_id: int, now: datetime) -> UnmergeResult:
    """Reverse merge ``merge_id`` inside the caller's transaction (see the module docstring).

    The caller recomputes both customers' profiles after commit.

    Raises:
        MergeError: no such merge, it was already reversed, a later merge depends on it, or
            the merged customer's external id has been taken since.
    """
    merge = conn.execute(sa.select(_MERGE).where(_MERGE.c.id == merge_id).with_for_update()).one_or_none()
    if merge is None:
        raise MergeError(f"no merge with id {merge_id}")
    if merge.unmerged_at is not None:
        raise MergeError(f"merge {merge_id} was already reversed on {merge.unmerged_at:%Y-%m-%d %H:%M} UTC")
    later = conn.execute(
        sa.select(_MERGE.c.id).where(
            _MERGE.c.id > merge_id,
            _MERGE.c.unmerged_at.is_(None),
            sa.or_(_MERGE.c.merged_id == merge.survivor_id, _MERGE.c.survivor_id == merge.survivor_id),
        ).order_by(_MERGE.c.id.desc())
    ).scalars().all()
    if later:
        raise MergeError(
            f"merge {merge_id} cannot be reversed before the later merge{'s' if len(later) > 1 else ''} "
            f"{', '.join(map(str, later))} of the same customer: unmerge {'those' if len(later) > 1 else 'that'} "
            "first, newest first"
        )
    removed: dict[str, list[dict[str, Any]]] = merge.removed or {}
    customer_rows = removed.get(_CUSTOMER.name, [])
    if len(customer_rows) != 1:
        raise MergeError(f"merge {merge_id} holds no record of the merged customer; it cannot be reversed")
    taken = conn.execute(
        sa.select(_CUSTOMER.c.id).where(_CUSTOMER.c.external_id == merge.merged_external_id)
    ).scalar()
    if taken is not None:
        raise MergeError(
            f"customer_id {merge.merged_external_id!r} belongs to customer {taken} since the merge; "
            "it cannot be given back to the merged customer"
        )
    # The merged customer first: every row moved back or re-inserted points at it.
    _insert(conn, _CUSTOMER, customer_rows)
    moved_back: dict[str, int] = {}
    for name, ids in sorted((merge.moved or {}).items()):
        table = TABLES[name]
        moved_back[name] = sum(
            conn.execute(
                sa.update(table)
                .where(table.c.id.in_(chunk), table.c.customer_id == merge.survivor_id)
                .values(customer_id=merge.merged_id),
                execution_options=COUNT_ROWS,
            ).rowcount
            for chunk in chunks(list(ids))
        )
    restored = {_CUSTOMER.name: 1}
    for name, rows in sorted(removed.items()):
        if name != _CUSTOMER.name and rows:
            _insert(conn, TABLES[name], rows)
            restored[name] = len(rows)
    values_restored = _restore_changed(conn, merge.changed or [])
    conn.execute(sa.update(_MERGE).where(_MERGE.c.id == merge_id).values(unmerged_at=now))
    return UnmergeResult(
        merge_id=merge_id, survivor_id=merge.survivor_id, merged_id=merge.merged_id,
        merged_external_id=merge.merged_external_id, moved_back=moved_back, restored=restored,
        values_restored=values_restored,
    )


def _insert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Re-insert whole rows, ids included, each value back in its column's type."""
    conn.execute(
        sa.insert(table),
        [{name: from_json(table, name, value) for name, value in row.items() if name in table.c} for row in rows],
    )


def _restore_changed(conn: Connection, changed: list[list[Any]]) -> int:
    """Set every changed value back; one UPDATE per row (all its columns at once, so a
    pair restored in two columns never passes through a state the constraints refuse).

    When a value was recorded twice (never, today), the first recorded, oldest, wins.
    """
    by_row: dict[tuple[str, Any], dict[str, Any]] = defaultdict(dict)
    for name, key, column, old in changed:
        table = TABLES[name]
        by_row[(name, key)].setdefault(column, from_json(table, column, old))
    for (name, key), values in by_row.items():
        table = TABLES[name]
        primary = table.primary_key.columns.values()[0]
        conn.execute(sa.update(table).where(primary == key).values(values))
    return sum(len(values) for values in by_row.values())


__all__ = ["UnmergeResult", "unmerge"]
