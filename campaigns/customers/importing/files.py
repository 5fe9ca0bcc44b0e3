"""Importing one file: the entry used by ``nurture import`` and the benches.

:func:`import_file` opens the file, reads it row by row
(:mod:`~campaigns.customers.importing.readers`), parses each row
(:mod:`~campaigns.customers.importing.rows`), writes valid rows in batches
(:mod:`~campaigns.customers.importing.upserts`) and returns an
:class:`~campaigns.customers.importing.report.ImportReport`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

from campaigns.config.identity import IdentityConfig
from campaigns.customers.identity.resolution import MatchPlan
from campaigns.customers.importing import products
from campaigns.customers.importing.fields import RowInvalid
from campaigns.customers.importing.readers import open_rows, resolve_format
from campaigns.customers.importing.report import ImportReport, RowError
from campaigns.customers.importing.rows import PARSERS, REQUIRED_COLUMNS, ImportKind
from campaigns.customers.importing.upserts import WRITERS, PendingRow, write_in_halves
from campaigns.errors import DataImportError

#: Each kind's row parser and batch writer (the catalogue's live in its own module).
_PARSERS = {**PARSERS, "products": products.parse_product}
_WRITERS = {**WRITERS, "products": products.write_products}


def import_file(
    engine: Engine,
    kind: ImportKind,
    path: Path,
    *,
    file_format: str | None = None,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    source: str | None = None,
    match: tuple[str, ...] | None = None,
    identity: IdentityConfig | None = None,
) -> ImportReport:
    """Import ``path`` as ``kind`` rows into the database behind ``engine``.

    ``file_format`` is ``csv``, ``jsonl`` or ``ndjson``; by default it comes from the file
    extension. Valid rows are upserted in batches of ``batch_size``, one transaction each.
    ``progress`` is called after every batch with the number of bytes consumed so far (and
    finally with the file size), so a caller can draw a progress bar by file size.

    Raises :class:`DataImportError` when the file cannot be processed at all; bad rows are
    returned in :attr:`ImportReport.rejected` instead. Should a fatal error occur mid-file
    (e.g. invalid UTF-8), the rows before it have been written - re-importing is safe.

    ``source`` names the system the file comes from (``pos``): a row's ``customer_id`` is
    then the id ``pos:<customer_id>``, and customers are matched on ``match`` (default: the
    source's ``[identity.sources.<source>] match`` in ``identity``, the ``[identity]``
    rules; see :mod:`campaigns.customers.identity.resolution`). Orders and events name
    their customer by its id in ``source`` or by any identifier (``phone:+86...``).
    Without a source, ids are bare ``customer_id`` values, as they always were.
    """
    if kind not in REQUIRED_COLUMNS:
        raise DataImportError(f"unknown import kind {kind!r}: use customers, orders, events or products")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    path = Path(path)
    plan = MatchPlan.of(rules=identity or IdentityConfig(), source=source, match=match)
    fmt = resolve_format(path, file_format)
    report = ImportReport(kind=kind, path=str(path))
    parse = _PARSERS[kind]
    writer = _WRITERS[kind]
    pending: list[PendingRow] = []

    def flush() -> None:
        if pending:
            results, refused = write_in_halves(functools.partial(writer, engine, plan=plan), pending)
            for outcome in results:
                report.imported += outcome.written
                report.rejected.extend(outcome.errors)
                report.created += outcome.counts.get("created", 0)
                report.updated += outcome.counts.get("updated", 0)
                report.merged += outcome.counts.get("merged", 0)
                report.reviews_opened += outcome.counts.get("reviews_opened", 0)
                report.unchanged += outcome.counts.get("unchanged", 0)
                report.survivors |= outcome.survivors
            report.rejected.extend(RowError(row.line, f"the database refused this row ({cause})")
                                   for row, cause in refused)
            if kind == "orders":
                failed = {error.line for outcome in results for error in outcome.errors} | {
                    row.line for row, _ in refused}
                _note_items(engine, report, [row for row in pending if row.line not in failed])
            pending.clear()

    with open_rows(path, kind, fmt) as (lines, rows):
        try:
            for line, row in rows:
                report.rows_read += 1
                if isinstance(row, str):  # the reader already knows this row is unusable
                    report.rejected.append(RowError(line, row))
                    continue
                try:
                    key, record = parse(row, csv_source=fmt == "csv")
                except RowInvalid as exc:
                    report.rejected.append(RowError(line, str(exc)))
                    continue
                pending.append(PendingRow(line, key, record))
                if len(pending) >= batch_size:
                    flush()
                    if progress is not None:
                        progress(lines.bytes_read)
        except DataImportError:
            # Write what was validated before the unreadable spot, so the message "rows
            # before line N were imported" is true and a re-import after the fix is clean.
            flush()
            raise
        flush()
        if progress is not None:
            progress(lines.bytes_read)

    report.rejected.sort(key=lambda error: error.line)
    return report


def _note_items(engine: Engine, report: ImportReport, written: list[PendingRow]) -> None:
    """Count the items of the orders just written, and those whose sku the catalogue does
    not hold: they are kept (an order is a fact), and the report names them."""
    latest = {row.key: row for row in written}  # of one order given twice, the last stands
    with_items = [row for row in latest.values() if row.record["items"]]
    if not with_items:
        return
    with engine.connect() as conn:
        unknown = products.unknown_skus(conn, (item["sku"] for row in with_items for item in row.record["items"]))
    for row in sorted(with_items, key=lambda row: row.line):
        report.note_items(row.line, [item["sku"] for item in row.record["items"]], unknown)


__all__ = ["import_file"]
