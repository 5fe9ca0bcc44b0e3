"""Coupon files in: a pool's codes (``nurture import coupons FILE --pool NAME``) and
redemptions (``nurture import coupon-redemptions FILE``), CSV or JSON Lines.

Both read the file as the other imports do (:mod:`campaigns.customers.importing.readers`:
UTF-8, physical line numbers, size limits) and write in batches of ``batch_size`` rows, one
transaction each. A bad row is never an error of the file: it is listed by line and the
rows around it are written.

* **Codes** (column ``code``; other columns are ignored): a code already in the pool,
  stored earlier or on an earlier line of the file, is listed by line as a duplicate and
  the first one kept; importing the same file again adds nothing.
* **Redemptions** (``code``, ``redeemed_at``; optional ``pool``, ``order_id``,
  ``customer_id``): the coupon becomes ``redeemed``, once. A replayed row (the coupon is
  already redeemed with the same order, or at the same time when neither names an order)
  changes nothing and is counted as ``unchanged``; another redemption of a redeemed coupon,
  an unknown code, or a code held by several pools without ``pool`` is listed by line.
  ``customer_id`` (any identifier, as in order imports) is kept on a coupon nobody was
  assigned; an unknown one rejects the row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.config.coupons import POOL_PATTERN
from campaigns.config.identity import IdentityConfig
from campaigns.customers.identity.lookup import resolve_references
from campaigns.customers.importing.fields import RowInvalid, datetime_value, required_text, text_value
from campaigns.customers.importing.readers import open_rows, resolve_format
from campaigns.customers.importing.report import RowError
from campaigns.errors import DataImportError
from campaigns.store.bulk import insert_rows
from campaigns.store.chunks import chunks
from campaigns.store.models import Coupon

#: A code: printable ASCII without spaces, as long as the column allows.
CODE_RE = re.compile(r"[\x21-\x7e]{1,64}")

_COUPON = Coupon.__table__


@dataclass
class CouponImportReport:
    """What a coupon import did: rows read, codes added (or redemptions recorded), rows
    changing nothing (a replayed redemption), duplicates and rejected rows by line."""

    kind: str
    path: str
    pool: str | None = None
    rows_read: int = 0
    imported: int = 0
    unchanged: int = 0
    #: Codes already in the pool (stored, or on an earlier line): the first one is kept.
    duplicates: list[RowError] = field(default_factory=list)
    rejected: list[RowError] = field(default_factory=list)

    @property
    def not_imported(self) -> list[RowError]:
        """Duplicates and rejected rows, by line."""
        return sorted([*self.duplicates, *self.rejected], key=lambda error: error.line)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view, for ``--json`` output."""
        return {
            "kind": self.kind, "path": self.path, "pool": self.pool, "rows_read": self.rows_read,
            "imported": self.imported, "unchanged": self.unchanged,
            "duplicate_count": len(self.duplicates), "duplicates": [asdict(error) for error in self.duplicates],
            "rejected_count": len(self.rejected), "rejected": [asdict(error) for error in self.rejected],
        }


def check_pool_name(pool: str) -> str:
    """``pool`` if it is a valid pool name; :class:`DataImportError` otherwise."""
    if not re.fullmatch(POOL_PATTERN, pool):
        raise DataImportError(f"pool name {pool[:70]!r} is not valid: letters, digits, '_', '.' and '-', "
                              "at most 64, not starting with '.' or '-'")
    return pool


def _code(row: dict[str, Any]) -> str:
    code = required_text(row, "code", max_length=64)
    if not CODE_RE.fullmatch(code):
        raise RowInvalid("code: printable ASCII characters only, without spaces")
    return code


def _rows(path: Path, file_format: str | None, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with open_rows(path, "coupons", resolve_format(path, file_format), required=required) as (_, rows):
        yield from rows


def import_coupon_pool(engine: Engine, path: Path, *, pool: str, now: datetime, file_format: str | None = None,
                       batch_size: int = 1000) -> CouponImportReport:
    """Add the codes of ``path`` to ``pool`` as ``available``.

    Raises:
        DataImportError: the pool name is invalid or the file cannot be read at all (rows
            before an unreadable spot are imported; importing again is safe).
    """
    check_pool_name(pool)
    path = Path(path)
    report = CouponImportReport(kind="coupons", path=str(path), pool=pool)
    seen: dict[str, int] = {}  # code -> the line that brought it, in this file
    pending: list[tuple[int, str]] = []

    def flush() -> None:
        if not pending:
            return
        with engine.begin() as conn:
            added = set(insert_rows(
                conn, _COUPON,
                [{"pool": pool, "code": code, "status": "available", "imported_at": now} for _, code in pending],
                finish=lambda insert: insert.on_conflict_do_nothing(index_elements=["pool", "code"])
                .returning(_COUPON.c.code),
            ).scalars())
        report.imported += len(added)
        report.duplicates.extend(RowError(line, f"code already in pool {pool!r}")
                                 for line, code in pending if code not in added)
        pending.clear()

    try:
        for line, row in _rows(path, file_format, ("code",)):
            report.rows_read += 1
            if isinstance(row, str):
                report.rejected.append(RowError(line, row))
                continue
            try:
                code = _code(row)
            except RowInvalid as exc:
                report.rejected.append(RowError(line, str(exc)))
                continue
            if code in seen:
                report.duplicates.append(RowError(line, f"code already on line {seen[code]}"))
                continue
            seen[code] = line
            pending.append((line, code))
            if len(pending) >= batch_size:
                flush()
    finally:
        flush()  # what was validated before an unreadable spot is kept, as other imports do
    report.duplicates.sort(key=lambda error: error.line)
    report.rejected.sort(key=lambda error: error.line)
    return report


@dataclass(frozen=True)
class _Redemption:
    line: int
    code: str
    pool: str | None
    redeemed_at: datetime
    order_id: str | None
    customer: str | None


def _redemption(line: int, row: dict[str, Any]) -> _Redemption:
    pool = text_value(row, "pool", max_length=128)
    return _Redemption(
        line=line, code=_code(row), pool=pool,
        redeemed_at=datetime_value(row, "redeemed_at", required=True),  # type: ignore[arg-type]
        order_id=text_value(row, "order_id", max_length=128),
        customer=text_value(row, "customer_id", max_length=320),
    )


def import_redemptions(engine: Engine, path: Path, *, identity: IdentityConfig | None = None,
                       file_format: str | None = None, batch_size: int = 1000) -> CouponImportReport:
    """Mark the coupons ``path`` names redeemed, once each (replaying the file changes nothing).

    Raises:
        DataImportError: the file cannot be read at all.
    """
    path = Path(path)
    report = CouponImportReport(kind="coupon-redemptions", path=str(path))
    rules = identity or IdentityConfig()
    pending: list[_Redemption] = []

    def flush() -> None:
        if pending:
            with engine.begin() as conn:
                _redeem(conn, pending, report, rules=rules)
            pending.clear()

    try:
        for line, row in _rows(path, file_format, ("code", "redeemed_at")):
            report.rows_read += 1
            if isinstance(row, str):
                report.rejected.append(RowError(line, row))
                continue
            try:
                pending.append(_redemption(line, row))
            except RowInvalid as exc:
                report.rejected.append(RowError(line, str(exc)))
                continue
            if len(pending) >= batch_size:
                flush()
    finally:
        flush()
    report.rejected.sort(key=lambda error: error.line)
    return report


def _redeem(conn: Connection, rows: list[_Redemption], report: CouponImportReport, *, rules: IdentityConfig) -> None:
    """Decide each row of a batch in file order, then write the redemptions in one statement
    (guarded by ``status <> 'redeemed'``, so a concurrent import cannot redeem a coupon twice)."""
    stored: dict[str, list[dict[str, Any]]] = {}
    for chunk in chunks(sorted({row.code for row in rows})):
        for found in conn.execute(
            sa.select(_COUPON.c.id, _COUPON.c.pool, _COUPON.c.code, _COUPON.c.status, _COUPON.c.redeemed_at,
                      _COUPON.c.order_id, _COUPON.c.customer_id).where(_COUPON.c.code.in_(chunk))
        ).mappings():
            stored.setdefault(found["code"], []).append(dict(found))
    references = {row.customer for row in rows if row.customer}
    customers = resolve_references(conn, references, rules=rules) if references else {}
    updates: dict[int, dict[str, Any]] = {}
    for row in rows:
        candidates = [c for c in stored.get(row.code, []) if row.pool is None or c["pool"] == row.pool]
        if not candidates:
            where = f"pool {row.pool!r}" if row.pool else "any pool"
            report.rejected.append(RowError(row.line, f"code: no such code in {where}"))
            continue
        if len(candidates) > 1:
            pools = ", ".join(sorted(c["pool"] for c in candidates))
            report.rejected.append(RowError(row.line, f"code: in {len(candidates)} pools ({pools}): give pool"))
            continue
        coupon = candidates[0]
        if row.customer and row.customer not in customers:
            report.rejected.append(RowError(row.line, "customer_id not found: import customers first"))
            continue
        if coupon["status"] == "redeemed":
            same = (row.order_id == coupon["order_id"] if row.order_id or coupon["order_id"]
                    else row.redeemed_at == coupon["redeemed_at"])
            if same:
                report.unchanged += 1
            else:
                order = f", order {coupon['order_id']}" if coupon["order_id"] else ""
                report.rejected.append(RowError(
                    row.line, f"coupon already redeemed ({coupon['redeemed_at']:%Y-%m-%d %H:%M} UTC{order}): "
                              "a coupon is redeemed once"))
            continue
        customer_id = coupon["customer_id"] or (customers.get(row.customer) if row.customer else None)
        updates[coupon["id"]] = {"b_id": coupon["id"], "redeemed_at": row.redeemed_at, "order_id": row.order_id,
                                 "customer_id": customer_id}
        # A later row of the batch about the same coupon sees it redeemed.
        coupon.update(status="redeemed", redeemed_at=row.redeemed_at, order_id=row.order_id)
        report.imported += 1
    if updates:
        conn.execute(
            sa.update(_COUPON)
            .where(_COUPON.c.id == sa.bindparam("b_id"), _COUPON.c.status != "redeemed")
            .values(status="redeemed", redeemed_at=sa.bindparam("redeemed_at"), order_id=sa.bindparam("order_id"),
                    customer_id=sa.bindparam("customer_id")),
            list(updates.values()),
        )


__all__ = ["CODE_RE", "CouponImportReport", "check_pool_name", "import_coupon_pool", "import_redemptions"]
