"""Checks of the values config.toml writes as strings (send windows, cron expressions,
time zones) and the bounds of its numbers; shared by every section that takes them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from functools import lru_cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from pydantic import AfterValidator, Field

from campaigns.config.jsonvalues import MAX_INTEGER, MIN_INTEGER

#: Bounds that keep configured numbers inside what the databases and date arithmetic take:
#: days beyond MAX_DAYS overflowed ``now - timedelta(days=N)``, integers beyond int64
#: overflowed SQLite's parameter binding; both stopped the scheduler mid-tick.
MAX_COUNT = 1_000_000_000
#: An integer the databases can bind (int64).
Int64 = Annotated[int, Field(ge=MIN_INTEGER, le=MAX_INTEGER)]
#: A float that is a number (no inf or NaN, which JSON and SQL comparisons cannot hold).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


_WINDOW = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")


def check_window(value: str | None, *, what: str = "send window") -> str | None:
    """``value`` if it is a local "HH:MM-HH:MM" window, else ValueError naming ``what``."""
    if value is not None and not _WINDOW.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: use local 'HH:MM-HH:MM', e.g. '09:00-21:00'")
    return value


#: An optional local send window "HH:MM-HH:MM" (checked by :func:`check_window`).
Window = Annotated[str | None, AfterValidator(check_window)]


def window_bounds(value: str | None) -> tuple[time, time] | None:
    """The (start, end) local times of an "HH:MM-HH:MM" window; end before start spans midnight."""
    if not value:
        return None
    start, end = value.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def check_endpoint(value: str) -> str:
    """``value`` without a trailing slash if it is an http(s) URL, else ValueError."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("endpoint must start with http:// or https://")
    return value.rstrip("/")


#: A provider's API base URL (checked by :func:`check_endpoint`).
Endpoint = Annotated[str, AfterValidator(check_endpoint)]


def check_cron(value: str, *, example: str = "0 10 * * *") -> str:
    """``value`` if it is a cron expression that fires, else ValueError saying why.

    ``croniter.is_valid`` accepts expressions that never fire (``0 0 31 2 *``: February
    has no 31st), on which the scheduler's croniter search fails every tick; a search
    bounded by croniter's 50 years finds that out here. A year field (7 fields) is
    refused: it makes "fires" depend on today's date.
    """
    if len(value.split()) > 6 or not croniter.is_valid(value):
        raise ValueError(f"invalid cron expression {value!r} (expected 5 fields, e.g. '{example}')")
    try:
        croniter(value, _CRON_PROBE).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):
        raise ValueError(f"cron expression {value!r} never fires (no such date in 50 years, "
                         f"e.g. the 31st of February); e.g. '{example}'") from None
    return value


_CRON_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=512)
def zone_named(name: str) -> ZoneInfo | None:
    """The zone called ``name``, or None when the name is not a known IANA zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def check_timezone(value: str) -> str:
    """``value`` if it names an IANA time zone, else ValueError saying so."""
    if zone_named(value) is None:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Asia/Shanghai')")
    return value
