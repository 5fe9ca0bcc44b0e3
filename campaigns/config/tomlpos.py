"""Find the line of a key in a TOML file, so configuration errors can name it.

``tomllib`` keeps no positions, so this scans the text once and records the line of
every table header and ``key =`` it sees, by key path (array-of-tables entries get their
index). It understands what config files use: ``[table]``, ``[[array]]``, dotted and
quoted keys, inline tables on one line and multi-line strings and arrays; a key inside
an inline table is reported at its parent key's line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Path = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[|\[)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'[^']*'""")


def _bracket_balance(text: str) -> int:
    """Net ``[`` minus ``]`` in ``text``, ignoring those inside strings and comments."""
    code = _STRING.sub("", text).split("#", 1)[0]
    return code.count("[") - code.count("]")


def _split_key(dotted: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


class KeyLines:
    """Line numbers (1-based) of every key path in one TOML document."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        array_counts: dict[tuple[str, ...], int] = {}
        # The array-of-tables keys under each prefix, so a new "[[a]]" resets the counts of
        # "[[a.b]]" without scanning every key seen (that scan made 15,000 headers take 20 s).
        nested_arrays: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
        table: Path = ()
        in_multiline: str | None = None
        bracket_depth = 0
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw
            if in_multiline:
                if in_multiline in line:
                    in_multiline = None
                continue
            if bracket_depth > 0:
                bracket_depth += _bracket_balance(line)
                continue
            header = _HEADER.match(line)
            if header and not _KEY.match(line):
                names = _split_key(header.group(2))
                if header.group(1) == "[[":
                    key = tuple(names)
                    index = array_counts.get(key, -1) + 1
                    array_counts[key] = index
                    for size in range(1, len(key)):
                        nested_arrays.setdefault(key[:size], set()).add(key)
                    # Nested arrays of tables restart their count under a new parent.
                    for other in nested_arrays.pop(key, ()):
                        array_counts.pop(other, None)
                    table = self._resolve(names, array_counts) + (index,)
                else:
                    table = self._resolve(names, array_counts)
                self._lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if not key:
                continue
            path = table + tuple(_split_key(key.group(1)))
            self._lines.setdefault(path, number)
            rest = line[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) == 1:
                    in_multiline = quote
            # A value that opens a multi-line string is not an array.
            bracket_depth = 0 if in_multiline else _bracket_balance(rest)

    @staticmethod
    def _resolve(names: list[str], array_counts: dict[tuple[str, ...], int]) -> Path:
        # "[campaigns.audience]" after the 3rd "[[campaigns]]" lives at campaigns.2.audience.
        path: list[str | int] = []
        plain: list[str] = []
        for name in names:
            path.append(name)
            plain.append(name)
            if tuple(plain) in array_counts and len(plain) < len(names):
                path.append(array_counts[tuple(plain)])
        return tuple(path)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest ancestor that appears in the file."""
        probe = tuple(path)
        while probe:
            if probe in self._lines:
                return self._lines[probe]
            probe = probe[:-1]
        return None
