"""Reading an import file: bytes to rows, with their physical line numbers.

UTF-8 lines are decoded one at a time (:class:`LineReader`), then read as CSV records
(:func:`csv_rows`) or JSON Lines objects (:func:`jsonl_rows`). A row a reader already knows
to be unusable (too long, an unclosed quote, not a JSON object) comes back as the reason
for its rejection instead of a dict, so one bad row never stops the file.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from campaigns.config import jsonvalues
from campaigns.config.jsonvalues import UnstorableValue
from campaigns.customers.importing.rows import REQUIRED_COLUMNS
from campaigns.errors import DataImportError

#: Accepted ``file_format`` values (and file extensions) mapped onto the two readers.
FORMATS = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}
#: Largest row in bytes: one JSONL line, or one CSV record (all its lines). A longer row is
#: rejected by line without being held in memory.
MAX_ROW_BYTES = 1024 * 1024
#: Most columns a CSV header may have.
MAX_COLUMNS = 1000


def resolve_format(path: Path, file_format: str | None) -> str:
    """The reader for ``path``: ``csv`` or ``jsonl``, from ``file_format`` when given, else
    from the file extension; :class:`DataImportError` names the accepted ones otherwise."""
    name = (file_format if file_format is not None else path.suffix).lower().lstrip(".")
    if name not in FORMATS:
        shown = file_format if file_format is not None else (path.suffix or "no extension")
        raise DataImportError(
            f"{path}: unknown file format {shown!r}: use .csv, .jsonl or .ndjson "
            "(or pass the format explicitly)"
        )
    return FORMATS[name]


class LineReader:
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


def csv_rows(
    lines: LineReader, kind: str, path: Path, *, required: Sequence[str] | None = None
) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(start line, row dict) per CSV record; a str instead of a dict is a rejection reason.

    The header must hold the ``required`` columns (default: those of ``kind``'s rows).

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
    missing = [name for name in (REQUIRED_COLUMNS[kind] if required is None else required) if name not in columns]
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


def jsonl_rows(lines: LineReader) -> Iterator[tuple[int, dict[str, Any] | str]]:
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


__all__ = ["FORMATS", "LineReader", "MAX_COLUMNS", "MAX_ROW_BYTES", "csv_rows", "jsonl_rows", "open_rows", "resolve_format"]


@contextlib.contextmanager
def open_rows(path: Path, kind: str, fmt: str, *,
              required: Sequence[str] | None = None) -> Iterator[tuple[LineReader, Iterator[tuple[int, Any]]]]:
    """Open ``path`` for an import of ``kind`` in format ``fmt`` (:func:`resolve_format`):
    ``(lines, rows)``, the reader (its ``bytes_read`` drives progress bars) and the (line,
    row dict or rejection reason) pairs of :func:`csv_rows` or :func:`jsonl_rows`. Every
    import opens its file here, so a missing file, a directory or an unreadable one is the
    same one-line :class:`DataImportError` for all of them."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DataImportError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataImportError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise DataImportError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with handle:
        lines = LineReader(handle, path)
        yield lines, (csv_rows(lines, kind, path, required=required) if fmt == "csv" else jsonl_rows(lines))

