"""Human durations as marketers write them in config: ``"2d"``, ``"36h"``, ``"1d12h"``, ``"90s"``."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)\s*([wdhms])")
_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}

#: Most days any configured day count or duration may span (100 years): the one bound
#: config, segment expressions and durations share, so ``now - timedelta(days=N)`` and
#: ``now + delay`` stay inside the dates Python and the databases can hold.
MAX_DAYS = 36_500
#: Longest duration accepted: a step delayed by more is surely a typo ("99999999999d"
#: overflowed timedelta itself).
MAX_DURATION = timedelta(days=MAX_DAYS)


def parse_duration(text: str | int | timedelta) -> timedelta:
    """Parse ``"2d"``, ``"1d12h"``, ``"30m"``; a bare number is seconds.

    >>> parse_duration("1d12h")
    datetime.timedelta(days=1, seconds=43200)

    Raises:
        ValueError: the text is not a duration, or is longer than :data:`MAX_DURATION`.
    """
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return _bounded(text, text)
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as '2d' or '12h', got {text!r}")
    compact = text.strip().replace(" ", "")
    if not compact or _PART.sub("", compact) != "":
        raise ValueError(f"invalid duration {text[:40]!r}: use numbers with w, d, h, m or s, e.g. '2d' or '1d12h'")
    # Summed as whole seconds (an int never overflows) and bounded before timedelta sees it.
    parts = _PART.findall(compact)
    if any(len(amount) > 15 for amount, _ in parts):
        return _bounded(int(MAX_DURATION.total_seconds()) + 1, text)
    seconds = sum(int(amount) * _SECONDS[unit] for amount, unit in parts)
    return _bounded(seconds, text)


def _bounded(seconds: int, text: object) -> timedelta:
    if seconds > MAX_DURATION.total_seconds():
        shown = (f"{text} seconds" if text.bit_length() < 64 else "a huge number of seconds") \
            if isinstance(text, int) else repr(str(text)[:40])
        raise ValueError(f"duration {shown} is longer than the maximum of {MAX_DURATION.days} days (100 years)")
    return timedelta(seconds=seconds)
