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


#: How many unknown skus an orders import report names, and how many lines of each.
UNKNOWN_SAMPLE_SKUS = 10
UNKNOWN_SAMPLE_LINES = 5


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
    #: Products only: rows identical to the stored product, so not written at all.
    unchanged: int = 0
    #: Orders only: the items written, and those whose sku is not in the catalogue (kept
    #: all the same): how many, their distinct skus, and a sample of skus with the first
    #: lines naming them. ``catalogue_empty``: there was no catalogue to look the skus up in.
    items: int = 0
    unknown_items: int = 0
    unknown_skus: set[str] = field(default_factory=set)
    unknown_sample: dict[str, list[int]] = field(default_factory=dict)
    catalogue_empty: bool = False

    def note_items(self, line: int, skus: list[str], unknown: set[str] | None) -> None:
        """Count the items (``skus``) of the order written from ``line``; ``unknown`` is
        the set of skus not in the catalogue, None when the catalogue is empty."""
        self.items += len(skus)
        if unknown is None:
            self.catalogue_empty = True
            self.unknown_items += len(skus)
            self.unknown_skus.update(skus)
            return
        for sku in skus:
            if sku not in unknown:
                continue
            self.unknown_items += 1
            self.unknown_skus.add(sku)
            if sku in self.unknown_sample or len(self.unknown_sample) < UNKNOWN_SAMPLE_SKUS:
                lines = self.unknown_sample.setdefault(sku, [])
                if len(lines) < UNKNOWN_SAMPLE_LINES and line not in lines:
                    lines.append(line)

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
            **self._kind_dict(),
        }

    def _kind_dict(self) -> dict[str, Any]:
        # What only one kind of import has to say.
        if self.kind == "products":
            return {"unchanged": self.unchanged}
        if self.kind == "orders":
            return {"items": self.items, "unknown_skus": {
                "items": self.unknown_items,
                "skus": len(self.unknown_skus),
                "catalogue_empty": self.catalogue_empty,
                "sample": [{"sku": sku, "lines": lines} for sku, lines in sorted(self.unknown_sample.items())],
            }}
        return {}


__all__ = ["UNKNOWN_SAMPLE_LINES", "UNKNOWN_SAMPLE_SKUS", "ImportReport", "RowError"]
