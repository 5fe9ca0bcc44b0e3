"""Weak matches waiting for a decision: two customers that may be one person.

An import that finds a row's email (a weak identifier: a family often shares one) on
another customer, or any identifier the import was not told to match on, does not merge:
it opens an :class:`~campaigns.store.models.IdentityReview` for the pair. A pair is opened
once: one already open, merged or kept apart is left exactly as it is, so a decision to
keep two customers apart is never asked again (``nurture identity review``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from campaigns.store.chunks import chunks
from campaigns.store.db import dialect_insert
from campaigns.store.models import IdentityReview


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewPair:
    """Two customers sharing an identifier: what to propose for review."""

    customer_id: int
    other_customer_id: int
    kind: str
    value: str
    source: str | None = None

    def ordered(self) -> ReviewPair:
        """The same pair with the lower row id first (how the table stores it)."""
        if self.customer_id < self.other_customer_id:
            return self
        return ReviewPair(customer_id=self.other_customer_id, other_customer_id=self.customer_id,
                          kind=self.kind, value=self.value, source=self.source)


def open_reviews(conn: Connection, pairs: Iterable[ReviewPair], *, now: datetime) -> int:
    """Open a review item for each pair not already known (in any status); returns how
    many were opened. Runs in the caller's transaction; a pair of one customer with
    itself is ignored, and of several identifiers shared by one pair the first is kept.
    """
    wanted: dict[tuple[int, int], ReviewPair] = {}
    for pair in pairs:
        if pair.customer_id == pair.other_customer_id:
            continue
        pair = pair.ordered()
        wanted.setdefault((pair.customer_id, pair.other_customer_id), pair)
    table = IdentityReview.__table__
    values = [
        {"customer_id": pair.customer_id, "other_customer_id": pair.other_customer_id, "kind": pair.kind,
         "value": pair.value, "source": pair.source, "status": "open", "opened_at": now}
        for _, pair in sorted(wanted.items())
    ]
    opened = 0
    for chunk in chunks(values):
        # RETURNING yields only the rows inserted (a driver's rowcount is not reliable
        # here); the unique pair makes a concurrent import's same proposal a no-op.
        insert = dialect_insert(conn, table).values(chunk)
        result = conn.execute(insert.on_conflict_do_nothing(index_elements=["customer_id", "other_customer_id"])
                              .returning(table.c.id))
        opened += len(result.all())
    return opened


__all__ = ["ReviewPair", "open_reviews"]
