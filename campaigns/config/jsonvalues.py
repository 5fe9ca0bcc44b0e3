"""What a JSON value must be before it is stored: the one check imports and ``POST /events``
share.

Both databases store attributes and properties as JSON, and both fail on values JSON text
can carry: ``NaN``/``Infinity`` are stored by SQLite as invalid JSON (after which every
``attributes.*`` audience fails with "malformed JSON") and make PostgreSQL refuse the
statement; a NUL character is refused by PostgreSQL text and jsonb; a lone surrogate
(``"\\ud800"``) cannot be encoded as UTF-8 at all; an integer beyond 64 bits is not read
back faithfully; and a deeply nested value makes Python's own JSON code recurse until it
fails. A storable value is therefore:

* numbers: finite, and integers within :data:`MIN_INTEGER`..:data:`MAX_INTEGER` (int64);
* text (values and object keys): no NUL, no lone surrogate;
* nesting: at most :data:`MAX_JSON_DEPTH` levels of arrays/objects;
* size: at most :data:`MAX_VALUE_BYTES` bytes of JSON per value.

:func:`loads` parses JSON text without ever raising anything but :class:`UnstorableValue`
or :class:`json.JSONDecodeError`: ``NaN``, ``Infinity`` and over-long integers become
placeholders that :func:`check` reports with the field's name, so one bad field rejects its
row (or event), never the whole file (or request). Messages name the field, never its
value: values may be personal data.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Deepest nesting of arrays and objects in one value.
MAX_JSON_DEPTH = 32
#: The integer range both databases hold faithfully (PostgreSQL bigint, SQLite INTEGER).
MIN_INTEGER, MAX_INTEGER = -(2**63), 2**63 - 1
#: Largest value, as JSON text (UTF-8 bytes): one attribute, one property, one column.
MAX_VALUE_BYTES = 64 * 1024
# More digits than any int64 has: never converted (int() of 4,301+ digits raises).
_MAX_INT_DIGITS = 19


class UnstorableValue(ValueError):
    """A value that cannot be stored; ``str()`` is ``"<field>: <reason>"``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class _Refused:
    """Placeholder for a number :func:`loads` would not convert; :func:`check` reports it."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<refused number: {self.reason}>"


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a number that can be stored (finite numbers only)")


def _integer(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return _Refused(f"integer of {len(text.lstrip('-'))} digits is outside the storable range "
                        f"({MIN_INTEGER}..{MAX_INTEGER})")
    return int(text)


def loads(text: str | bytes) -> Any:
    """Parse JSON text; unstorable numbers become placeholders that :func:`check` rejects.

    Raises :class:`json.JSONDecodeError` for invalid JSON and :class:`UnstorableValue` for
    nesting too deep for the parser; nothing else.
    """
    try:
        return json.loads(text, parse_constant=_constant, parse_int=_integer)
    except RecursionError:
        raise UnstorableValue("", f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not valid Unicode"
    return None


def shown_name(name: str, placeholder: str = "<key>") -> str:
    """A key or field name as error messages show it: itself when short and printable,
    else ``placeholder`` (the name comes from the input, which may be hostile)."""
    return name if len(name) <= 64 and name.isprintable() else placeholder


def check(value: Any, field: str) -> None:
    """Raise :class:`UnstorableValue` naming ``field`` (and the path inside it) unless
    ``value`` is storable. Iterative, so any depth of input is safe to check."""
    if type(value) is str and 6 * len(value) + 2 <= MAX_VALUE_BYTES:
        # Every field of a CSV row: text too short to be over the size limit.
        problem = _text_problem(value)
        if problem:
            raise UnstorableValue(field, problem)
        return
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, _Refused):
            raise UnstorableValue(path, item.reason)
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            if not MIN_INTEGER <= item <= MAX_INTEGER:
                raise UnstorableValue(path, f"integer outside the storable range ({MIN_INTEGER}..{MAX_INTEGER})")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise UnstorableValue(path, "not a finite number (NaN and Infinity cannot be stored)")
        elif isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                raise UnstorableValue(path, problem)
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:  # named by the value's own field: the path is as long
                raise UnstorableValue(field, f"nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                check_keys(item, path)
                for key, child in item.items():
                    stack.append((child, f"{path}.{shown_name(key)}" if path else shown_name(key), depth + 1))
            else:
                stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
        else:
            raise UnstorableValue(path, f"{type(item).__name__} is not a JSON value")
    # Imports check every field of every row: serialise only what could be over the limit
    # (a scalar is a few bytes; a character is at most 6 bytes of JSON, as \uXXXX).
    if isinstance(value, str) and 6 * len(value) + 2 <= MAX_VALUE_BYTES:
        return
    if not isinstance(value, str | dict | list):
        return
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise UnstorableValue(field, f"value is {size} bytes of JSON; at most {MAX_VALUE_BYTES}")


def check_keys(mapping: dict[Any, Any], field: str) -> None:
    """Raise :class:`UnstorableValue` unless every key of ``mapping`` is storable text."""
    for key in mapping:
        if not isinstance(key, str):
            raise UnstorableValue(field, "object keys must be text")
        problem = _text_problem(key)
        if problem:
            raise UnstorableValue(field, f"a key {problem}")


def check_fields(mapping: dict[Any, Any], field: str) -> None:
    """:func:`check` each entry of ``mapping`` as its own value, named ``field.key``: the
    size limit then applies per attribute (or property), not to the whole object."""
    check_keys(mapping, field)
    for key, value in mapping.items():
        check(value, f"{field}.{shown_name(key)}" if field else shown_name(key))


__all__ = ["MAX_INTEGER", "MAX_JSON_DEPTH", "MAX_VALUE_BYTES", "MIN_INTEGER", "UnstorableValue", "check", "check_fields", "check_keys", "loads", "shown_name"]
