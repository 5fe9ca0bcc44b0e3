"""What an import did: rows read, rows written and each rejected row with its line."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RowError:
    """One rejected row.

    ``line`` is the 1-based physical line in the file where the row STARTS (for CSV the
    header is line 1; a quoted field spanning lines still reports the row's first line).
    """

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did: rows read, rows written (inserted or updated) and rows rejected."""

    kind: str
    path: str
    rows_read: int = 0
    imported: int = 0
    rejected: list[RowError] = field(default_factory=list)
    #: Customers only: persons created, updated (one or more rows matched a stored
    #: customer), merges run, and review items opened for weak matches.
    created: int = 0
    updated: int = 0
    merged: int = 0
    reviews_opened: int = 0
    #: Customers that absorbed others in a merge during this import: their profiles are
    #: stale until recomputed (:func:`campaigns.customers.identity.decisions.recompute_survivors`).
    survivors: set[int] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view, for ``--json`` output."""
        return {
            "kind": self.kind,
            "path": self.path,
            "rows_read": self.rows_read,
            "imported": self.imported,
            "created": self.created,
            "updated": self.updated,
            "merged": self.merged,
            "reviews_opened": self.reviews_opened,
            "rejected_count": len(self.rejected),
            "rejected": [asdict(error) for error in self.rejected],
        }


__all__ = ["ImportReport", "RowError"]
