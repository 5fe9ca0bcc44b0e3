"""Parsing one field of an import row: text, dates, booleans, numbers, JSON, emails, zones.

Each parser takes the raw value (CSV text or a JSON value), returns it typed, None for "not
given" (empty or absent), or raises :class:`RowInvalid` with a message that names the field
and never quotes personal data.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.config import jsonvalues
from campaigns.config.jsonvalues import UnstorableValue

_TRUE = frozenset(("true", "yes", "y", "1"))
_FALSE = frozenset(("false", "no", "n", "0"))
# Only plain decimals become numbers: "007" (a zip code) or "1e5" (a code) stay text.
_INT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
_DATE_HINT = "use ISO 8601, e.g. 2025-03-01 or 2025-03-01T10:00:00+08:00"
#: Dates accepted (created_at, ordered_at, occurred_at, consent_at): earlier or later ones
#: are typing mistakes, and year-1 or year-9999 dates overflow once moved to UTC.
EARLIEST_DATE = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_DATE = datetime(2200, 1, 1, tzinfo=UTC)


class RowInvalid(Exception):
    """A row failed validation; the message becomes its ``RowError.reason`` (or, for
    ``POST /events``, the rejected event's reason)."""


def text_value(row: dict[str, Any], name: str, *, max_length: int | None = None) -> str | None:
    """A text field, stripped; None when absent or empty. JSON numbers are accepted as text."""
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowInvalid(f"{name}: expected text, got {_json_kind(value)}")
    text = value.strip() if isinstance(value, str) else str(value)
    if not text:
        return None
    if max_length is not None and len(text) > max_length:
        raise RowInvalid(f"{name}: longer than {max_length} characters")
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


def required_text(row: dict[str, Any], name: str, *, max_length: int | None = None) -> str:
    """Like :func:`text_value`, but an absent or empty field rejects the row."""
    text = text_value(row, name, max_length=max_length)
    if text is None:
        raise RowInvalid(f"{name}: required")
    return text


def datetime_value(row: dict[str, Any], name: str, *, required: bool) -> datetime | None:
    """An ISO 8601 date or datetime as aware UTC (naive values are UTC), within
    :data:`EARLIEST_DATE`..:data:`LATEST_DATE`; None when not given and not ``required``."""
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowInvalid(f"{name}: required ({_DATE_HINT})")
        return None
    if not isinstance(value, str):
        raise RowInvalid(f"{name}: invalid date {json.dumps(value)} ({_DATE_HINT})")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise RowInvalid(f"{name}: invalid date {value!r} ({_DATE_HINT})") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # naive values are taken as UTC
    try:
        in_range = EARLIEST_DATE <= parsed.astimezone(UTC) < LATEST_DATE
    except OverflowError:  # e.g. 0001-01-01T00:00:00+08:00 is before year 1 in UTC
        in_range = False
    if not in_range:
        raise RowInvalid(
            f"{name}: {value.strip()!r} is out of range (dates from {EARLIEST_DATE.year} "
            f"to {LATEST_DATE.year - 1} are accepted)"
        )
    return parsed.astimezone(UTC)


def bool_value(row: dict[str, Any], name: str) -> bool | None:
    """true/false, yes/no, y/n or 1/0 (any case, or a JSON boolean); None when not given."""
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
    raise RowInvalid(f"{name}: expected true/false, yes/no or 1/0, got {json.dumps(value)}")


def non_negative_number(value: Any, name: str, *, maximum: float | None = None) -> float:
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
        raise RowInvalid(f"{name}: must be a non-negative number, got {shown}")
    if maximum is not None and number >= maximum:
        raise RowInvalid(f"{name}: too large (at most {maximum:.0f} exclusive)")
    return number


def json_value(row: dict[str, Any], name: str, expected: type, csv_source: bool) -> Any:
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
                raise RowInvalid(f"{name}: invalid JSON ({exc.msg})") from None
            except UnstorableValue as exc:
                raise RowInvalid(str(exc) if exc.field else f"{name}: {exc}") from None
    if value is None:
        return None
    if not isinstance(value, expected):
        wanted = "a JSON object" if expected is dict else "a JSON array"
        raise RowInvalid(f"{name}: expected {wanted}")
    return value


def typed_csv_value(value: str) -> Any:
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


def extra_columns(row: dict[str, Any], known: frozenset[str], csv_source: bool) -> dict[str, Any]:
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
                value = typed_csv_value(value)
        extras[name] = value
    return extras


def email_address(text: str | None) -> str | None:
    """``text`` when it looks like an address (one @, a dotted domain, no spaces); None stays None."""
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
        raise RowInvalid("email: not a valid address (one @, a dotted domain, no spaces)")
    return text


def timezone_name(text: str | None) -> str | None:
    """``text`` when it names an IANA time zone this system knows; None stays None."""
    if text is None:
        return None
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise RowInvalid(
            f"timezone: unknown time zone {text!r} (use an IANA name such as Asia/Shanghai)"
        ) from None
    return text


__all__ = [
    "EARLIEST_DATE",
    "LATEST_DATE",
    "RowInvalid",
    "bool_value",
    "datetime_value",
    "email_address",
    "extra_columns",
    "json_value",
    "non_negative_number",
    "required_text",
    "text_value",
    "timezone_name",
    "typed_csv_value",
]
