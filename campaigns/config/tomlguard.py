"""Bounds on a TOML document's shape, checked in linear time before ``tomllib`` sees it.

``tomllib`` is quadratic in the parts of a dotted key (one 50,000-part key in a 100 KB
file took a minute and 15 GB) and recursive in nesting (100,000 ``[`` end in
RecursionError). No configuration needs anything close to these limits, so a document
over them is refused with its line, before any of that work starts.
"""

from __future__ import annotations

import re

#: Largest configuration file accepted, in characters.
MAX_CHARS = 1_000_000
#: Deepest nesting of arrays and inline tables.
MAX_NESTING = 32
#: Most parts of one dotted key or table header (``a.b.c`` has 3).
MAX_KEY_PARTS = 32

# Comments and strings are skipped whole (brackets and dots inside them mean nothing);
# brackets, dots and newlines are counted; any other character that cannot be part of a
# key (a comma, '=', an operator) ends a dotted key. Bare-key characters and blanks are
# not matched at all, so they neither count nor end a key.
_TOKEN = re.compile(
    r'#[^\n]*'
    r'|"""(?:[^"\\]|\\.|"(?!""))*"""'
    r"|'''.*?'''"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'[^'\n]*'"
    r"|[\[\]{}.\n]"
    r"|[^\sA-Za-z0-9_\-\[\]{}.\"'#]",
    re.S,
)


def shape_problem(text: str) -> tuple[int | None, str] | None:
    """``(line, message)`` for the first place ``text`` exceeds a bound, else None."""
    if len(text) > MAX_CHARS:
        return None, f"the file is larger than {MAX_CHARS:,} characters; a configuration is far smaller"
    line = 1
    depth = 0
    dots = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first in "\"'":
            line += token.count("\n")  # a multi-line string; a dotted key may go on after a quoted part
            continue
        if first == ".":
            dots += 1
            if dots >= MAX_KEY_PARTS:
                return line, f"a dotted key or table name has more than {MAX_KEY_PARTS} parts"
            continue
        dots = 0
        if first == "\n":
            line += 1
        elif first in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return line, f"arrays or inline tables are nested more than {MAX_NESTING} levels deep"
        elif first in "]}":
            depth = max(depth - 1, 0)
    return None
