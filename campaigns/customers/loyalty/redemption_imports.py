"""Redemptions in: ``nurture import redemptions FILE`` (CSV or JSON Lines), and the field
rules ``POST /loyalty/redemptions`` shares with it.

Columns: ``redemption_id`` (the idempotency key), ``customer_id`` (any identifier an order
import accepts: a bare id, the id in ``--source``, or ``kind:value``), ``points`` (a
positive whole number), ``kind`` (one of ``[loyalty] kinds``), ``redeemed_at`` (ISO 8601)
and, optionally, ``note`` (what was redeemed, kept on the ledger entry).

The file is read as the other imports read theirs
(:mod:`campaigns.customers.importing.readers`: UTF-8, physical line numbers, size limits),
and its valid rows go to :func:`~campaigns.customers.loyalty.redeeming.redeem` in batches
of ``batch_size``: one transaction per batch, set-based. Each row ends up in one of four
places:

* **redeemed**: the points are spent (the lots that expire first among those allowed);
* **duplicate**: its ``redemption_id`` was already redeemed with the same customer and
  points (stored, or on an earlier line): nothing changes, so replaying a file is safe;
* **refused**: a valid row the ledger said no to, with the reason
  (:mod:`~campaigns.customers.loyalty.redeeming`): not enough points for that kind (and
  the balance that was allowed), or an id already used for another redemption. Nothing
  of a refused redemption is written;
* **rejected**: a row that is not a redemption (a missing column, a bad date, an unknown
  customer or kind), listed by line like every import's bad rows.

Rows of a batch are applied in ``redeemed_at`` order, batches in file order: a file sorted
by time redeems as the shop did.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from campaigns.config.identity import IdentityConfig
from campaigns.config.loyalty import LoyaltyConfig
from campaigns.customers.identity.lookup import resolve_references
from campaigns.customers.importing.fields import RowInvalid, datetime_value, required_text, text_value
from campaigns.customers.importing.readers import open_rows, resolve_format
from campaigns.customers.importing.report import RowError
from campaigns.customers.importing.rows import check_row
from campaigns.customers.loyalty.redeeming import MAX_POINTS, Redemption, RedemptionResult, redeem
from campaigns.errors import DataImportError

#: Columns a redemptions CSV must have (``note`` is optional).
REQUIRED_COLUMNS = ("redemption_id", "customer_id", "points", "kind", "redeemed_at")
#: Longest redemption id: the ledger keeps 160 characters of a source reference.
MAX_ID_LENGTH = 160
#: Longest customer reference (``email:`` and an address of 254 characters fit).
MAX_REFERENCE_LENGTH = 320
#: Longest note kept on the ledger entry (its detail holds 500 with the kind).
MAX_NOTE_LENGTH = 400
_DIGITS = re.compile(r"[0-9]{1,10}")


def points_value(value: Any, name: str = "points") -> int:
    """``value`` as a number of points to move: a whole number from 1 to
    :data:`~campaigns.customers.loyalty.redeeming.MAX_POINTS` (a JSON integer or digits);
    :class:`RowInvalid` otherwise."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)  # 10.0 from a spreadsheet export is ten points
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    if value is None or value == "":
        raise RowInvalid(f"{name}: required")
    if number is None or not 1 <= number <= MAX_POINTS:
        raise RowInvalid(f"{name}: a whole number of points from 1 to {MAX_POINTS}")
    return number


def kind_value(value: Any, loyalty: LoyaltyConfig, name: str = "kind") -> str:
    """``value`` if it is one of ``[loyalty] kinds`` (case as configured); :class:`RowInvalid`
    otherwise, naming the kinds."""
    text = text_value({name: value}, name, max_length=64)
    if text is None:
        raise RowInvalid(f"{name}: required (one of {', '.join(loyalty.kinds)})")
    if text not in loyalty.kinds:
        raise RowInvalid(f"{name}: {text[:32]!r} is not a redeemable kind (kinds are {', '.join(loyalty.kinds)})")
    return text


def is_id_conflict(result: RedemptionResult) -> bool:
    """Whether a refusal is an id already used for another redemption (the API's 409) rather
    than a lack of points (422): only the latter says what balance was allowed."""
    return result.status == "refused" and result.balance is None


@dataclass(frozen=True)
class RefusedRow:
    """A valid redemption the ledger refused: why, and what balance was allowed."""

    line: int
    redemption_id: str
    reason: str
    #: Points redeemable for the kind at the redemption's time; None for an id conflict.
    balance: int | None = None


@dataclass
class RedemptionImportReport:
    """What ``nurture import redemptions`` did: rows read, redeemed (and their points),
    duplicates (replays, nothing changed), refused and rejected rows by line."""

    path: str
    source: str | None = None
    rows_read: int = 0
    redeemed: int = 0
    points: int = 0
    duplicates: int = 0
    refused: list[RefusedRow] = field(default_factory=list)
    rejected: list[RowError] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether any row was refused or rejected (the command then exits non-zero)."""
        return bool(self.refused or self.rejected)

    def problems(self) -> list[tuple[int, str]]:
        """Refused and rejected rows as ``(line, text)``, by line: what the command lists."""
        listed = [(row.line, f"refused: {row.reason}") for row in self.refused]
        listed += [(row.line, row.reason) for row in self.rejected]
        return sorted(listed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view, for ``--json`` output."""
        return {
            "kind": "redemptions", "path": self.path, "source": self.source, "rows_read": self.rows_read,
            "redeemed": self.redeemed, "points": self.points, "duplicates": self.duplicates,
            "refused_count": len(self.refused), "refused": [asdict(row) for row in self.refused],
            "rejected_count": len(self.rejected), "rejected": [asdict(row) for row in self.rejected],
        }


@dataclass(frozen=True)
class _Row:
    line: int
    redemption_id: str
    customer: str
    points: int
    kind: str
    at: datetime
    note: str | None


def _parse(line: int, row: dict[str, Any], loyalty: LoyaltyConfig) -> _Row:
    check_row(row)
    at = datetime_value(row, "redeemed_at", required=True)
    assert at is not None
    return _Row(
        line=line,
        redemption_id=required_text(row, "redemption_id", max_length=MAX_ID_LENGTH),
        customer=required_text(row, "customer_id", max_length=MAX_REFERENCE_LENGTH),
        points=points_value(row.get("points")),
        kind=kind_value(row.get("kind"), loyalty),
        at=at,
        note=text_value(row, "note", max_length=MAX_NOTE_LENGTH),
    )


def import_redemptions(
    engine: Engine,
    path: Path,
    *,
    loyalty: LoyaltyConfig,
    now: datetime,
    identity: IdentityConfig | None = None,
    source: str | None = None,
    file_format: str | None = None,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> RedemptionImportReport:
    """Redeem the rows of ``path``, once each (replaying the file changes nothing).

    ``source`` names the system the file comes from: a bare ``customer_id`` is then the
    customer's id there (``pos:88``), as in order imports. ``progress`` is called after
    every batch with the bytes read so far. ``now`` is when the entries are recorded.

    Raises:
        DataImportError: the file cannot be read at all (missing, unknown format, no
            header, invalid UTF-8; the batches before an unreadable spot are applied, and
            importing again after the fix redeems nothing twice).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    path = Path(path)
    rules = identity or IdentityConfig()
    report = RedemptionImportReport(path=str(path), source=source)
    pending: list[_Row] = []

    def flush() -> None:
        if not pending:
            return
        with engine.connect() as conn:
            customers = resolve_references(conn, {row.customer for row in pending}, rules=rules, source=source)
        valid: list[_Row] = []
        for row in pending:
            if row.customer in customers:
                valid.append(row)
            else:
                report.rejected.append(RowError(row.line, "customer_id not found: import customers first"))
        results = redeem(engine, [
            Redemption(row.redemption_id, customers[row.customer], row.points, row.kind, row.at, note=row.note)
            for row in valid], now=now)
        for row, result in zip(valid, results, strict=True):
            if result.status == "redeemed":
                report.redeemed += 1
                report.points += row.points
            elif result.status == "duplicate":
                report.duplicates += 1
            else:
                report.refused.append(RefusedRow(row.line, row.redemption_id, result.reason or "refused",
                                                 result.balance))
        pending.clear()

    fmt = resolve_format(path, file_format)
    with open_rows(path, "redemptions", fmt, required=REQUIRED_COLUMNS) as (lines, rows):
        try:
            for line, raw in rows:
                report.rows_read += 1
                if isinstance(raw, str):  # the reader already knows this row is unusable
                    report.rejected.append(RowError(line, raw))
                    continue
                try:
                    pending.append(_parse(line, raw, loyalty))
                except RowInvalid as exc:
                    report.rejected.append(RowError(line, str(exc)))
                    continue
                if len(pending) >= batch_size:
                    flush()
                    if progress is not None:
                        progress(lines.bytes_read)
        except DataImportError:
            flush()  # what was validated before the unreadable spot is applied, as other imports do
            raise
        flush()
        if progress is not None:
            progress(lines.bytes_read)
    report.refused.sort(key=lambda row: row.line)
    report.rejected.sort(key=lambda row: row.line)
    return report


__all__ = [
    "MAX_ID_LENGTH",
    "MAX_NOTE_LENGTH",
    "MAX_REFERENCE_LENGTH",
    "REQUIRED_COLUMNS",
    "RedemptionImportReport",
    "RefusedRow",
    "import_redemptions",
    "is_id_conflict",
    "kind_value",
    "points_value",
]
