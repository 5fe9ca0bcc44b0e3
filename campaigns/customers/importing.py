"""Import customers, orders and events from CSV or JSON Lines files.

The file is streamed: rows are read one at a time, validated, and collected into batches of
``batch_size`` valid rows; each batch is written in ONE transaction with a bulk upsert, so an
import of a million rows is a thousand commits, not a million, and memory stays flat.

Re-importing a file is safe: every kind is keyed (``customer_id``, ``order_id``, the event's
``event_id`` or content hash), so a second run updates rows instead of duplicating them.

A row that fails validation is not an error: it is reported as a :class:`RowError` (with its
physical line number) in the :class:`ImportReport`, and the valid rows around it are still
written. Only a file that cannot be processed at all (missing, unknown format, not UTF-8, a
CSV header without the required columns) raises :class:`~campaigns.errors.DataImportError`.

Conventions shared by all kinds:

* An empty value (CSV ``""``, JSON ``""`` or ``null``) means "not given": on insert the field
  is NULL / the default, on update the stored value is kept. Imports therefore never erase
  data; a partial file (say ``customer_id,vip``) only touches the columns it has.
* Dates are ISO 8601 dates or datetimes; naive values are taken as UTC; everything is
  stored as aware UTC.
* ``rows_read == imported + len(rejected)``; blank lines are not rows.
* Values must be storable (:mod:`campaigns.config.jsonvalues`: finite numbers, integers within
  int64, no NUL, no lone surrogates, bounded nesting and size) and dates within
  :data:`EARLIEST_DATE`..:data:`LATEST_DATE`; a row over :data:`MAX_ROW_BYTES` and a CSV
  header over :data:`MAX_COLUMNS` columns are refused. Messages name the field, never its
  value.
* Should the database still refuse a batch, it is retried in halves down to the single
  row, so only the refused row is rejected (its reason names the error class, never the
  SQL parameters, which hold emails and phone numbers).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.config import jsonvalues
from campaigns.store.db import dialect_insert
from campaigns.errors import DataImportError
from campaigns.config.jsonvalues import UnstorableValue
from campaigns.store.models import Consent, Customer, Event, Order, OrderItem, utcnow

ImportKind = Literal["customers", "orders", "events"]
_T = TypeVar("_T")
_R = TypeVar("_R")

#: Accepted ``file_format`` values (and file extensions) mapped onto the two readers.
FORMATS = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}

#: Columns that must be present (CSV header) and non-empty (every row), per kind.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "orders": ("order_id", "customer_id", "ordered_at", "amount"),
    "events": ("customer_id", "name", "occurred_at"),
}

#: Customer columns copied onto the Customer row as text (``customer_id`` is the key).
CUSTOMER_TEXT_COLUMNS = (
    "name",
    "email",
    "phone",
    "wechat_openid",
    "timezone",
    "locale",
    "acquisition_channel",
)
#: ``<channel>_consent`` columns -> Consent.channel.
CONSENT_COLUMNS = {"email_consent": "email", "sms_consent": "sms", "wechat_consent": "wechat"}
#: Where and when the row's consents were given (the proof PIPL and MIIT ask for); the
#: source is stored as ``import:<source>``, the time defaults to the import's.
CONSENT_META_COLUMNS = ("consent_source", "consent_at")
CUSTOMER_COLUMNS = frozenset(
    ("customer_id", "created_at", "attributes", *CUSTOMER_TEXT_COLUMNS, *CONSENT_COLUMNS, *CONSENT_META_COLUMNS)
)
ORDER_COLUMNS = frozenset(("order_id", "customer_id", "ordered_at", "amount", "channel", "items"))
EVENT_COLUMNS = frozenset(("event_id", "customer_id", "name", "occurred_at", "properties"))

_TRUE = frozenset(("true", "yes", "y", "1"))
_FALSE = frozenset(("false", "no", "n", "0"))
# Only plain decimals become numbers: "007" (a zip code) or "1e5" (a code) stay text.
_INT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
# Numeric(14, 2) holds at most 12 integer digits; larger values would abort a PG batch.
_MAX_AMOUNT = 10**12
# Rows per INSERT statement: keeps bound parameters under SQLite's and PostgreSQL's limits
# whatever batch_size is. Statements of one batch still share one transaction.
_STATEMENT_ROWS = 500
_DATE_HINT = "use ISO 8601, e.g. 2025-03-01 or 2025-03-01T10:00:00+08:00"
#: Largest row in bytes: one JSONL line, or one CSV record (all its lines). A longer row is
#: rejected by line without being held in memory.
MAX_ROW_BYTES = 1024 * 1024
#: Most columns a CSV header may have.
MAX_COLUMNS = 1000
#: Dates accepted (created_at, ordered_at, occurred_at, consent_at): earlier or later ones
#: are typing mistakes, and year-1 or year-9999 dates overflow once moved to UTC.
EARLIEST_DATE = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_DATE = datetime(2200, 1, 1, tzinfo=UTC)
# order_item.quantity is a 32-bit INTEGER column.
_MAX_QUANTITY = 2**31 - 1
# Columns holding a JSON object (JSONL natively, CSV as JSON text): checked key by key.
_NESTED_COLUMNS = frozenset(("attributes", "properties"))


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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view, for ``--json`` output."""
        return {
            "kind": self.kind,
            "path": self.path,
            "rows_read": self.rows_read,
            "imported": self.imported,
            "rejected_count": len(self.rejected),
            "rejected": [asdict(error) for error in self.rejected],
        }


class _RowInvalid(Exception):
    """Internal: a row failed validation; the message becomes ``RowError.reason``."""


@dataclass
class _Pending:
    """A validated row waiting for its batch: the record plus where it came from."""

    line: int
    key: str
    record: dict[str, Any]


# --------------------------------------------------------------------------- public API


def import_file(
    engine: Engine,
    kind: ImportKind,
    path: Path,
    *,
    file_format: str | None = None,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``path`` as ``kind`` rows into the database behind ``engine``.

    ``file_format`` is ``csv``, ``jsonl`` or ``ndjson``; by default it comes from the file
    extension. Valid rows are upserted in batches of ``batch_size``, one transaction each.
    ``progress`` is called after every batch with the number of bytes consumed so far (and
    finally with the file size), so a caller can draw a progress bar by file size.

    Raises :class:`DataImportError` when the file cannot be processed at all; bad rows are
    returned in :attr:`ImportReport.rejected` instead. Should a fatal error occur mid-file
    (e.g. invalid UTF-8), the rows before it have been written - re-importing is safe.
    """
    if kind not in REQUIRED_COLUMNS:
        raise DataImportError(f"unknown import kind {kind!r}: use customers, orders or events")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    path = Path(path)
    fmt = _resolve_format(path, file_format)
    report = ImportReport(kind=kind, path=str(path))
    parse = _PARSERS[kind]
    writer = _WRITERS[kind]
    pending: list[_Pending] = []

    def flush() -> None:
        if pending:
            results, refused = write_in_halves(functools.partial(writer, engine), pending)
            report.imported += sum(written for written, _ in results)
            report.rejected.extend(error for _, errors in results for error in errors)
            report.rejected.extend(RowError(row.line, f"the database refused this row ({cause})")
                                   for row, cause in refused)
            pending.clear()

    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DataImportError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataImportError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise DataImportError(f"{path}: cannot open: {exc.strerror or exc}") from None

    with handle:
        lines = _LineReader(handle, path)
        rows = _csv_rows(lines, kind, path) if fmt == "csv" else _jsonl_rows(lines)
        try:
            for line, row in rows:
                report.rows_read += 1
                if isinstance(row, str):  # the reader already knows this row is unusable
                    report.rejected.append(RowError(line, row))
                    continue
                try:
                    key, record = parse(row, csv_source=fmt == "csv")
                except _RowInvalid as exc:
                    report.rejected.append(RowError(line, str(exc)))
                    continue
                pending.append(_Pending(line, key, record))
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


# --------------------------------------------------------------------------- reading


def _resolve_format(path: Path, file_format: str | None) -> str:
    name = (file_format if file_format is not None else path.suffix).lower().lstrip(".")
    if name not in FORMATS:
        shown = file_format if file_format is not None else (path.suffix or "no extension")
        raise DataImportError(
            f"{path}: unknown file format {shown!r}: use .csv, .jsonl or .ndjson "
            "(or pass the format explicitly)"
        )
    return FORMATS[name]


class _LineReader:
    """Yields decoded text lines from a binary file, counting bytes and physical lines.

    Decoding line by line (rather than through a TextIOWrapper) gives an exact byte count
    for progress and the line number of any invalid UTF-8. A line longer than
    :data:`MAX_ROW_BYTES` is never held whole: it is skipped, yielded as an empty line, and
    its number kept in ``last_overlong`` for the row readers to reject.
    """

    def __init__(self, handle: Any, path: Path) -> None:
        self.handle = handle
        self.path = path
        self.bytes_read = 0
        self.line_no = 0
        #: Number of the last line longer than MAX_ROW_BYTES (0: none yet).
        self.last_overlong = 0

    def __iter__(self) -> Iterator[str]:
        while True:
            limit = MAX_ROW_BYTES
            raw = self.handle.readline(limit + 1)
            if not raw:
                return
            self.bytes_read += len(raw)
            self.line_no += 1
            if len(raw) > limit:
                while not raw.endswith(b"\n"):  # skip the rest of the line, chunk by chunk
                    raw = self.handle.readline(64 * 1024)
                    if not raw:
                        break
                    self.bytes_read += len(raw)
                self.last_overlong = self.line_no
                yield "\n"
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataImportError(
                    f"{self.path}:{self.line_no}: not valid UTF-8 text ({exc.reason}); rows "
                    "before this line were imported - save the file as UTF-8 and import it "
                    "again (re-importing is safe)"
                ) from None
            if self.line_no == 1:
                text = text.removeprefix("\ufeff")  # Excel writes a BOM (utf-8-sig)
            yield text


def _too_long() -> str:
    return f"row longer than {MAX_ROW_BYTES} bytes (the import's limit per row); nothing of it was imported"


def _csv_rows(
    lines: _LineReader, kind: str, path: Path
) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(start line, row dict) per CSV record; a str instead of a dict is a rejection reason.

    csv.reader (not DictReader) so the start line is exact: blank lines come back as empty
    records, so "previous line_num + 1" is always the first physical line of a record.
    ``strict`` makes the reader fail on a quote it cannot close instead of silently
    reading to the end of the file: that record is rejected with its line range and
    reading resumes on the next line.
    """
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            if lines.last_overlong:
                break
            header = next(reader, None)  # tolerate blank lines before the header
    except csv.Error as exc:
        raise DataImportError(f"{path}:{reader.line_num}: cannot parse CSV header: {exc}") from None
    if lines.last_overlong:
        raise DataImportError(f"{path}:{lines.last_overlong}: CSV header line longer than {MAX_ROW_BYTES} bytes")
    if header is None:
        raise DataImportError(f"{path}: the file is empty (expected a CSV header row)")
    columns = [cell.strip() for cell in header]
    if len(columns) > MAX_COLUMNS:
        raise DataImportError(f"{path}: CSV header has {len(columns)} columns; at most {MAX_COLUMNS}")
    duplicates = sorted(name for name, seen in Counter(columns).items() if seen > 1 and name)
    if duplicates:
        raise DataImportError(f"{path}: duplicate CSV column(s): {', '.join(duplicates)}")
    missing = [name for name in REQUIRED_COLUMNS[kind] if name not in columns]
    if missing:
        raise DataImportError(
            f"{path}: CSV header lacks required column(s) {', '.join(missing)} for {kind} "
            f"(found: {', '.join(c for c in columns if c) or 'none'})"
        )
    while True:
        start = reader.line_num + 1
        before = lines.bytes_read
        problem: str | None = None
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            cells, problem = [], _csv_problem(str(exc), start, reader.line_num)
        if lines.last_overlong >= start or lines.bytes_read - before > MAX_ROW_BYTES:
            yield start, _too_long()
            continue
        if problem is not None:
            yield start, problem
            continue
        if not cells:
            continue  # blank line
        if len(cells) != len(columns):
            yield start, f"row has {len(cells)} fields but the header has {len(columns)}"
            continue
        yield start, {name: value for name, value in zip(columns, cells, strict=True) if name}


def _csv_problem(error: str, start: int, end: int) -> str:
    fix = 'close the quote (a " inside a quoted field is written "")'
    if "unexpected end of data" in error:
        if end <= start:
            return f"unterminated quoted field: the quote is still open at the end of the file; {fix}"
        return (f"unterminated quoted field: the quote opened on line {start} is never closed, so lines "
                f"{start}-{end} were read as this one row and none of them was imported; {fix}")
    where = f"line {start}" if end <= start else f"lines {start}-{end}, none of them imported"
    return f"cannot parse CSV ({error}) in {where}"


def _jsonl_rows(lines: _LineReader) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line, object) per non-blank JSONL line; a str instead of a dict is a rejection reason."""
    for text in lines:
        if lines.last_overlong == lines.line_no:
            yield lines.line_no, _too_long()
            continue
        if not text.strip():
            continue
        try:
            value = jsonvalues.loads(text)
        except json.JSONDecodeError as exc:
            yield lines.line_no, f"invalid JSON: {exc.msg} (column {exc.colno})"
            continue
        except UnstorableValue as exc:
            yield lines.line_no, str(exc)
            continue
        if not isinstance(value, dict):
            yield lines.line_no, f"expected a JSON object, got {type(value).__name__}"
            continue
        yield lines.line_no, value


# --------------------------------------------------------------------------- field parsing


def _text(row: dict[str, Any], name: str, *, max_length: int | None = None) -> str | None:
    """A text field, stripped; None when absent or empty. JSON numbers are accepted as text."""
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _RowInvalid(f"{name}: expected text, got {_json_kind(value)}")
    text = value.strip() if isinstance(value, str) else str(value)
    if not text:
        return None
    if max_length is not None and len(text) > max_length:
        raise _RowInvalid(f"{name}: longer than {max_length} characters")
    return text


def _json_kind(value: Any) -> str:
    # What a value is, for messages that must not quote it (it may be personal data).
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, bool):
        return "true/false"
    return type(value).__name__


def _check_row(row: dict[str, Any]) -> None:
    """Reject the row unless every value in it is storable (see :mod:`campaigns.config.jsonvalues`)."""
    try:
        jsonvalues.check_keys(row, "")
        for name, value in row.items():
            if name in _NESTED_COLUMNS and isinstance(value, dict):
                jsonvalues.check_fields(value, name)
            elif name == "items" and isinstance(value, list):
                for index, item in enumerate(value):
                    jsonvalues.check(item, f"items[{index}]")
            else:
                jsonvalues.check(value, name)
    except UnstorableValue as exc:
        raise _RowInvalid(str(exc)) from None


def _required_text(row: dict[str, Any], name: str, *, max_length: int | None = None) -> str:
    text = _text(row, name, max_length=max_length)
    if text is None:
        raise _RowInvalid(f"{name}: required")
    return text


def _column_length(column: sa.Column[Any]) -> int | None:
    return getattr(column.type, "length", None)


def _datetime(row: dict[str, Any], name: str, *, required: bool) -> datetime | None:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _RowInvalid(f"{name}: required ({_DATE_HINT})")
        return None
    if not isinstance(value, str):
        raise _RowInvalid(f"{name}: invalid date {json.dumps(value)} ({_DATE_HINT})")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _RowInvalid(f"{name}: invalid date {value!r} ({_DATE_HINT})") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # naive values are taken as UTC
    try:
        in_range = EARLIEST_DATE <= parsed.astimezone(UTC) < LATEST_DATE
    except OverflowError:  # e.g. 0001-01-01T00:00:00+08:00 is before year 1 in UTC
        in_range = False
    if not in_range:
        raise _RowInvalid(
            f"{name}: {value.strip()!r} is out of range (dates from {EARLIEST_DATE.year} "
            f"to {LATEST_DATE.year - 1} are accepted)"
        )
    return parsed.astimezone(UTC)


def _bool(row: dict[str, Any], name: str) -> bool | None:
    value = row.get(name)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | str):
        text = str(value).strip().lower()
        if not text:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _RowInvalid(f"{name}: expected true/false, yes/no or 1/0, got {json.dumps(value)}")


def _number(value: Any, name: str, *, maximum: float | None = None) -> float:
    """A finite, non-negative number (JSON number or numeric text)."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            number = None
    elif isinstance(value, str) and (
        _INT_RE.fullmatch(value.strip()) or _FLOAT_RE.fullmatch(value.strip())
    ):
        number = float(value)
    if number is None or not math.isfinite(number) or number < 0:
        shown = json.dumps(value) if len(str(value)) <= 40 else "a number out of range"
        raise _RowInvalid(f"{name}: must be a non-negative number, got {shown}")
    if maximum is not None and number >= maximum:
        raise _RowInvalid(f"{name}: too large (at most {maximum:.0f} exclusive)")
    return number


def _json_value(row: dict[str, Any], name: str, expected: type, csv_source: bool) -> Any:
    """A JSON object/array field: native in JSONL, a JSON string in CSV. None when empty."""
    value = row.get(name)
    if isinstance(value, str):
        if not value.strip():
            return None
        if csv_source or value.strip()[:1] in "[{":
            try:
                value = jsonvalues.loads(value)
                if isinstance(value, dict):
                    jsonvalues.check_fields(value, name)
                else:
                    jsonvalues.check(value, name)
            except json.JSONDecodeError as exc:
                raise _RowInvalid(f"{name}: invalid JSON ({exc.msg})") from None
            except UnstorableValue as exc:
                raise _RowInvalid(str(exc) if exc.field else f"{name}: {exc}") from None
    if value is None:
        return None
    if not isinstance(value, expected):
        wanted = "a JSON object" if expected is dict else "a JSON array"
        raise _RowInvalid(f"{name}: expected {wanted}")
    return value


def _typed_csv_value(value: str) -> Any:
    """CSV text -> bool / int / float when it plainly is one, else the text itself."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    # A number that cannot be stored as one (beyond int64, or beyond float's range) is
    # more likely a code than a quantity: it stays text, like "007".
    if _INT_RE.fullmatch(value) and len(value) <= 20:
        number = int(value)
        if jsonvalues.MIN_INTEGER <= number <= jsonvalues.MAX_INTEGER:
            return number
    elif _FLOAT_RE.fullmatch(value):
        real = float(value)
        if math.isfinite(real):
            return real
    return value


def _extras(row: dict[str, Any], known: frozenset[str], csv_source: bool) -> dict[str, Any]:
    """Every non-empty column not in ``known``: typed text for CSV, as-is for JSONL."""
    extras: dict[str, Any] = {}
    for name, value in row.items():
        if name in known or value is None:
            continue
        if isinstance(value, str):
            value = value.strip()
            if not value:
                continue
            if csv_source:
                value = _typed_csv_value(value)
        extras[name] = value
    return extras


def _email(text: str | None) -> str | None:
    if text is None:
        return None
    local, at, domain = text.partition("@")
    labels = domain.split(".")
    if (
        not at
        or not local
        or "@" in domain
        or any(ch.isspace() for ch in text)
        or len(labels) < 2
        or not all(labels)
    ):
        # The value is not echoed: error output never carries personal data (the line
        # number finds it in the file).
        raise _RowInvalid("email: not a valid address (one @, a dotted domain, no spaces)")
    return text


def _timezone(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise _RowInvalid(
            f"timezone: unknown time zone {text!r} (use an IANA name such as Asia/Shanghai)"
        ) from None
    return text


# --------------------------------------------------------------------------- row parsers
# Each returns (batch key, record); records hold only plain values so writers stay simple.


def _parse_customer(row: dict[str, Any], *, csv_source: bool) -> tuple[str, dict[str, Any]]:
    _check_row(row)
    columns = Customer.__table__.c
    external_id = _required_text(row, "customer_id", max_length=_column_length(columns.external_id))
    record: dict[str, Any] = {"external_id": external_id}
    for name in CUSTOMER_TEXT_COLUMNS:
        record[name] = _text(row, name, max_length=_column_length(columns[name]))
    record["email"] = _email(record["email"])
    record["timezone"] = _timezone(record["timezone"])
    record["created_at"] = _datetime(row, "created_at", required=False)
    consents = {}
    for column, channel in CONSENT_COLUMNS.items():
        granted = _bool(row, column)
        if granted is not None:
            consents[channel] = "granted" if granted else "withdrawn"
    source = _text(row, "consent_source", max_length=_column_length(Consent.__table__.c.source) - len("import:"))
    consent_meta = {"source": f"import:{source}" if source else "import",
                    "recorded_at": _datetime(row, "consent_at", required=False)}
    attributes = _extras(row, CUSTOMER_COLUMNS, csv_source)
    nested = _json_value(row, "attributes", dict, csv_source)
    if nested:
        attributes.update({k: v for k, v in nested.items() if v is not None and v != ""})
    return external_id, {"customer": record, "consents": consents, "consent_meta": consent_meta,
                         "attributes": attributes}


def _parse_items(value: list[Any]) -> list[dict[str, Any]]:
    columns = OrderItem.__table__.c
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _RowInvalid(f"items[{index}]: expected an object with sku and price")
        try:
            quantity = item.get("quantity", 1)
            if isinstance(quantity, str) and quantity.strip().isdigit():
                quantity = int(quantity)
            if (isinstance(quantity, bool) or not isinstance(quantity, int)
                    or not 1 <= quantity <= _MAX_QUANTITY):
                raise _RowInvalid(f"quantity: must be a whole number from 1 to {_MAX_QUANTITY}")
            if item.get("price") is None:
                raise _RowInvalid("price: required")
            items.append(
                {
                    "sku": _required_text(item, "sku", max_length=_column_length(columns.sku)),
                    "category": _text(
                        item, "category", max_length=_column_length(columns.category)
                    ),
                    "quantity": quantity,
                    "price": _number(item["price"], "price", maximum=_MAX_AMOUNT),
                }
            )
        except _RowInvalid as exc:
            raise _RowInvalid(f"items[{index}].{exc}") from None
    return items


def _parse_order(row: dict[str, Any], *, csv_source: bool) -> tuple[str, dict[str, Any]]:
    _check_row(row)
    columns = Order.__table__.c
    order_id = _required_text(row, "order_id", max_length=_column_length(columns.order_id))
    customer = _required_text(
        row, "customer_id", max_length=_column_length(Customer.__table__.c.external_id)
    )
    ordered_at = _datetime(row, "ordered_at", required=True)
    if row.get("amount") is None or row.get("amount") == "":
        raise _RowInvalid("amount: required")
    amount = _number(row["amount"], "amount", maximum=_MAX_AMOUNT)
    channel = _text(row, "channel", max_length=_column_length(columns.channel))
    raw_items = _json_value(row, "items", list, csv_source)
    # None means "items not given": the order's stored items are kept. [] clears them.
    items = None if raw_items is None else _parse_items(raw_items)
    record = {
        "order": {
            "order_id": order_id,
            "ordered_at": ordered_at,
            "amount": amount,
            "channel": channel,
        },
        "customer": customer,
        "items": items,
    }
    return order_id, record


def _parse_event(row: dict[str, Any], *, csv_source: bool) -> tuple[str, dict[str, Any]]:
    _check_row(row)
    columns = Event.__table__.c
    customer = _required_text(
        row, "customer_id", max_length=_column_length(Customer.__table__.c.external_id)
    )
    name = _required_text(row, "name", max_length=_column_length(columns.name))
    occurred_at = _datetime(row, "occurred_at", required=True)
    assert occurred_at is not None
    event_id = _text(row, "event_id", max_length=_column_length(columns.dedupe_key))
    properties = _extras(row, EVENT_COLUMNS, csv_source)
    nested = _json_value(row, "properties", dict, csv_source)
    if nested:
        properties.update(nested)
    if event_id is None:
        # No source id: the event's content is its identity, so re-imports collapse.
        canonical = json.dumps(
            [customer, name, occurred_at.isoformat(), properties],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        dedupe_key = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    else:
        dedupe_key = event_id
    record = {
        "event": {
            "name": name,
            "occurred_at": occurred_at,
            "properties": properties,
            "dedupe_key": dedupe_key,
        },
        "customer": customer,
    }
    return dedupe_key, record


_PARSERS: dict[str, Callable[..., tuple[str, dict[str, Any]]]] = {
    "customers": _parse_customer,
    "orders": _parse_order,
    "events": _parse_event,
}


# --------------------------------------------------------------------------- writers
# Each takes one batch, writes it in ONE transaction and returns (rows imported, errors).


#: What a bad row can make the database (or its driver) raise: a value it refuses. Anything
#: else (a lost connection, a missing table) still stops the import.
_ROW_ERRORS = (sa.exc.DataError, sa.exc.IntegrityError, ValueError, OverflowError)


def write_in_halves(write: Callable[[list[_T]], _R], items: list[_T]) -> tuple[list[_R], list[tuple[_T, str]]]:
    """``write(items)``; should the database refuse them (:data:`_ROW_ERRORS`), their
    halves are written instead, down to single items, so one bad item costs only itself.
    Imports and ``POST /events`` both write this way.

    Returns what each write that went through returned, and ``(item, error class name)``
    for each item refused. Only the class is kept: the message of a database error quotes
    the statement's parameters, which hold emails and phone numbers.
    """
    if not items:
        return [], []
    try:
        return [write(items)], []
    except _ROW_ERRORS as exc:
        if len(items) == 1:
            cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
            return [], [(items[0], type(cause).__name__)]
    middle = len(items) // 2
    done, refused = write_in_halves(write, items[:middle])
    more, more_refused = write_in_halves(write, items[middle:])
    return done + more, refused + more_refused


def _chunks(items: list[Any], size: int = _STATEMENT_ROWS) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _last_wins(batch: list[_Pending]) -> list[_Pending]:
    """Drop earlier rows with the same key: one statement may not touch a row twice."""
    latest: dict[str, _Pending] = {}
    for row in batch:
        latest.pop(row.key, None)  # re-insert so the order follows the last occurrence
        latest[row.key] = row
    return list(latest.values())


def _customer_ids(conn: Connection, external_ids: set[str]) -> dict[str, int]:
    """external_id -> Customer.id for the given ids (one SELECT per statement chunk)."""
    found: dict[str, int] = {}
    table = Customer.__table__
    for chunk in _chunks(sorted(external_ids)):
        query = sa.select(table.c.external_id, table.c.id).where(table.c.external_id.in_(chunk))
        found.update({external_id: pk for external_id, pk in conn.execute(query)})
    return found


def _resolve_customers(
    conn: Connection, batch: list[_Pending]
) -> tuple[list[tuple[_Pending, int]], list[RowError]]:
    ids = _customer_ids(conn, {row.record["customer"] for row in batch})
    resolved, errors = [], []
    for row in batch:
        customer = row.record["customer"]
        if customer in ids:
            resolved.append((row, ids[customer]))
        else:
            errors.append(
                RowError(row.line, f"customer_id {customer!r} not found: import customers first")
            )
    return resolved, errors


def _write_customers(engine: Engine, batch: list[_Pending]) -> tuple[int, list[RowError]]:
    table = Customer.__table__
    unique = _last_wins(batch)
    now = utcnow()
    with engine.begin() as conn:
        # attributes are merged into the stored ones (a partial file must not wipe keys it
        # does not mention), which needs the current values: one SELECT per chunk.
        existing: dict[str, dict[str, Any]] = {}
        for chunk in _chunks([row.key for row in unique]):
            query = sa.select(table.c.external_id, table.c.attributes).where(
                table.c.external_id.in_(chunk)
            )
            existing.update(
                {external_id: attrs or {} for external_id, attrs in conn.execute(query)}
            )
        # Rows with and without created_at are upserted separately: created_at is NOT NULL,
        # so the "not given" rows insert now() but must not overwrite it on update.
        groups: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for row in unique:
            values = dict(row.record["customer"])
            values["attributes"] = {**existing.get(row.key, {}), **row.record["attributes"]}
            values["updated_at"] = now
            given = values["created_at"] is not None
            if not given:
                values["created_at"] = now
            groups[given].append(values)
        for created_given, rows in groups.items():
            for chunk in _chunks(rows):
                insert = dialect_insert(conn, table).values(chunk)
                excluded = insert.excluded
                set_: dict[str, Any] = {
                    # Empty means "not given": keep the stored value.
                    name: sa.func.coalesce(excluded[name], table.c[name])
                    for name in CUSTOMER_TEXT_COLUMNS
                }
                set_["attributes"] = excluded.attributes
                set_["updated_at"] = excluded.updated_at
                if created_given:
                    set_["created_at"] = excluded.created_at
                conn.execute(
                    insert.on_conflict_do_update(index_elements=["external_id"], set_=set_)
                )

        consent_rows = [row for row in unique if row.record["consents"]]
        if consent_rows:
            ids = _customer_ids(conn, {row.key for row in consent_rows})
            values = [
                {
                    "customer_id": ids[row.key],
                    "channel": channel,
                    "status": status,
                    "source": row.record["consent_meta"]["source"],
                    "recorded_at": row.record["consent_meta"]["recorded_at"] or now,
                }
                for row in consent_rows
                for channel, status in row.record["consents"].items()
            ]
            consent = Consent.__table__
            for chunk in _chunks(values):
                insert = dialect_insert(conn, consent).values(chunk)
                excluded = insert.excluded
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["customer_id", "channel"],
                        set_={
                            "status": excluded.status,
                            "source": excluded.source,
                            "recorded_at": excluded.recorded_at,
                        },
                        # Only a real change is recorded (so recorded_at stays meaningful on
                        # re-import), and an import never re-grants consent that was withdrawn
                        # by another source (an unsubscribe must beat a stale CRM export).
                        where=sa.and_(
                            consent.c.status != excluded.status,
                            sa.or_(
                                excluded.status == "withdrawn",
                                consent.c.status != "withdrawn",
                                consent.c.source.startswith("import"),
                            ),
                        ),
                    )
                )
    return len(batch), []


def _write_orders(engine: Engine, batch: list[_Pending]) -> tuple[int, list[RowError]]:
    table = Order.__table__
    items_table = OrderItem.__table__
    with engine.begin() as conn:
        resolved, errors = _resolve_customers(conn, batch)
        by_key = {row.key: (row, customer_pk) for row, customer_pk in resolved}  # last wins
        values = [{**row.record["order"], "customer_id": pk} for row, pk in by_key.values()]
        for chunk in _chunks(values):
            insert = dialect_insert(conn, table).values(chunk)
            excluded = insert.excluded
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["order_id"],
                    set_={
                        "customer_id": excluded.customer_id,
                        "ordered_at": excluded.ordered_at,
                        "amount": excluded.amount,
                        "channel": sa.func.coalesce(excluded.channel, table.c.channel),
                    },
                )
            )
        with_items = [row for row, _ in by_key.values() if row.record["items"] is not None]
        if with_items:
            order_pks: dict[str, int] = {}
            for chunk in _chunks([row.key for row in with_items]):
                query = sa.select(table.c.order_id, table.c.id).where(table.c.order_id.in_(chunk))
                order_pks.update({order_id: pk for order_id, pk in conn.execute(query)})
            for chunk in _chunks(sorted(order_pks.values())):
                conn.execute(sa.delete(items_table).where(items_table.c.order_pk.in_(chunk)))
            item_values = [
                {**item, "order_pk": order_pks[row.key]}
                for row in with_items
                for item in row.record["items"]
            ]
            for chunk in _chunks(item_values):
                conn.execute(sa.insert(items_table).values(chunk))
    return len(resolved), errors


def _write_events(engine: Engine, batch: list[_Pending]) -> tuple[int, list[RowError]]:
    table = Event.__table__
    with engine.begin() as conn:
        resolved, errors = _resolve_customers(conn, batch)
        by_key = {row.key: {**row.record["event"], "customer_id": pk} for row, pk in resolved}
        for chunk in _chunks(list(by_key.values())):
            insert = dialect_insert(conn, table).values(chunk)
            # Events are facts: an already stored event is left exactly as it is.
            conn.execute(insert.on_conflict_do_nothing(index_elements=["dedupe_key"]))
    return len(resolved), errors


_WRITERS: dict[str, Callable[[Engine, list[_Pending]], tuple[int, list[RowError]]]] = {
    "customers": _write_customers,
    "orders": _write_orders,
    "events": _write_events,
}

__all__ = ["FORMATS", "REQUIRED_COLUMNS", "ImportReport", "RowError", "import_file"]
